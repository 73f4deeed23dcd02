"""The jobs the product runs, assembled from stages. Used by the server, CLI and workers."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from stages.decode import DecodeStage, probe_video
from stages.encode import AudioPlan, EncodeSettings, EncodeStage
from stream.config import Settings
from stream.context import JobContext
from stream.pipeline import Pipeline


def encode_settings(settings: Settings) -> EncodeSettings:
    return EncodeSettings(preset=settings.preset, crf=settings.crf)


def passthrough(video: str | os.PathLike, out: str | os.PathLike, audio: str | os.PathLike | None = None,
                settings: Settings | None = None, context: JobContext | None = None) -> dict:
    """Decode, pass every frame through untouched, encode with the new (or original) audio."""
    settings = settings or Settings.from_env()
    context = context or JobContext()
    info = probe_video(video)
    if audio is not None:
        plan = AudioPlan(str(audio), duration_ms=info.duration_ms)
    elif info.has_audio:
        plan = AudioPlan(str(video), copy=True)
    else:
        plan = None
    encoder = EncodeStage(out, info.width, info.height, info.time_base, info.fps,
                          encode_settings(settings), plan)
    pipeline = Pipeline(DecodeStage(video), [encoder], queue_size=settings.queue_size)
    metrics = context.run("passthrough", pipeline, info.frame_count)
    return {
        "frames": encoder.frames_written,
        "duration_ms": round(info.duration_ms, 1),
        "fps": round(encoder.frames_written / metrics.wall_s, 2) if metrics.wall_s else 0.0,
        "output": {"path": str(Path(out)), "file_size_bytes": os.path.getsize(out)},
        "metrics": metrics.as_dict(),
    }
