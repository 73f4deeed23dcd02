"""resolve_targets: which detected face each requested bbox means, and per-job track keys."""
from __future__ import annotations

import numpy as np
import pytest

from jobs.schema import FaceSpec
from jobs.targets import resolve_targets
from models.faces.face import Face
from stream.errors import InputError


class TwoFaces:
    """A backend that sees the same two faces on every frame."""

    def detect(self, image, with_embedding=True):
        return [Face(bbox=[x, 100, x + 120, 240], score=0.9, kps=np.zeros((5, 2))) for x in (50, 400)]


def test_each_bbox_takes_its_face_and_keys_are_unique_per_call(data_dir):
    video = str(data_dir / "video" / "d20.mp4")
    specs = [FaceSpec("alice", [390, 95, 130, 150], 0, 1000), FaceSpec("bob", [45, 100, 120, 140], 0, 1000)]
    first = resolve_targets(video, specs, TwoFaces(), 5000)
    again = resolve_targets(video, specs, TwoFaces(), 5000)
    assert [t.anchor.bbox[0] for t in first] == [400, 50]
    assert len({t.job for t in first}) == 1
    assert not {t.key for t in first} & {t.key for t in again}  # two jobs never share engine state


def test_a_bbox_over_no_face_names_the_faces_found(data_dir):
    video = str(data_dir / "video" / "d20.mp4")
    with pytest.raises(InputError, match=r"faces\[0\] \(carol\).*faces found there: \[50, 100, 120, 140\]"):
        resolve_targets(video, [FaceSpec("carol", [900, 600, 50, 50], 0, 1000)], TwoFaces(), 5000)


def test_a_bbox_over_no_face_in_a_one_person_clip_lists_that_one_face(data_dir):
    """Issue 22 item 17. Before: 5 "faces found there", 3 of them the same box (probes clamped to
    0 ms decoded the first frame three times), for a one-person clip."""
    from models.faces.default import DefaultFaceBackend

    video = str(data_dir / "video" / "d20.mp4")
    with pytest.raises(InputError) as refused:
        resolve_targets(video, [FaceSpec("carol", [0, 0, 40, 40], 0, 1000)], DefaultFaceBackend(), 7000)
    listed = str(refused.value).split("faces found there: ")[1].split(");")[0]
    print("listed:", listed)
    assert listed.count("[") == 1  # the one person, once


# --- issue 27: the probe order, the shot limit and the error text, in-process ----------------
from jobs import targets as targets_module  # noqa: E402
from jobs.targets import _best_match  # noqa: E402


def box_face(x1, y1, x2, y2) -> Face:
    return Face(bbox=[x1, y1, x2, y2], score=0.9, kps=np.zeros((5, 2)))


class ScriptedBackend:
    """Faces by probe time (ms), recording the times it was asked about."""

    def __init__(self, faces_at: dict[float, list[Face]]):
        self.faces_at = faces_at
        self.asked: list[float] = []
        self.current = None

    def detect(self, image, with_embedding=True):
        assert with_embedding is True  # the anchor's embedding follows the person later
        self.asked.append(image)
        return self.faces_at.get(image, [])


@pytest.fixture
def scripted(monkeypatch):
    """frame_at returns the probe time as the 'image'; shot_span a fixed span, counting its calls."""
    spans: list[tuple] = []
    state = {"span": (float("-inf"), float("inf")), "missing": set()}

    def frame_at(path, time_ms):
        return None if time_ms in state["missing"] else (time_ms, time_ms)

    def shot_span(path, time_ms, reach_ms):
        spans.append((time_ms, reach_ms))
        return state["span"]

    monkeypatch.setattr(targets_module, "frame_at", frame_at)
    monkeypatch.setattr(targets_module, "shot_span", shot_span)
    return state, spans


def test_probes_go_0_plus_200_minus_200_plus_500_minus_500(scripted):
    state, spans = scripted
    backend = ScriptedBackend({})
    with pytest.raises(InputError) as refused:
        resolve_targets("v.mp4", [FaceSpec("carol", [0, 0, 10, 10], 1000, 2000)], backend, 5000)
    assert backend.asked == [1000, 1200, 800, 1500, 500]
    assert spans == [(1000, 500)]  # the shot is found once, as far as the farthest probe
    assert str(refused.value) == ("faces[0] (carol): bbox [0, 0, 10, 10] matches no face detected near 1000 ms "
                                  "(faces found there: none); use a bbox from /detect-faces at that time")


def test_probes_clamp_to_the_video_and_skip_repeats(scripted):
    backend = ScriptedBackend({})
    with pytest.raises(InputError):
        resolve_targets("v.mp4", [FaceSpec("c", [0, 0, 10, 10], 100, 2000)], backend, 400)
    assert backend.asked == [100, 300, 0, 399]  # -200 and -500 clamp to 0; +200 and +500 to the last ms


