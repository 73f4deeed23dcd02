"""The jobs the product runs, assembled from stages. Used by the server, CLI and workers."""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from models.mfcc import asd_mfcc
from stages.animate import AnimateStage
from stages.audio import load_audio
from stages.composite import CompositeStage
from stages.decode import DecodeStage, VideoInfo, expected_frames, probe_video
from stages.detect import DetectStage, IdentifyStage
from stages.encode import AudioPlan, EncodeSettings, EncodeStage
from stages.enhance import EnhanceStage
from stages.follow import TrackStage, UnknownSighting
from stages.identity import IdentityBook
from stages.lipsync import LipSyncStage
from stages.mouth_bank import MouthBankStage
from stages.segments import PlanStage, SegmentBuilder
from stages.shots import ShotDetector
from stages.speakers import (GRID_MS, SpeakerCropStage, resample_tracks, score_tracks, speaker_ranges,
                             tracks_from_frames)
from stages.syncability import SyncRules
from stages.tracking import FaceTracker
from stages.transfer import DownloadStage, UploadStage
from stream.auto import faces_from_detection, faces_from_speakers
from stream.config import Settings
from stream.context import JobContext
from stream.device import EncoderChoice, choose_encoder, is_cuda, job_device, video_hwaccel
from stream.errors import InputError, MediaError
from stream.frame import Frame
from stream.pipeline import Pipeline
from stream.probe import probe_media
from stream.references import Character, reference_embedding
from stream.registry import shared_registry
from stream.schema import FaceSpec, Voice
from stream.stems import auto_faces_with_stems, mix_stems, stem_features, stems_of
from stream.targets import resolve_targets

ANALYSIS_RATE = 16000
"""Sample rate (Hz) at which the new audio is analysed by the lip-sync engines."""
BANK_FPS = 5.0
"""Frames per second the mouth-bank pass samples..."""
BANK_MAX_FRAMES = 200
"""...and at most this many frames in all, so a long video costs no more."""


def encode_settings(settings: Settings, codec: str, pix_fmt: str = "yuv420p") -> EncodeSettings:
    return EncodeSettings(codec=codec, preset=settings.preset, crf=settings.crf, pix_fmt=pix_fmt)


def passthrough(video: str | os.PathLike, out: str | os.PathLike, audio: str | os.PathLike | None = None,
                settings: Settings | None = None, context: JobContext | None = None) -> dict:
    """Decode, pass every frame through untouched, encode with the new (or original) audio."""
    settings = settings or Settings.from_env()
    context = context or JobContext()
    info = probe_video(video)
    warnings = []
    if audio is not None:
        plan = AudioPlan(str(audio), duration_ms=info.duration_ms)
        warnings += _audio_fit_warnings(info.duration_ms, probe_media(Path(audio), "audio").duration_s)
    elif info.has_audio:
        plan = AudioPlan(str(video), copy=True)
    else:
        plan = None
    device = job_device(settings.device)
    choice = choose_encoder(settings.encoder, device)
    encoder = EncodeStage(out, info.width, info.height, info.time_base, info.fps,
                          encode_settings(settings, choice.codec), plan)
    pipeline = Pipeline(DecodeStage(video, hwaccel=video_hwaccel(device)), [encoder], queue_size=settings.queue_size)
    metrics = context.run("passthrough", pipeline, expected_frames(info))
    return {
        "success": True,
        "output": {"path": str(Path(out)), **output_json(out, encoder.frames_written)},
        "timing": {"total_ms": round(metrics.wall_s * 1000, 1),
                   "decode_ms": round(metrics.stage("decode").busy_s * 1000, 1),
                   "encoding_ms": round(metrics.stage("encode").busy_s * 1000, 1)},
        "device": device,
        "encoder": choice.codec,
        "warnings": warnings + ([choice.warning] if choice.warning else []),
        "metrics": metrics.as_dict(),
    }


