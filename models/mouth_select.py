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
"""Cost (1 ~ visible) of showing a closed mouth again, per remembered pause that showed it:
another within this of it takes its place (warped onto the same target lips, a closed
mouth's small misfit in width or pose shows less than the same mouth seen again)."""
SAME_MOMENT_MS = 400.0
"""Samples filmed this close together (ms) count as the same closed mouth."""
PAUSE_MEMORY = 8
"""How many memorable pauses back a closed mouth counts as seen. d10 + sun.wav has nine
pauses of 200-600 ms; with three remembered and one repeat costing 1 they all showed her
one best closed mouth, which blind judges matched across pairs."""
MEMORABLE_PAUSE_MS = 160.0
"""A pause shorter than this (ms) is not remembered: its mouth is seen for a blink (2-3
frames). Each 2-frame pause pushed a long pause's mouth out of the memory, so
d20 + yongen.wav's two long pauses showed the same one."""
PAUSE_VARIETY_BONUS = 1.0
"""Cost taken off the closed mouth chosen for a pause, so the plan keeps it."""
USE_COST = 0.05
"""Cost of a speech frame showing a sample, per earlier one of the track that showed it
(`spread_uses`): a sample already seen for 20 frames (0.8 s) costs 1 (~ visible) more per
frame than an unseen one. Pauses are not counted: each holds one closed mouth for long,
and has its own variety (`vary_pauses`)."""
SAME_LOOK_MS = 400.0
"""Time scale (ms) over which two samples of a track show the same mouth to a viewer
(`look_alike`): 0.37 of a use at this distance, 0.89 at a third of it. At 600 ms the
plan switched more on d20, whose samples all lie close together, and his mouth changed
more from frame to frame than the self-reenactment test allows (11.25 against 11.22)."""
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


def look_alike(sample_times_ms: np.ndarray) -> np.ndarray:
    """K x K: how much seeing one sample counts as seeing another, exp(-(dt / SAME_LOOK_MS)^2)
    for samples filmed dt ms apart (1 on the diagonal). A mouth filmed a moment later shows
    the same lips, teeth and highlights, and once warped onto the same target lips it reads
    as the same picture; what changed between the two, the opening, the warp takes away."""
    times = np.asarray(sample_times_ms, dtype=np.float64)
    return np.exp(-((times[:, None] - times[None, :]) / SAME_LOOK_MS) ** 2)


def vary_pauses(target_cost: np.ndarray, pause_numbers: np.ndarray, sample_times_ms: np.ndarray,
                recent: Sequence[int] = (), showing: int | None = None, memorable_frames: int = 0) -> np.ndarray:
    """The target costs with each pause given another closed mouth than the last few
    pauses, where the bank has one nearly as good: a real person's lips never close the
    same way twice, and one sample held in every pause showed the same lips with the same
    highlight each time, a blind test's giveaway (d20 + yongen.wav, 8 of 12).

    target_cost: T x K; pause_numbers: per frame, which pause it is in (-1 in speech);
    sample_times_ms: K, when each sample was filmed; recent: the samples the pauses before
    showed, oldest first. Pause by pause, every sample pays PAUSE_REPEAT_COST on the
    pause's frames per pause of the last PAUSE_MEMORY that showed it or a sample filmed
    within SAME_MOMENT_MS of it (neighbouring frames are the same mouth), and the best
    one then costs PAUSE_VARIETY_BONUS less there so the plan takes it. Only pauses of at least
    `memorable_frames` frames (`MEMORABLE_PAUSE_MS`) enter the memory. showing: the sample
    the pause the plan starts in already shows, if it starts in one; that pause keeps it
    (a mouth changed mid-pause would be seen)."""
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
            if shown:
                seen = (np.abs(times[:, None] - times[shown][None, :]) <= SAME_MOMENT_MS).sum(axis=1)
                cost[frames] += PAUSE_REPEAT_COST * seen
            pick = int(np.argmin(cost[frames].mean(axis=0)))
        cost[frames, pick] -= PAUSE_VARIETY_BONUS
        if frames.sum() >= memorable_frames:
            shown = (shown + [pick])[-PAUSE_MEMORY:]
    return cost


