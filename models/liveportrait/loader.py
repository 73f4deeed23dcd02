"""Load the official LivePortrait checkpoints from MODELS_DIR, strictly.

Layout (as in the official `pretrained_weights/liveportrait/`):

    MODELS_DIR/liveportrait/base_models/appearance_feature_extractor.pth   F, plain state_dict
    MODELS_DIR/liveportrait/base_models/motion_extractor.pth               M, plain state_dict
    MODELS_DIR/liveportrait/base_models/warping_module.pth                 W, plain state_dict
    MODELS_DIR/liveportrait/base_models/spade_generator.pth                G, plain state_dict
    MODELS_DIR/liveportrait/retargeting_models/stitching_retargeting_module.pth
        {"retarget_shoulder": stitching MLP, "retarget_mouth": lip MLP, "retarget_eye": eye MLP},
        each a state_dict whose keys may carry a DDP `module.` prefix.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from models.checkpoint import load_strict, read_checkpoint, strip_prefix, sub_dict

from .appearance import AppearanceFeatureExtractor
from .config import LivePortraitConfig
from .motion import MotionExtractor
from .retargeting import StitchingRetargetingNetwork
from .spade import SPADEDecoder
from .warping import WarpingNetwork

log = logging.getLogger(__name__)

APPEARANCE_FILE = "liveportrait/base_models/appearance_feature_extractor.pth"
MOTION_FILE = "liveportrait/base_models/motion_extractor.pth"
WARPING_FILE = "liveportrait/base_models/warping_module.pth"
SPADE_FILE = "liveportrait/base_models/spade_generator.pth"
RETARGETING_FILE = "liveportrait/retargeting_models/stitching_retargeting_module.pth"
LIVEPORTRAIT_FILES = (APPEARANCE_FILE, MOTION_FILE, WARPING_FILE, SPADE_FILE, RETARGETING_FILE)
RETARGETING_KEYS = {"stitching": "retarget_shoulder", "lip": "retarget_mouth", "eye": "retarget_eye"}


@dataclass
class LivePortraitModels:
    """The five official networks, loaded and in eval mode on one device."""

    appearance: AppearanceFeatureExtractor
    motion: MotionExtractor
    warping: WarpingNetwork
    spade: SPADEDecoder
    stitching: StitchingRetargetingNetwork
    lip: StitchingRetargetingNetwork
    eye: StitchingRetargetingNetwork
    config: LivePortraitConfig

    def modules(self) -> dict[str, nn.Module]:
        return {
            "appearance": self.appearance,
            "motion": self.motion,
            "warping": self.warping,
            "spade": self.spade,
            "stitching": self.stitching,
            "lip": self.lip,
            "eye": self.eye,
        }

    def to(self, device: torch.device | str) -> "LivePortraitModels":
        for module in self.modules().values():
            module.to(device)
        return self


def liveportrait_paths(models_dir: str | Path) -> list[Path]:
    """Absolute paths of every file the loader reads (for /health and the manifest)."""
    return [Path(models_dir) / rel for rel in LIVEPORTRAIT_FILES]


def liveportrait_available(models_dir: str | Path) -> bool:
    return all(p.is_file() for p in liveportrait_paths(models_dir))


def build_networks(cfg: LivePortraitConfig) -> LivePortraitModels:
    """Randomly initialised networks with the official key structure (used by the loader and tests)."""
    rt = cfg.retargeting
    return LivePortraitModels(
        appearance=AppearanceFeatureExtractor(cfg.appearance),
        motion=MotionExtractor(cfg.motion),
        warping=WarpingNetwork(cfg.warping),
        spade=SPADEDecoder(cfg.spade),
        stitching=StitchingRetargetingNetwork(rt.stitching),
        lip=StitchingRetargetingNetwork(rt.lip),
        eye=StitchingRetargetingNetwork(rt.eye),
        config=cfg,
    )


def load_liveportrait(
    models_dir: str | Path,
    cfg: LivePortraitConfig = LivePortraitConfig(),
    device: torch.device | str | None = None,
) -> LivePortraitModels:
    """Build the networks for `cfg` and load every official file strictly (CheckpointError on mismatch)."""
    root = Path(models_dir)
    nets = build_networks(cfg)
    for rel, module, name in (
        (APPEARANCE_FILE, nets.appearance, "appearance_feature_extractor"),
        (MOTION_FILE, nets.motion, "motion_extractor"),
        (WARPING_FILE, nets.warping, "warping_module"),
        (SPADE_FILE, nets.spade, "spade_generator"),
    ):
        path = root / rel
        load_strict(module, strip_prefix(read_checkpoint(path)), path, name)
    path = root / RETARGETING_FILE
    bundle = read_checkpoint(path)
    for attr, key in RETARGETING_KEYS.items():
        load_strict(getattr(nets, attr), strip_prefix(sub_dict(bundle, key, path)), path, key)
    if device is not None:
        nets.to(device)
    log.info("LivePortrait loaded from %s", root / "liveportrait")
    return nets


def save_liveportrait(nets: LivePortraitModels, models_dir: str | Path, ddp_prefix: bool = False) -> list[Path]:
    """Write `nets` in the official file layout; `ddp_prefix` adds `module.` to the MLP keys."""
    root = Path(models_dir)
    for rel, module in (
        (APPEARANCE_FILE, nets.appearance),
        (MOTION_FILE, nets.motion),
        (WARPING_FILE, nets.warping),
        (SPADE_FILE, nets.spade),
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        torch.save(module.state_dict(), root / rel)
    prefix = "module." if ddp_prefix else ""
    bundle = {
        key: {prefix + k: v for k, v in getattr(nets, attr).state_dict().items()}
        for attr, key in RETARGETING_KEYS.items()
    }
    (root / RETARGETING_FILE).parent.mkdir(parents=True, exist_ok=True)
    torch.save(bundle, root / RETARGETING_FILE)
    return liveportrait_paths(root)
