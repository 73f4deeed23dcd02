"""The lower jaw points moved onto the face's silhouette: on a drawn chin against a collar
whose edge is known, on a neck of the same skin (left alone), and on the quick start's
frame 162, where dlib's chin sits well inside a wide-open face."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.jaw_contour import (
    HISTORY,
    MAX_INWARD,
    MAX_OPEN_REACH,
    MAX_REACH,
    POINTS,
    SPIKE,
    JawHistory,
    _along_contour,
    jaw_offsets,
    refine_jaw,
)

SKIN = (205, 150, 125)
COLLAR = (30, 90, 75)
CENTRE = np.array([150.0, 130.0])
S = 80.0  # inter-ocular distance of the drawn face (pixels)


def drawn_chin(outside: tuple[int, int, int], half_w: float = 80.0, half_h: float = 110.0,
               inset: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """A skin ellipse (the face) on `outside`, and 68 landmarks whose jaw (0-16) lies on an
    ellipse `inset` of the drawn one, as dlib's chin does on an open mouth; lips inside."""
    image = np.zeros((300, 300, 3), np.uint8)
    image[:] = outside
    cv2.ellipse(image, (int(CENTRE[0]), int(CENTRE[1])), (int(half_w), int(half_h)), 0, 0, 360, SKIN, -1,
                lineType=cv2.LINE_AA)
    pts = np.zeros((68, 2))
    pts[36:42] = CENTRE + (-S / 2, -60.0)
    pts[42:48] = CENTRE + (S / 2, -60.0)
    jaw = np.linspace(np.pi, 0.0, 17)  # 0 at the left, 8 at the chin, 16 at the right
    pts[0:17] = CENTRE + inset * np.stack([half_w * np.cos(jaw), half_h * np.sin(jaw)], axis=1)
    pts[27:36] = CENTRE + (0.0, -10.0)
    lips = np.linspace(np.pi, -np.pi, 12, endpoint=False)
    pts[48:60] = CENTRE + (0.0, 35.0) + np.stack([25 * np.cos(lips), 8 * np.sin(lips)], axis=1)
    pts[60:68] = CENTRE + (0.0, 35.0) + np.stack([15 * np.cos(lips[::3].repeat(2)[:8]), np.zeros(8)], axis=1)
    return image, pts


def on_ellipse(points: np.ndarray, half_w: float = 80.0, half_h: float = 110.0) -> np.ndarray:
    d = points - CENTRE
    return np.sqrt((d[:, 0] / half_w) ** 2 + (d[:, 1] / half_h) ** 2)


def test_a_chin_inside_the_face_moves_out_to_its_edge():
    image, pts = drawn_chin(COLLAR)
    refined = refine_jaw(image, pts)
    before = on_ellipse(pts[list(POINTS)])
    after = on_ellipse(refined[list(POINTS)])
    assert np.allclose(before, 0.9)
    # On the drawn edge within about 1.5 px (1 is the edge; 1.5 px is ~0.015 of the half axes).
    assert np.all(np.abs(after - 1.0) < 0.02), after
    untouched = [i for i in range(68) if i not in POINTS]
    assert np.array_equal(refined[untouched], pts[untouched])


def test_a_neck_of_the_same_skin_leaves_the_jaw_alone():
    image, pts = drawn_chin(SKIN)
    assert not jaw_offsets(image, pts).any()
    assert np.array_equal(refine_jaw(image, pts), pts)


def test_an_edge_beyond_reach_is_not_chased():
    """A face much bigger than dlib's jaw (a shadowless neck, a beard's edge far below):
    the points stay, rather than jump further than MAX_REACH."""
    image, pts = drawn_chin(COLLAR, inset=0.7)
    offsets = jaw_offsets(image, pts)
    assert np.all(offsets <= MAX_REACH * S + 1e-6)
    assert np.all(offsets >= -MAX_INWARD * S - 1e-6)
    chin = list(POINTS).index(8)
    assert offsets[chin] == 0.0  # the chin's edge is 0.3 x 110 px = 0.41 s away


def test_a_wide_open_mouth_reaches_a_chin_further_down():
    """dlib's chin lags a dropped jaw: with the inner lips 0.35 s apart the reach grows, and
    a chin edge 0.41 s below the points, out of reach on a closed mouth, is found."""
    image, pts = drawn_chin(COLLAR, inset=0.7)
    chin = list(POINTS).index(8)
    assert jaw_offsets(image, pts)[chin] == 0.0
    opened = pts.copy()
    opened[66, 1] += 0.35 * S
    assert 0.4 * S < jaw_offsets(image, opened)[chin] <= MAX_OPEN_REACH * S
    assert np.all(np.abs(on_ellipse(refine_jaw(image, opened)[list(POINTS)]) - 1.0) < 0.02)


def test_a_shaded_underside_does_not_hide_the_chin_edge():
    """The underside of a chin is shaded skin, a little off the chin's colour; the edge is
    where that shade meets the collar (the rise starts from the shade's level, not the
    chin's), found through a soft focus too."""
    image, pts = drawn_chin(COLLAR, inset=0.85)
    cv2.ellipse(image, (int(CENTRE[0]), int(CENTRE[1])), (80, 110), 0, 0, 360, (180, 130, 108), -1,
                lineType=cv2.LINE_AA)
    cv2.ellipse(image, (int(CENTRE[0]), int(CENTRE[1])), (73, 101), 0, 0, 360, SKIN, -1, lineType=cv2.LINE_AA)
    image = cv2.GaussianBlur(image, (0, 0), 2.0)
    after = on_ellipse(refine_jaw(image, pts)[list(POINTS)])
    assert np.all(np.abs(after - 1.0) < 0.04), after  # the blur pulls the half-way point in by ~3 px


