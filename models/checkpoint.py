"""Strict checkpoint loading shared by every neural loader (MuseTalk, LivePortrait,
CodeFormer, Light-ASD).

Official files load unchanged; anything else fails with a CheckpointError whose message
starts with the file's path and lists the first offending keys, instead of torch's long
generic dump. Two harmless variants found in the wild are accepted: a `module.` prefix
(DataParallel/DDP checkpoints) and missing BatchNorm `num_batches_tracked` counters
(checkpoints saved by PyTorch < 0.4.1). Files are read with `weights_only=True`, so a
checkpoint cannot run code.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

SHOWN_KEYS = 5  # how many offending keys a message lists per kind
_OPTIONAL_SUFFIXES = ("num_batches_tracked",)


class CheckpointError(ValueError):
    """A weights file that is unreadable or does not fit its architecture."""


class MissingCheckpointError(CheckpointError, FileNotFoundError):
    """A weights file that is not there."""


def read_checkpoint(path: str | os.PathLike) -> Mapping[str, object]:
    """The file's top-level mapping, on the CPU: a torch pickle (.pth/.bin/.pt/.model) or .safetensors."""
    path = Path(path)
    if not path.is_file():
        raise MissingCheckpointError(f"{path}: file not found (run scripts/download_models.py)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data = load_file(str(path), device="cpu")
        else:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many unrelated types for corrupt files
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{path}: expected a dict, found {type(data).__name__}")
    return data


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A plain state_dict (names to tensors) from `path`."""
    data = read_checkpoint(path)
    if not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path}: expected a plain state_dict of tensors, found nested entries "
                              f"({', '.join(sorted(map(str, data))[:SHOWN_KEYS])})")
    return dict(data)  # type: ignore[arg-type]


def sub_dict(data: Mapping[str, object], key: str, path: str | os.PathLike) -> Mapping[str, torch.Tensor]:
    """data[key] as a state_dict (e.g. CodeFormer's `params_ema`), with a clear error when absent."""
    if key not in data:
        found = ", ".join(sorted(map(str, data))[:SHOWN_KEYS])
        raise CheckpointError(f"{path}: has no {key!r} entry (top-level keys: {found})")
    value = data[key]
    if not isinstance(value, Mapping):
        raise CheckpointError(f"{path}: {key!r} is a {type(value).__name__}, expected a state_dict")
    return value  # type: ignore[return-value]


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Remove a DataParallel/DDP prefix from the keys that carry it."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN_KEYS])
    more = f" and {len(items) - SHOWN_KEYS} more" if len(items) > SHOWN_KEYS else ""
    return f"({shown}{more})"


def load_strict(module: nn.Module, state: Mapping[str, object], path: str | os.PathLike, what: str = "",
                ignore_unexpected: tuple[str, ...] = (), assign: bool = False) -> nn.Module:
    """Load `state` into `module` only if every key and shape matches; return it in eval mode.

    `what` names the entry inside the file in errors (e.g. "retarget_mouth"). Keys starting
    with one of `ignore_unexpected` are dropped first (e.g. a backbone file's classifier
    `fc.`). `assign=True` takes the file's tensors as the parameters (a module built on the
    meta device then needs no second copy of a multi-GB checkpoint).
    """
    state = strip_prefix(state)
    if ignore_unexpected:
        state = {k: v for k, v in state.items() if not k.startswith(ignore_unexpected)}
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith(_OPTIONAL_SUFFIXES)]
    unexpected = [k for k in state if k not in expected]
    wrong = []
    for key, ref in expected.items():
        value = state.get(key)
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            wrong.append(f"{key} is a {type(value).__name__}")
        elif tuple(value.shape) != tuple(ref.shape):
            wrong.append(f"{key} has shape {tuple(value.shape)}, expected {tuple(ref.shape)}")
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys {_listed(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys {_listed(unexpected)}")
    if wrong:
        problems.append(f"{len(wrong)} wrong shapes {_listed(wrong)}")
    if problems:
        label = f"{what}: " if what else ""
        raise CheckpointError(f"{path}: {label}does not match the {module.__class__.__name__} architecture; "
                              + "; ".join(problems) + ". Re-download it with scripts/download_models.py.")
    filled = dict(state)
    for key, value in expected.items():
        filled.setdefault(key, value)  # only the optional BatchNorm counters reach here
    module.load_state_dict(filled, strict=True, assign=assign)
    return module.eval()
