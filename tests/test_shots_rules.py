"""ShotDetector's rules on synthetic thumbnails: the cut, flash, keyframe, spacing and fade tests.

Flat 64x36 YUV thumbnails fed straight to `push`, one per 40 ms frame (25 fps): no media, no
decoding, so each rule's edge is pinned exactly and a mutation run (scripts/mutation.py) takes
seconds a mutant. tests/test_shots.py runs the detector on real edited and uncut videos.
"""
from __future__ import annotations

import numpy as np
import pytest

from stages.shots import ShotDetector, ShotRules



def _feed(lumas, intra=(), rules=ShotRules()) -> ShotDetector:
    """Flat 64x36 YUV thumbnails of the given luma (chroma 128), one per 40 ms frame."""
    detector = ShotDetector(rules=rules)
    for i, luma in enumerate(lumas):
        thumb = np.full((36, 64, 3), 128.0, np.float32)
        thumb[..., 0] = luma
        detector.push(thumb, i * 40.0, i in intra)
    detector.finish()
    return detector


def test_a_step_is_a_cut_and_a_one_frame_flash_is_not():
    detector = _feed([100] * 30 + [160] * 30)
    assert (detector.boundaries_ms, detector.kinds, detector.frames) == ([1200.0], ["cut"], 60)
    assert _feed([100] * 30 + [200] + [100] * 29).boundaries_ms == []


@pytest.mark.parametrize("step,cut", [(0.9, False), (1.1, False), (1.3, True)])
def test_smallest_cut_on_a_still_picture(step, cut):
    """min_change 1 and ratio 4 x (0 + floor 0.3) = 1.2 grey levels on a still picture."""
    assert (_feed([100] * 30 + [100 + step] * 30).boundaries_ms == [1200.0]) is cut


@pytest.mark.parametrize("jump,cut", [(20, False), (22, True)])
def test_a_cut_must_stand_out_from_the_motion_around_it(jump, cut):
    """Frames alternating by 5 levels (motion): a jump needs 4 x (5 + 0.3) = 21.2."""
    before = [100 + 5 * (i % 2) for i in range(30)]
    after = [before[-1] + jump + 5 * (i % 2) for i in range(30)]
    assert (_feed(before + after).boundaries_ms == [1200.0]) is cut


def test_the_first_shot_lasts_at_least_min_shot_ms():
    assert _feed([100] * 9 + [160] * 30).boundaries_ms == []  # 360 ms after the first frame
    assert _feed([100] * 10 + [160] * 30).boundaries_ms == [400.0]
    assert _feed([100] * 10 + [160] * 30, rules=ShotRules(min_shot_ms=440)).boundaries_ms == []


def test_two_cuts_800_ms_apart_are_both_found():
    assert _feed([100] * 30 + [160] * 20 + [100] * 30).boundaries_ms == [1200.0, 2000.0]
    assert _feed([100] * 30 + [160] * 20 + [40] * 30).kinds == ["cut", "cut"]


def test_a_shot_of_480_ms_between_two_others_has_both_cuts():
    assert _feed([100] * 30 + [160] * 12 + [100] * 30).boundaries_ms == [1200.0, 1680.0]


def test_going_dark_is_a_fade_with_hysteresis():
    detector = _feed([100] * 30 + [10] * 20 + [100] * 30)
    assert (detector.boundaries_ms, detector.kinds) == ([1200.0, 2000.0], ["fade", "cut"])
    # dark below 20, lit again only above 28: 24 keeps a dark picture dark, and starts lit
    assert _feed([24] * 20 + [19.9] * 20).kinds == ["fade"]
    detector = ShotDetector()
    samples = [type("S", (), {"luma": v})() for v in (50, 20, 10, 24, 28, 28.1, 10)]
    assert [detector._goes_dark(s) for s in samples] == [False, False, True, False, False, False, True]
    assert [ShotDetector()._goes_dark(type("S", (), {"luma": 28})())] == [False]


def test_an_intra_frame_needs_a_change_beyond_its_quality_pulse():
    """A keyframe 3 levels brighter everywhere: under KEYFRAME_NOISE (4) per cell, no cut."""
    assert _feed([100] * 30 + [103] * 30, intra={30}).boundaries_ms == []
    assert _feed([100] * 30 + [103] * 30).boundaries_ms == [1200.0]
    assert _feed([100] * 30 + [160] * 30, intra={30}).boundaries_ms == [1200.0]


def test_shots_span_the_video():
    detector = _feed([100] * 30 + [160] * 30)
    assert detector.shots(2400.4) == [{"start_ms": 0, "end_ms": 1200}, {"start_ms": 1200, "end_ms": 2400}]
    assert ShotDetector().shots(1000) == [{"start_ms": 0, "end_ms": 1000}]
    assert ShotDetector().ms_per_frame == 0.0


def test_label_numbers_each_frame_by_its_shot(monkeypatch):
    import stages.shots as shots_module

    monkeypatch.setattr(shots_module, "frame_thumbnail", lambda frame: frame)
    monkeypatch.setattr(shots_module, "is_intra", lambda frame: False)
    thumbs = []
    for luma in [100] * 30 + [160] * 30:
        thumb = np.full((36, 64, 3), 128.0, np.float32)
        thumb[..., 0] = luma
        thumbs.append(thumb)
    detector = ShotDetector()
    labelled = list(detector.label((i, i * 40, 1 / 1000, thumb) for i, thumb in enumerate(thumbs)))
    assert [entry[0] for entry in labelled] == list(range(60))
    assert [entry[-1] for entry in labelled] == [0] * 30 + [1] * 30
    assert detector.busy_s > 0 and detector.ms_per_frame == pytest.approx(1000 * detector.busy_s / 60)
