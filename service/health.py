"""What /health reports: which models are really loaded, the GPU, where the work runs
(torch device, NVENC, the face backend's onnxruntime providers), missing weight files.

Probing the GPU imports torch (seconds on a cold start), so the server probes once at
startup (`probe_hardware`) and every /health answers from that cached result."""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from jobs.config import Settings
from jobs.registry import ModelRegistry
from stream.device import nvenc_problem


@lru_cache(maxsize=1)
def gpu_info() -> dict:
    """GPU name and memory through torch when it has CUDA; no GPU otherwise."""
    info = {"gpu_available": False, "gpu_name": None, "gpu_memory_gb": None}
    if importlib.util.find_spec("torch") is None:
        return info
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu_available=True, gpu_name=props.name,
                    gpu_memory_gb=round(props.total_memory / 1024 ** 3, 1))
    return info


def probe_hardware() -> None:
    """Fill the caches /health reads (torch's CUDA probe, the NVENC probe); run at startup."""
    gpu_info()
    nvenc_problem()


def report(registry: ModelRegistry, settings: Settings) -> dict:
    faces = registry.loaded("faces")
    engine = registry.loaded("engine")
    return {
        "status": "ok",
        "insightface_loaded": bool(faces is not None and faces.name.startswith("insightface")),
        "musetalk_loaded": bool(engine is not None and engine.name.startswith("musetalk")),
        "liveportrait_loaded": registry.loaded("liveportrait") is not None,
        "codeformer_loaded": registry.loaded("codeformer") is not None,
        "light_asd_loaded": registry.loaded("asd") is not None,
        **gpu_info(),
        "face_backend": faces.name if faces is not None else None,
        "lipsync_engine": engine.name if engine is not None else None,
        **placement(settings, faces),
        "models_dir": str(Path(settings.models_dir).resolve()),
        "missing_weights": registry.missing_weights(),
        "load_errors": registry.errors(),
    }


def placement(settings: Settings, faces) -> dict:
    """Where the work can run: the torch device neural models use, whether NVENC opens here,
    and the face backend's onnxruntime providers (None until loaded, or for a backend
    without them). Each job's response says which device and encoder it really used."""
    device = settings.device
    if device == "auto":  # as stream.device.resolve_device, from the cached probe
        device = "cuda" if gpu_info()["gpu_available"] else "cpu"
    return {"device": device, "nvenc_available": nvenc_problem() is None,
            "onnx_providers": getattr(faces, "providers", None)}