def output_json(out: str | os.PathLike, frames_written: int) -> dict:
    """The response's `output` block for an encoded file: its real duration (ms), size and frames."""
    info = probe_video(out)
    return {"duration_ms": int(round(info.duration_ms)), "width": info.width, "height": info.height,
            "fps": round(info.fps, 3), "file_size_bytes": os.path.getsize(out), "frame_count": frames_written}


def _audio_fit_warnings(video_ms: float, audio_s: float | None) -> list[str]:
    """What passthrough did to a new audio of another length: it always keeps the video's."""
    if audio_s is None or abs(video_ms - audio_s * 1000) < 40:
        return []
    change = "trimmed the audio" if audio_s * 1000 > video_ms else "padded the audio with silence"
    return [f"audio {audio_s:.2f} s, video {video_ms / 1000:.2f} s: {change} to the video length"]


def detect_faces(video: str | os.PathLike, characters: Sequence[Character] = (), sample_fps: float = 3.0,
                 similarity_threshold: float = 0.5, settings: Settings | None = None,
                 context: JobContext | None = None, rules: SyncRules = SyncRules()) -> dict:
    """Phase 1: sample the video, find every face, name it, judge its syncability."""
    settings = settings or Settings.from_env()
    context = context or JobContext()
    if sample_fps <= 0:
        raise InputError("sample_fps must be > 0")
    info = probe_video(video)
    backend = shared_registry(settings).face_backend()
    book = IdentityBook(backend.similarity, similarity_threshold)
    for character in characters:
        book.add_reference(character.id, reference_embedding(backend, character), character.name)
    tracker = FaceTracker(backend.similarity, min_similarity=similarity_threshold)
    shots = ShotDetector()
    frames: list[dict] = []

    def collect(frame: Frame) -> None:
        frames.append({"timestamp_ms": int(round(frame.time_ms)), "shot": frame.notes["shot"],
                       "faces": [report.as_json() for report in frame.notes["faces"]]})

    pipeline = Pipeline(DecodeStage(video, sample_fps=sample_fps, hwaccel=video_hwaccel(job_device(settings.device)),
                                    shots=shots),
                        [DetectStage(backend), IdentifyStage(backend, book, tracker, rules)],
                        queue_size=settings.queue_size)
    metrics = context.run("detect", pipeline, expected_frames(info, sample_fps), on_output=collect)
    reference_ids = {c.id for c in characters}
    seen = {face["character_id"] for frame in frames for face in frame["faces"]}
    speakers, asd_ms, warnings = None, 0.0, []
    model = shared_registry(settings).active_speaker() if info.has_audio else None
    if model is not None and frames:
        speakers, asd_ms = _active_speakers(video, info, frames, model, settings, context)
    elif info.has_audio:
        warnings.append("Light-ASD weights are not in MODELS_DIR/light-asd: no `speaking` scores")
    result = {
        "success": True,
        "frames": frames,
        "frame_width": info.width,
        "frame_height": info.height,
        "sample_fps": sample_fps,
        "video_duration_ms": int(round(info.duration_ms)),
        "characters_detected": [c.id for c in characters if c.id in seen and c.id in reference_ids],
        "shots": shots.shots(info.duration_ms),
        "face_backend": backend.name,
        "timing": {"total_ms": round(metrics.wall_s * 1000 + asd_ms, 1),
                   "detection_ms": round((metrics.stage("detect").busy_s + metrics.stage("identify").busy_s)
                                         * 1000, 1),
                   "decode_ms": round(metrics.stage("decode").busy_s * 1000, 1),
                   "shot_detection_ms": round(shots.busy_s * 1000, 1),
                   "speaker_detection_ms": round(asd_ms, 1)},
        "warnings": warnings,
    }
    if speakers is not None:
        result["speakers"] = speakers
    return result


