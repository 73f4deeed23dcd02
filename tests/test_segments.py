"""PlanStage at shot cuts: segments split there, no flicker merge and no fade across them."""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from models.faces.face import Face
from stages.follow import NOT_VISIBLE, SYNCED, Target, TargetObservation
from stages.segments import PlanStage
from stream.frame import Frame


def _face() -> Face:
    return Face(bbox=[100, 100, 300, 300], score=0.9, kps=np.zeros((5, 2)), pose=(0.0, 0.0, 0.0))


def _plan(states: list[str], cut: int | None) -> tuple[PlanStage, list[Frame]]:
    """25 fps frames with the target's state per frame; the shot changes at frame `cut`."""
    target = Target(0, "a", 0, 10_000, _face())
    stage = PlanStage([target], fps=25)
    out = []
    for i, state in enumerate(states):
        face = _face() if state == SYNCED else None
        frame = Frame(i, i * 40, Fraction(1, 1000), None,
                      notes={"shot": int(cut is not None and i >= cut),
                             "targets": {0: TargetObservation(face, state, 0.5 if face else None)}})
        out.extend(stage.process(frame))
    out.extend(stage.flush())
    return stage, out


def _strengths(frames: list[Frame]) -> list[float]:
    return [f.notes["render"][0].strength if f.notes["render"] else 0.0 for f in frames]


def test_segments_split_at_a_cut_and_no_fade_crosses_it():
    stage, frames = _plan([SYNCED] * 30, cut=15)
    segments, summary = stage.builders[0].as_json()
    assert [(s["start_ms"], s["end_ms"], s["synced"]) for s in segments] == [(0, 600, True), (600, 1200, True)]
    strengths = _strengths(frames)
    assert strengths[0] == 1.0  # the video's first frame: no original mouth to fade in from
    assert strengths[13:17] == [1.0, 1.0, 1.0, 1.0]  # full strength up to and from the cut
    assert strengths[-1] == 1.0  # the range lasts to the video's end: nothing to fade back to


def test_a_range_fades_out_only_where_the_original_continues():
    """Issue 23: a range that ends before the video does fade back to the original mouth;
    one that ends with the video holds full strength to its last frame."""
    _, frames = _plan([SYNCED] * 20 + [NOT_VISIBLE] * 10, cut=None)
    strengths = _strengths(frames)
    assert strengths[16:20] == sorted(strengths[16:20], reverse=True) and strengths[19] < 1.0
    _, frames = _plan([SYNCED] * 20, cut=None)
    assert _strengths(frames)[-4:] == [1.0] * 4


def test_a_short_loss_after_a_cut_is_not_rendered_from_before_it():
    lost = [SYNCED] * 15 + [NOT_VISIBLE] * 3 + [SYNCED] * 12
    _, frames = _plan(lost, cut=15)
    assert _strengths(frames)[15:18] == [0.0, 0.0, 0.0]
    _, frames = _plan(lost, cut=None)  # within one shot the same loss is flicker: rendered
    assert all(s > 0 for s in _strengths(frames)[15:18])


# --- issue 27: exact behaviour a one-line break in stages/segments.py would change -----------
from stages.segments import SegmentBuilder  # noqa: E402

LOW = "low_quality"


def test_a_160_ms_excursion_merges_and_a_200_ms_one_does_not():
    """min_run_ms is 200: at 25 fps 4 frames away (160 ms) are flicker, 5 frames (200 ms) are a run."""
    stage, _ = _plan([SYNCED] * 10 + [NOT_VISIBLE] * 4 + [SYNCED] * 10, cut=None)
    segments, _ = stage.builders[0].as_json()
    assert [(s["start_ms"], s["end_ms"], s["synced"]) for s in segments] == [(0, 960, True)]
    stage, _ = _plan([SYNCED] * 10 + [NOT_VISIBLE] * 5 + [SYNCED] * 10, cut=None)
    segments, _ = stage.builders[0].as_json()
    assert [(s["start_ms"], s["end_ms"], s["synced"]) for s in segments] == [
        (0, 400, True), (400, 600, False), (600, 1000, True)]


