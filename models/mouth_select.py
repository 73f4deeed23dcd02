"""Which bank sample shows the mouth on each frame of a range: one texture, held, chosen for
the whole range at once (dynamic programming, as in Video Rewrite's triphone selection).

Blending several real mouths on one frame shows a smeared, doubled texture, and switching
sample on every frame makes the teeth and lip lines flicker. So per track the engine plans
ahead over the frames the audio already describes:

    total = sum_t target_cost[t, sample_t] + sum_t switch_cost[t] * (sample_t != sample_t-1)
            + appearance distance between consecutive different samples

minimised exactly by the Viterbi recursion (T x K^2, K <= 48 samples: ~10 ms for 10 s).
A switch is cheap where the target itself changes (a new phone, or a visible jump in
opening or width) and dear where it holds, so one sample is held through a sound.
Every frame shows exactly one real mouth: at a change the next sample simply takes over,
warped onto the same target lips, as the next frame of a real video does. A cross-fade
there (a third of the other sample on each side, tried in the previous round) put two
mouths' teeth and tongues on half of all frames, the smeared, doubled texture viewers
picked out; a mouth moves as much between two real frames at 25 fps as between samples.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SWITCH_COST = 4.0
"""Cost of changing sample where the target holds still (cost units: 1 ~ visible)."""
SWITCH_COST_AT_CHANGE = 1.0
"""Cost of changing sample where the target changes (a phone boundary, a visible jump)."""
TARGET_JUMP = 1.0
"""A target change that counts as a new shape: opening / 0.04 + width / 0.06 (s units)."""
APPEARANCE_WEIGHT = 0.5
"""Weight of the appearance distance (teeth, brightness, pose descriptors) at a switch."""
PAUSE_REPEAT_COST = 1.0
"""Cost (1 ~ visible) of showing one of the last pauses' closed mouths again: another
within this of it takes its place (warped onto the same target lips, a closed mouth's
small misfit in width or pose shows less than the same mouth seen again)."""
SAME_MOMENT_MS = 400.0
"""Samples filmed this close together (ms) count as the same closed mouth."""
PAUSE_MEMORY = 3
"""How many pauses back a closed mouth counts as just seen."""
PAUSE_VARIETY_BONUS = 1.0
"""Cost taken off the closed mouth chosen for a pause, so the plan keeps it."""
PAUSE_KEEP_BONUS = 5.0
"""Cost taken off the closed mouth a pause already shows when the rest of it is planned
again: a still mouth whose lips change texture mid-pause pops (d11 + yongen.wav's last
pause changed mouth three times as her head moved)."""


@dataclass
class SamplePlan:
    """The planned sample per frame of a track, from `start_ms` every 1000/fps ms."""

    start_ms: float
    fps: float
    samples: np.ndarray  # int, index into the bank's samples per planned frame
    pose: tuple[float, float, float] | None
    bank_size: int

    def index_at(self, time_ms: float) -> int | None:
        """The planned frame at `time_ms`, or None outside the plan."""
        k = int(round((time_ms - self.start_ms) * self.fps / 1000.0))
        return k if 0 <= k < len(self.samples) else None


def switch_costs(openings: np.ndarray, widths: np.ndarray, phones: np.ndarray | None = None) -> np.ndarray:
    """Per frame t (from 1), the cost of changing sample between t-1 and t; entry 0 unused.

    openings, widths: target inner-lip gap and mouth width per frame (s units); phones:
    optional label per frame (a change of label is a change of shape)."""
    n = len(openings)
    out = np.full(n, SWITCH_COST)
    if n < 2:
        return out
    jump = np.abs(np.diff(openings)) / 0.04 + np.abs(np.diff(widths)) / 0.06
    changed = jump >= TARGET_JUMP
    if phones is not None and len(phones) == n:
        changed |= phones[1:] != phones[:-1]
    out[1:][changed] = SWITCH_COST_AT_CHANGE
    return out


def vary_pauses(target_cost: np.ndarray, pause_numbers: np.ndarray, sample_times_ms: np.ndarray,
                recent: Sequence[int] = (), showing: int | None = None) -> np.ndarray:
    """The target costs with each pause given another closed mouth than the last few
    pauses, where the bank has one nearly as good: a real person's lips never close the
    same way twice, and one sample held in every pause showed the same lips with the same
    highlight each time, a blind test's giveaway (d20 + yongen.wav, 8 of 12).

    target_cost: T x K; pause_numbers: per frame, which pause it is in (-1 in speech);
    sample_times_ms: K, when each sample was filmed; recent: the samples the pauses before
    showed, oldest first. Pause by pause, the sample that shows it is the best once every
    sample filmed within SAME_MOMENT_MS of one the last PAUSE_MEMORY pauses showed pays
    PAUSE_REPEAT_COST (neighbouring frames are the same mouth), and it costs
    PAUSE_VARIETY_BONUS less there so the plan takes it. showing: the sample the pause the
    plan starts in already shows, if it starts in one; that pause keeps it (a mouth
    changed mid-pause would be seen)."""
    cost = np.array(target_cost, dtype=np.float64)
    numbers = np.asarray(pause_numbers)
    times = np.asarray(sample_times_ms, dtype=np.float64)
    if cost.size == 0:
        return cost
    shown = [int(k) for k in recent if 0 <= k < cost.shape[1]][-PAUSE_MEMORY:]
    for number in np.unique(numbers[numbers >= 0]):
        frames = numbers == number
        if showing is not None and frames[0] and 0 <= showing < cost.shape[1]:
            pick = int(showing)
            cost[frames, pick] -= PAUSE_KEEP_BONUS - PAUSE_VARIETY_BONUS
        else:
            mean = cost[frames].mean(axis=0)
            if shown:
                seen = (np.abs(times[:, None] - times[shown][None, :]) <= SAME_MOMENT_MS).any(axis=1)
                mean[seen] += PAUSE_REPEAT_COST
            pick = int(np.argmin(mean))
        cost[frames, pick] -= PAUSE_VARIETY_BONUS
        if shown[-1:] != [pick]:
            shown = (shown + [pick])[-PAUSE_MEMORY:]
    return cost


def plan_samples(target_cost: np.ndarray, switch: np.ndarray, appearance: np.ndarray,
                 previous: int | None = None) -> np.ndarray:
    """The sample per frame that minimises target + transition costs (Viterbi).

    target_cost: T x K; switch: T (see `switch_costs`); appearance: K x K distances (0 on
    the diagonal); previous: the sample shown just before the first frame, if any (leaving
    it costs a switch like any other)."""
    cost = np.asarray(target_cost, dtype=np.float64)
    t_count, k = cost.shape
    if t_count == 0 or k == 0:
        return np.zeros(0, dtype=np.int64)
    change = APPEARANCE_WEIGHT * np.asarray(appearance, dtype=np.float64)
    off_diagonal = 1.0 - np.eye(k)
    total = cost[0].copy()
    if previous is not None and 0 <= previous < k:
        total += off_diagonal[previous] * (switch[0] + change[previous])
    back = np.zeros((t_count, k), dtype=np.int64)
    for t in range(1, t_count):
        step = total[:, None] + off_diagonal * (switch[t] + change)  # from i (rows) to j
        back[t] = np.argmin(step, axis=0)
        total = step[back[t], np.arange(k)] + cost[t]
    path = np.empty(t_count, dtype=np.int64)
    path[-1] = int(np.argmin(total))
    for t in range(t_count - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path
