"""The lower face's warp smoothed away from the lips (kinks at triangle edges go, the lips'
exact map stays) and confined to the face (nothing beyond it moves)."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.warp_field import SMOOTH_SIGMA, confine_motion, smooth_away_from_lips


def kinked_maps(w: int = 200, h: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """A backward map whose vertical displacement is |x - 100| / 10 px: continuous, with a
    kink along x = 100 (as two affine triangles meeting there)."""
    xs = np.arange(w, dtype=np.float32)[None, :].repeat(h, 0)
    ys = np.arange(h, dtype=np.float32)[:, None].repeat(w, 1)
    return xs.copy(), ys + np.abs(xs - 100) / 10


_angles = np.pi - np.arange(12) * np.pi / 6
LIPS = np.stack([100 + 40 * np.cos(_angles), 20 - 10 * np.sin(_angles)], axis=1)
"""Outer lips: an ellipse 80 x 20 px around (100, 20)."""
SCALE = 6.0 / SMOOTH_SIGMA
"""The inter-ocular distance (px) at which the smoothing's sigma is 6 px: the kink at x = 100
lies 10 sigma from the columns checked as unchanged, which lie 2-7 sigma from the border."""


def test_a_kink_far_from_the_lips_is_smoothed():
    map_x, map_y = kinked_maps()
    sx, sy = smooth_away_from_lips(map_x, map_y, LIPS, scale=SCALE)
    row = 130  # far below the lips
    bend_before = np.abs(np.diff(map_y[row], 2)).max()
    bend_after = np.abs(np.diff(sy[row], 2)).max()
    assert bend_before > 0.19  # the kink: the slope jumps from -0.1 to +0.1 in one pixel
    assert bend_after < 0.25 * bend_before
    # The field is only smoothed, not moved: far from the kink it is unchanged.
    assert np.abs(sy[row, 10:40] - map_y[row, 10:40]).max() < 0.05
    assert np.allclose(sx, map_x, atol=1e-3)


def test_the_lips_keep_their_exact_map():
    map_x, map_y = kinked_maps()
    _, sy = smooth_away_from_lips(map_x, map_y, LIPS, scale=100.0)
    assert np.array_equal(sy[15:26, 75:126], map_y[15:26, 75:126])


def test_small_faces_are_left_alone():
    map_x, map_y = kinked_maps()
    sx, sy = smooth_away_from_lips(map_x, map_y, LIPS, scale=0.7 / SMOOTH_SIGMA)  # sigma under 0.75 px
    assert sx is map_x and sy is map_y


def reference_smooth(map_x: np.ndarray, map_y: np.ndarray, lips_px: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The mask and each displacement low-passed one at a time (as first written)."""
    import cv2

    from models.warp_field import EXACT_MARGIN, SMOOTH_SIGMA

    h, w = map_x.shape
    sigma = SMOOTH_SIGMA * scale
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    step = max(1, int(sigma / 3))
    small = (max(2, w // step), max(2, h // step))

    def low_pass(field: np.ndarray) -> np.ndarray:
        coarse = cv2.resize(field, small, interpolation=cv2.INTER_AREA)
        coarse = cv2.GaussianBlur(coarse, (0, 0), sigma / step, borderType=cv2.BORDER_REPLICATE)
        return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)

    rays = lips_px - lips_px.mean(axis=0)
    rays /= np.linalg.norm(rays, axis=1, keepdims=True) + 1e-9
    keep = np.zeros((h, w), np.uint8)
    cv2.fillPoly(keep, [np.round(lips_px + rays * EXACT_MARGIN * scale).astype(np.int32)], 1)
    smooth = 1.0 - np.maximum(low_pass(keep.astype(np.float32)), keep)
    return (map_x + smooth * (low_pass(map_x - xs) - (map_x - xs)),
            map_y + smooth * (low_pass(map_y - ys) - (map_y - ys)))


def test_one_three_channel_low_pass_gives_the_same_field():
    """Odd sizes (a coarse grid that is not a whole number of pixels) and a face scale
    that makes the grid 3 px: within a thousandth of a pixel of low-passing each alone."""
    rng = np.random.default_rng(5)
    map_x, map_y = kinked_maps(w=203, h=157)
    map_x = map_x + rng.normal(0, 0.5, map_x.shape).astype(np.float32)
    for scale in (100.0, 171.0):
        sx, sy = smooth_away_from_lips(map_x, map_y, LIPS, scale=scale)
        rx, ry = reference_smooth(map_x, map_y, LIPS, scale)
        assert sx.dtype == sy.dtype == np.float32
        assert np.abs(sx - rx).max() < 1e-3 and np.abs(sy - ry).max() < 1e-3


def square(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """A square polygon (crop pixels)."""
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


FACE, REACH = square(40, 30, 80, 70), square(20, 10, 100, 90)
"""A square face 40 px wide and the square 20 px further out, where motion ends."""


def test_motion_is_whole_inside_the_face_and_none_beyond_its_reach():
    map_x, map_y = kinked_maps(120, 100)
    map_x += 5.0  # every pixel reads 5 px to its right and |x - 100| / 10 px below
    xs = np.arange(120, dtype=np.float32)[None, :].repeat(100, 0)
    ys = np.arange(100, dtype=np.float32)[:, None].repeat(120, 1)
    before_x, before_y = map_x.copy(), map_y.copy()
    confine_motion(map_x, map_y, FACE, REACH, scale=100.0)  # a grid of 3 px
    face = (slice(33, 68), slice(43, 78))  # inside by a grid cell
    assert np.allclose(map_x[face], before_x[face], atol=1e-4) and np.allclose(map_y[face], before_y[face], atol=1e-4)
    beyond = np.ones((100, 120), bool)
    beyond[7:94, 17:104] = False  # outside by a grid cell
    assert np.array_equal(map_x[beyond], xs[beyond]) and np.array_equal(map_y[beyond], ys[beyond])
    # Across the band the motion fades steadily: along a row out of the face's right side.
    shift = map_x[50, 78:104] - xs[50, 78:104]
    assert shift[0] > 4.9 and shift[-1] == 0.0
    assert np.all(np.diff(shift) <= 1e-5) and np.all(np.diff(shift) > -5.0 / 20 * 1.6)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 30), st.integers(1, 25), st.floats(-8.0, 8.0), st.floats(-8.0, 8.0), st.floats(30.0, 200.0))
def test_confined_motion_is_never_more_than_the_warps(x0, band, dx, dy, scale):
    """Everywhere, the confined displacement is the warp's own, scaled by a weight in [0, 1]."""
    face = square(30 + x0 // 2, 30, 60, 50)
    reach = face + np.array([[-band, -band], [band, -band], [band, band], [-band, band]])
    xs = np.arange(100, dtype=np.float32)[None, :].repeat(80, 0)
    ys = np.arange(80, dtype=np.float32)[:, None].repeat(100, 1)
    map_x, map_y = xs + np.float32(dx), ys + np.float32(dy)
    confine_motion(map_x, map_y, face, reach, scale)
    kx, ky = (map_x - xs), (map_y - ys)
    atol = 1e-4  # float32 maps of coordinates up to 100 px
    assert np.hypot(kx, ky).max() <= np.hypot(dx, dy) + atol
    assert np.all(kx * np.sign(dx) >= -atol) and np.all(ky * np.sign(dy) >= -atol)  # never reversed
    assert np.allclose(ky * dx, kx * dy, atol=1e-3)  # the direction is kept: only the length fades
