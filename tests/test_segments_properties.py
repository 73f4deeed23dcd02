"""stages/segments.py, property-based (hypothesis): for any sequence of per-frame states the
segments cover the face's range without gap or overlap, each segment holds one state, and a
run away from a state merges back into it exactly when it is shorter than min_run_ms."""
from __future__ import annotations

import os

from fractions import Fraction

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.faces.face import Face
from stages.follow import NOT_VISIBLE, SYNCED, Target, TargetObservation
from stages.segments import PlanStage
from stream.frame import Frame

EXAMPLES = int(os.environ.get("LIPSYNC_HYPOTHESIS_EXAMPLES", "120"))
"""Examples per property; scripts/mutation.py lowers it, since every mutant reruns the file."""
SETTINGS = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
LOW_QUALITY = "low_quality"
STATES = st.sampled_from([SYNCED, NOT_VISIBLE, LOW_QUALITY])
# frame rates at which 200 ms is a whole number of frames (the documented length is exact)
EXACT_FPS = st.sampled_from([10, 20, 25, 50])


def run_plan(states: list[str | None], fps: float, min_run_ms: float = 200.0, cut_at: int | None = None,
             end_ms: float = 1e9) -> tuple[PlanStage, list[Frame]]:
    """Feed one target's per-frame states (None: no observation) through a PlanStage."""
    anchor = Face(bbox=[10, 10, 60, 70], score=0.9, kps=np.zeros((5, 2)))
    stage = PlanStage([Target(0, "a", 0, end_ms, anchor)], fps=fps, min_run_ms=min_run_ms)
    out: list[Frame] = []
    step = Fraction(1000) / Fraction(fps).limit_denominator()
    for i, state in enumerate(states):
        observed = {} if state is None else {0: TargetObservation(anchor if state == SYNCED else None, state,
                                                                   0.8 if state == SYNCED else None)}
        frame = Frame(i, int(i * step * 1000), Fraction(1, 1_000_000), None,
                      notes={"shot": int(cut_at is not None and i >= cut_at), "targets": observed})
        out.extend(stage.process(frame))
    out.extend(stage.flush())
    return stage, out


@SETTINGS
@given(states=st.lists(STATES, min_size=1, max_size=60), fps=EXACT_FPS,
       cut_at=st.one_of(st.none(), st.integers(1, 59)))
def test_segments_cover_the_range_without_gap_or_overlap(states, fps, cut_at):
    stage, frames = run_plan(states, fps, cut_at=cut_at)
    assert [f.index for f in frames] == list(range(len(states)))  # every frame comes out, in order
    segments, summary = stage.builders[0].as_json()
    frame_ms = 1000 / fps
    assert segments[0]["start_ms"] == 0
    assert segments[-1]["end_ms"] == int(round(len(states) * frame_ms))
    for before, after in zip(segments, segments[1:]):
        assert before["end_ms"] == after["start_ms"]  # no gap, no overlap
    assert all(s["end_ms"] > s["start_ms"] for s in segments)
    assert summary["total_ms"] == segments[-1]["end_ms"]
    assert summary["synced_ms"] + summary["skipped_ms"] == summary["total_ms"]
    assert summary["synced_ms"] == sum(s["end_ms"] - s["start_ms"] for s in segments if s["synced"])


@SETTINGS
@given(states=st.lists(STATES, min_size=1, max_size=60), fps=EXACT_FPS,
       cut_at=st.one_of(st.none(), st.integers(1, 59)))
def test_adjacent_segments_differ_in_state_or_shot(states, fps, cut_at):
    stage, _ = run_plan(states, fps, cut_at=cut_at)
    raw = stage.builders[0].segments
    for before, after in zip(raw, raw[1:]):
        assert before.state != after.state or before.shot != after.shot
    assert sum(s.frames for s in raw) == len(states)


@SETTINGS
@given(fps=EXACT_FPS, before=st.integers(1, 12), after=st.integers(1, 12), away=st.integers(1, 14),
       stay=st.sampled_from([SYNCED, NOT_VISIBLE]), other=st.sampled_from([NOT_VISIBLE, LOW_QUALITY, SYNCED]))
def test_a_run_merges_back_exactly_when_shorter_than_min_run(fps, before, after, away, stay, other):
    """min_run_ms 200: a 160 ms excursion at 25 fps merges, a 200 ms one is its own segment."""
    if other == stay:
        other = LOW_QUALITY
    states = [stay] * before + [other] * away + [stay] * after
    stage, _ = run_plan(states, fps)
    segments, _ = stage.builders[0].as_json()
    frame_ms = 1000 / fps
    if away * frame_ms < 200:
        assert len(segments) == 1 and segments[0]["synced"] == (stay == SYNCED)
    else:
        assert len(segments) == 3
        assert segments[1]["end_ms"] - segments[1]["start_ms"] == int(round(away * frame_ms))


@SETTINGS
@given(fps=EXACT_FPS, before=st.integers(1, 8), away=st.integers(1, 4), after=st.integers(1, 8))
def test_no_merge_across_a_cut(fps, before, away, after):
    states = [SYNCED] * before + [NOT_VISIBLE] * away + [SYNCED] * after
    stage, _ = run_plan(states, fps, cut_at=before)
    segments, _ = stage.builders[0].as_json()
    assert [s["synced"] for s in segments] == [True, False, True]


@SETTINGS
@given(states=st.lists(st.sampled_from([SYNCED, NOT_VISIBLE, None]), min_size=1, max_size=50), fps=EXACT_FPS)
def test_strength_is_in_0_1_and_only_synced_frames_render(states, fps):
    stage, frames = run_plan(states, fps)
    for frame, state in zip(frames, states):
        for item in frame.notes["render"]:
            assert 0 < item.strength <= 1
        if state is None:
            assert frame.notes["render"] == []
