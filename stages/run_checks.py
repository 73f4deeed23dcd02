"""Which samples of a followed face are still its person, from a few identity checks.

A face followed from sample to sample keeps the name its first embedding gave it (the run's
start). A dissolve can slide the run onto another person without the picture ever jumping,
so each sample kept from the run needs its identity confirmed. Embedding each costs ~100 ms;
along a run the identity changes rarely and, in a dissolve, once: so checking one sample
every `span_ms` and bisecting between two checks that disagree gives every sample the
answer its own check would give, with about (run length / span) + log2(samples) embeddings
instead of one per sample.

What it assumes: the identity does not change twice within `span_ms` (then every sample
gets exactly its own check's answer, given checks that are consistent). A person
dissolving away and back within `span_ms` is the case it can miss.

With the samples' pictures (`drift`), a stretch also ends where a sample's picture has
drifted `max_drift` from the stretch's first picture, and the time span can be longer: a
face that keeps looking like the one its check verified is that person still (a dissolve
onto someone else drifts the picture; a talking head in a steady shot hardly does), so a
steady run costs one check every few seconds instead of one a second. What that assumes:
a sample whose picture lies within `max_drift` of a verified one is the same person.
"""
from __future__ import annotations

from typing import Callable, Sequence

CHECK_SPAN_MS = 1000.0
"""Longest stretch of a run (ms of sample time) whose samples share one check's verdict
when the checks on both sides agree: two dissolves (~0.5 s each) and the other person
shown between them do not fit in it."""


Drift = Callable[[int, int], float]
"""drift(i, j): how far sample i's picture is from sample j's (j = -1: the run's start),
in the caller's unit (e.g. mean grey levels of a face thumbnail)."""


def checkpoints(times: Sequence[float], start_ms: float, span_ms: float = CHECK_SPAN_MS,
                drift: Drift | None = None, max_drift: float = float("inf")) -> list[int]:
    """Indices of the samples (sorted by time) to check: the last sample within `span_ms`
    of the previous checkpoint (or the run's start), or the next one where none is; always
    the last sample. So every sample between two checkpoints lies within `span_ms` of the
    earlier one. With `drift`, a sample is also a checkpoint when the next one's picture
    drifted more than `max_drift` from the previous checkpoint's (or the start's), and the
    last sample only when it is one by these rules: every sample then looks like, and lies
    within `span_ms` of, the checkpoint (or start) before it, whose verdict the samples
    after the last checkpoint take."""
    picked: list[int] = []
    last, reference = start_ms, -1
    for i, t in enumerate(times):
        if drift is not None and reference == i - 1 and (t - last > span_ms or drift(i, reference) > max_drift):
            picked.append(i)  # unlike even the checkpoint just before it: checked on its own
            last, reference = t, i
            continue
        following = i + 1 if i + 1 < len(times) else None
        if following is None and drift is not None:
            break  # the samples since the last checkpoint look like it: they share its verdict
        if following is None or times[following] - last > span_ms or (
                drift is not None and drift(following, reference) > max_drift):
            picked.append(i)
            last, reference = t, i
    return picked


def run_verdicts(times: Sequence[float], start_ms: float, check: Callable[[int], bool],
                 span_ms: float = CHECK_SPAN_MS, drift: Drift | None = None,
                 max_drift: float = float("inf")) -> list[bool]:
    """Whether each sample of a run (times in ms, ascending, all after `start_ms`, where
    the run's face was named by its embedding: a pass) is its person.

    check(i) embeds sample i and says whether it is the person; it is called for each
    checkpoint and, between two neighbouring verdicts that differ, by bisection for the
    sample where the identity changed. Samples between two agreeing verdicts take that
    verdict unchecked. drift, max_drift: see `checkpoints`."""
    if any(b < a for a, b in zip(times, times[1:])):
        raise ValueError("run_verdicts needs the samples sorted by time")
    known: dict[int, bool] = {}

    def verdict(i: int) -> bool:
        if i < 0:
            return True  # the run's start: named by its own embedding
        if i not in known:
            known[i] = bool(check(i))
        return known[i]

    verdicts = [True] * len(times)
    previous = -1
    for point in checkpoints(times, start_ms, span_ms, drift, max_drift):
        lo, hi = previous, point
        first, last = verdict(lo), verdict(hi)
        while first != last and hi - lo > 1:  # the change lies in (lo, hi]: bisect for it
            mid = (lo + hi) // 2
            if verdict(mid) == first:
                lo = mid
            else:
                hi = mid
        for i in range(previous + 1, point + 1):
            verdicts[i] = known[i] if i in known else (first if i <= lo else last)
        previous = point
    for i in range(previous + 1, len(times)):  # after the last checkpoint (with `drift` only)
        verdicts[i] = verdict(previous)
    return verdicts
