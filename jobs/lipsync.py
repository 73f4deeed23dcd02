"""Phase 2, lipsync: re-animate the requested faces' mouths to the new audio, blend them into the
untouched frames, optionally restore the faces, encode."""
from __future__ import annotations

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from jobs.auto import auto_faces, results_per_person
from jobs.config import Settings
from jobs.detect import ANALYSIS_RATE
from jobs.mouth_banks import bank_report, bank_warnings, build_mouth_banks, mouth_targets_report
from jobs.output import encode_settings, output_json
from jobs.references import Character, reference_embedding
from jobs.registry import shared_registry
from jobs.schema import FaceSpec, Voice
from jobs.stems import check_offsets, mix_stems, stem_features, stems_of
from jobs.targets import FrameReader, resolve_targets
from models.runtime import is_cuda
from stages.animate import AnimateStage
from stages.audio import load_audio
from stages.composite import CompositeStage
from stages.decode import DecodeStage, VideoInfo, probe_video
from stages.encode import AudioPlan, EncodeSettings, EncodeStage
from stages.enhance import EnhanceStage
from stages.follow import SharedDetections, TrackStage, UnknownSighting
from stages.lipsync import LipSyncStage
from stages.segments import PlanStage, SegmentBuilder
from stages.shots import ShotDetector
from stages.syncability import SyncRules
from stages.transfer import DownloadStage, UploadStage
from stream.context import JobContext
from stream.device import EncoderChoice, choose_encoder, job_device, video_hwaccel
from stream.errors import InputError, MediaError
from stream.pipeline import Pipeline


def _output_plan(video_ms: float, audio_ms: float, sync_mode: str) -> tuple[float, dict, list[str]]:
    """Output duration and decode options for a sync_mode, plus warnings about the mismatch."""
    warnings = []
    decode: dict = {}
    if abs(video_ms - audio_ms) < 40:
        return video_ms, decode, warnings
    longer = "audio" if audio_ms > video_ms else "video"
    lengths = f"audio {audio_ms / 1000:.2f} s, video {video_ms / 1000:.2f} s"
    if sync_mode == "silence":
        out_ms = video_ms
        warnings.append(f"{lengths}: kept the video length and "
                        + ("trimmed the audio" if longer == "audio" else "padded the audio with silence (mouth closed)")
                        + " (sync_mode=silence)")
    elif sync_mode == "cut_off":
        out_ms = min(video_ms, audio_ms)
        decode["max_duration_ms"] = out_ms
        warnings.append(f"{lengths}: cut both to the shorter, {out_ms / 1000:.2f} s (sync_mode=cut_off)")
    else:
        out_ms = max(video_ms, audio_ms)
        if audio_ms > video_ms:
            decode.update(extend_to_ms=audio_ms, extend_mode=sync_mode)
            warnings.append(f"{lengths}: extended the video to the audio length by {sync_mode} (sync_mode={sync_mode})")
        else:
            warnings.append(f"{lengths}: the audio is shorter; padded it with silence (sync_mode={sync_mode})")
    return out_ms, decode, warnings


def _fit_audio(samples: np.ndarray, rate: int, duration_ms: float) -> np.ndarray:
    count = int(round(duration_ms / 1000 * rate))
    if len(samples) >= count:
        return samples[:count]
    return np.concatenate([samples, np.zeros(count - len(samples), np.float32)])


def _unknown_faces(sightings: list[UnknownSighting], gap_ms: float) -> list[dict]:
    """Segments of people seen but not requested: runs of sightings closer than gap_ms."""
    by_id: dict[str, list[UnknownSighting]] = {}
    for sighting in sightings:
        by_id.setdefault(sighting.character_id, []).append(sighting)
    result = []
    for character_id, seen in by_id.items():
        builder = SegmentBuilder()
        previous = None
        for sighting in seen:
            if previous is not None and sighting.time_ms - previous > gap_ms:
                builder.add("not_visible", previous + gap_ms / 2, sighting.time_ms, None, None)
            builder.add("not_requested", sighting.time_ms, sighting.time_ms + gap_ms / 2, sighting.face, None)
            previous = sighting.time_ms
        segments, _ = builder.as_json()
        result.append({"character_id": character_id, "segments": segments})
    return result


