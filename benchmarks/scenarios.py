"""Benchmark scenarios. Each runs in its own process (so peak RSS is its own) and
returns a dict: frames, wall_s, fps and per-stage metrics when it is a pipeline."""
from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import av

from stream import jobs
from stream.config import Settings

SETTINGS = Settings(preset="veryfast", crf=18)


def codec_floor(video: str, out: str, audio: str | None) -> dict:
    """PyAV decode then encode in one plain loop, same encoder settings: the floor."""
    start = time.perf_counter()
    frames = 0
    with av.open(video) as source, av.open(out, "w", options={"movflags": "+faststart"}) as sink:
        src = source.streams.video[0]
        src.thread_type = "AUTO"
        dst = sink.add_stream("libx264", rate=src.average_rate)
        dst.width, dst.height, dst.pix_fmt = src.codec_context.width, src.codec_context.height, "yuv420p"
        dst.options = {"crf": str(SETTINGS.crf), "preset": SETTINGS.preset}
        dst.thread_type = "AUTO"
        for frame in source.decode(src):
            image = frame.to_ndarray(format="rgb24")
            sink.mux(dst.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            frames += 1
        sink.mux(dst.encode(None))
    wall = time.perf_counter() - start
    return {"frames": frames, "wall_s": wall, "fps": frames / wall}


def passthrough(video: str, out: str, audio: str | None) -> dict:
    result = jobs.passthrough(video, out, audio, SETTINGS)
    return {"frames": result["frames"], "wall_s": result["metrics"]["wall_s"],
            "fps": result["frames"] / result["metrics"]["wall_s"], "stages": result["metrics"]["stages"]}


def decode_all(video: str, out: str, audio: str | None) -> dict:
    """Every frame decoded to RGB: what detect-faces would pay without sampling."""
    from stages.decode import DecodeStage

    start = time.perf_counter()
    frames = sum(1 for _ in DecodeStage(video).items())
    wall = time.perf_counter() - start
    return {"frames": frames, "wall_s": wall, "fps": frames / wall}


def detect_3fps(video: str, out: str, audio: str | None) -> dict:
    result = jobs.detect_faces(video, sample_fps=3, settings=SETTINGS)
    wall = result["timing"]["total_ms"] / 1000
    sampled = len(result["frames"])
    return {"frames": sampled, "wall_s": wall, "fps": sampled / wall,
            "ms_per_sampled_frame": result["timing"]["detection_ms"] / sampled}


def _faces(video: str, count: int) -> list:
    """The first `count` faces at t=0, for the whole video (found before the clock starts)."""
    from stages.decode import probe_video
    from stream.schema import FaceSpec

    found = jobs.detect_faces(video, sample_fps=1, settings=SETTINGS)["frames"][0]["faces"]
    duration = probe_video(video).duration_ms
    return [FaceSpec(f["character_id"], f["bbox"], 0, duration) for f in found[:count]]


def _lipsync(video: str, out: str, audio: str | None, faces: int, inline: bool = False) -> dict:
    specs = _faces(video, faces)
    from stream.registry import shared_registry

    shared_registry(SETTINGS).lipsync_engine()  # model loading is not part of the run
    result = jobs.lipsync(video, audio, specs, out, SETTINGS, inline=inline)
    metrics = result["metrics"]
    frames = result["output"]["frame_count"]
    return {"frames": frames, "wall_s": metrics["wall_s"], "fps": frames / metrics["wall_s"],
            "stages": metrics["stages"], "engine": result["engine"]}


def lipsync_1face(video, out, audio):
    return _lipsync(video, out, audio, 1)


def lipsync_2faces(video, out, audio):
    return _lipsync(video, out, audio, 2)


def sequential_2faces(video, out, audio):
    """The same stages called one after another in one thread, no queues."""
    return _lipsync(video, out, audio, 2, inline=True)


def naive_2faces(video: str, out: str, audio: str | None) -> dict:
    """How reference lip-sync scripts work: every frame to PNG on disk, per-frame processing
    in one thread, encode from the PNG sequence, then mux the audio."""
    import tempfile
    from fractions import Fraction
    from pathlib import Path

    import cv2

    from stages.decode import probe_video
    from stream.pipeline import Pipeline
    from stream.stage import Source
    from stream.frame import Frame

    specs = _faces(video, 2)
    info = probe_video(video)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with av.open(video) as source:  # 1. decode every frame to PNG
            for i, frame in enumerate(source.decode(video=0)):
                cv2.imwrite(str(folder / f"{i:06d}.png"), cv2.cvtColor(frame.to_ndarray(format="rgb24"), cv2.COLOR_RGB2BGR))
        count = i + 1

        class PngFrames(Source):
            name = "png"

            def items(self):
                for k in range(count):
                    image = cv2.cvtColor(cv2.imread(str(folder / f"{k:06d}.png")), cv2.COLOR_BGR2RGB)
                    yield Frame(k, k, Fraction(1, int(round(info.fps))), image)

        # 2. the same per-frame processing, sequentially, writing PNGs back
        class WritePng(__import__("stream.stage", fromlist=["Stage"]).Stage):
            name = "write"

            def process(self, frame):
                cv2.imwrite(str(folder / f"{frame.index:06d}.png"), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
                return ()

        stages = jobs.lipsync_stages(video, audio, specs, SETTINGS)
        Pipeline(PngFrames(), [*stages, WritePng()]).run_inline()
        silent = folder / "silent.mp4"
        with av.open(str(silent), "w") as sink:  # 3. encode from the PNG sequence
            stream = sink.add_stream("libx264", rate=int(round(info.fps)))
            stream.width, stream.height, stream.pix_fmt = info.width, info.height, "yuv420p"
            stream.options = {"crf": str(SETTINGS.crf), "preset": SETTINGS.preset}
            for k in range(count):
                image = cv2.cvtColor(cv2.imread(str(folder / f"{k:06d}.png")), cv2.COLOR_BGR2RGB)
                sink.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            sink.mux(stream.encode(None))
        jobs.passthrough(silent, out, audio, SETTINGS)  # 4. mux the audio (re-encodes, as scripts do)
    wall = time.perf_counter() - start
    return {"frames": count, "wall_s": wall, "fps": count / wall}


SCENARIOS = {"codec_floor": codec_floor, "passthrough": passthrough, "decode_all": decode_all,
             "detect_3fps": detect_3fps, "lipsync_1face": lipsync_1face, "lipsync_2faces": lipsync_2faces,
             "sequential_2faces": sequential_2faces, "naive_2faces": naive_2faces}


def main() -> None:
    name, video, out = sys.argv[1:4]
    audio = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] else None
    result = SCENARIOS[name](video, out, audio)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


if __name__ == "__main__":
    main()
