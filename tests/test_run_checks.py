"""The mouth-bank pass's identity checks along a followed face's run (`stages.run_checks`):
every sample gets its own check's answer while only a few samples are checked."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stages.run_checks import CHECK_SPAN_MS, checkpoints, run_verdicts


def counted(truth: list[bool]):
    """check(i) answering truth[i], and the list of indices it was asked about."""
    asked: list[int] = []

    def check(i: int) -> bool:
        asked.append(i)
        return truth[i]

    return check, asked


def test_checkpoints_are_a_span_apart_and_include_the_last_sample():
    times = [200.0 * k for k in range(1, 26)]  # 5 s at 5 fps after a start at 0
    points = checkpoints(times, 0.0, 1000.0)
    assert [times[i] for i in points] == [1000.0, 2000.0, 3000.0, 4000.0, 5000.0]
    assert checkpoints([300.0, 5000.0, 5100.0], 0.0, 1000.0) == [0, 1, 2]  # a gap: each side checked
    assert checkpoints([], 0.0) == []


def test_a_run_that_stays_its_person_costs_one_check_a_second():
    times = [200.0 * k for k in range(1, 51)]  # 10 s at 5 fps
    check, asked = counted([True] * len(times))
    assert run_verdicts(times, 0.0, check) == [True] * len(times)
    assert len(asked) == 10


def test_a_dissolve_is_found_to_the_sample():
    """A run slides onto another person at sample 23 of 50: exactly the samples from there
    go, found by ~log2(5) extra checks between the last pass and the first fail."""
    truth = [k < 23 for k in range(50)]
    times = [200.0 * (k + 1) for k in range(50)]
    check, asked = counted(truth)
    assert run_verdicts(times, 0.0, check) == truth
    assert len(asked) <= 10 + 3
    assert len(set(asked)) == len(asked)  # no sample is embedded twice


def test_an_isolated_failed_check_drops_only_that_sample():
    truth = [True] * 20
    truth[9] = False  # checkpoint 1 (2000 ms): e.g. a blink the embedding did not accept
    times = [200.0 * (k + 1) for k in range(20)]
    check, _ = counted(truth)
    assert run_verdicts(times, 0.0, check) == truth


def test_samples_out_of_order_are_refused():
    with pytest.raises(ValueError, match="sorted"):
        run_verdicts([400.0, 200.0], 0.0, lambda i: True)


@st.composite
def runs(draw):
    """Sample times (gaps of 40 ms to 3 s) and a truth that changes at times more than the
    span apart (the assumption `run_verdicts` is exact under)."""
    gaps = draw(st.lists(st.sampled_from([40.0, 200.0, 200.0, 200.0, 400.0, 1300.0, 3000.0]), min_size=1, max_size=80))
    times = [sum(gaps[:k + 1]) for k in range(len(gaps))]
    changes = sorted(draw(st.lists(st.floats(0.0, times[-1] + 1.0), max_size=4)))
    kept: list[float] = []
    for t in changes:
        if not kept or t - kept[-1] > CHECK_SPAN_MS + 3000.0:
            kept.append(t)
    truth = [sum(1 for c in kept if c < t) % 2 == 0 for t in times]  # True before the first change
    return times, truth


@settings(max_examples=300, deadline=None)
@given(runs())
def test_verdicts_equal_each_samples_own_check(run):
    times, truth = run
    check, asked = counted(truth)
    assert run_verdicts(times, 0.0, check) == truth
    changes = sum(1 for a, b in zip([True] + truth, truth) if a != b)
    bound = len(checkpoints(times, 0.0)) + changes * math.ceil(math.log2(len(times) + 1))
    assert len(asked) <= bound


def pictures_drift(pictures: list[float], start: float = 0.0):
    """drift(i, j) for pictures summed up as one grey level each (j = -1: the run's start)."""
    return lambda i, j: abs(pictures[i] - (start if j < 0 else pictures[j]))


def test_a_steady_run_is_checked_once_a_span_when_its_picture_does_not_drift():
    times = [200.0 * k for k in range(1, 51)]  # 10 s at 5 fps
    drift = pictures_drift([(k % 3) * 4.0 for k in range(50)])  # a talking head: changes of 0-8
    points = checkpoints(times, 0.0, 4000.0, drift, 20.0)
    assert [times[i] for i in points] == [4000.0, 8000.0]  # not the last sample: it looks like 8000
    check, asked = counted([True] * 50)
    assert run_verdicts(times, 0.0, check, 4000.0, drift, 20.0) == [True] * 50
    assert len(asked) == 2


def test_a_drifting_picture_is_checked_where_it_drifted():
    """A dissolve onto someone else from sample 10 to 14 (pictures 0 -> 60): every sample
    that looks more than 20 away from the last checked one is checked, so none that is
    not the person shares a check's verdict; the other person's samples go."""
    pictures = [0.0] * 10 + [12.0, 24.0, 36.0, 48.0, 60.0] + [60.0] * 10
    truth = [p < 30.0 for p in pictures]
    times = [200.0 * (k + 1) for k in range(25)]
    drift = pictures_drift(pictures)
    points = checkpoints(times, 0.0, 4000.0, drift, 20.0)
    assert [pictures[i] for i in points] == [12.0, 24.0, 36.0, 48.0]  # each the last within 20 of the one before
    check, asked = counted(truth)
    assert run_verdicts(times, 0.0, check, 4000.0, drift, 20.0) == truth
    assert len(asked) <= len(points) + 3


def test_a_first_sample_unlike_the_start_is_checked_on_its_own():
    drift = pictures_drift([25.0, 25.0, 25.0])
    assert checkpoints([200.0, 400.0, 600.0], 0.0, 4000.0, drift, 20.0) == [0]
    check, asked = counted([False, False, False])
    assert run_verdicts([200.0, 400.0, 600.0], 0.0, check, 4000.0, drift, 20.0) == [False] * 3
    assert asked == [0]  # the two after it look like it and take its verdict


def test_with_drift_a_gap_longer_than_the_span_is_still_checked():
    drift = pictures_drift([0.0, 0.0, 0.0])
    assert checkpoints([200.0, 5000.0, 5200.0], 0.0, 4000.0, drift, 20.0) == [0, 1]


@st.composite
def drifting_runs(draw):
    """Sample times, pictures (one grey level each) and a truth that changes only where the
    picture moves to another person's (levels 80 apart, a person's samples within 9 of
    their level): the assumption the drift mode is exact under."""
    count = draw(st.integers(1, 60))
    gaps = draw(st.lists(st.sampled_from([40.0, 200.0, 200.0, 1300.0, 5000.0]), min_size=count, max_size=count))
    times = [sum(gaps[:k + 1]) for k in range(count)]
    people = draw(st.lists(st.integers(0, 2), min_size=count, max_size=count))
    noise = draw(st.lists(st.floats(-4.5, 4.5), min_size=count, max_size=count))
    pictures = [80.0 * p + n for p, n in zip(people, noise)]
    return times, pictures, [p == 0 for p in people]


@settings(max_examples=300, deadline=None)
@given(drifting_runs())
def test_with_drift_verdicts_equal_each_samples_own_check(run):
    times, pictures, truth = run
    check, _ = counted(truth)
    assert run_verdicts(times, 0.0, check, 4000.0, pictures_drift(pictures), 20.0) == truth