def test_probes_outside_the_shot_are_skipped(scripted):
    state, _ = scripted
    state["span"] = (900.0, 1200.0)  # [start, end): 1200 belongs to the next shot
    backend = ScriptedBackend({})
    with pytest.raises(InputError):
        resolve_targets("v.mp4", [FaceSpec("c", [0, 0, 10, 10], 1000, 2000)], backend, 5000)
    assert backend.asked == [1000]
    state["span"] = (800.0, 1201.0)
    backend = ScriptedBackend({})
    with pytest.raises(InputError):
        resolve_targets("v.mp4", [FaceSpec("c", [0, 0, 10, 10], 1000, 2000)], backend, 5000)
    assert backend.asked == [1000, 1200, 800]


def test_the_first_probe_with_a_match_wins_and_a_missing_frame_is_skipped(scripted):
    state, spans = scripted
    state["missing"] = {1200.0}
    near = box_face(100, 100, 200, 200)
    backend = ScriptedBackend({800: [near], 1500: [box_face(100, 100, 200, 200)]})
    (target,) = resolve_targets("v.mp4", [FaceSpec("alice", [100, 100, 100, 100], 1000, 2000)], backend, 5000)
    assert backend.asked == [1000, 800] and target.anchor is near
    assert (target.index, target.character_id, target.start_ms, target.end_ms) == (0, "alice", 1000, 2000)


def test_a_match_at_the_start_needs_no_shot_detection(scripted):
    _, spans = scripted
    backend = ScriptedBackend({1000: [box_face(100, 100, 200, 200)]})
    resolve_targets("v.mp4", [FaceSpec("a", [100, 100, 100, 100], 1000, 2000)], backend, 5000)
    assert spans == []


def test_the_error_lists_each_person_once_and_at_most_six(scripted):
    people = [box_face(100 * i, 0, 100 * i + 80, 80) for i in range(8)]
    moved = [box_face(100 * i + 5, 0, 100 * i + 85, 80) for i in range(8)]  # the same people, IoU 0.78
    backend = ScriptedBackend({1000: people[:2], 1200: moved[:3], 800: people[3:]})
    with pytest.raises(InputError) as refused:
        resolve_targets("v.mp4", [FaceSpec("c", [2000, 2000, 10, 10], 1000, 2000)], backend, 5000)
    listed = str(refused.value).split("faces found there: ")[1].split(");")[0]
    assert listed == "[0, 0, 80, 80], [100, 0, 80, 80], [205, 0, 80, 80], [300, 0, 80, 80], [400, 0, 80, 80], [500, 0, 80, 80]"


def test_start_at_or_past_the_end_is_outside_the_video(scripted):
    backend = ScriptedBackend({0: [box_face(0, 0, 10, 10)]})
    with pytest.raises(InputError) as refused:
        resolve_targets("v.mp4", [FaceSpec("a", [0, 0, 10, 10], 0, 10), FaceSpec("b", [0, 0, 10, 10], 5000, 6000)],
                        backend, 5000)
    assert str(refused.value) == "faces[1] (b): start_time_ms 5000 is outside the video (duration 5000 ms)"
    assert backend.asked == [0]  # faces[1] is refused before any frame is probed for it
    (target,) = resolve_targets("v.mp4", [FaceSpec("a", [0, 0, 10, 10], 4999, 6000)],
                                ScriptedBackend({4999: [box_face(0, 0, 10, 10)]}), 5000)
    assert target.start_ms == 4999


def test_best_match_prefers_overlap_then_a_contained_centre():
    spec = np.array([100, 100, 200, 200], np.float32)
    far = box_face(300, 300, 400, 400)
    half = box_face(100, 100, 200, 150)   # IoU 0.5
    most = box_face(100, 100, 200, 190)   # IoU 0.9
    assert _best_match(spec, [far, half, most]) is most
    assert _best_match(spec, [far]) is None
    assert _best_match(spec, []) is None
    big = box_face(0, 0, 400, 400)        # IoU 1/16, but its centre (200, 200) is on the box's corner
    assert _best_match(spec, [far, big]) is big
    edge = box_face(140, 100, 300, 200)   # IoU exactly 0.3, centre (220, 150) outside: accepted
    assert _best_match(spec, [edge, far]) is edge
    assert _best_match(spec, [box_face(141, 100, 301, 200)]) is None  # IoU 0.294, centre outside
    outside = box_face(150, 201, 250, 300)  # no overlap, centre outside
    assert _best_match(spec, [outside]) is None
    for corner in ((99, 150), (201, 150), (150, 99), (150, 201)):  # a centre just outside each edge
        cx, cy = corner
        assert _best_match(spec, [box_face(cx - 300, cy - 300, cx + 300, cy + 300)]) is None
