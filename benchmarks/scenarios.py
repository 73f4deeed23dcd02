"""Benchmark scenarios. Each runs in its own process (so peak RSS is its own).

`python -m benchmarks.scenarios NAME VIDEO OUT AUDIO FACES` prints one JSON line:
frames (video frames the job covered), wall_s, fps (frames / wall_s), cpu_s (process CPU
seconds, all threads, over the same span: steadier than wall time on a shared machine),
and for pipelines the per-stage metrics. Model loading and finding the faces to sync
happen before the clock starts; the clock covers what a request pays per video.
For the lipsync rows wall_s and fps are the render pipeline's (the series the targets
were set on), cpu_s covers the mouth-bank pass and the render, and job_wall_s / job_fps
the whole job call: its probes, audio analysis and mouth-bank pass before the render.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import cv2

from benchmarks.threads import ThreadSampler, process_cpu_s
from jobs import lipsync as lipsync_job
from jobs import passthrough as passthrough_job
from jobs.config import Settings
from jobs.detect import detect_faces
from stages.colour import ColourSpace, frame_to_rgb
from stages.encode import yuv420p_frame
from stream.context import JobContext
from stream.pipeline import Pipeline

SETTINGS = Settings(engine="classical")
"""The product's defaults (libx264 veryfast, crf 16, detect_interval 5), classical engine."""


@dataclass
class Metered:
    """The measured spans of one scenario: process CPU seconds of each, and the threads that
    spent them (`benchmarks.threads`). cpu_s leaves out the sampler's own thread."""

    sampler: ThreadSampler
    spans: list[float] = field(default_factory=list)

    @property
    def cpu_s(self) -> float:
        return sum(self.spans) - sum(g.get("sampler", 0.0) for g in self.sampler.groups().values())

    def threads(self) -> dict[str, dict[str, float]]:
        """{span label: {thread group: CPU seconds}}, the sampler left out."""
        return {label: {name: round(cpu, 4) for name, cpu in groups.items() if name != "sampler"}
                for label, groups in self.sampler.groups().items()}


SPAN_LABELS = {"bank": "bank pass", "encode": "render"}
"""A pipeline's span label, by the name of its last stage."""


@contextmanager
def _pipeline_cpu() -> Iterator[Metered]:
    """Collect the process CPU seconds spent inside every Pipeline.run / run_inline call, and
    which threads spent them.

    The jobs build and run their pipelines themselves; wrapping the two methods in this
    benchmark process is how the harness sees the CPU of exactly the timed span.
    """
    originals = Pipeline.run, Pipeline.run_inline
    with ThreadSampler() as sampler:
        metered_spans = Metered(sampler)

        def metered(method: Callable) -> Callable:
            def wrapper(self, *args, **kwargs):
                last = (self.stages[-1] if self.stages else self.source).name
                sampler.begin(SPAN_LABELS.get(last, last))
                start = process_cpu_s()
                try:
                    return method(self, *args, **kwargs)
                finally:
                    metered_spans.spans.append(process_cpu_s() - start)
                    sampler.end()
            return wrapper

        Pipeline.run, Pipeline.run_inline = metered(originals[0]), metered(originals[1])
        try:
            yield metered_spans
        finally:
            Pipeline.run, Pipeline.run_inline = originals


class PhaseClock(JobContext):
    """A job context that times each pass a job runs through it (`JobContext.run`: detect,
    speakers, bank, lipsync...): wall seconds and process CPU seconds, summed by phase name.
    The passes of one job run one after another, so the process CPU over a pass is that
    pass's."""

    def __init__(self) -> None:
        super().__init__()
        self.phases: dict[str, dict[str, float]] = {}

    def run(self, phase: str, pipeline: Pipeline, frames_total: int, on_output=None):
        wall, cpu = time.perf_counter(), process_cpu_s()
        try:
            return super().run(phase, pipeline, frames_total, on_output)
        finally:
            spent = self.phases.setdefault(phase, {"wall_s": 0.0, "cpu_s": 0.0})
            spent["wall_s"] += time.perf_counter() - wall
            spent["cpu_s"] += process_cpu_s() - cpu


def _pipeline_result(frames: int, metrics: dict, cpu_s: float, **extra) -> dict:
    wall = metrics["wall_s"]
    return {"frames": frames, "wall_s": wall, "fps": frames / wall, "cpu_s": cpu_s,
            "stages": metrics["stages"], **extra}


