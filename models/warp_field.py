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
CONFINE_STEP = 0.03
"""Grid spacing (inter-ocular distances) on which `confine_motion` weighs the motion."""
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


def confine_motion(map_x: np.ndarray, map_y: np.ndarray, inner: np.ndarray, outer: np.ndarray,
                   scale: float) -> None:
    """Fade the backward maps' displacement (in place) from all of it inside the polygon
    `inner` (the target face; crop pixels, N x 2) to none outside the polygon `outer` (which
    holds `inner`), linearly across the band between them: beyond the face, what lies
    behind it stays put, and the alpha mask's edge can lie anywhere outside `outer`.
    scale: the inter-ocular distance (pixels).

    The weight is a ratio of distance transforms to the two outlines, computed on a grid
    CONFINE_STEP inter-ocular distances coarse (the band is 0.1-0.35 wide) and resized
    (0.2 ms a face-frame at 720p)."""
    h, w = map_x.shape
    step = max(1, int(CONFINE_STEP * scale))
    small = (max(2, -(-w // step)), max(2, -(-h // step)))
    fit = np.array([(small[0] - 1) / max(w - 1, 1), (small[1] - 1) / max(h - 1, 1)])  # pixel centres to the grid's
    masks = []
    for polygon in (inner, outer):
        mask = np.zeros(small[::-1], np.uint8)
        cv2.fillPoly(mask, [np.round(polygon * fit * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
        masks.append(mask)
    inside, within = masks[0], np.maximum(masks[0], masks[1])
    to_inner = cv2.distanceTransform(np.uint8(inside == 0), cv2.DIST_L2, 3)
    to_outside = cv2.distanceTransform(within, cv2.DIST_L2, 3)
    keep = to_outside / np.maximum(to_inner + to_outside, 1e-6)
    keep[inside != 0] = 1.0
    keep = cv2.resize(keep, (w, h), interpolation=cv2.INTER_LINEAR)
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    map_x -= xs
    map_x *= keep
    map_x += xs
    map_y -= ys
    map_y *= keep
    map_y += ys
