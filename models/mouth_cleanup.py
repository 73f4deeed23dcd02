"""Painting over the speaker's own mouth opening before the warp (classical engine).

Landmarks lag a fast-moving mouth by a few pixels, so what they miss of the original gap,
teeth and dark corners must be found by colour and refilled with lip texture; the warp
then only squeezes or stretches lips, and the target cavity is painted afresh.
"""
from __future__ import annotations

import cv2
import numpy as np


def gap_search_region(pts: np.ndarray, scale: float) -> np.ndarray:
    """Polygon (pixels) in which the speaker's own mouth gap, teeth and dark corners are
    looked for: the outer lips grown by 0.07 s, so that a gap the landmarks miss by a few
    pixels (tracked or smoothed landmarks lag a fast-moving mouth) is still found."""
    outer = pts[48:60].astype(np.float64)
    centre = outer.mean(axis=0)
    d = outer - centre
    d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-9
    return outer + 0.07 * scale * d


def fill_vertical(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Replace masked pixels by interpolating, per column, the nearest unmasked pixels above
    and below: closed lips are upper-lip texture meeting lower-lip texture."""
    h, w = mask.shape
    rows = np.arange(h)[:, None].repeat(w, axis=1)
    above = np.maximum.accumulate(np.where(mask, -1, rows), axis=0)
    below = np.minimum.accumulate(np.where(mask, h, rows)[::-1], axis=0)[::-1]
    has_a, has_b = above >= 0, below < h
    above = np.where(has_a, above, np.where(has_b, below, 0))
    below = np.where(has_b, below, above)
    ys, xs = np.nonzero(mask)  # only the masked pixels are interpolated
    above, below = above[ys, xs], below[ys, xs]
    va = img[above, xs].astype(np.float32)
    vb = img[below, xs].astype(np.float32)
    t = np.clip((ys - above) / np.maximum(below - above, 1), 0.0, 1.0)[..., None]
    out = img.copy()
    out[ys, xs] = np.clip(va * (1 - t) + vb * t + 0.5, 0, 255).astype(np.uint8)
    return out


def close_original_gap(crop: np.ndarray, pts: np.ndarray, lip_rgb: np.ndarray | None, skin_rgb: np.ndarray | None, scale: float) -> np.ndarray:
    """A copy of `crop` with the speaker's own mouth opening painted over with lip texture.

    Inside `gap_search_region`, the inner-lip polygon and every pixel that does not look like lip
    (darker than 0.72x the lip luma: the cavity and the corner shadows; or brighter than the
    lips and less saturated than both lips and skin: teeth), in blobs that reach into the outer-lip polygon, is refilled from
    the lips above and below. The warp then only
    squeezes or stretches lips, so no dark line or tooth survives a closing mouth, and the
    target cavity is painted afresh. pts: 68 landmarks in crop pixels; scale: s in pixels.
    """
    region = gap_search_region(pts, scale)
    h, w = crop.shape[:2]
    bx0 = int(max(0, np.floor(region[:, 0].min()) - 2))
    by0 = int(max(0, np.floor(region[:, 1].min()) - 3))
    bx1 = int(min(w, np.ceil(region[:, 0].max()) + 3))
    by1 = int(min(h, np.ceil(region[:, 1].max()) + 4))
    if bx1 - bx0 < 3 or by1 - by0 < 3:
        return crop.copy()
    box = crop[by0:by1, bx0:bx1]
    off = np.array([bx0, by0])
    allowed = np.zeros(box.shape[:2], np.uint8)
    cv2.fillPoly(allowed, [np.round(region - off).astype(np.int32)], 1)
    lips = np.zeros_like(allowed)
    cv2.fillPoly(lips, [np.round(pts[48:60] - off).astype(np.int32)], 1)
    gap = np.zeros_like(allowed)
    cv2.fillPoly(gap, [np.round(pts[60:68] - off).astype(np.int32)], 1)
    f = box.astype(np.float32)
    luma = f @ np.array([0.299, 0.587, 0.114], np.float32)
    channels = f[..., 0], f[..., 1], f[..., 2]  # elementwise max/min beat numpy's reduce over a length-3 axis
    brightest = np.maximum(np.maximum(*channels[:2]), channels[2])
    sat = (brightest - np.minimum(np.minimum(*channels[:2]), channels[2])) / (brightest + 1.0)
    lip = np.asarray(lip_rgb if lip_rgb is not None else np.median(f[lips > 0], axis=0), np.float32)
    skin = np.asarray(skin_rgb if skin_rgb is not None else np.median(f[allowed == 0], axis=0), np.float32)
    lip_luma = float(lip @ np.array([0.299, 0.587, 0.114]))
    grey_limit = 0.8 * min(float(np.ptp(lip) / (lip.max() + 1.0)), float(np.ptp(skin) / (skin.max() + 1.0)))
    dark = luma < 0.72 * lip_luma
    teeth = (luma > 1.1 * lip_luma) & (sat < grey_limit)
    candidate = (((gap > 0) | dark | teeth) & (allowed > 0)).astype(np.uint8)
    if not candidate.any():
        return crop.copy()
    # Keep only the blobs that reach into the lips: shadows beside the mouth stay.
    n, labels = cv2.connectedComponents(candidate, connectivity=8)
    touching = np.unique(labels[(lips > 0) & (candidate > 0)])
    mask = np.isin(labels, touching[touching > 0])
    if not mask.any():
        return crop.copy()
    mask = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    out = crop.copy()
    out[by0:by1, bx0:bx1] = fill_vertical(box, mask)
    return out
