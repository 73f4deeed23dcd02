"""Which face backend runs: InsightFace buffalo_l when its files are in MODELS_DIR, else the default."""
from __future__ import annotations

import logging
from pathlib import Path

from models.faces.base import FaceBackend
from models.faces.insightface_backend import missing_buffalo_l_files

log = logging.getLogger(__name__)

BACKEND_CHOICES = ("auto", "insightface", "default")


def missing_face_files(models_dir: Path) -> list[str]:
    """buffalo_l files absent from MODELS_DIR (paths relative to it), for /health."""
    return missing_buffalo_l_files(Path(models_dir))


def load_face_backend(models_dir: Path, prefer: str = "auto", device: str = "auto") -> FaceBackend:
    """The face backend to run.

    prefer: "auto" (InsightFace when all its files are present, else the default),
    "insightface" (raises FileNotFoundError naming the missing files) or "default".
    device: the device setting (see `stream.device.resolve_device`); on cuda InsightFace runs on
    onnxruntime's CUDA provider when this onnxruntime has it.
    """
    if prefer not in BACKEND_CHOICES:
        raise ValueError(f"face backend must be one of {', '.join(BACKEND_CHOICES)}, got {prefer!r}")
    models_dir = Path(models_dir)
    if prefer == "insightface" or (prefer == "auto" and not missing_face_files(models_dir)):
        from models.faces.insightface_backend import InsightFaceBackend

        backend: FaceBackend = InsightFaceBackend(models_dir, device=device)
    else:
        if prefer == "auto":
            log.info("InsightFace files missing (%s); using the embedded default face backend",
                     ", ".join(missing_face_files(models_dir)))
        from models.faces.default import DefaultFaceBackend

        backend = DefaultFaceBackend()
    log.info("face backend: %s", backend.name)
    return backend