def test_flicker_is_rendered_from_the_last_face_at_full_strength():
    _, frames = _plan([NOT_VISIBLE] * 5 + [SYNCED] * 10 + [NOT_VISIBLE] * 2 + [SYNCED] * 10, cut=None)
    assert _strengths(frames)[5:17] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert frames[15].notes["render"][0].face is frames[14].notes["render"][0].face
    _, frames = _plan([SYNCED] * 10, cut=None)  # from the video's first frame: no fade in
    assert _strengths(frames) == [1.0] * 10


def test_an_excursion_that_never_comes_back_is_kept():
    stage, _ = _plan([SYNCED] * 6 + [NOT_VISIBLE] * 2, cut=None)
    segments, _ = stage.builders[0].as_json()
    assert [(s["start_ms"], s["end_ms"], s["synced"]) for s in segments] == [(0, 240, True), (240, 320, False)]


def test_a_mixed_excursion_shorter_than_min_run_merges():
    stage, _ = _plan([NOT_VISIBLE] * 6 + [SYNCED, LOW] + [NOT_VISIBLE] * 6, cut=None)
    segments, _ = stage.builders[0].as_json()
    assert [(s["start_ms"], s["end_ms"], s["skip_reason"]) for s in segments] == [(0, 560, NOT_VISIBLE)]


def test_fade_out_before_a_long_loss():
    _, frames = _plan([SYNCED] * 12 + [NOT_VISIBLE] * 8, cut=None)
    assert _strengths(frames)[6:14] == [1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]


def test_min_run_rounds_to_frames_and_fade_frames_is_at_least_one():
    target = Target(0, "a", 0, 10_000, _face())
    stage = PlanStage([target], fps=30, min_run_ms=200, fade_frames=0)
    assert (stage.min_run, stage.fade_frames, stage.window) == (6, 1, 8)
    assert PlanStage([target], fps=25, min_run_ms=10).min_run == 1
    assert PlanStage([target], fps=25).frame_ms == 40.0


def test_frames_before_the_window_fills_wait_for_the_look_ahead():
    target = Target(0, "a", 0, 10_000, _face())
    stage = PlanStage([target], fps=25)  # window: 5 + 4 + 1 frames
    outputs = []
    for i in range(12):
        frame = Frame(i, i * 40, Fraction(1, 1000), None,
                      notes={"targets": {0: TargetObservation(_face(), SYNCED, 0.5)}})
        outputs.append(len(stage.process(frame)))
    assert outputs == [0] * 10 + [1, 1]
    assert len(stage.flush()) == 10


def test_segment_ends_at_the_target_end_and_the_last_frame_lasts_one_frame():
    target = Target(0, "a", 0, 100, _face())
    stage = PlanStage([target], fps=25)
    for i in range(3):
        stage.process(Frame(i, i * 40, Fraction(1, 1000), None,
                            notes={"targets": {0: TargetObservation(_face(), SYNCED, 0.5)}}))
    stage.flush()
    assert [(s["start_ms"], s["end_ms"]) for s in stage.builders[0].as_json()[0]] == [(0, 100)]
    stage = PlanStage([Target(0, "a", 0, 10_000, _face())], fps=25)
    stage.process(Frame(0, 0, Fraction(1, 1000), None, notes={"targets": {0: TargetObservation(_face(), SYNCED, 0.5)}}))
    stage.flush()
    assert [(s["start_ms"], s["end_ms"]) for s in stage.builders[0].as_json()[0]] == [(0, 40)]


def test_a_frame_without_the_target_adds_nothing():
    target = Target(0, "a", 0, 10_000, _face())
    stage = PlanStage([target], fps=25)
    frames = list(stage.process(Frame(0, 0, Fraction(1, 1000), None, notes={"targets": {}})))
    frames += stage.flush()
    assert frames[0].notes["render"] == [] and stage.builders[0].segments == []


