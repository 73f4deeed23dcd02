"""stages.tracking.flow_offset: a landmark fit checked against optical flow from the last frame."""
from __future__ import annotations

import cv2
import numpy as np

from stages.tracking import FLOW_POINTS, flow_offset, flow_patch


def _textured(shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """A smooth random texture (720p RGB), translated by shift (x, y) pixels."""
    rng = np.random.default_rng(7)
    base = rng.normal(size=(90, 160)).astype(np.float32)
    big = cv2.resize(base, (1280, 720), interpolation=cv2.INTER_CUBIC)
    m = np.array([[1, 0, shift[0]], [0, 1, shift[1]]], np.float32)
    moved = cv2.warpAffine(big, m, (1280, 720), borderMode=cv2.BORDER_REFLECT)
    grey = np.clip(128 + 60 * moved, 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _landmarks(x: float, y: float) -> np.ndarray:
    """68 points spread over a 200 px face whose top-left corner is (x, y)."""
    rng = np.random.default_rng(3)
    return (rng.uniform(20, 180, size=(68, 2)) + (x, y)).astype(np.float32)


def test_a_fit_that_moved_with_the_picture_agrees_and_one_left_behind_does_not():
    box = np.array([500, 250, 700, 450], np.float32)
    points = _landmarks(500, 250)
    patch = flow_patch(_textured(), box, points)
    assert patch is not None
    moved = _textured((4.0, -3.0))
    assert flow_offset(patch, moved, points + (4.0, -3.0)) < 1.0
    behind = flow_offset(patch, moved, points)  # the fit stayed where the face was
    assert 4.0 < behind < 6.0  # |(4, -3)| = 5


def test_large_faces_are_flowed_subsampled_in_frame_pixels():
    box = np.array([300, 100, 800, 600], np.float32)  # 500 px wide: every 6th pixel
    points = _landmarks(300, 100) * 2.5 - (450, 150)  # spread over the larger face
    patch = flow_patch(_textured(), box, points)
    assert patch is not None and patch.step == 6
    offset = flow_offset(patch, _textured((8.0, 0.0)), points)
    assert 6.0 < offset < 10.0


def test_no_verdict_without_texture_or_landmarks():
    box = np.array([500, 250, 700, 450], np.float32)
    flat = np.full((720, 1280, 3), 90, np.uint8)
    patch = flow_patch(flat, box, _landmarks(500, 250))
    assert flow_offset(patch, flat, _landmarks(500, 250)) is None  # nothing to track on a flat picture
    assert flow_patch(flat, box, None) is None
    assert len(FLOW_POINTS) >= 4


def test_the_flow_says_how_far_the_face_moved():
    from stages.tracking import flow_points, flow_shift

    box = np.array([500, 250, 700, 450], np.float32)
    points = _landmarks(500, 250)
    patch = flow_patch(_textured(), box, points)
    moved = _textured((9.0, -6.0))
    flowed = flow_points(patch, moved)
    assert flowed is not None and int(flowed.good.sum()) >= 4
    np.testing.assert_allclose(flow_shift(patch, flowed), [9.0, -6.0], atol=0.5)
    assert flow_offset(patch, moved, points, flowed) == flow_offset(patch, moved, points)


def test_a_frames_grey_regions_are_the_pixels_of_their_own_conversions():
    from stages.tracking import FrameGrey, _grey, flow_points

    rng = np.random.default_rng(11)
    image = rng.integers(0, 256, size=(720, 1280, 3), dtype=np.uint8)  # every pixel its own value
    grey = FrameGrey(image)
    first = (400, 200, 800, 640)
    np.testing.assert_array_equal(grey.region(first, 2), _grey(image, first, 2))
    assert grey.conversions == 1
    for region, step in (((410, 205, 805, 630), 2), ((395, 190, 790, 650), 3), ((402, 203, 640, 500), 1)):
        np.testing.assert_array_equal(grey.region(region, step), _grey(image, region, step))
    assert grey.conversions == 1  # each inside the first one's margin: slices of it
    far = (0, 0, 300, 300)  # another face: converted on its own
    np.testing.assert_array_equal(grey.region(far, 1), _grey(image, far, 1))
    edge = (1100, 500, 1280, 720)  # the margin clipped to the frame
    np.testing.assert_array_equal(grey.region(edge, 2), _grey(image, edge, 2))
    assert grey.conversions == 3

    box = np.array([500, 250, 700, 450], np.float32)
    points = _landmarks(500, 250)
    moved = _textured((5.0, 2.0))
    patch, shared = flow_patch(_textured(), box, points), flow_patch(FrameGrey(_textured()), box, points)
    np.testing.assert_array_equal(patch.grey, shared.grey)
    direct, through = flow_points(patch, moved), flow_points(shared, FrameGrey(moved))
    np.testing.assert_array_equal(direct.points, through.points)
    np.testing.assert_array_equal(direct.good, through.good)
