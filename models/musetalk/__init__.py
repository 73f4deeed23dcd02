"""MuseTalk 1.5: audio-driven mouth inpainting in VAE latent space, with its official checkpoints.

`MuseTalkEngine.load(models_dir)` is the entry point; `missing_files(models_dir)` tells
/health what is absent without loading anything.
"""
from models.checkpoint import CheckpointError
from models.musetalk.engine import (
    MissingWeightsError,
    MuseTalkEngine,
    has_face_parsing,
    missing_files,
)

__all__ = ["CheckpointError", "MissingWeightsError", "MuseTalkEngine", "has_face_parsing", "missing_files"]