def spread_uses(target_cost: np.ndarray, switch: np.ndarray, appearance: np.ndarray,
                previous: int | None = None, speech: np.ndarray | None = None,
                shown_before: np.ndarray | None = None, alike: np.ndarray | None = None) -> np.ndarray:
    """`plan_samples` with each speech frame's sample priced by how often the viewer has
    already seen it: a real person's mouth never shows the same texture twice, and the same
    distinctive mouth seen at several moments read as pasted in blind tests (d10's pursed
    two-teeth mouth, a tongue highlight on 27 of the quick start's frames).

    Each speech frame showing sample k costs USE_COST per earlier speech frame that showed
    k (`shown_before`: the track's recent past, then this plan), so the plan minimises
    `plan_cost` plus USE_COST * sum_k uses_k (uses_k - 1) / 2: the expected number of
    pairs among a viewer's glimpses of the range that show the same mouth. That price
    depends on the path so far, so the Viterbi pass carries each state's best path's
    counts and prices by them: exact along the paths it keeps, not a global optimum, so
    the plain plan is scored too and the cheaper of the two wins (spreading never makes
    the plan worse by its own measure). speech: per frame whether it counts (the engine
    counts speech frames, closures included: pauses have their own variety,
    `vary_pauses`); default all. alike: K x K, how much a use of one sample counts as a
    use of another (1 on the diagonal, `look_alike`): samples filmed a moment apart show
    the same lips and teeth, and each counted alone, d10's clenched teeth, held 0.7 s in
    her video and sampled three times, showed on 97 of 448 frames; default the identity."""
    cost = np.asarray(target_cost, dtype=np.float64)
    t_count, k = cost.shape
    counted = np.ones(t_count, bool) if speech is None else np.asarray(speech, bool)
    before = np.zeros(k) if shown_before is None else np.asarray(shown_before, dtype=np.float64)
    same = np.eye(k) if alike is None else np.asarray(alike, dtype=np.float64)
    plain = plan_samples(cost, switch, appearance, previous)
    if t_count == 0 or k == 0 or not counted.any():
        return plain
    spread, spread_total = _viterbi(cost, switch, appearance, previous, counted, before, same)

    def seen(p: np.ndarray) -> float:
        uses = np.bincount(p[counted], minlength=k).astype(np.float64)
        return float(uses @ same @ before + (uses @ same @ uses - uses.sum()) / 2)

    plain_total = plan_cost(plain, cost, switch, appearance, previous) + USE_COST * seen(plain)
    return spread if spread_total < plain_total else plain


def plan_cost(path: np.ndarray, target_cost: np.ndarray, switch: np.ndarray, appearance: np.ndarray,
              previous: int | None = None) -> float:
    """What `plan_samples` minimises for `path`: its target costs plus, at each change of
    sample, the switch cost and the weighted appearance distance."""
    path = np.asarray(path, dtype=np.int64)
    if not len(path):
        return 0.0
    first = previous if previous is not None and 0 <= previous < np.shape(target_cost)[1] else path[0]
    before = np.r_[first, path[:-1]]
    changed = before != path
    change = np.asarray(switch, dtype=np.float64)[:len(path)] + \
        APPEARANCE_WEIGHT * np.asarray(appearance, dtype=np.float64)[before, path]
    return float(np.asarray(target_cost)[np.arange(len(path)), path].sum() + change[changed].sum())


def plan_samples(target_cost: np.ndarray, switch: np.ndarray, appearance: np.ndarray,
                 previous: int | None = None) -> np.ndarray:
    """The sample per frame that minimises target + transition costs (Viterbi).

    target_cost: T x K; switch: T (see `switch_costs`); appearance: K x K distances (0 on
    the diagonal); previous: the sample shown just before the first frame, if any (leaving
    it costs a switch like any other)."""
    return _viterbi(np.asarray(target_cost, dtype=np.float64), switch, appearance, previous)[0]


def _viterbi(cost: np.ndarray, switch: np.ndarray, appearance: np.ndarray, previous: int | None,
             counted: np.ndarray | None = None, before: np.ndarray | None = None,
             alike: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """The Viterbi recursion of `plan_samples` and its total; with `counted` (per frame)
    each counted frame of sample j also costs USE_COST per earlier counted frame of j on
    the best path into its state (`before`: uses before the first frame), an earlier
    frame of sample m counting alike[m, j] (default the identity), see `spread_uses`."""
    t_count, k = cost.shape
    if t_count == 0 or k == 0:
        return np.zeros(0, dtype=np.int64), 0.0
    change = APPEARANCE_WEIGHT * np.asarray(appearance, dtype=np.float64)
    off_diagonal = 1.0 - np.eye(k)
    states = np.arange(k)
    total = cost[0].copy()
    if previous is not None and 0 <= previous < k:
        total += off_diagonal[previous] * (switch[0] + change[previous])
    same = np.eye(k) if alike is None else np.asarray(alike, dtype=np.float64)
    seen = None  # row i: how often each sample counts as seen on the best path into state i
    if counted is not None:
        seen = np.tile((np.zeros(k) if before is None else before) @ same, (k, 1))
        if counted[0]:
            total += USE_COST * seen[states, states]
            seen += same  # state j's path now shows j once
    back = np.zeros((t_count, k), dtype=np.int64)
    for t in range(1, t_count):
        step = total[:, None] + off_diagonal * (switch[t] + change)  # from i (rows) to j
        if seen is not None and counted[t]:
            step += USE_COST * seen
        back[t] = np.argmin(step, axis=0)
        total = step[back[t], states] + cost[t]
        if seen is not None:
            seen = seen[back[t]]
            if counted[t]:
                seen += same
    path = np.empty(t_count, dtype=np.int64)
    path[-1] = int(np.argmin(total))
    for t in range(t_count - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path, float(total[path[-1]])
