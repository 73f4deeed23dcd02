"""The outer lip points moved onto the lips' colour edge: on drawn lips whose edge is known,
on pale lips (left alone), and on a real red-lipped face where dlib's points sit inside."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.lip_contour import MAX_REACH, refine_outer_lips

SKIN = (200, 150, 130)
RED = (190, 50, 60)


def drawn_face(lip_colour: tuple[int, int, int], half_w: float = 30.0, half_h: float = 15.0) -> tuple[np.ndarray, np.ndarray]:
    """A skin-coloured image with lips drawn as an ellipse at (100, 120), and 68 landmarks
    whose outer lips lie on an ellipse 80% of the drawn one (as dlib's do on full lips),
    eyes 70 px apart (s = 70)."""
    image = np.zeros((220, 200, 3), np.uint8)
    image[:] = SKIN
    centre = np.array([100.0, 120.0])
    cv2.ellipse(image, (100, 120), (int(half_w), int(half_h)), 0, 0, 360, lip_colour, -1, lineType=cv2.LINE_AA)
    pts = np.zeros((68, 2))
    pts[36:42] = (65.0, 60.0)
    pts[42:48] = (135.0, 60.0)
    angles = np.pi - np.arange(12) * np.pi / 6  # 48 at the left corner, clockwise over the top
    pts[48:60] = centre + 0.8 * np.stack([half_w * np.cos(angles), -half_h * np.sin(angles)], axis=1)
    inner = np.pi - np.arange(8) * np.pi / 4
    pts[60:68] = centre + np.stack([0.5 * half_w * np.cos(inner), -0.15 * half_h * np.sin(inner)], axis=1)
    pts[0:36] = centre + (0.0, 60.0)
    return image, pts


def on_ellipse(points: np.ndarray, half_w: float, half_h: float) -> np.ndarray:
    """The ellipse's implicit value at each point (1 on the drawn edge)."""
    d = points - (100.0, 120.0)
    return np.sqrt((d[:, 0] / half_w) ** 2 + (d[:, 1] / half_h) ** 2)


def test_points_inside_red_lips_move_out_to_their_edge():
    image, pts = drawn_face(RED)
    refined = refine_outer_lips(image, pts)
    before, after = on_ellipse(pts[48:60], 30, 15), on_ellipse(refined[48:60], 30, 15)
    assert np.allclose(before, 0.8)
    # On the drawn edge to about a pixel (antialiased, blurred a little).
    assert np.abs(after - 1.0).max() < 0.1, after.round(3)
    assert np.array_equal(refined[:48], pts[:48]) and np.array_equal(refined[60:], pts[60:])


def test_pale_lips_keep_their_points():
    image, pts = drawn_face((203, 148, 128))  # almost the skin's colour: no edge to trust
    assert np.array_equal(refine_outer_lips(image, pts), pts)


def test_no_point_moves_further_than_the_reach():
    image, pts = drawn_face(RED, half_w=70, half_h=40)  # the edge lies beyond the reach
    pts[48:60] = (100.0, 120.0) + 0.5 * (pts[48:60] - (100.0, 120.0))
    refined = refine_outer_lips(image, pts)
    moved = np.linalg.norm(refined[48:60] - pts[48:60], axis=1)
    assert moved.max() <= MAX_REACH * 70 + 1e-6
    assert np.array_equal(refined, pts)  # no edge within reach: the points stay


@pytest.fixture(scope="module")
def red_lips(data_dir):
    """d20 frame 122: a boy with red lips, mouth a little open."""
    from tests.media import frame_with_landmarks

    return frame_with_landmarks(data_dir / "video" / "d20.mp4", 122)


def test_on_real_red_lips_the_lower_lip_reaches_its_red_edge(red_lips):
    """dlib's lower outer points sit inside the red; refined, the red ends at them."""
    frame, pts = red_lips
    refined = refine_outer_lips(frame, pts)
    a = cv2.cvtColor(frame, cv2.COLOR_RGB2LAB)[..., 1].astype(np.float64)

    def redness(points: np.ndarray, dy: float) -> float:
        return float(np.mean([a[int(round(y + dy)), int(round(x))] for x, y in points]))

    lower = slice(55, 60)
    s = np.linalg.norm(pts[42:48].mean(axis=0) - pts[36:42].mean(axis=0))
    assert (refined[lower, 1] - pts[lower, 1]).mean() > 0.02 * s  # moved down, onto the edge
    # Just above the new points it is still lip, just below it is skin: the edge is between.
    inside, outside = redness(refined[lower], -2), redness(refined[lower], +3)
    skin = redness(refined[lower], +0.25 * s)
    assert inside - outside > 3 and abs(outside - skin) < abs(inside - skin), (inside, outside, skin)


def test_points_left_inside_a_fast_opening_lip_reach_its_edge(data_dir):
    """Tracked landmarks lag a mouth that opens fast. d20 frame 77 read with frame 76's
    landmarks: the lower lip's edge lies 0.17-0.19 s below points 56-57, past the reach.
    Their rays are lip to the reach and skin beyond, so they go to the reach and end within
    0.06 s of where the frame's own landmarks put the edge; kept where they were, the lip's
    shaded underside was warped as skin, a dark red blob under a closed mouth."""
    from tests.media import frame_with_landmarks

    frame, own = frame_with_landmarks(data_dir / "video" / "d20.mp4", 77)
    _, lagging = frame_with_landmarks(data_dir / "video" / "d20.mp4", 76)
    s = np.linalg.norm(own[42:48].mean(axis=0) - own[36:42].mean(axis=0))
    edge = refine_outer_lips(frame, own)[56:58, 1]
    assert np.all(edge - lagging[56:58, 1] > MAX_REACH * s)  # the case: out of reach
    refined = refine_outer_lips(frame, lagging)[56:58, 1]
    assert np.all(np.abs(refined - edge) < 0.06 * s), ((refined - edge) / s).round(3)