@dataclass
class LipsyncSetup:
    """Everything a lipsync run needs, prepared before the first frame is decoded."""

    info: VideoInfo
    out_ms: float
    decode_options: dict
    warnings: list[str]
    targets: list
    engine: object
    backend: object
    track: TrackStage
    plan: PlanStage
    render: LipSyncStage
    animate: AnimateStage | None = None
    enhance: EnhanceStage | None = None
    device: str = "cpu"
    """Where the frames are decoded and rendered (see `stream.device.job_device`)."""
    encoder: EncoderChoice = EncoderChoice("libx264")
    banks: dict = field(default_factory=dict)
    """Per target key, the person's `MouthBank` (classical engine), from `build_mouth_banks`."""
    bank_ms: float = 0.0
    expressiveness_applied: bool = False
    """Whether the engine scales its mouth motion by expressiveness (`jobs.stems.stem_features`)."""

    @property
    def encodes_on_device(self) -> bool:
        """NVENC takes the frames from the GPU: nothing is downloaded (see `stages.nv12`)."""
        return self.encoder.codec == "h264_nvenc" and is_cuda(getattr(self.engine, "device", None))

    @property
    def stages(self) -> list:
        """track, plan, lipsync, [animate], composite, [enhance]; with a neural engine the
        frames to render are uploaded to its device after plan and downloaded at the end,
        or, when NVENC encodes from the GPU, every frame is uploaded and none comes back."""
        on_device = getattr(self.engine, "device", None)
        chain: list = [self.track, self.plan]
        if on_device is not None:
            chain.append(UploadStage(on_device, every_frame=self.encodes_on_device))
        chain.append(self.render)
        if self.animate is not None:
            chain.append(self.animate)
        chain.append(CompositeStage())
        if self.enhance is not None:
            chain.append(self.enhance)
        if on_device is not None and not self.encodes_on_device:
            chain.append(DownloadStage())
        return chain

    def encode_settings(self, settings: Settings) -> EncodeSettings:
        """The encoder's settings; device frames go in as CUDA frames (pix_fmt "cuda")."""
        return encode_settings(settings, self.encoder.codec, "cuda" if self.encodes_on_device else "yuv420p")