def codec_floor(video: str, out: str, audio: str | None, faces: int) -> dict:
    """PyAV decode then encode in one plain loop, same crf and preset: the floor.

    Frames go through RGB numpy arrays with the pipeline's own conversions (`frame_to_rgb`
    on decode, `yuv420p_frame` on encode), since every pipeline hands the stages
    RGB pixels; it is the cost of the codec path the pipeline cannot avoid.
    """
    with ThreadSampler() as sampler:
        sampler.begin("floor")
        start, cpu = time.perf_counter(), process_cpu_s()
        frames = 0
        with av.open(video) as source, av.open(out, "w", options={"movflags": "+faststart"}) as sink:
            src = source.streams.video[0]
            src.thread_type = "AUTO"
            dst = sink.add_stream("libx264", rate=src.average_rate)
            dst.width, dst.height, dst.pix_fmt = src.codec_context.width, src.codec_context.height, "yuv420p"
            # libx264's frame threads, its fastest: the jobs' sliced threads (reproducible
            # output) make a one-loop encode synchronous (57-83 fps against 98-101 here)
            dst.options = {"crf": str(SETTINGS.crf), "preset": SETTINGS.preset}
            colour = ColourSpace.of(src.codec_context)
            colour.tag(dst.codec_context)
            dst.thread_type = "AUTO"
            for frame in source.decode(src):
                sink.mux(dst.encode(yuv420p_frame(frame_to_rgb(frame), colour)))
                frames += 1
            sink.mux(dst.encode(None))
        wall, cpu_s = time.perf_counter() - start, process_cpu_s() - cpu
        sampler.end()
    metered = Metered(sampler, [cpu_s])
    return {"frames": frames, "wall_s": wall, "fps": frames / wall, "cpu_s": metered.cpu_s,
            "threads": metered.threads()}


def passthrough(video: str, out: str, audio: str | None, faces: int) -> dict:
    with _pipeline_cpu() as cpu:
        result = passthrough_job.passthrough(video, out, audio, SETTINGS)
    return _pipeline_result(result["output"]["frame_count"], result["metrics"], cpu.cpu_s, threads=cpu.threads())


def decode_all(video: str, out: str, audio: str | None, faces: int) -> dict:
    """Every frame decoded to RGB: what detect-faces would pay without sampling."""
    from stages.decode import DecodeStage

    start, cpu = time.perf_counter(), process_cpu_s()
    frames = sum(1 for _ in DecodeStage(video).items())
    wall = time.perf_counter() - start
    return {"frames": frames, "wall_s": wall, "fps": frames / wall, "cpu_s": process_cpu_s() - cpu}


def detect_3fps(video: str, out: str, audio: str | None, faces: int) -> dict:
    """The detect-faces job at 3 fps. fps counts the video's frames, so it compares with
    the other rows; ms_per_sampled_frame is the detector's busy time per sampled frame;
    shot_ms_per_frame is the shot detector's cost per decoded frame (every frame, sampled
    or not) and shot_share its part of the job's CPU time."""
    from stages.decode import probe_video

    detect_faces(video, sample_fps=1, settings=SETTINGS)  # load the backend before the clock
    with _pipeline_cpu() as cpu:
        result = detect_faces(video, sample_fps=3, settings=SETTINGS)
    wall = result["timing"]["total_ms"] / 1000
    sampled = len(result["frames"])
    frames = probe_video(video).frame_count
    return {"frames": frames, "wall_s": wall, "fps": frames / wall, "cpu_s": cpu.cpu_s, "threads": cpu.threads(),
            "sampled_frames": sampled, "ms_per_sampled_frame": result["timing"]["detection_ms"] / sampled,
            "faces_found": max(len(f["faces"]) for f in result["frames"]),
            "shot_ms_per_frame": result["timing"]["shot_detection_ms"] / frames,
            "shot_share": result["timing"]["shot_detection_ms"] / 1000 / cpu.cpu_s}


def shot_detection(video: str, out: str, audio: str | None, faces: int) -> dict:
    """Every frame decoded (no RGB) and handed to the shot detector, as the decoder does in
    both jobs. shot_ms_per_frame is the detector's CPU per frame (thumbnail + decision)."""
    from stages.shots import ShotDetector

    detector = ShotDetector()
    start, cpu = time.perf_counter(), process_cpu_s()
    with av.open(video) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        entries = ((i, f.pts, stream.time_base, f) for i, f in enumerate(container.decode(stream)))
        frames = sum(1 for _ in detector.label(entries))
    wall = time.perf_counter() - start
    return {"frames": frames, "wall_s": wall, "fps": frames / wall, "cpu_s": process_cpu_s() - cpu,
            "shot_ms_per_frame": detector.ms_per_frame, "boundaries": len(detector.boundaries_ms)}


