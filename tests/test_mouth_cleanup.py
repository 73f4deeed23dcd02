"""models/mouth_cleanup: the speaker's own mouth opening is painted over with lip texture
before the warp; the column fill touches only the masked pixels, as the straightforward
whole-image version does."""
from __future__ import annotations

import cv2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.mouth_cleanup import close_original_gap, fill_vertical


def reference_fill_vertical(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The column fill over the whole image (as first written)."""
    h, w = mask.shape
    rows = np.arange(h)[:, None].repeat(w, axis=1)
    above = np.maximum.accumulate(np.where(mask, -1, rows), axis=0)
    below = np.minimum.accumulate(np.where(mask, h, rows)[::-1], axis=0)[::-1]
    has_a, has_b = above >= 0, below < h
    above = np.where(has_a, above, np.where(has_b, below, 0))
    below = np.where(has_b, below, above)
    ys, xs = np.nonzero(mask)
    above, below = above[ys, xs], below[ys, xs]
    va = img[above, xs].astype(np.float32)
    vb = img[below, xs].astype(np.float32)
    t = np.clip((ys - above) / np.maximum(below - above, 1), 0.0, 1.0)[..., None]
    out = img.copy()
    out[ys, xs] = np.clip(va * (1 - t) + vb * t + 0.5, 0, 255).astype(np.uint8)
    return out


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), h=st.integers(1, 40), w=st.integers(1, 40),
       density=st.sampled_from([0.0, 0.05, 0.3, 0.7, 1.0]))
def test_fill_vertical_matches_the_whole_image_version(seed, h, w, density):
    """Random masks, including ones touching the top and bottom rows and whole masked columns."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = rng.random((h, w)) < density
    out = fill_vertical(img, mask)
    assert np.array_equal(out, reference_fill_vertical(img, mask))
    assert np.array_equal(out[~mask], img[~mask])


def synthetic_mouth() -> tuple[np.ndarray, np.ndarray]:
    """A 200 x 160 skin crop with lips (outer ellipse 80 x 40 px), a dark open gap between
    them and a dark mole on the cheek far from the lips; 68 points, only 48-67 used."""
    crop = np.full((160, 200, 3), (190, 150, 130), np.uint8)
    pts = np.zeros((68, 2))
    t12 = np.pi - np.arange(12) * np.pi / 6
    pts[48:60] = np.stack([100 + 40 * np.cos(t12), 80 - 20 * np.sin(t12)], axis=1)
    t8 = np.pi - np.arange(8) * np.pi / 4
    pts[60:68] = np.stack([100 + 28 * np.cos(t8), 80 - 7 * np.sin(t8)], axis=1)
    cv2.fillPoly(crop, [np.round(pts[48:60]).astype(np.int32)], (150, 80, 80))
    cv2.fillPoly(crop, [np.round(pts[60:68]).astype(np.int32)], (30, 15, 15))
    cv2.circle(crop, (30, 30), 5, (40, 30, 30), -1)
    return crop, pts


def test_the_open_gap_becomes_lip_and_the_cheek_stays():
    crop, pts = synthetic_mouth()
    out = close_original_gap(crop, pts, None, None, scale=80.0)
    gap = np.zeros(crop.shape[:2], np.uint8)
    cv2.fillPoly(gap, [np.round(pts[60:68]).astype(np.int32)], 1)
    assert crop[gap > 0].mean() < 40  # the original opening is dark
    assert np.abs(out[gap > 0].astype(int) - (150, 80, 80)).max() <= 2  # now lip, from above and below
    lips = np.zeros_like(gap)
    cv2.fillPoly(lips, [np.round(pts[48:60] + [[0, 0]]).astype(np.int32)], 1)
    outside = cv2.dilate(lips, np.ones((9, 9), np.uint8)) == 0
    assert np.array_equal(out[outside], crop[outside])  # the mole and the skin are untouched
    assert out is not crop and crop[80, 100].tolist() == [30, 15, 15]  # the input is not written


def test_a_closed_mouth_is_left_as_it_is():
    crop, pts = synthetic_mouth()
    cv2.fillPoly(crop, [np.round(pts[60:68]).astype(np.int32)], (150, 80, 80))  # lips only
    pts[65:68, 1] = pts[[63, 62, 61], 1]  # the inner lips meet: no gap polygon
    out = close_original_gap(crop, pts, np.array([150.0, 80.0, 80.0]), np.array([190.0, 150.0, 130.0]), scale=80.0)
    assert np.array_equal(out, crop)
