"""The lip-open ratio that drives LivePortrait's lip retargeting MLP.

The official `calc_lip_close_ratio` measures, on its 203-point landmarks, the gap between
the inner lips' middle points (90, 102) over the distance between the mouth corners
(48, 66), plus eps = 1e-6. The iBUG 68 points have the same four points: the inner lips'
middles 62 (upper) and 66 (lower) and the mouth corners 48 and 54. The ratio is scale and
rotation free, so frame-pixel landmarks give the same value as the official crop's.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

LandmarkFn = Callable[[np.ndarray, Sequence[np.ndarray]], Sequence["np.ndarray | None"]]
"""landmarks(image HxWx3 uint8 RGB, boxes [x1, y1, x2, y2]) -> one (68, 2) array (or None) per box."""

INNER_LIP_TOP, INNER_LIP_BOTTOM = 62, 66
MOUTH_LEFT, MOUTH_RIGHT = 48, 54
EPS = 1e-6  # official calculate_distance_ratio


def lip_open_ratio(landmarks: np.ndarray) -> float:
    """Inner-lip gap / mouth width from iBUG 68 landmarks (pixels): ~0 closed, ~0.3-0.6 wide open."""
    p = np.asarray(landmarks, np.float64)
    if p.shape != (68, 2):
        raise ValueError(f"lip_open_ratio needs 68 (x, y) landmarks, got shape {p.shape}")
    gap = np.linalg.norm(p[INNER_LIP_TOP] - p[INNER_LIP_BOTTOM])
    width = np.linalg.norm(p[MOUTH_LEFT] - p[MOUTH_RIGHT])
    return float(gap / (width + EPS))