def test_segment_json_averages_quality_box_and_pose():
    builder = SegmentBuilder()
    a = Face(bbox=[0, 0, 100, 200], score=0.9, kps=np.zeros((5, 2)), pose=(10.0, -4.0, 1.0))
    b = Face(bbox=[10, 20, 130, 220], score=0.9, kps=np.zeros((5, 2)), pose=(20.0, 0.0, 2.0))
    builder.add(SYNCED, 0, 40, a, 0.5)
    builder.add(SYNCED, 40, 80.4, b, 0.8)
    builder.add(NOT_VISIBLE, 80.4, 120, None, None)
    builder.add(NOT_VISIBLE, 120, 160, Face(bbox=[0, 0, 10, 10], score=0.9, kps=np.zeros((5, 2))), None)
    segments, summary = builder.as_json()
    assert segments == [
        {"start_ms": 0, "end_ms": 80, "synced": True, "skip_reason": None, "avg_quality": 0.65,
         "avg_bbox": [5, 10, 110, 200], "avg_head_pose": [15.0, -2.0, 1.5]},
        {"start_ms": 80, "end_ms": 160, "synced": False, "skip_reason": NOT_VISIBLE, "avg_quality": None,
         "avg_bbox": [0, 0, 10, 10], "avg_head_pose": None},
    ]
    assert summary == {"total_ms": 160, "synced_ms": 80, "skipped_ms": 80}
    assert [s.frames for s in builder.segments] == [2, 2]


def test_segment_json_rounds_quality_to_three_places_and_splits_on_shot():
    builder = SegmentBuilder()
    for q in (0.1, 0.2, 0.2):
        builder.add(SYNCED, 0, 40, None, q)
    builder.add(SYNCED, 40, 80, None, None, shot=1)
    segments, _ = builder.as_json()
    assert [s["avg_quality"] for s in segments] == [0.167, None]
    assert [s["avg_bbox"] for s in segments] == [None, None]


def _run(states, times=None, faces=None, shots=True, targets=None) -> tuple[PlanStage, list[Frame]]:
    """One or more targets' states per frame (a dict per frame: target index -> state, or a
    state for target 0; None: not observed). `times` in ms (default 40 ms apart)."""
    targets = targets or [Target(0, "a", 0, 10_000, _face())]
    stage = PlanStage(targets, fps=25)
    out = []
    for i, per_frame in enumerate(states):
        per_frame = per_frame if isinstance(per_frame, dict) else {0: per_frame}
        observed = {}
        for index, state in per_frame.items():
            if state is None:
                continue
            face = (faces[i] if faces else _face()) if state == SYNCED else None
            observed[index] = TargetObservation(face, state, 0.5 if face else None)
        notes = {"targets": observed}
        if shots:
            notes["shot"] = 0
        t = times[i] if times else i * 40
        out.extend(stage.process(Frame(i, t, Fraction(1, 1000), None, notes=notes)))
    out.extend(stage.flush())
    return stage, out


def _spans(stage, index=0):
    return [(s["start_ms"], s["end_ms"], s["synced"]) for s in stage.builders[index].as_json()[0]]


def test_frames_without_a_shot_note_are_one_shot():
    stage, frames = _run([SYNCED] * 10 + [NOT_VISIBLE] * 2 + [SYNCED] * 10, shots=False)
    assert _spans(stage) == [(0, 880, True)]
    assert _strengths(frames)[:5] == [1.0] * 5  # the video's first frame starts at full strength


def test_unobserved_frames_neither_merge_nor_become_a_state():
    """A target not observed in the frames ahead (its range ends, or the track is gone)."""
    stage, frames = _run([SYNCED] + [None] * 3 + [SYNCED] * 3)
    assert stage.builders[0].segments[0].state == SYNCED
    stage, _ = _run([SYNCED] * 6 + [NOT_VISIBLE] + [None] * 3 + [SYNCED] * 3)
    assert [s.state for s in stage.builders[0].segments] == [SYNCED, NOT_VISIBLE, SYNCED]
    _, frames = _run([SYNCED] * 12 + [None] * 8)
    assert _strengths(frames)[6:12] == [1.0, 1.0, 1.0, 0.75, 0.5, 0.25]


def test_a_fade_in_restarts_after_a_real_loss():
    _, frames = _run([SYNCED] * 12 + [NOT_VISIBLE] * 8 + [SYNCED] * 12)
    assert _strengths(frames)[20:25] == [0.25, 0.5, 0.75, 1.0, 1.0]


