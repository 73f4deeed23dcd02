"""Shot boundaries in the stream: hard cuts, fades through black and dissolves, from every decoded frame.

Edited video cuts between shots, and a cut is a hard boundary for every piece of per-face
state. The decoder hands each decoded frame (sampled or not) to a `ShotDetector` as a tiny
YUV thumbnail (64 px wide, read from the frame's own planes: no RGB conversion), so the
boundary comes from the full frame sequence even when detect-faces converts only 3 frames
a second. Cost: about 0.15 ms of CPU a 720p frame for the thumbnail plus the decisions
(`busy_s`; `benchmarks/shots.py` measures it with the detection rates). The decoder holds
LOOKAHEAD (18) frames back, so a dissolve's middle is decided once its end is seen.

A frame t starts a new shot when
- its change from frame t-1 (mean absolute thumbnail difference, grey levels) is at least
  `min_change` and `ratio` times the change around it (the larger of the two changes before
  it and the smaller of the two after it, repeated frames skipped, looked for within
  `min_shot_ms` of t where no other boundary can be, plus `floor`): a spike, not the
  sustained motion a shaky hand-held camera makes; and it is not a flash (frame t+1 back
  to what t-1 was); or
- the picture goes dark (mean luma below `dark_enter`) after being lit: a fade out; the
  fade in that follows belongs to the new shot.
An intra-coded frame (keyframe) must pass the cut test on the part of its change that no
quality pulse makes (KEYFRAME_NOISE): an encoder's keyframe is not a cut.
Two boundaries are at least `min_shot_ms` apart (PySceneDetect's `min_scene_len`).

Dissolves (a gradual blend of two shots) are found by `stages.dissolves` on the same
thumbnails; the boundary is the dissolve's middle.

`benchmarks/shots.py` (12 seeded edited videos from ../shared/data, the uncut sample clips
and 720p keyframe-heavy uncut clips): 21/21 hard cuts, 8/8 fades, 14/14 dissolves of
0.3-1.0 s, 3/7 jump cuts, no false alarm, about 0.5 ms of CPU a frame. PySceneDetect's
AdaptiveDetector finds 21/21 cuts and 1/14 dissolves at 2 ms; TransNetV2 13/14 dissolves
with a false alarm at 55 ms.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np

from stages.dissolves import REACH, SUPPRESS, DissolveFit, DissolveRules, fit_dissolve
from stages.thumbnails import KEYFRAME_NOISE, frame_thumbnail, is_intra, thumbnail_change

LOOKAHEAD = REACH + SUPPRESS
"""Frames after t the decision for frame t waits for (the decoder holds them back): a
dissolve's middle is known once its end and the steady frames after it are seen (18)."""

DissolveCheck = Callable[[list[np.ndarray], int], bool]
"""A second opinion on a dissolve: (thumbnails around it, index of its middle) -> real?"""
DUPLICATE_CHANGE = 0.5
"""A change below this (grey levels) is a repeated frame (frame-rate conversion), not
motion: the cut test skips it when it looks for the change around a frame."""
@dataclass(frozen=True)
class ShotRules:
    """Thresholds of the cut test (grey levels of the thumbnail change, 0-255)."""

    ratio: float = 4.0
    floor: float = 0.3
    min_change: float = 1.0
    min_shot_ms: float = 400.0
    dark_enter: float = 20.0
    dark_leave: float = 28.0


@dataclass
class _Sample:
    time_ms: float
    thumb: np.ndarray
    change: float
    luma: float
    sharp_change: float | None = None
    """An intra frame's change above KEYFRAME_NOISE per cell (None for other frames)."""
    luma_plane: np.ndarray | None = None
    """The thumbnail's luma, contiguous (the dissolve fit's projections read it)."""
    dissolve: DissolveFit | None = None
    """The dissolve fit with this frame as its middle, once the frames after it are seen."""
    index: int = 0
    """The frame's number in the stream (0, 1, ...)."""