def prepare_lipsync(video: str, audio: str, faces: Sequence[FaceSpec], settings: Settings,
                    context: JobContext, enhance_quality: bool = False, sync_mode: str = "silence",
                    rules: SyncRules = SyncRules(), fidelity_weight: float = 0.7,
                    expressiveness: float = 0.5, info: VideoInfo | None = None) -> LipsyncSetup:
    """Check the inputs, match the requested faces, analyse the audio (and each face's own
    stem: `jobs.stems`), build the stages. info: the video's probe, when the job has it."""
    info = info or probe_video(video)
    try:
        speech = load_audio(audio, ANALYSIS_RATE)
    except MediaError as exc:
        raise MediaError(exc.path, exc.problem.replace("send a file", "audio_url must be a file")) from exc
    audio_ms = len(speech) / ANALYSIS_RATE * 1000
    if audio_ms <= 0:
        raise InputError("the audio has no samples; send an audio file with sound")
    out_ms, decode_options, warnings = _output_plan(info.duration_ms, audio_ms, sync_mode)
    registry = shared_registry(settings)
    backend = registry.face_backend()
    engine = registry.lipsync_engine()
    context.check()
    specs = list(faces)
    for spec in specs:
        if spec.end_time_ms > out_ms + 1:
            warnings.append(f"face {spec.character_id}: end_time_ms {spec.end_time_ms:.0f} is past the end of "
                            f"the output ({out_ms:.0f} ms); clipped")
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="new-audio") as pool:
        # the new audio's features beside the probes (the classical engine's PocketSphinx runs
        # in a child process, `models.sphinx_decode`, so the probes go on meanwhile)
        audio_features = pool.submit(engine.prepare_audio, _fit_audio(speech, ANALYSIS_RATE, out_ms),
                                     ANALYSIS_RATE, info.fps)
        with FrameReader(video) as frames:  # one decoder for all the ranges' probe frames
            targets = resolve_targets(video, specs, backend, min(info.duration_ms, out_ms), frames)
        features = audio_features.result()
    restorer = registry.codeformer() if enhance_quality else None
    if enhance_quality and restorer is None:
        warnings.append("enhance_quality was requested but the CodeFormer weights are not in MODELS_DIR "
                        "(or torch is not installed); enhancement was skipped")
    animator = registry.liveportrait() if engine.name.startswith("musetalk") else None
    if getattr(engine, "mask_source", None) == "landmarks":
        warnings.append("face-parsing weights are absent: MuseTalk blends through a landmark-derived mask")
    features_by_key, expressive, stem_warnings = stem_features(
        engine, targets, [spec.voice for spec in specs], features, lambda samples: _fit_audio(samples, ANALYSIS_RATE, out_ms), info.fps,
        expressiveness, ANALYSIS_RATE)
    warnings.extend(stem_warnings)
    context.check()
    banks, bank_ms, shared = {}, 0.0, SharedDetections()  # the bank pass's detections, for the track stage
    if getattr(engine, "uses_mouth_bank", False) and settings.mouth_bank > 0:
        banks, bank_ms = build_mouth_banks(video, info, targets, backend, settings, context, shared)
        warnings.extend(bank_warnings(targets, banks))
    device = job_device(settings.device, engine)
    encoder = choose_encoder(settings.encoder, device)
    if encoder.warning:
        warnings.append(encoder.warning)
    return LipsyncSetup(info, out_ms, decode_options, warnings, targets, engine, backend,
                        TrackStage(backend, targets, settings.detect_interval, rules=rules, shared=shared),
                        PlanStage(targets, info.fps), LipSyncStage(engine, features, banks, features_by_key),
                        AnimateStage(animator) if animator is not None else None,
                        EnhanceStage(restorer, fidelity_weight) if restorer is not None else None,
                        device, encoder, banks, bank_ms, expressive)


def lipsync_stages(video: str, audio: str, faces: Sequence[FaceSpec], settings: Settings) -> list:
    """The per-frame processing stages alone (track, plan, lipsync, composite; upload and
    download around the engine when it is neural), for baselines."""
    return prepare_lipsync(str(video), str(audio), faces, settings, JobContext()).stages


