"""Passthrough: decode, pass every frame through untouched, encode with the new (or original) audio.

The codec floor of the benchmark, and a check that the media path alone is sound."""
from __future__ import annotations

import os
from pathlib import Path

from jobs.config import Settings
from jobs.output import encode_settings, output_json
from jobs.probe import probe_media
from stages.decode import DecodeStage, expected_frames, probe_video
from stages.encode import AudioPlan, EncodeStage
from stream.context import JobContext
from stream.device import choose_encoder, job_device, video_hwaccel
from stream.pipeline import Pipeline


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
                          encode_settings(settings, choice.codec), plan, colour=info.colour)
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


def _audio_fit_warnings(video_ms: float, audio_s: float | None) -> list[str]:
    """What passthrough did to a new audio of another length: it always keeps the video's."""
    if audio_s is None or abs(video_ms - audio_s * 1000) < 40:
        return []
    change = "trimmed the audio" if audio_s * 1000 > video_ms else "padded the audio with silence"
    return [f"audio {audio_s:.2f} s, video {video_ms / 1000:.2f} s: {change} to the video length"]
