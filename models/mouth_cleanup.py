"""Painting over the speaker's own mouth opening before the warp (classical engine).

Landmarks lag a fast-moving mouth by a few pixels, so what they miss of the original gap,
teeth and dark corners must be found by colour and refilled with lip texture; the warp
then only squeezes or stretches lips, and the target cavity is painted afresh.
"""
from __future__ import annotations

import cv2
import numpy as np

_SQUARE = np.ones((3, 3), np.uint8)
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)

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
    out = img.copy()
    fill_vertical_in_place(out, mask)
    return out


def fill_vertical_in_place(img: np.ndarray, mask: np.ndarray) -> None:
    """`fill_vertical` written into `img` itself (it reads only unmasked pixels)."""
    c0, r0, bw, bh = cv2.boundingRect(mask.view(np.uint8) if mask.dtype == bool else mask)
    if bw == 0:
        return
    # Only the mask's bounding box matters, with one row more above and below: the row
    # just outside holds the nearest unmasked pixels of every column.
    r0, r1 = max(r0 - 1, 0), min(r0 + bh + 1, mask.shape[0])
    block = mask[r0:r1, c0:c0 + bw]
    hb = block.shape[0]
    rows = np.arange(hb, dtype=np.int32)[:, None]
    above = np.maximum.accumulate(np.where(block, -1, rows), axis=0)
    below = np.minimum.accumulate(np.where(block, hb, rows)[::-1], axis=0)[::-1]
    ys, xs = np.nonzero(block)  # only the masked pixels are interpolated
    above, below = above[ys, xs], below[ys, xs]
    has_a, has_b = above >= 0, below < hb
    above = np.where(has_a, above, np.where(has_b, below, 0))
    below = np.where(has_b, below, above)
    xs = xs + c0
    va = img[above + r0, xs].astype(np.float32)
    vb = img[below + r0, xs].astype(np.float32)
    t = np.clip((ys - above) / np.maximum(below - above, 1), 0.0, 1.0)[..., None]
    img[ys + r0, xs] = np.clip(va * (1 - t) + vb * t + 0.5, 0, 255).astype(np.uint8)


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
    luma = f @ _LUMA
    r, g, b = box[..., 0], box[..., 1], box[..., 2]  # max and min in 8 bits (exact), then as floats
    brightest = np.maximum(np.maximum(r, g), b).astype(np.float32)
    sat = (brightest - np.minimum(np.minimum(r, g), b)) / (brightest + 1.0)
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
    touching = np.zeros(n, np.uint8)
    touching[labels[lips > 0]] = 1  # outside the candidates the label is 0, the background
    touching[0] = 0
    if not touching.any():
        return crop.copy()
    mask = cv2.dilate(touching[labels], _SQUARE)
    out = crop.copy()
    fill_vertical_in_place(out[by0:by1, bx0:bx1], mask)
    return out