def lipsync(video: str | os.PathLike, audio: str | os.PathLike | None, faces: Sequence[FaceSpec] | None,
            out: str | os.PathLike, settings: Settings | None = None, context: JobContext | None = None,
            enhance_quality: bool = False, fidelity_weight: float = 0.7, sync_mode: str = "silence",
            rules: SyncRules = SyncRules(), inline: bool = False, characters: Sequence[Character] = (),
            voices: dict[str, Voice] | None = None, expressiveness: float = 0.5,
            max_duration_s: float | None = None, info: VideoInfo | None = None) -> dict:
    """Phase 2: re-animate the requested faces' mouths to the new audio, encode to `out`.

    faces None is auto mode (see `auto_faces`). inline=True runs the same stages
    sequentially in this thread (the benchmark baseline). characters: reference people who
    name the people not requested (reported under their id in `unknown_faces`).
    Shot cuts are found in the stream (`stages.shots`); the response lists them in `shots`.
    Per-face stems (`FaceSpec.voice`, or voices by character_id in auto mode) drive only their
    face; audio None makes the stems mixed the output track (`jobs.stems`). max_duration_s: the
    longest output allowed (the server's LIPSYNC_MAX_DURATION_S), checked on the stems' mix.
    info: the video's probe (`probe_video`); probed here once when not given, then passed down.
    """
    settings = settings or Settings.from_env()
    context = context or JobContext()
    info = info or probe_video(str(video))
    video_ms = info.duration_ms
    check_offsets(faces, voices, video_ms)  # before any stem is decoded or placed
    if audio is None:
        extends = sync_mode in ("loop", "bounce")  # the output runs as long as the mix
        with tempfile.TemporaryDirectory(prefix=".stems-", dir=Path(out).parent) as folder:  # beside the output
            mix, notes = mix_stems(stems_of(faces, voices), Path(folder) / "mix.wav",
                                   trim_ms=None if extends else video_ms,
                                   max_ms=max_duration_s * 1000 if extends and max_duration_s else None)
            result = lipsync(video, mix, faces, out, settings, context, enhance_quality, fidelity_weight,
                             sync_mode, rules, inline, characters, voices, expressiveness, max_duration_s, info)
        result["warnings"].extend(notes)
        return result
    video, audio = str(video), str(audio)
    auto_rule = None
    if faces is None:
        faces, auto_rule = auto_faces(video, settings, context, characters, voices, info)
    setup = prepare_lipsync(video, audio, faces, settings, context, enhance_quality, sync_mode, rules,
                            fidelity_weight, expressiveness, info)
    info, out_ms, warnings, engine, backend = setup.info, setup.out_ms, setup.warnings, setup.engine, setup.backend
    targets, track, plan = setup.targets, setup.track, setup.plan
    track.add_references([(c.id, reference_embedding(backend, c)) for c in characters])
    shots = ShotDetector()
    encoder = EncodeStage(out, info.width, info.height, info.time_base, info.fps,
                          setup.encode_settings(settings), AudioPlan(audio, duration_ms=out_ms), colour=info.colour)
    pipeline = Pipeline(DecodeStage(video, hwaccel=video_hwaccel(setup.device), shots=shots, **setup.decode_options),
                        [*setup.stages, encoder], queue_size=settings.queue_size)
    frames_total = int(round(out_ms / 1000 * info.fps))
    metrics = pipeline.run_inline() if inline else context.run("lipsync", pipeline, frames_total)

    results = []
    for target in targets:
        segments, summary = plan.builders[target.index].as_json()
        results.append({"character_id": target.character_id, "success": summary["synced_ms"] > 0,
                        "segments": segments, "summary": summary})
    if auto_rule:  # one entry per person, all their ranges' segments (`results_per_person`)
        results = results_per_person(results)
    unknown = _unknown_faces(track.unknown_sightings, 1000.0 * settings.detect_interval / info.fps * 2)
    busy = {m.name: m.busy_s * 1000 for m in metrics.stages}
    if auto_rule:
        warnings.append(f"{auto_rule} ({len(targets)} range(s)); pass faces[] to choose")
    warnings.extend(track.place_warnings())
    return {
        "success": True,
        "faces": {
            "total_detected": len(track.people_seen),
            "processed": sum(1 for r in results if r["success"]),
            "unknown": len(unknown),
            "results": results,
            "unknown_faces": unknown,
        },
        "output": output_json(out, encoder.frames_written),
        "timing": {"total_ms": round(metrics.wall_s * 1000 + setup.bank_ms, 1), "download_ms": 0.0,
                   "detection_ms": round(busy["track"], 1),
                   "lipsync_ms": round(busy["plan"] + busy.get("upload", 0.0) + busy["lipsync"]
                                       + busy.get("animate", 0.0) + busy["composite"] + busy.get("download", 0.0), 1),
                   "enhancement_ms": round(busy.get("enhance", 0.0), 1), "encoding_ms": round(busy["encode"], 1),
                   "upload_ms": 0.0,
                   "decode_ms": round(busy["decode"], 1), "mouth_bank_ms": round(setup.bank_ms, 1),
                   "shot_detection_ms": round(shots.busy_s * 1000, 1)},
        "shots": shots.shots(out_ms),
        "engine": engine.name,
        "device": str(getattr(engine, "device", None) or "cpu"),  # where the mouths were rendered
        "encoder": setup.encoder.codec,
        "liveportrait": setup.animate is not None,
        "enhanced": setup.enhance is not None,
        "expressiveness_applied": setup.expressiveness_applied,
        "face_backend": backend.name,
        "mouth_bank": bank_report(targets, setup.banks),
        "mouth_targets": mouth_targets_report(setup.render.audio_features),
        "warnings": warnings,
        "metrics": metrics.as_dict(),
    }
