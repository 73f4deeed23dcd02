"""The lower face's geometry: closing a mouth lifts the chin with the jaw, within a bound;
the region its motion fills holds both jaw lines."""
from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from models.mouth_geometry import (
    JAW,
    LOWER_INNER,
    UPPER_INNER,
    WarpConfig,
    articulate_local,
    articulate_many,
    MOTION_REACH_CHIN,
    MOTION_REACH_DROP,
    chin_rise_limit,
    motion_reach,
    motion_whole,
    neutral_local,
)
from models.mouth_params import MouthShape


def open_mouth(gap: float) -> np.ndarray:
    """68 local points (s units): lips around the origin, inner lips `gap` apart at the
    centre, a jaw line 0.6 below."""
    uv = np.zeros((68, 2))
    uv[0:17, 0] = np.linspace(-0.9, 0.9, 17)
    uv[0:17, 1] = 0.6 - 0.5 * np.abs(uv[0:17, 0])
    uv[48:60, 0] = 0.4 * np.cos(np.pi - np.arange(12) * np.pi / 6)
    uv[48:60, 1] = -0.12 * np.sin(np.pi - np.arange(12) * np.pi / 6)
    for k, (a, b) in enumerate(zip(UPPER_INNER, LOWER_INNER)):
        uv[a] = ((k - 1) * 0.1, -gap / 2)
        uv[b] = ((k - 1) * 0.1, gap / 2)
    uv[60], uv[64] = (-0.3, 0.0), (0.3, 0.0)
    return uv


def test_closing_lifts_the_chin_by_half_the_gap():
    cfg = WarpConfig()
    uv = open_mouth(0.12)
    closed = neutral_local(uv, cfg)
    assert np.isclose(uv[8, 1] - closed[8, 1], cfg.jaw_close_share * 0.12)
    assert np.allclose(closed[list(UPPER_INNER), 1], closed[list(LOWER_INNER), 1])  # the lips meet


def test_a_wide_open_mouth_lifts_the_chin_no_further_than_the_bound():
    """Closing a laugh lifts the chin by at most max_chin_rise: further, the collar under it
    is stretched into a wedge; the lips close all the same."""
    cfg = WarpConfig()
    closed = neutral_local(open_mouth(0.45), cfg)
    rise = open_mouth(0.45)[list(JAW), 1] - closed[list(JAW), 1]
    assert np.isclose(rise.max(), cfg.max_chin_rise) and rise.min() >= 0
    assert np.allclose(closed[list(UPPER_INNER), 1], closed[list(LOWER_INNER), 1])


@settings(max_examples=60, deadline=None)
@given(low=st.floats(0.0, 1.0), high=st.floats(0.0, 1.0))
def test_a_chin_over_clothing_rises_less(low, high):
    """`chin_rise_limit` goes from max_chin_rise (a neck of the chin's own skin under it, no
    edge found) down to clothing_chin_rise (an edge under the chin in most frames), never
    past either, and never rises more for a chin found over clothing more often."""
    cfg = WarpConfig()
    assert chin_rise_limit(cfg, 0.0) == cfg.max_chin_rise
    assert np.isclose(chin_rise_limit(cfg, 1.0), cfg.clothing_chin_rise)
    a, b = sorted((low, high))
    assert cfg.clothing_chin_rise - 1e-12 <= chin_rise_limit(cfg, b) <= chin_rise_limit(cfg, a) <= cfg.max_chin_rise
    closed = neutral_local(open_mouth(0.45), replace(cfg, max_chin_rise=chin_rise_limit(cfg, b)))
    assert np.isclose((open_mouth(0.45)[8, 1] - closed[8, 1]), chin_rise_limit(cfg, b))


@settings(max_examples=40, deadline=None)
@given(shapes=arrays(np.float64, (6, 3), elements=st.floats(-0.2, 1.2)), gap=st.floats(0.0, 0.3),
       curve=st.floats(0.5, 1.0), neutral_width=st.floats(0.3, 1.2))
def test_articulating_many_shapes_at_once_is_articulating_each(shapes, gap, curve, neutral_width):
    """The planner's vectorised articulation gives each shape exactly its own mouth (one
    row never leaks into another), open and as wide as the shape says."""
    cfg = WarpConfig(openness_curve=curve)
    neutral = neutral_local(open_mouth(gap), cfg)
    many = articulate_many(neutral, shapes, neutral_width, cfg)
    assert many.shape == (6, 68, 2)
    for k, (o, w, r) in enumerate(shapes):
        one = articulate_local(neutral, MouthShape(o, w, r, 0.0), neutral_width, cfg)
        np.testing.assert_allclose(many[k], one, atol=1e-12)
    # and each opens as its openness says: gap = max_gap * openness ** curve at the centre
    o = np.clip(shapes[:, 0], 0, 1)
    np.testing.assert_allclose(many[:, 66, 1] - many[:, 62, 1], cfg.max_gap * o ** curve, atol=1e-9)
    # ...and widens, rounds and (a little) narrows with the opening as its shape says
    width_now = neutral[54, 0] - neutral[48, 0]
    factor = max(neutral_width, width_now) / width_now * (1 + cfg.widen * shapes[:, 1] - cfg.narrow * shapes[:, 2])
    np.testing.assert_allclose(many[:, 54, 0] - many[:, 48, 0], width_now * factor * (1 - 0.06 * shapes[:, 0]), atol=1e-9)


def inside(polygon: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Signed distances (local units, positive inside) of `points` to `polygon`."""
    contour = (polygon * 1000).astype(np.float32).reshape(-1, 1, 2)
    return np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), True) for x, y in points * 1000]) / 1000


@settings(max_examples=40, deadline=None)
@given(st.floats(0.0, 0.4), st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_the_moving_region_holds_the_face_and_both_jaw_lines(gap, openness, width, rounding):
    """Wherever the warp moves the face wholly (`motion_whole`), the region it may move
    (`motion_reach`) holds it; and that region holds the source's and the target's chins
    (jaw points 6-10)
    with MOTION_REACH_DROP or MOTION_REACH_CHIN to spare, so an opening chin's new edge and a closing one's old
    edge both lie where the alpha is whole."""
    src = open_mouth(gap)
    cfg = WarpConfig()
    dst = articulate_local(neutral_local(src, cfg), MouthShape(openness, width, rounding, 0.0), 0.8, cfg)
    top = -0.3
    reach, whole = motion_reach(src, dst, top), motion_whole(dst, top)
    assert inside(reach, whole[:13]).min() > 0.05  # the whole region's jaw, well inside
    for uv in (src, dst):
        assert inside(reach, uv[6:11]).min() > 0.0  # beside the jaw (5 and 11 on) it stays inside the face
    # Under the lower chin the reach is MOTION_REACH_DROP where the chin dropped, else
    # MOTION_REACH_CHIN (the nearest edge, not along the ray: 0.8 of it).
    dropped = dst[8, 1] > src[8, 1]
    lower = dst if dropped else src
    assert inside(reach, lower[[8]])[0] > 0.8 * (MOTION_REACH_DROP if dropped else MOTION_REACH_CHIN)
