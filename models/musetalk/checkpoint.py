"""Strict checkpoint loading: the official files unchanged, or a clear error naming the file.

`torch.nn.Module.load_state_dict(strict=True)` reports problems without the file name and
stops at shape mismatches with a long dump; these helpers say which file, which keys, and
what to do, and accept the two harmless variants found in the wild: a `module.` prefix
(checkpoints saved from DataParallel) and missing BatchNorm `num_batches_tracked` counters
(checkpoints saved by PyTorch < 0.4.1).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

_OPTIONAL_SUFFIXES = ("num_batches_tracked",)
_SHOWN_KEYS = 5


class CheckpointError(RuntimeError):
    """A weights file that cannot be used as it is: unreadable, or keys/shapes that do not fit."""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a plain state_dict from a .pth/.bin/.pt (torch pickle) or .safetensors file, on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data = load_file(str(path), device="cpu")
        else:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the file's fault
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{path}: expected a state_dict (a mapping of names to tensors), got {type(data).__name__}")
    return dict(data)


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Drop `prefix` from every key when all keys carry it (DataParallel checkpoints)."""
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def _first(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    more = f" (+{len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else ""
    return shown + more


def load_strict(
    module: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str | os.PathLike,
    ignore_unexpected: tuple[str, ...] = (),
    assign: bool = False,
) -> None:
    """Load `state` into `module`, requiring every key and shape to match.

    `source` names the file in errors. Keys starting with one of `ignore_unexpected`
    are dropped first (e.g. the classifier `fc.` of a backbone file). `assign=True` takes
    the file's tensors as the parameters (for a module built on the meta device: no
    second copy of a multi-GB checkpoint in memory).
    Raises CheckpointError naming the file and the first offending keys.
    """
    state = strip_prefix(state)
    if ignore_unexpected:
        state = {k: v for k, v in state.items() if not k.startswith(ignore_unexpected)}
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith(_OPTIONAL_SUFFIXES)]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_first(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_first(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches (file != model): {_first(mismatched)}")
    if problems:
        raise CheckpointError(
            f"{source}: does not match the {module.__class__.__name__} architecture; "
            + "; ".join(problems)
            + ". Re-download it with scripts/download_models.py."
        )
    filled = dict(state)
    for k, v in expected.items():
        if k not in filled:  # only the optional BatchNorm counters reach here
            filled[k] = v
    module.load_state_dict(filled, strict=True, assign=assign)
