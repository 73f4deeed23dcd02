"""The face backend interface every detector/landmark/identity backend implements."""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from models.faces.face import Face


class FaceBackend(Protocol):
    """Finds faces in RGB uint8 images (HxWx3 numpy) and compares identities.

    `detect` is the full analysis (box, score, 5 kps, 68 landmarks, pose, embedding).
    `landmarks` is the cheap path used to follow a known face between detections: it
    returns a Face for each given [x1, y1, x2, y2] box with landmarks, kps and pose filled
    (box refined from the landmarks, no embedding).
    `similarity` returns a score on the ArcFace cosine scale, so that a threshold of 0.5
    means "same person" whatever the backend.
    """

    name: str

    def detect(self, image: np.ndarray, with_embedding: bool = True) -> list[Face]: ...

    def landmarks(self, image: np.ndarray, boxes: Sequence[np.ndarray]) -> list[Face]: ...

    def embed(self, image: np.ndarray, faces: Sequence[Face]) -> None: ...

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float: ...