def test_a_lone_point_run_on_to_the_collar_is_held_to_its_neighbours():
    """One point's edge far beyond its neighbours' (it ran past the chin on to the collar's
    own edge) is held to SPIKE beyond them; a point alone with an edge keeps dlib's place;
    a run of points that agree moves as found."""
    lone = np.array([0.0, 0.01, 0.02, 0.4, 0.03, 0.02, 0.0, 0.0, 0.0])
    assert _along_contour(lone)[3] == pytest.approx(0.03 + SPIKE)
    stray = np.array([0.0, 0.0, 0.0, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert not _along_contour(stray).any()
    corner = np.array([0.0, 0.05, 0.15, 0.25, 0.2, 0.1, 0.05, 0.0, 0.0])
    assert np.array_equal(_along_contour(corner), corner)


def test_the_history_says_how_often_a_chin_lies_over_clothing():
    """`JawHistory.chin_edge` grows while the chin's points find an edge (a collar) and stays
    0 over a neck of the chin's own skin; a frame rendered twice counts once."""
    collar, pts = drawn_chin(COLLAR)
    neck, _ = drawn_chin(SKIN)
    over_collar, over_neck = JawHistory(), JawHistory()
    for frame in range(30):
        refine_jaw(collar, pts, over_collar, frame)
        refine_jaw(neck, pts, over_neck, frame)
    assert over_neck.chin_edge == 0.0
    assert 0.9 < over_collar.chin_edge <= 1.0
    before = over_neck.chin_edge
    refine_jaw(collar, pts, over_neck, 29)  # the same frame again: not a new sighting
    assert over_neck.chin_edge == before


def test_one_stray_edge_does_not_bend_the_contour():
    """A dark spot just outside one jaw point (a collar seam) gives that point alone an
    edge; the median with its neighbours keeps the contour where they say."""
    image, pts = drawn_chin(SKIN)
    chin = pts[8]
    cv2.circle(image, (int(chin[0]), int(chin[1] + 6)), 4, COLLAR, -1)
    raw = jaw_offsets(image, pts)
    assert raw[list(POINTS).index(8)] > 0
    assert np.allclose(refine_jaw(image, pts), pts)


def test_a_track_follows_an_edge_it_keeps_seeing_not_one_it_saw_once():
    """With a track's history, an edge in one frame of HISTORY (a hand passing under the
    chin) leaves the jaw where dlib put it; one seen in most recent frames is followed,
    and a frame rendered twice counts once."""
    with_edge, pts = drawn_chin(COLLAR)
    without_edge, _ = drawn_chin(SKIN)
    history = JawHistory()
    assert np.allclose(refine_jaw(without_edge, pts, history, 0), pts)
    assert np.allclose(refine_jaw(without_edge, pts, history, 1), pts)
    assert np.allclose(refine_jaw(with_edge, pts, history, 2), pts)  # 1 of 3 frames
    assert np.allclose(refine_jaw(with_edge, pts, history, 2), pts)  # the same frame again
    followed = refine_jaw(with_edge, pts, history, 3)  # 2 of 4: the median moves half way
    assert np.all(on_ellipse(followed[list(POINTS)]) > 0.93)
    for frame in range(4, 4 + HISTORY):
        settled = refine_jaw(with_edge, pts, history, frame)
    assert np.all(np.abs(on_ellipse(settled[list(POINTS)]) - 1.0) < 0.02)
    assert len(history.recent) == HISTORY


@pytest.fixture(scope="module")
def wide_open_chin(data_dir):
    """The quick start's (d12) frame 162: mouth wide open, chin over a green sweater."""
    from tests.media import frame_with_landmarks

    return frame_with_landmarks(data_dir / "video" / "d12.mp4", 162)


def test_quick_start_frame_162_chin_moves_onto_the_collar_edge(wide_open_chin):
    """dlib's chin sits about 0.12 s above the chin's edge on the sweater. After refinement
    the colour just inside the moved chin point is skin and, past the chin's shadow, sweater."""
    frame, landmarks = wide_open_chin
    s = float(np.linalg.norm(landmarks[42:48].mean(axis=0) - landmarks[36:42].mean(axis=0)))
    refined = refine_jaw(frame, landmarks)
    moved = np.linalg.norm(refined[8] - landmarks[8]) / s
    assert moved > 0.06
    lab = cv2.cvtColor(frame, cv2.COLOR_RGB2LAB).astype(float)
    down = (refined[8] - landmarks[8]) / np.linalg.norm(refined[8] - landmarks[8])
    inside = refined[8] - 0.04 * s * down
    outside = refined[8] + 0.1 * s * down  # past the shadow band under the chin
    a_in = lab[int(inside[1]), int(inside[0]), 1]
    a_out = lab[int(outside[1]), int(outside[0]), 1]
    assert a_in - a_out > 10  # skin is redder (a*) than the green sweater
