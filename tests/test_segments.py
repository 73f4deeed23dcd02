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
    assert strengths[0] < 1.0  # the video's start fades in
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