def _active_speakers(video: str, info: VideoInfo, frames: list[dict], model, settings: Settings,
                     context: JobContext) -> tuple[list[dict], float]:
    """Score every track with Light-ASD on the original audio; annotate faces with `speaking`."""
    tracks = tracks_from_frames(frames)
    resampled = resample_tracks(tracks)
    cropper = SpeakerCropStage(resampled)
    until_ms = (cropper.last_grid + 1) * GRID_MS + 1
    pipeline = Pipeline(DecodeStage(video, max_duration_ms=until_ms), [cropper], queue_size=settings.queue_size)
    metrics = context.run("speakers", pipeline, expected_frames(info, max_duration_ms=until_ms))
    started = time.perf_counter()
    mfcc = asd_mfcc(load_audio(video, ANALYSIS_RATE))
    scores = score_tracks(model, cropper.tracks, cropper.crops, mfcc)
    for frame in frames:
        for face in frame["faces"]:
            speaking = scores.speaking_at(face["track_id"], frame["timestamp_ms"])
            if speaking is not None:
                face["speaking"] = round(speaking, 3)
    names = {tid: track.name for tid, track in tracks.items()}
    elapsed_ms = metrics.wall_s * 1000 + (time.perf_counter() - started) * 1000
    return speaker_ranges(scores, names), elapsed_ms


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
    """Whether the engine scales its mouth motion by expressiveness (`stream.stems.stem_features`)."""

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
                    expressiveness: float = 0.5) -> LipsyncSetup:
    """Check the inputs, match the requested faces, analyse the audio (and each face's own
    stem: `stream.stems`), build the stages."""
    info = probe_video(video)
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
    targets = resolve_targets(video, specs, backend, min(info.duration_ms, out_ms))
    restorer = registry.codeformer() if enhance_quality else None
    if enhance_quality and restorer is None:
        warnings.append("enhance_quality was requested but the CodeFormer weights are not in MODELS_DIR "
                        "(or torch is not installed); enhancement was skipped")
    animator = registry.liveportrait() if engine.name.startswith("musetalk") else None
    if getattr(engine, "mask_source", None) == "landmarks":
        warnings.append("face-parsing weights are absent: MuseTalk blends through a landmark-derived mask")
    features = engine.prepare_audio(_fit_audio(speech, ANALYSIS_RATE, out_ms), ANALYSIS_RATE, info.fps)
    features_by_key, expressive, stem_warnings = stem_features(
        engine, targets, features, lambda samples: _fit_audio(samples, ANALYSIS_RATE, out_ms), info.fps,
        expressiveness, ANALYSIS_RATE)
    warnings.extend(stem_warnings)
    context.check()
    banks, bank_ms = {}, 0.0
    if getattr(engine, "uses_mouth_bank", False) and settings.mouth_bank > 0:
        banks, bank_ms = build_mouth_banks(video, info, targets, backend, settings, context)
        warnings.extend(bank_warnings(targets, banks))
    device = job_device(settings.device, engine)
    encoder = choose_encoder(settings.encoder, device)
    if encoder.warning:
        warnings.append(encoder.warning)
    return LipsyncSetup(info, out_ms, decode_options, warnings, targets, engine, backend,
                        TrackStage(backend, targets, settings.detect_interval, rules=rules),
                        PlanStage(targets, info.fps), LipSyncStage(engine, features, banks, features_by_key),
                        AnimateStage(animator) if animator is not None else None,
                        EnhanceStage(restorer, fidelity_weight) if restorer is not None else None,
                        device, encoder, banks, bank_ms, expressive)


def build_mouth_banks(video: str, info: VideoInfo, targets: Sequence, backend, settings: Settings,
                      context: JobContext) -> tuple[dict, float]:
    """The mouth-bank pass (`stages.mouth_bank`): each requested person's real mouths from
    the whole video, named by identity. Returns the banks by target key (a person's ranges
    share one bank) and the pass's wall time (ms)."""
    people: dict[str, np.ndarray] = {}
    for target in targets:  # one bank per person, shared by that person's ranges
        if target.anchor.embedding is not None:
            people.setdefault(target.spec.character_id, target.anchor.embedding)
    if not people:
        return {}, 0.0
    fps = min(BANK_FPS, BANK_MAX_FRAMES / max(info.duration_ms / 1000, 1e-3))
    stage = MouthBankStage(backend, people, capacity=settings.mouth_bank)
    pipeline = Pipeline(DecodeStage(video, sample_fps=fps), [stage], queue_size=settings.queue_size)
    metrics = context.run("bank", pipeline, expected_frames(info, fps))
    banks = {t.key: stage.banks[t.spec.character_id] for t in targets if t.spec.character_id in stage.banks}
    return banks, metrics.wall_s * 1000


