"""The lower face's warp made smooth away from the lips.

A piecewise-affine warp is continuous but its gradient jumps at every triangle edge: a
straight edge in the picture that crosses several triangles (the chin against a collar,
a jaw line) comes out bent at each crossing, the jagged chin seen when a wide-open mouth
closes and the chin rises. Away from the lips the motion is smooth in reality (skin and
jaw move together), so there the displacement field is low-passed with a Gaussian of
`SMOOTH_SIGMA` inter-ocular distances; on and near the lips, where closed-lip triangles a
pixel thin carry the whole original gap and must stay exact, the affine field is kept.
The two meet in a feathered band.
"""
from __future__ import annotations

import cv2
import numpy as np

SMOOTH_SIGMA = 0.12
"""Gaussian sigma (inter-ocular distances) of the displacement field away from the lips.
At 0.06 the raised chin's edge still bent where the jaw's rigid band met the stretched
collar below it (quick start 49, 163, 173: a dark wedge under one side of the chin)."""
EXACT_MARGIN = 0.1
"""How far (inter-ocular distances) beyond the outer lips the affine field is kept exactly."""


def smooth_away_from_lips(map_x: np.ndarray, map_y: np.ndarray, lips_px: np.ndarray,
                          scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Backward maps (cv2.remap, float32 HxW) with their displacement smoothed outside
    the target lips `lips_px` (12x2 outer lip points, crop pixels); scale: the
    inter-ocular distance (pixels)."""
    h, w = map_x.shape
    sigma = SMOOTH_SIGMA * scale
    if sigma < 0.75 or h < 4 or w < 4:
        return map_x, map_y
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    # Everything smooth is computed on a grid sigma/3 coarser: a low-passed field and a
    # feathered mask need no more. The mask and both displacements go through it as the
    # three channels of one image (one resize, blur and resize for all).
    step = max(1, int(sigma / 3))
    small = (max(2, w // step), max(2, h // step))

    # The lips grown by EXACT_MARGIN (each point pushed out from their centre) keep the
    # exact map; the weight of the smooth one rises from their edge over about sigma.
    centre = lips_px.mean(axis=0)
    rays = lips_px - centre
    rays /= np.linalg.norm(rays, axis=1, keepdims=True) + 1e-9
    grown = lips_px + rays * EXACT_MARGIN * scale
    keep = np.zeros((h, w), np.float32)
    cv2.fillPoly(keep, [np.round(grown).astype(np.int32)], 1.0)
    dx, dy = map_x - xs, map_y - ys
    coarse = cv2.resize(cv2.merge([keep, dx, dy]), small, interpolation=cv2.INTER_AREA)
    coarse = cv2.GaussianBlur(coarse, (0, 0), sigma / step, borderType=cv2.BORDER_REPLICATE)
    low_keep, low_dx, low_dy = (cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in cv2.split(coarse))
    smooth = np.subtract(1.0, np.maximum(low_keep, keep, out=low_keep), out=low_keep)
    low_dx -= dx
    low_dx *= smooth
    low_dx += map_x  # map_x + smooth * (low-passed dx - dx)
    low_dy -= dy
    low_dy *= smooth
    low_dy += map_y
    return low_dx, low_dy