@dataclass
class ShotDetector:
    """Finds shot boundaries frame by frame; `label` numbers each frame's shot (0, 1, ...).

    boundaries_ms: presentation times (ms) of the first frame of every shot after the first;
    kinds: what each boundary is (cut, fade or dissolve; a dissolve's first frame is its middle).
    check: a second opinion asked on every dissolve the fit finds (`models.transnet`), or None.
    busy_s: CPU seconds (of the decoding thread) spent on thumbnails and decisions: CPU
    time, not wall time, so other threads' load does not inflate it. frames: frames seen.
    """

    rules: ShotRules = ShotRules()
    dissolve_rules: DissolveRules = DissolveRules()
    check: DissolveCheck | None = None
    boundaries_ms: list[float] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    dissolves_rejected: int = 0
    frames: int = 0
    busy_s: float = 0.0
    _window: deque = field(default_factory=lambda: deque(maxlen=2 * LOOKAHEAD + 1))
    _decided: deque = field(default_factory=deque)
    _dark: bool | None = None
    _first_ms: float | None = None
    _last_dissolve: tuple[int, int] | None = None  # (middle frame, half-width) of the last one found

    @property
    def ms_per_frame(self) -> float:
        return 1000 * self.busy_s / self.frames if self.frames else 0.0

    def label(self, entries: Iterable[tuple]) -> Iterator[tuple]:
        """Decoder entries (index, pts, time_base, av_frame) with their shot index appended,
        held back LOOKAHEAD frames so the index is final when the entry leaves."""
        pending: deque = deque()
        for entry in entries:
            started = time.thread_time()
            self.push(frame_thumbnail(entry[3]), float(entry[1] * entry[2] * 1000), is_intra(entry[3]))
            self.busy_s += time.thread_time() - started
            pending.append(entry)
            while self._decided:
                yield (*pending.popleft(), self._decided.popleft())
        self.finish()
        while self._decided:
            yield (*pending.popleft(), self._decided.popleft())

    def push(self, thumb: np.ndarray, time_ms: float, intra: bool = False) -> None:
        """Add the next frame (intra: an intra-coded picture); decides the frame LOOKAHEAD frames back."""
        window = self._window
        change = thumbnail_change(thumb, window[-1].thumb) if window else 0.0
        sharp = thumbnail_change(thumb, window[-1].thumb, KEYFRAME_NOISE) if window and intra else None
        luma = np.ascontiguousarray(thumb[..., 0])
        window.append(_Sample(time_ms, thumb, change, float(luma.mean()), sharp, luma, index=self.frames))
        if len(window) > REACH:
            window[-1 - REACH].dissolve = fit_dissolve([s.thumb for s in window], len(window) - 1 - REACH,
                                                       self.dissolve_rules, [s.luma_plane for s in window])
        self.frames += 1
        if self.frames > LOOKAHEAD:
            self._decide(len(window) - 1 - LOOKAHEAD)

    def finish(self) -> None:
        """End of stream: decide the frames still waiting for their lookahead."""
        for position in range(max(0, len(self._window) - min(LOOKAHEAD, self.frames)), len(self._window)):
            self._decide(position)

    def shots(self, duration_ms: float) -> list[dict]:
        """[{start_ms, end_ms}] for the whole video, in order (integer ms)."""
        edges = [0.0, *self.boundaries_ms, max(duration_ms, self.boundaries_ms[-1] if self.boundaries_ms else 0.0)]
        return [{"start_ms": int(round(a)), "end_ms": int(round(b))} for a, b in zip(edges, edges[1:])]

    def _decide(self, position: int) -> None:
        window = list(self._window)
        sample = window[position]
        dark = self._goes_dark(sample)
        kind = "fade" if dark else "cut" if self._is_cut(window, position) else None
        if self._first_ms is None:
            self._first_ms = sample.time_ms
        elif self._far_from_last(sample.time_ms):
            if kind is None and self._is_dissolve(window, position):
                kind = "dissolve"
            if kind is not None:
                self.boundaries_ms.append(sample.time_ms)
                self.kinds.append(kind)
        self._decided.append(len(self.boundaries_ms))

    def _is_dissolve(self, window: list[_Sample], position: int) -> bool:
        """The frame is the middle of the best dissolve fit within SUPPRESS frames, and the
        second opinion (when there is one) agrees."""
        sample = window[position]
        fit = sample.dissolve
        if fit is None:
            return False
        near = window[max(0, position - SUPPRESS):position + SUPPRESS + 1]
        if any(s.dissolve is not None and s.dissolve.score < fit.score for s in near):
            return False
        last = self._last_dissolve
        if last is not None and sample.index - last[0] <= last[1] + fit.half_width:  # the same dissolve
            return False
        self._last_dissolve = (sample.index, fit.half_width)
        if self.check is not None and not self.check([s.thumb for s in window], position):
            self.dissolves_rejected += 1
            return False
        return True

    def _is_cut(self, window: list[_Sample], position: int) -> bool:
        change = window[position].change
        rules = self.rules
        if position == 0 or change < rules.min_change:
            return False
        sharp = window[position].sharp_change
        if sharp is not None and sharp < rules.min_change:  # an intra frame's quality pulse
            return False
        # the change around t is looked for within min_shot_ms of it: no other boundary can be
        # that close, while a change farther off may be the next shot's cut (a still shot of
        # 12 frames between two others hid both its cuts when the whole window was searched)
        time_ms = window[position].time_ms
        before = [s.change for s in window[:position]
                  if s.change >= DUPLICATE_CHANGE and time_ms - s.time_ms < rules.min_shot_ms][-2:]
        after = [s.change for s in window[position + 1:]
                 if s.change >= DUPLICATE_CHANGE and s.time_ms - time_ms < rules.min_shot_ms][:2]
        around = max([*before, min(after) if after else 0.0])
        if change < rules.ratio * (around + rules.floor):
            return False
        if position + 1 < len(window):  # a flash: the next frame is back to the one before
            back = thumbnail_change(window[position + 1].thumb, window[position - 1].thumb)
            if back < 0.5 * change:
                return False
        return True

    def _goes_dark(self, sample: _Sample) -> bool:
        """True on the first dark frame after lit ones (hysteresis between the two levels)."""
        was_dark = self._dark
        if sample.luma < self.rules.dark_enter:
            self._dark = True
        elif sample.luma > self.rules.dark_leave or was_dark is None:
            self._dark = False
        return was_dark is False and self._dark is True

    def _far_from_last(self, time_ms: float) -> bool:
        last = self.boundaries_ms[-1] if self.boundaries_ms else self._first_ms
        return time_ms - last >= self.rules.min_shot_ms