def _one_per_person(targets: Sequence) -> list:
    """The first target of each character (a person's ranges share one mouth bank)."""
    first: dict = {}
    for target in targets:
        first.setdefault(target.spec.character_id, target)
    return list(first.values())


def bank_warnings(targets: Sequence, banks: dict) -> list[str]:
    """Say who gets synthesised mouths, and why, so a user knows why they look worse
    (once per person, however many ranges they have)."""
    warnings = []
    for target in _one_per_person(targets):
        bank = banks.get(target.key)
        who = f"face {target.spec.character_id}"
        coverage = bank.coverage() if bank is not None else None
        if coverage is None or coverage.samples == 0:
            warnings.append(f"{who}: no usable view of this person's mouth in the video (too small, turned "
                            "away or not found): the mouth is synthesised")
        elif not coverage.has_open:
            warnings.append(f"{who}: the video never shows this person's mouth open: open mouths are synthesised")
        elif not coverage.has_closed:
            warnings.append(f"{who}: the video never shows this person's mouth closed: closed mouths are "
                            "synthesised")
    return warnings


def bank_report(targets: Sequence, banks: dict) -> list[dict]:
    """Per requested person: what their mouth bank held and how often it was used."""
    report = []
    for target in _one_per_person(targets):
        bank = banks.get(target.key)
        if bank is None:
            continue
        coverage = bank.coverage()
        report.append({"character_id": target.spec.character_id, "samples": coverage.samples,
                       "frames_sampled": bank.seen, "max_opening": round(coverage.max_opening, 3),
                       "teeth": round(coverage.teeth, 3), "frames_from_bank": bank.frames_from_bank,
                       "frames_synthesised": bank.frames_synthesised})
    return report


def lipsync_stages(video: str, audio: str, faces: Sequence[FaceSpec], settings: Settings) -> list:
    """The per-frame processing stages alone (track, plan, lipsync, composite; upload and
    download around the engine when it is neural), for baselines."""
    return prepare_lipsync(str(video), str(audio), faces, settings, JobContext()).stages


def auto_faces(video: str, settings: Settings, context: JobContext,
               characters: Sequence[Character] = (), voices: dict[str, Voice] | None = None
               ) -> tuple[list[FaceSpec], str]:
    """Auto mode, from a detect-faces pass at 3 fps: who speaks when in the original audio
    (Light-ASD) when it can tell; otherwise every syncable person (recognised ones when
    references are given) where they are present. The new audio is assumed to be a dub
    aligned with the original. A person with their own stem (voices, by character_id) is
    synced only while present and their stem has speech (`stream.stems`).
    Returns the faces and a sentence saying which rule ran."""
    detected = detect_faces(video, characters, 3.0, 0.5, settings, context)
    faces = faces_from_speakers(detected)
    if characters:
        faces = [f for f in faces if f.character_id in detected["characters_detected"]]
    if faces:
        faces, stems_rule = auto_faces_with_stems(faces, detected, voices, ANALYSIS_RATE)
        return faces, ("auto mode: lip-synced each person while they are the active speaker in the original audio"
                       + stems_rule)
    faces = faces_from_detection(detected, recognised_only=bool(characters))
    if not faces:
        raise InputError("auto mode found no syncable face in the video; pass faces[] explicitly")
    faces, stems_rule = auto_faces_with_stems(faces, detected, voices, ANALYSIS_RATE)
    return faces, ("auto mode: lip-synced every syncable face where it is present, not the active speakers: "
                   + _why_no_speakers(video, detected, settings) + stems_rule)