def active_speakers(video: str, out: str, audio: str | None, faces: int) -> dict:
    """Light-ASD on every face track of a detect-faces pass (the shared weights, read in
    place). fps counts video frames per second of the ASD pass (crops + scoring);
    ms_per_s_per_face is its cost per second of video per face."""
    from benchmarks.inputs import ASD_WEIGHTS as weights
    from stages.decode import probe_video

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "light-asd").mkdir()
        os.symlink(weights, Path(tmp) / "light-asd" / weights.name)
        with_sound = str(Path(tmp) / "with_sound.mp4")
        passthrough_job.passthrough(video, with_sound, audio, SETTINGS)  # the input has no audio track of its own
        settings = Settings(preset=SETTINGS.preset, crf=SETTINGS.crf, models_dir=Path(tmp))
        detect_faces(with_sound, sample_fps=1, settings=settings)  # load the models before the clock
        with _pipeline_cpu() as cpu:
            result = detect_faces(with_sound, sample_fps=3, settings=settings)
        info = probe_video(with_sound)
    wall = result["timing"]["speaker_detection_ms"] / 1000
    tracks = max(1, max(len(f["faces"]) for f in result["frames"]))
    return {"frames": info.frame_count, "wall_s": wall, "fps": info.frame_count / wall, "cpu_s": cpu.cpu_s,
            "ms_per_s_per_face": 1000 * wall / (info.duration_ms / 1000) / tracks, "faces_scored": tracks}


def _face_specs(video: str, count: int, settings: Settings) -> list:
    """The first `count` faces at t=0, for the whole video (found before the clock starts)."""
    from jobs.schema import FaceSpec
    from stages.decode import probe_video

    found = detect_faces(video, sample_fps=1, settings=settings)["frames"][0]["faces"]
    if len(found) < count:
        raise RuntimeError(f"{video}: {count} faces asked, {len(found)} found at t=0")
    duration = probe_video(video).duration_ms
    return [FaceSpec(f["character_id"], f["bbox"], 0, duration) for f in found[:count]]


def _lipsync(video: str, out: str, audio: str | None, faces: int, settings: Settings = SETTINGS,
             inline: bool = False) -> dict:
    from jobs.registry import shared_registry

    specs = _face_specs(video, faces, settings)
    shared_registry(settings).lipsync_engine()  # model loading is not part of the run
    with _pipeline_cpu() as cpu:
        started = time.perf_counter()
        result = lipsync_job.lipsync(video, audio, specs, out, settings, inline=inline)
        job_wall_s = time.perf_counter() - started
    frames = result["output"]["frame_count"]
    engine_s = next(s["busy_s"] for s in result["metrics"]["stages"] if s["name"] == "lipsync")
    return _pipeline_result(frames, result["metrics"], cpu.cpu_s, threads=cpu.threads(), engine=result["engine"],
                            faces_synced=result["faces"]["processed"],
                            engine_ms_per_face=1000 * engine_s / max(1, frames * faces),
                            mouth_bank_ms=result["timing"].get("mouth_bank_ms", 0.0),
                            decode_ms=result["timing"]["decode_ms"], job_wall_s=job_wall_s,
                            job_fps=frames / job_wall_s)


def lipsync(video: str, out: str, audio: str | None, faces: int) -> dict:
    """The lipsync job with the classical engine on `faces` faces."""
    return _lipsync(video, out, audio, faces)


def lipsync_synth(video: str, out: str, audio: str | None, faces: int) -> dict:
    """The classical engine without its mouth bank (synthesised mouths, no bank pass): the
    engine as it was before the bank, for its cost side by side."""
    return _lipsync(video, out, audio, faces, replace(SETTINGS, mouth_bank=0))


def sequential(video: str, out: str, audio: str | None, faces: int) -> dict:
    """The same stages called one after another in one thread, no queues."""
    return _lipsync(video, out, audio, faces, inline=True)


def neural_tiny(video: str, out: str, audio: str | None, faces: int) -> dict:
    """The lipsync job with the MuseTalk engine on tiny random models: pipeline overhead."""
    from benchmarks.tiny_models import write_tiny_musetalk

    with tempfile.TemporaryDirectory() as models:
        settings = Settings(preset=SETTINGS.preset, crf=SETTINGS.crf, engine="musetalk", device="cpu",
                            models_dir=write_tiny_musetalk(Path(models)))
        return _lipsync(video, out, audio, faces, settings)


