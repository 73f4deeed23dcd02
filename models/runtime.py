"""Where a model runs: the torch device a setting names and onnxruntime's providers for it.

Each has a fallback, because a setting that names a GPU must still run on a machine
without one. torch is imported lazily so the classical default path runs without it.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads at `threads` for the calling thread, restored on the way out
    (None leaves them). torch.set_num_threads sets the calling thread's OpenMP/MKL count and
    the default of threads that run torch for the first time; restoring it restores both."""
    import torch

    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
