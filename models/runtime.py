"""Where a model runs: the torch device a setting names and onnxruntime's providers for it.

Each has a fallback, because a setting that names a GPU must still run on a machine
without one. torch is imported lazily so the classical default path runs without it.
"""
from __future__ import annotations

import importlib.util
from typing import Any


def resolve_device(setting: str) -> str:
    """The torch device a `device` setting names: "auto" is "cuda" when torch sees a GPU, else "cpu"."""
    if setting != "auto":
        return setting
    if importlib.util.find_spec("torch") is None:
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def is_cuda(device: Any) -> bool:
    """True for "cuda", "cuda:1" or a torch.device of type cuda."""
    return str(device).split(":")[0] == "cuda"


def onnx_providers(device: str) -> list[str]:
    """onnxruntime providers for `device`: CUDA first when asked for and in this build, the CPU always last."""
    import onnxruntime as ort

    if is_cuda(device) and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]