def lipsync_auto(video: str, out: str, audio: str | None, faces: int) -> dict:
    """The lipsync job in auto mode (faces[] None): its own detect-faces pass at 3 fps (with
    Light-ASD on the input's sound when the shared weights and torch are there, as in
    `active_speakers`), the mouth-bank pass and the render, all on the clock: what an auto
    request pays per video. cpu_s is the process CPU over the whole job (every pass), not
    the render pipeline's alone; `stages` are the render's. `faces` is unused: auto mode
    chooses the faces."""
    from benchmarks.inputs import ASD_WEIGHTS as weights
    from benchmarks.tiny_models import neural_available
    from jobs.registry import shared_registry

    with tempfile.TemporaryDirectory() as tmp:
        settings, source, asd = SETTINGS, video, neural_available() and weights.is_file()
        if asd:
            (Path(tmp) / "light-asd").mkdir()
            os.symlink(weights, Path(tmp) / "light-asd" / weights.name)
            source = str(Path(tmp) / "with_sound.mp4")
            passthrough_job.passthrough(video, source, audio, SETTINGS)  # the input has no audio track of its own
            settings = replace(SETTINGS, models_dir=Path(tmp))
        detect_faces(source, sample_fps=1, settings=settings)  # load the face and ASD models before the clock
        shared_registry(settings).lipsync_engine()
        start, cpu, clock = time.perf_counter(), process_cpu_s(), PhaseClock()
        result = lipsync_job.lipsync(source, audio, None, out, settings, clock)
        wall, cpu_s = time.perf_counter() - start, process_cpu_s() - cpu
    frames = result["output"]["frame_count"]
    return {"frames": frames, "wall_s": wall, "fps": frames / wall, "cpu_s": cpu_s,
            "stages": result["metrics"]["stages"], "engine": result["engine"], "active_speaker_model": asd,
            "faces_synced": result["faces"]["processed"], "render_wall_s": result["metrics"]["wall_s"],
            "mouth_bank_ms": result["timing"].get("mouth_bank_ms", 0.0), "phases": clock.phases}


def naive(video: str, out: str, audio: str | None, faces: int) -> dict:
    """How reference lip-sync scripts work: every frame to PNG on disk, per-frame processing
    in one thread, encode from the PNG sequence, then mux the audio."""
    from stages.decode import probe_video
    from stream.frame import Frame
    from stream.stage import Source, Stage

    specs = _face_specs(video, faces, SETTINGS)
    info = probe_video(video)
    stages = lipsync_job.lipsync_stages(video, audio, specs, SETTINGS)  # setup, as in the other rows
    start, cpu = time.perf_counter(), process_cpu_s()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        count = 0
        with av.open(video) as source:  # 1. decode every frame to PNG
            for count, frame in enumerate(source.decode(video=0), start=1):
                cv2.imwrite(str(folder / f"{count - 1:06d}.png"), frame.to_ndarray(format="bgr24"))

        class PngFrames(Source):
            name = "png"

            def items(self):
                for k in range(count):
                    image = cv2.cvtColor(cv2.imread(str(folder / f"{k:06d}.png")), cv2.COLOR_BGR2RGB)
                    yield Frame(k, k, Fraction(1, int(round(info.fps))), image)

        class WritePng(Stage):  # 2. the same per-frame processing, writing PNGs back
            name = "write"

            def process(self, frame):
                cv2.imwrite(str(folder / f"{frame.index:06d}.png"), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
                return ()

        Pipeline(PngFrames(), [*stages, WritePng()]).run_inline()
        silent = folder / "silent.mp4"
        with av.open(str(silent), "w") as sink:  # 3. encode from the PNG sequence
            stream = sink.add_stream("libx264", rate=int(round(info.fps)))
            stream.width, stream.height, stream.pix_fmt = info.width, info.height, "yuv420p"
            stream.options = {"crf": str(SETTINGS.crf), "preset": SETTINGS.preset}
            for k in range(count):
                image = cv2.imread(str(folder / f"{k:06d}.png"))
                sink.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
            sink.mux(stream.encode(None))
        passthrough_job.passthrough(silent, out, audio, SETTINGS)  # 4. mux the audio (re-encodes, as scripts do)
    wall = time.perf_counter() - start
    return {"frames": count, "wall_s": wall, "fps": count / wall, "cpu_s": process_cpu_s() - cpu}


SCENARIOS: dict[str, Callable[[str, str, str | None, int], dict]] = {
    "codec_floor": codec_floor, "passthrough": passthrough, "decode_all": decode_all,
    "detect_3fps": detect_3fps, "lipsync": lipsync, "lipsync_synth": lipsync_synth, "sequential": sequential,
    "naive": naive,
    "neural_tiny": neural_tiny, "active_speakers": active_speakers, "shot_detection": shot_detection,
    "lipsync_auto": lipsync_auto,
}


def peak_rss_mb() -> float:
    """This process's peak resident set size (MB).

    VmHWM belongs to the process image, so it starts afresh at exec; getrusage's ru_maxrss
    would carry the parent's peak over from before the fork (the harness that built the
    inputs), which hides the scenario's own memory.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    name, video, out, audio, faces = (argv or sys.argv[1:])[:5]
    result = SCENARIOS[name](video, out, audio or None, int(faces))
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