def test_a_loss_of_min_run_fades_out_even_when_the_face_comes_back():
    _, frames = _run([SYNCED] * 12 + [NOT_VISIBLE] * 5 + [SYNCED] * 12)
    assert _strengths(frames)[7:18] == [1.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0, 0.25]


def test_only_synced_frames_render_and_the_item_names_target_and_face():
    target = Target(0, "a", 0, 10_000, _face())
    faces = [Face(bbox=[100 + 2 * i, 100, 300 + 2 * i, 300], score=0.9, kps=np.zeros((5, 2))) for i in range(20)]
    stage = PlanStage([target], fps=25)
    frames = []
    for i in range(20):
        state = SYNCED if i < 10 else "low_quality"  # a face is seen, but too poor to sync
        frame = Frame(i, i * 40, Fraction(1, 1000), None,
                      notes={"shot": 0, "targets": {0: TargetObservation(faces[i], state, 0.5)}})
        frames.extend(stage.process(frame))
    frames.extend(stage.flush())
    assert [bool(f.notes["render"]) for f in frames] == [True] * 10 + [False] * 10
    item = frames[5].notes["render"][0]
    assert item.target is target and item.face is faces[5]
    segments, _ = stage.builders[0].as_json()
    assert [s["avg_quality"] for s in segments] == [0.5, None]
    assert segments[0]["avg_bbox"] == [109, 100, 200, 200]  # x: the mean of 100, 102, ... 118
    assert segments[1]["avg_bbox"] == [129, 100, 200, 200]  # a skipped segment keeps the faces it saw


def test_segments_average_only_the_faces_seen():
    """Flicker frames are rendered from the last face but add no box to the average."""
    faces = [Face(bbox=[10 * i, 0, 10 * i + 100, 100], score=0.9, kps=np.zeros((5, 2))) for i in range(22)]
    stage, frames = _run([SYNCED] * 10 + [NOT_VISIBLE] * 2 + [SYNCED] * 10, faces=faces)
    seen = [10 * i for i in range(22) if not 10 <= i < 12]
    assert stage.builders[0].as_json()[0][0]["avg_bbox"] == [int(round(sum(seen) / len(seen))), 0, 100, 100]
    assert frames[11].notes["render"][0].face is faces[9]


def test_a_target_absent_from_a_frame_does_not_stop_the_others():
    targets = [Target(0, "a", 0, 10_000, _face()), Target(1, "b", 0, 10_000, _face())]
    stage, frames = _run([{1: SYNCED}] * 12, targets=targets)
    assert [len(f.notes["render"]) for f in frames] == [1] * 12
    assert stage.builders[0].segments == [] and _spans(stage, 1) == [(0, 480, True)]


def test_a_segment_ends_where_the_next_frame_starts():
    """Frames at uneven times (variable frame rate): each frame lasts until the next one."""
    times = [0, 40, 80, 200, 240, 280, 320, 360, 400, 440, 480]
    stage, _ = _run([SYNCED] * 3 + [NOT_VISIBLE] * 8, times=times)
    assert _spans(stage) == [(0, 200, True), (200, 520, False)]


def test_min_run_follows_min_run_ms_at_a_high_frame_rate():
    target = Target(0, "a", 0, 10_000, _face())
    assert PlanStage([target], fps=1000).min_run == 200
    assert PlanStage([target], fps=1000, min_run_ms=201).min_run == 201


def test_head_pose_is_rounded_to_two_places():
    builder = SegmentBuilder()
    builder.add(SYNCED, 0, 40, Face(bbox=[0, 0, 10, 10], score=0.9, kps=np.zeros((5, 2)), pose=(1.2345, 0, -0.1234)), 0.5)
    assert builder.as_json()[0][0]["avg_head_pose"] == [1.23, 0.0, -0.12]


def test_a_loss_just_before_a_cut_is_not_merged_with_the_shot_after_it():
    stage, _ = _plan([SYNCED] * 8 + [NOT_VISIBLE] * 2 + [SYNCED] * 10, cut=10)
    assert _spans(stage) == [(0, 320, True), (320, 400, False), (400, 800, True)]


def test_min_run_of_a_long_min_run_ms():
    assert PlanStage([Target(0, "a", 0, 10_000, _face())], fps=1000, min_run_ms=1000).min_run == 1000
