"""Strict checkpoint reading shared by the LivePortrait and CodeFormer loaders.

Official checkpoints are loaded unchanged. Any difference between a file and the
architecture (missing keys, unexpected keys, wrong shapes) raises `CheckpointError`
naming the file and the first offending keys, instead of torch's long generic message.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

SHOWN_KEYS = 5  # how many offending keys a message lists per kind


class CheckpointError(RuntimeError):
    """A weights file that is missing, unreadable or does not match its architecture."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def read_checkpoint(path: str | Path) -> Mapping[str, object]:
    """torch.load a file onto the CPU with weights_only (no arbitrary code runs)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "file not found (run scripts/download_models.py)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for corrupt files
        raise CheckpointError(path, f"cannot be read as a torch checkpoint ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(data, Mapping):
        raise CheckpointError(path, f"expected a dict, found {type(data).__name__}")
    return data


def sub_dict(data: Mapping[str, object], key: str, path: str | Path) -> Mapping[str, torch.Tensor]:
    """data[key] as a state_dict, with a clear error when it is absent."""
    if key not in data:
        found = ", ".join(sorted(map(str, data))[:SHOWN_KEYS])
        raise CheckpointError(path, f"has no {key!r} entry (top-level keys: {found})")
    value = data[key]
    if not isinstance(value, Mapping):
        raise CheckpointError(path, f"{key!r} is a {type(value).__name__}, expected a state_dict")
    return value


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Remove a DataParallel/DDP prefix from the keys that carry it."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS])
    more = f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else ""
    return f"{len(keys)} ({shown}{more})"


def load_strict(module: nn.Module, state: Mapping[str, object], path: str | Path, what: str = "") -> nn.Module:
    """Load `state` into `module` only if keys and shapes match exactly; return it in eval mode."""
    expected = module.state_dict()
    label = f"{what}: " if what else ""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    problems = []
    if missing:
        problems.append(f"missing keys {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_listed(unexpected)}")
    wrong = []
    for key, ref in expected.items():
        value = state.get(key)
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            wrong.append(f"{key} is a {type(value).__name__}")
        elif tuple(value.shape) != tuple(ref.shape):
            wrong.append(f"{key} has shape {tuple(value.shape)}, expected {tuple(ref.shape)}")
    if wrong:
        problems.append(f"wrong shapes {_listed(wrong)}")
    if problems:
        raise CheckpointError(path, label + "; ".join(problems))
    module.load_state_dict(dict(state), strict=True)
    return module.eval()
