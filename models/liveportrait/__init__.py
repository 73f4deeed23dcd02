"""LivePortrait (KwaiVGI) re-implemented with the official checkpoint key names.

Public entry points: `LivePortraitAnimator` (mouth-only re-animation), `load_liveportrait`
and `LIVEPORTRAIT_FILES` (what MODELS_DIR must hold), `LivePortraitConfig` (dimensions).
"""
from models.checkpoint import CheckpointError

from .animator import LIP_ROWS, AnimateRequest, LivePortraitAnimator
from .config import LivePortraitConfig
from .loader import (
    LIVEPORTRAIT_FILES,
    LivePortraitModels,
    liveportrait_available,
    liveportrait_paths,
    load_liveportrait,
)
from .smoothing import SmoothingConfig

__all__ = [
    "LIP_ROWS",
    "LIVEPORTRAIT_FILES",
    "AnimateRequest",
    "CheckpointError",
    "LivePortraitAnimator",
    "LivePortraitConfig",
    "LivePortraitModels",
    "SmoothingConfig",
    "liveportrait_available",
    "liveportrait_paths",
    "load_liveportrait",
]
