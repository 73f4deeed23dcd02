"""Outer lip landmarks moved onto the lips' real edge, found by colour.

dlib's 68-point model puts the outer lip points (48-59) inside the lips on full or
coloured lips: on a real clip the lower lip's red runs a fifth of the lip's height below
points 55-59. Whatever is warped or painted by those points then leaves a band of the
original lip outside them: a doubled lower lip under the new mouth, or a lip-coloured
streak stretched down the chin. So each outer point is pushed outward, along the ray from
the mouth centre, to where the redness (CIELAB a*) falls half way from the lips' to the
skin's, never further than `MAX_REACH` inter-ocular distances and only where the lips
clearly stand out from the skin (pale lips have no edge to find and keep their points).
A point whose ray is lip all the way to the reach, with skin beyond it on the same ray,
goes to the reach: the landmarks the engine gets are tracked and lag a mouth that opens
fast, and a point left deep inside the lip leaves its outer part to be warped as skin.
"""
from __future__ import annotations

import cv2
import numpy as np

MAX_REACH = 0.15
"""Farthest a point moves (inter-ocular distances). The landmarks the engine gets are
tracked, and lag a mouth that opens fast: at d20 77 his lower lip's edge lay 0.13 below
points 56-57, and at 0.1 no edge was within reach, so the points stayed and the lip's
shaded underside was warped as skin, a dark red blob under the closed mouth painted over
it (a blind judge's one sure call on d20 + yongen)."""
MIN_CONTRAST = 5.0
"""Least difference of median a* (OpenCV's 0-255 scale) between the lips and the skin around them
for the edge to be looked for."""
STEPS = 16
"""Samples along each ray."""
WORK_SCALE = 48.0
"""Inter-ocular distance (pixels) the mouth is scaled down to before its colour is read."""
SKIN_AT = (0.2, 0.3)
"""Where along each ray, beyond the point (inter-ocular distances), the skin is sampled."""
OUTER = slice(48, 60)
INNER = slice(60, 68)


def _lip_mask(shape: tuple[int, int], pts: np.ndarray) -> np.ndarray:
    """The lips between the outer and inner landmarks (bool), in a crop of `shape`."""
    lips = np.zeros(shape, np.uint8)
    cv2.fillPoly(lips, [np.round(pts[OUTER]).astype(np.int32)], 1)
    cv2.fillPoly(lips, [np.round(pts[INNER]).astype(np.int32)], 0)
    return lips > 0


def refine_outer_lips(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The 68 landmarks (pixels) with the outer lip points on the lips' colour edge.

    image: RGB uint8 frame. Returns a new float64 68x2 array; the other points are unchanged."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(68, 2).copy()
    s = float(np.linalg.norm(pts[42:48].mean(axis=0) - pts[36:42].mean(axis=0)))
    if s < 8:
        return pts
    margin = (SKIN_AT[1] + 0.05) * s
    lo = np.floor(pts[OUTER].min(axis=0) - margin).astype(int)
    hi = np.ceil(pts[OUTER].max(axis=0) + margin).astype(int) + 1
    h, w = image.shape[:2]
    x0, y0 = max(lo[0], 0), max(lo[1], 0)
    x1, y1 = min(hi[0], w), min(hi[1], h)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return pts
    # Looked at with the eyes WORK_SCALE px apart: the edge is soft anyway, and a CIELAB
    # conversion of a 720p mouth costs milliseconds.
    k = min(1.0, WORK_SCALE / s)
    crop = np.ascontiguousarray(image[y0:y1, x0:x1])
    if k < 1.0:
        crop = cv2.resize(crop, (max(1, round((x1 - x0) * k)), max(1, round((y1 - y0) * k))), interpolation=cv2.INTER_AREA)
    a = cv2.GaussianBlur(cv2.cvtColor(crop, cv2.COLOR_RGB2LAB)[..., 1].astype(np.float32), (0, 0), 0.6)
    local = (pts - [x0, y0]) * k
    s *= k
    centre = local[INNER].mean(axis=0)
    outer = local[OUTER]
    rays = outer - centre
    rays /= np.linalg.norm(rays, axis=1, keepdims=True) + 1e-9
    # Along each ray: the search up to MAX_REACH, then the skin at SKIN_AT beyond the point.
    t = np.concatenate([np.linspace(0.0, MAX_REACH * s, STEPS), np.linspace(SKIN_AT[0] * s, SKIN_AT[1] * s, 4)])
    xs = (outer[:, None, 0] + rays[:, None, 0] * t[None, :]).astype(np.float32)
    ys = (outer[:, None, 1] + rays[:, None, 1] * t[None, :]).astype(np.float32)
    values = cv2.remap(a, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    lips = _lip_mask(a.shape, local)
    if lips.sum() < 8:
        return pts
    a_lip, a_skin = float(np.median(a[lips])), float(np.median(values[:, STEPS:]))
    if a_lip - a_skin < MIN_CONTRAST:
        return pts
    edge = 0.5 * (a_lip + a_skin)
    skin_like = values[:, STEPS:].mean(axis=1) < edge
    values = values[:, :STEPS]
    for i in range(len(outer)):
        below = np.flatnonzero(values[i] < edge)
        if values[i, 0] < edge:
            continue  # already past the edge (pale here): keep it
        if not below.size:
            if skin_like[i]:  # the edge lies past the reach, before this ray's skin: go all the way
                pts[48 + i] += rays[i] * t[STEPS - 1] / k
            continue  # else no edge in sight: keep it
        j = int(below[0])  # the first sample past the edge: interpolate between j-1 and j
        v0, v1 = values[i, j - 1], values[i, j]
        frac = float(np.clip((v0 - edge) / max(v0 - v1, 1e-6), 0.0, 1.0))
        pts[48 + i] += rays[i] * (t[j - 1] + frac * (t[j] - t[j - 1])) / k
    return pts
