"""Where the frames go: PyAV's decoder and encoder, and a job's device.

Each choice has a fallback, because a setting that names a GPU must still run on a
machine without one: no CUDA decoder means software decoding, and no NVENC (many
datacentre GPUs, e.g. A100 and H100, have none) means libx264. The torch device a setting
names and onnxruntime's providers are the models' choice: `models.runtime`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any

from models.runtime import is_cuda

log = logging.getLogger(__name__)

ENCODERS = ("auto", "libx264", "h264_nvenc")
_PROBE_SIZE = 256  # pixels; NVENC refuses very small frames, so probe with a real size


def job_device(setting: str, engine: Any = None) -> str:
    """Where a job's frames live: the engine's torch device when it has one (neural engines),
    else the setting when it names one. "auto" with a host-only engine (the classical one) is
    "cpu" without importing torch, so that default path decodes and encodes as it always has."""
    device = getattr(engine, "device", None)
    if device is not None:
        return str(device)
    return "cpu" if setting == "auto" else setting


def is_tensor(image: Any) -> bool:
    """True for a torch tensor, told apart without importing torch."""
    return type(image).__module__.startswith("torch")


def video_hwaccel(device: str) -> Any | None:
    """PyAV's CUDA decoding settings for a cuda device when this FFmpeg has CUDA, else None.

    Decoded frames are still downloaded to system memory (the tracker needs host pixels);
    the decoder falls back to software for streams NVDEC cannot handle.
    """
    if not is_cuda(device):
        return None
    from av.codec.hwaccel import HWAccel, hwdevices_available

    if "cuda" not in hwdevices_available():
        return None
    index = str(device).partition(":")[2] or None
    return HWAccel(device_type="cuda", device=index, allow_software_fallback=True)


@dataclass(frozen=True)
class EncoderChoice:
    """The H.264 encoder that will run; `warning` says why an explicit request was not honoured."""

    codec: str
    warning: str | None = None


def choose_encoder(requested: str, device: str) -> EncoderChoice:
    """libx264, or h264_nvenc when asked for ("h264_nvenc", or "auto" on a cuda device) and it opens here."""
    if requested not in ENCODERS:
        raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, got {requested!r}")
    if requested == "libx264" or (requested == "auto" and not is_cuda(device)):
        return EncoderChoice("libx264")
    problem = nvenc_problem()
    if problem is None:
        return EncoderChoice("h264_nvenc")
    reason = f"h264_nvenc cannot encode on this machine ({problem}); encoded with libx264"
    log.info("encoder: %s", reason)
    return EncoderChoice("libx264", reason if requested == "h264_nvenc" else None)


@lru_cache(maxsize=1)
def nvenc_problem() -> str | None:
    """Why h264_nvenc cannot encode here, or None when it can. Opens a real encoder once per process:
    the codec being compiled into FFmpeg says nothing about the GPU having an NVENC unit."""
    import av

    try:
        context = av.codec.CodecContext.create("h264_nvenc", "w")
        context.width = context.height = _PROBE_SIZE
        context.pix_fmt = "yuv420p"
        context.time_base = Fraction(1, 25)
        context.open()
    except (av.error.FFmpegError, ValueError) as exc:
        return str(exc) or type(exc).__name__
    return None
