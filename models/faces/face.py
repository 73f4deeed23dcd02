"""`Face`: one face found in one frame. Its home is here, low enough that the models that
find faces and the engine that carries them both import it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Face:
    """One face in one frame, in the frame's pixel coordinates.

    bbox is [x1, y1, x2, y2] (float pixels); `xywh` gives the API's integer [x, y, w, h].
    kps are the 5 keypoints in InsightFace order: left eye, right eye, nose, left mouth
    corner, right mouth corner (left/right as seen in the image).
    landmarks are the 68 iBUG points (jaw 0-16, nose 27-35, outer lips 48-59, inner lips
    60-67), or None when the backend has none.
    pose is (pitch, yaw, roll) in degrees, InsightFace conventions: yaw > 0 when the nose
    turns towards image +x, pitch > 0 when the face tilts up.
    embedding is L2-normalised; compare embeddings only through the backend that made them.
    """

    bbox: np.ndarray
    score: float
    kps: np.ndarray
    landmarks: np.ndarray | None = None
    pose: tuple[float, float, float] | None = None
    embedding: np.ndarray | None = None
    track_id: int | None = None
    identity: str | None = None
    similarity: float | None = None

    def __post_init__(self) -> None:
        self.bbox = np.asarray(self.bbox, dtype=np.float32).reshape(4)
        self.kps = np.asarray(self.kps, dtype=np.float32).reshape(5, 2)
        if self.landmarks is not None:
            self.landmarks = np.asarray(self.landmarks, dtype=np.float32).reshape(-1, 2)

    @property
    def width(self) -> float:
        return float(self.bbox[2] - self.bbox[0])

    @property
    def height(self) -> float:
        return float(self.bbox[3] - self.bbox[1])

    @property
    def center(self) -> tuple[float, float]:
        return (float(self.bbox[0] + self.bbox[2]) / 2, float(self.bbox[1] + self.bbox[3]) / 2)

    @property
    def xywh(self) -> list[int]:
        """The API's bbox: integer [x, y, w, h] in pixels."""
        x1, y1, x2, y2 = (int(round(float(v))) for v in self.bbox)
        return [x1, y1, x2 - x1, y2 - y1]


def xywh_to_xyxy(box: list[float] | tuple[float, ...]) -> np.ndarray:
    x, y, w, h = (float(v) for v in box)
    return np.array([x, y, x + w, y + h], dtype=np.float32)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two [x1, y1, x2, y2] boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0
