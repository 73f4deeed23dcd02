"""What every job that writes a video shares: the encoder's settings and the response's `output` block."""
from __future__ import annotations

import os

from jobs.config import Settings
from stages.decode import probe_video
from stages.encode import EncodeSettings


def encode_settings(settings: Settings, codec: str, pix_fmt: str = "yuv420p") -> EncodeSettings:
    return EncodeSettings(codec=codec, preset=settings.preset, crf=settings.crf, pix_fmt=pix_fmt)


def output_json(out: str | os.PathLike, frames_written: int) -> dict:
    """The response's `output` block for an encoded file: its real duration (ms), size and frames."""
    info = probe_video(out)
    return {"duration_ms": int(round(info.duration_ms)), "width": info.width, "height": info.height,
            "fps": round(info.fps, 3), "file_size_bytes": os.path.getsize(out), "frame_count": frames_written}