def _why_no_speakers(video: str, detected: dict, settings: Settings) -> str:
    """Why the active-speaker rule gave no faces: no model, no audio, or nobody it could use."""
    if "speakers" in detected:
        return ("Light-ASD found no active speaker in the original audio" if not detected["speakers"] else
                "the active speakers Light-ASD found are not syncable (or not recognised) where they speak")
    if not probe_video(video).has_audio:
        return "the video has no audio track to find the active speaker in"
    if not (Path(settings.models_dir) / "light-asd" / "pretrain_AVA_CVPR.model").is_file():
        return "Light-ASD weights not found (MODELS_DIR/light-asd/pretrain_AVA_CVPR.model)"
    return "Light-ASD needs torch, which is not installed"


def lipsync(video: str | os.PathLike, audio: str | os.PathLike | None, faces: Sequence[FaceSpec] | None,
            out: str | os.PathLike, settings: Settings | None = None, context: JobContext | None = None,
            enhance_quality: bool = False, fidelity_weight: float = 0.7, sync_mode: str = "silence",
            rules: SyncRules = SyncRules(), inline: bool = False, characters: Sequence[Character] = (),
            voices: dict[str, Voice] | None = None, expressiveness: float = 0.5) -> dict:
    """Phase 2: re-animate the requested faces' mouths to the new audio, encode to `out`.

    faces None is auto mode (see `auto_faces`). inline=True runs the same stages
    sequentially in this thread (the benchmark baseline). characters: reference people who
    name the people not requested (reported under their id in `unknown_faces`).
    Shot cuts are found in the stream (`stages.shots`); the response lists them in `shots`.
    Per-face stems (`FaceSpec.voice`, or voices by character_id in auto mode) drive only their
    face; audio None makes the stems mixed the output track (`stream.stems`).
    """
    settings = settings or Settings.from_env()
    context = context or JobContext()
    if audio is None:
        with tempfile.TemporaryDirectory(prefix=".stems-", dir=Path(out).parent) as folder:  # beside the output
            mix, notes = mix_stems(stems_of(faces, voices), Path(folder) / "mix.wav")
            result = lipsync(video, mix, faces, out, settings, context, enhance_quality, fidelity_weight,
                             sync_mode, rules, inline, characters, voices, expressiveness)
        result["warnings"].extend(notes)
        return result
    video, audio = str(video), str(audio)
    auto_rule = None
    if faces is None:
        faces, auto_rule = auto_faces(video, settings, context, characters, voices)
    setup = prepare_lipsync(video, audio, faces, settings, context, enhance_quality, sync_mode, rules,
                            fidelity_weight, expressiveness)
    info, out_ms, warnings, engine, backend = setup.info, setup.out_ms, setup.warnings, setup.engine, setup.backend
    targets, track, plan = setup.targets, setup.track, setup.plan
    track.add_references([(c.id, reference_embedding(backend, c)) for c in characters])
    shots = ShotDetector()
    encoder = EncodeStage(out, info.width, info.height, info.time_base, info.fps,
                          setup.encode_settings(settings), AudioPlan(audio, duration_ms=out_ms))
    pipeline = Pipeline(DecodeStage(video, hwaccel=video_hwaccel(setup.device), shots=shots, **setup.decode_options),
                        [*setup.stages, encoder], queue_size=settings.queue_size)
    frames_total = int(round(out_ms / 1000 * info.fps))
    metrics = pipeline.run_inline() if inline else context.run("lipsync", pipeline, frames_total)

    results = []
    for target in targets:
        segments, summary = plan.builders[target.index].as_json()
        results.append({"character_id": target.spec.character_id, "success": summary["synced_ms"] > 0,
                        "segments": segments, "summary": summary})
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
        "warnings": warnings,
        "metrics": metrics.as_dict(),
    }
