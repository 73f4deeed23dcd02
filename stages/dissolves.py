"""Dissolves: a gradual transition where one shot fades into the next, found from thumbnails.

In a dissolve every frame is a blend of the two shots, F_t = (1 - a_t) A_t + a_t B_t with a_t
rising from 0 to 1, so its frame-to-frame change is small and looks like motion to the
cut test. Its signature is linearity instead: between a frame s before it and a frame e
after it, every frame lies close to the straight line from F_s to F_e (its projection a_t
on the line rises steadily, and what is off the line is small), while motion, even slow,
makes frames that no blend of the ends gives (a moving edge is a double image in a blend).
So for a candidate middle frame m and half-widths h (4, 6, 9 and 12 frames: dissolves of
0.3-1.0 s at 25 fps) the fit takes s = m - h and e = m + h and asks:
- the ends differ (`min_change` grey levels) and both are lit (a fade through black is the
  fade test's);
- a_m is within `centre_slack` of 0.5 and rising, and a_t never jumps by more than
  `max_step` in one frame (a hard cut is the cut test's);
- the residual off the line (its largest, relative to the ends' change) plus half the
  change in the `STEADY_FRAMES` outside the window (relative too: a window inside a longer
  dissolve, or in continuing motion, keeps changing there) is at most `max_score`.
Among the middle frames within `SUPPRESS` frames of each other the best score wins, and a
dissolve whose window overlaps the last one found is the same dissolve. Motion inside
the shots moves the middle's projection off 0.5, so the middle found is within a few
frames of the true one (the benchmark counts half the dissolve's length plus 2).

Measured on thumbnails of 640x360 edits of ../shared/data: true dissolves of 8-25 frames
score 0.15-0.35; the uncut sample clips' best windows 0.40-0.54 (hand-held, portrait, a
woman leaning in). `benchmarks/shots.py` (12 edited videos, 5 uncut clips, 6 keyframe-heavy
720p ones): the fit finds 14/14 dissolves with no false alarm at about 0.5 ms a frame (the
whole detector). TransNetV2 (`models.transnet`) alone finds 13/14 with 1 false alarm at
55 ms a frame of CPU; as a second opinion on the fit's finds it rejected one true dissolve
and none false. So the fit decides alone; `network_check` stays for a caller that wants
the network's word (`ShotDetector(check=...)`), e.g. on a GPU or on footage unlike ours.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from models.transnet import INPUT_HEIGHT, INPUT_WIDTH, TransNet
from stages.thumbnails import thumbnail_change, thumbnail_rgb

HALF_WIDTHS = (4, 6, 9, 12)
"""Frames either side of a dissolve's middle the fit spans (dissolves of 0.3-1.0 s at 25 fps)."""
STEADY_FRAMES = 3
"""Frames outside the window whose change counts against it."""
REACH = max(HALF_WIDTHS) + STEADY_FRAMES
"""Frames either side of the middle that a fit reads."""
SUPPRESS = 3
"""A middle frame is a dissolve only when no frame this close scores better."""


@dataclass(frozen=True)
class DissolveRules:
    """Thresholds of the dissolve fit (grey levels of the thumbnail change; ratios 0-1)."""

    min_change: float = 5.0
    max_score: float = 0.38
    max_step: float = 0.25
    lit: float = 28.0
    centre_slack: float = 0.15


@dataclass(frozen=True)
class DissolveFit:
    """The best window around one middle frame: half-width (frames), the ends' change (grey
    levels), the largest residual off the blend line and the change outside the window,
    both relative to the ends' change."""

    half_width: int
    change: float
    residual: float
    unsteadiness: float

    @property
    def score(self) -> float:
        return self.residual + 0.5 * self.unsteadiness


def fit_dissolve(thumbs: Sequence[np.ndarray], middle: int, rules: DissolveRules = DissolveRules(),
                 lumas: Sequence[np.ndarray] | None = None) -> DissolveFit | None:
    """The best-scoring window centred on thumbs[middle] that passes the rules, or None.

    thumbs: consecutive frames' thumbnails (HxWx3 float YUV); needs REACH frames either side
    of `middle` for the widest window (narrower windows are tried where fewer exist).
    lumas: their luma planes as contiguous arrays, when the caller keeps them (faster).
    """
    if lumas is None:
        lumas = [np.ascontiguousarray(t[..., 0]) for t in thumbs]
    best = None
    for half in HALF_WIDTHS:
        start, end = middle - half, middle + half
        if start - STEADY_FRAMES < 0 or end + STEADY_FRAMES >= len(thumbs):
            break
        fit = _fit_window(thumbs, lumas, start, end, rules)
        if fit is not None and fit.score <= rules.max_score and (best is None or fit.score < best.score):
            best = fit
    return best


def _fit_window(thumbs: Sequence[np.ndarray], lumas: Sequence[np.ndarray], start: int, end: int,
                rules: DissolveRules) -> DissolveFit | None:
    first, last = thumbs[start], thumbs[end]
    line = lumas[end] - lumas[start]
    if np.abs(line).sum() < 0.5 * rules.min_change * line.size:  # cheap: luma carries most of a change
        return None
    middle = (start + end) // 2
    norm = float(np.vdot(line, line)) + 1e-6
    offset = float(np.vdot(lumas[start], line))

    def along(t: int) -> float:  # projection of frame t on the line, 0 at `first`, 1 at `last` (luma)
        return (float(np.vdot(lumas[t], line)) - offset) / norm

    centre = along(middle)
    if not (abs(centre - 0.5) <= rules.centre_slack and along(middle - 1) < centre):  # cheap: most stop here
        return None
    change = thumbnail_change(first, last)
    if change < rules.min_change or min(first[..., 0].mean(), last[..., 0].mean()) < rules.lit:
        return None
    unsteady = max(thumbnail_change(thumbs[start - STEADY_FRAMES], first),
                   thumbnail_change(thumbs[end + STEADY_FRAMES], last)) / change
    if 0.5 * unsteady > rules.max_score:
        return None
    weights = [along(t) for t in range(start, end + 1)]
    if max(np.diff(weights)) > rules.max_step:
        return None
    step = last - first
    residual = max(thumbnail_change(thumbs[t], first + a * step) for t, a in zip(range(start + 1, end), weights[1:-1]))
    return DissolveFit(end - middle, change, residual / change, unsteady)


def network_check(network: TransNet, threshold: float = 0.5) -> Callable[[list[np.ndarray], int], bool]:
    """A second opinion for `ShotDetector.check`: the network's transition probability,
    over the thumbnails around a found dissolve, peaks at `threshold` or more within the
    widest dissolve's half-width of its middle."""
    def check(thumbs: list[np.ndarray], middle: int) -> bool:
        frames = np.stack([thumbnail_rgb(t, INPUT_WIDTH, INPUT_HEIGHT) for t in thumbs])
        near = network.transition_probabilities(frames)[max(0, middle - max(HALF_WIDTHS)):middle + max(HALF_WIDTHS) + 1]
        return bool(near.max() >= threshold)
    return check
