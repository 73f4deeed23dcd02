"""Load CodeFormer's official weights from MODELS_DIR, strictly.

    MODELS_DIR/codeformer/codeformer.pth          {"params_ema": CodeFormer state_dict}
    MODELS_DIR/codeformer/parsing_parsenet.pth    ParseNet state_dict (optional: without
                                                  it the paste uses the square mask alone)
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from models.checkpoint import load_strict, read_checkpoint, strip_prefix, sub_dict

from .arch import CodeFormer
from .parsing import ParseNet

log = logging.getLogger(__name__)

CODEFORMER_FILE = "codeformer/codeformer.pth"
PARSENET_FILE = "codeformer/parsing_parsenet.pth"
CHECKPOINT_KEY = "params_ema"


def codeformer_path(models_dir: str | Path) -> Path:
    """Where the loader reads the weights (for /health and the manifest)."""
    return Path(models_dir) / CODEFORMER_FILE


def parsenet_path(models_dir: str | Path) -> Path:
    return Path(models_dir) / PARSENET_FILE


def codeformer_available(models_dir: str | Path) -> bool:
    return codeformer_path(models_dir).is_file()


def load_codeformer(models_dir: str | Path, device: torch.device | str | None = None, **arch: object) -> CodeFormer:
    """Build CodeFormer(**arch) (official defaults) and load `params_ema` strictly."""
    path = codeformer_path(models_dir)
    net = CodeFormer(**arch)  # type: ignore[arg-type]
    load_strict(net, sub_dict(read_checkpoint(path), CHECKPOINT_KEY, path), path, CHECKPOINT_KEY)
    if device is not None:
        net.to(device)
    log.info("CodeFormer loaded from %s", path)
    return net


def load_parsenet(models_dir: str | Path, device: torch.device | str | None = None,
                  **arch: object) -> ParseNet | None:
    """ParseNet(**arch) (official: 512 px, 19 classes) loaded strictly, in eval mode; None when
    the file is absent (the documented fallback: square mask only), CheckpointError when wrong."""
    path = parsenet_path(models_dir)
    if not path.is_file():
        log.info("no %s: CodeFormer pastes with the square mask alone", path)
        return None
    net = ParseNet(**arch)  # type: ignore[arg-type]
    load_strict(net, strip_prefix(read_checkpoint(path)), path, "parsenet")
    net.eval()
    if device is not None:
        net.to(device)
    log.info("ParseNet loaded from %s", path)
    return net


def save_codeformer(net: CodeFormer, models_dir: str | Path) -> Path:
    """Write `net` as the official file: {"params_ema": state_dict}."""
    path = codeformer_path(models_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({CHECKPOINT_KEY: net.state_dict()}, path)
    return path


def save_parsenet(net: ParseNet, models_dir: str | Path) -> Path:
    """Write `net` as the official file: a plain state_dict."""
    path = parsenet_path(models_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path
