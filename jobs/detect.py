"""Phase 1, detect-faces: sample the video, find every face, name it, judge its syncability, and
(with the Light-ASD weights) say who speaks when."""
from __future__ import annotations

import os
import time
from typing import Sequence

from jobs.config import Settings
from jobs.references import Character, reference_embedding
from jobs.registry import shared_registry
from models.mfcc import asd_mfcc
from stages.audio import load_audio
from stages.decode import DecodeStage, VideoInfo, expected_frames, probe_video
from stages.detect import DetectStage, IdentifyStage
from stages.identity import IdentityBook
from stages.shots import ShotDetector
from stages.speakers import (
    GRID_MS,
    SpeakerCropStage,
    TrackScorer,
    resample_tracks,
    speaker_ranges,
    speaker_track_key,
    tracks_from_frames,
)
from stages.syncability import SyncRules
from stages.tracking import FaceTracker
from stream.context import JobContext
from stream.device import job_device, video_hwaccel
from stream.errors import InputError
from stream.frame import Frame
from stream.pipeline import Pipeline

ANALYSIS_RATE = 16000
"""Sample rate (Hz) at which audio is analysed (the new audio by the lip-sync engines, the original by Light-ASD)."""


def detect_faces(video: str | os.PathLike, characters: Sequence[Character] = (), sample_fps: float = 3.0,
                 similarity_threshold: float = 0.5, settings: Settings | None = None,
                 context: JobContext | None = None, rules: SyncRules = SyncRules(),
                 info: VideoInfo | None = None) -> dict:
    """Phase 1: sample the video, find every face, name it, judge its syncability.

    info: the video's `probe_video` result when the caller has it (auto mode), so a job
    opens the file to probe it once."""
    settings = settings or Settings.from_env()
    context = context or JobContext()
    if sample_fps <= 0:
        raise InputError("sample_fps must be > 0")
    info = info or probe_video(video)
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
        speakers, asd_ms = _active_speakers(video, info, frames, model, settings, context, backend)
    elif info.has_audio:
        warnings.append("Light-ASD weights are not in MODELS_DIR/light-asd: no `speaking` scores")
    result = {
        "success": True,
        "frames": frames,
        "frame_width": info.width,
        "frame_height": info.height,
        "sample_fps": sample_fps,
        "video_duration_ms": int(round(info.duration_ms)),
        "fps": round(info.fps, 3),  # the video's frame rate: the review page steps and numbers frames by it
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
                     context: JobContext, backend) -> tuple[list[dict], float]:
    """Score every speaker track with Light-ASD on the original audio, on 25 fps face tracks
    (boxes fitted again on every grid frame by the backend's landmark path, whatever the
    sample rate); annotate faces with `speaking`. A track's crops are scored a chunk (60 s) at
    a time as soon as the crop pass has cut it, beside the pass (`TrackScorer`, whose bounded
    queue makes the pass wait when scoring falls behind)."""
    started = time.perf_counter()
    tracks = tracks_from_frames(frames)
    resampled = resample_tracks(tracks)
    mfcc = asd_mfcc(load_audio(video, ANALYSIS_RATE))
    with TrackScorer(model, mfcc) as scorer:
        cropper = SpeakerCropStage(
            resampled, refine=lambda image, boxes: [f.bbox for f in backend.landmarks(image, boxes)],
            on_chunk=lambda tid, start, crops: scorer.submit_chunk(tid, cropper.tracks[tid], start, crops,
                                                                   stop=cropper.stop_event),
            chunk_frames=scorer.chunk_frames)
        until_ms = (cropper.last_grid + 1) * GRID_MS + 1
        pipeline = Pipeline(DecodeStage(video, max_duration_ms=until_ms), [cropper], queue_size=settings.queue_size)
        context.run("speakers", pipeline, expected_frames(info, max_duration_ms=until_ms))
        scores = scorer.scores(cropper.tracks)
    for frame in frames:
        for face in frame["faces"]:
            speaking = scores.speaking_at(speaker_track_key(face), frame["timestamp_ms"])
            if speaking is not None:
                face["speaking"] = round(speaking, 3)
    names = {tid: track.name for tid, track in tracks.items()}
    elapsed_ms = (time.perf_counter() - started) * 1000
    return speaker_ranges(scores, names), elapsed_ms
