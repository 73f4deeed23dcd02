"""Shot boundaries in the stream: hard cuts and fades through black, from every decoded frame.

Edited video cuts between shots, and a cut is a hard boundary for every piece of per-face
state. The decoder hands each decoded frame (sampled or not) to a `ShotDetector` as a tiny
YUV thumbnail (64 px wide, read from the frame's own planes: no RGB conversion), so the
boundary comes from the full frame sequence even when detect-faces converts only 3 frames
a second. Cost: about 0.15 ms of CPU a 720p frame for the thumbnail plus 0.03 ms for the
decision (`busy_s`; `benchmarks/shots.py` measures it with the detection rates).

A frame t starts a new shot when
- its change from frame t-1 (mean absolute thumbnail difference, grey levels) is at least
  `min_change` and `ratio` times the change around it (the larger of the two changes before
  it and the smaller of the two after it, repeated frames skipped, plus `floor`): a spike,
  not the sustained motion a shaky hand-held camera makes; and it is not a flash (frame
  t+1 back to what t-1 was); or
- the picture goes dark (mean luma below `dark_enter`) after being lit: a fade out; the
  fade in that follows belongs to the new shot.
An intra-coded frame (keyframe) must pass the cut test on the part of its change that no
quality pulse makes (KEYFRAME_NOISE): an encoder's keyframe is not a cut.
Two boundaries are at least `min_shot_ms` apart (PySceneDetect's `min_scene_len`).

PySceneDetect's detectors, fed the same decoded frames (`benchmarks/shots.py`, 30 seeded
edited videos from ../shared/data): ContentDetector finds 48/77 hard cuts (the whole frame's
mean change is small when only the faces change on a still set), AdaptiveDetector 73/77 at
0.9 ms a frame; this test finds 76/77 and 24/24 fades at 0.15 ms, with no false alarm on
the edited videos or on the uncut clips (steady, portrait, shaky hand-held d12).
Dissolves are not detected: their frame-to-frame change looks like motion.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import av
import cv2
import numpy as np

THUMB_WIDTH = 64
"""Thumbnail width in pixels; the height follows the frame's aspect (at least 8)."""
LOOKAHEAD = 4
"""Frames after t the decision for frame t waits for (the decoder holds them back)."""
DUPLICATE_CHANGE = 0.5
"""A change below this (grey levels) is a repeated frame (frame-rate conversion), not
motion: the cut test skips it when it looks for the change around a frame."""
KEYFRAME_NOISE = 4.0
"""Grey levels of a thumbnail cell's change that an intra frame's quality pulse may cause.
An encoder's keyframe is coded afresh at its own quality, so on a still picture at high
crf the whole thumbnail shifts a little (mean change 1.3 against 0.05 around it: a spike),
but no cell by much: the change above 4 levels per cell is 0.04-0.07 there, against 1.6-38
at the cuts of the benchmark's edited videos. An intra frame is a cut only when that part
of its change alone passes `min_change`."""

_PLANAR_420 = ("yuv420p", "yuvj420p")


def _plane(av_frame: av.VideoFrame, index: int, width: int) -> np.ndarray:
    """A plane's pixels as a uint8 view (no copy), cropped to `width` columns."""
    plane = av_frame.planes[index]
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :width]


def _shrink(plane: np.ndarray, size: tuple[int, int], oversample: int) -> np.ndarray:
    """Area-average a plane to `size` (w, h). A large plane is first point-sampled down to
    `oversample` times the size, so only a fraction of its pixels is read (luma 4x, chroma
    2x: 0.15 ms for a 720p frame, against 0.5 ms for an area average of every pixel)."""
    big = (oversample * size[0], oversample * size[1])
    if plane.shape[1] > big[0]:
        plane = cv2.resize(plane, big, interpolation=cv2.INTER_NEAREST)
    return cv2.resize(plane, size, interpolation=cv2.INTER_AREA)


def frame_thumbnail(av_frame: av.VideoFrame) -> np.ndarray:
    """THUMB_WIDTH-wide HxWx3 float32 YUV thumbnail of a decoded frame (0-255 levels).

    8-bit planar 4:2:0 and NV12 frames are read from their planes; any other format is
    reformatted small by libswscale first (slower, still well under a millisecond).
    """
    width, height = av_frame.width, av_frame.height
    size = (THUMB_WIDTH, max(8, int(round(THUMB_WIDTH * height / max(1, width)))))
    name = av_frame.format.name
    if name in _PLANAR_420:
        chroma = (width + 1) // 2
        planes = [_plane(av_frame, 0, width), _plane(av_frame, 1, chroma), _plane(av_frame, 2, chroma)]
    elif name == "nv12":
        uv = np.frombuffer(av_frame.planes[1], np.uint8).reshape(av_frame.planes[1].height, -1)
        uv = uv[:, :2 * ((width + 1) // 2)].reshape(uv.shape[0], -1, 2)
        planes = [_plane(av_frame, 0, width), uv[..., 0], uv[..., 1]]
    else:
        small = av_frame.reformat(width=size[0], height=size[1], format="yuv444p")
        planes = [_plane(small, k, size[0]) for k in range(3)]
    return np.dstack([_shrink(planes[0], size, 4), _shrink(planes[1], size, 2),
                      _shrink(planes[2], size, 2)]).astype(np.float32)


def thumbnail_change(a: np.ndarray, b: np.ndarray, noise: float = 0.0) -> float:
    """Mean absolute difference of two thumbnails in grey levels, chroma at half weight;
    each cell's difference less `noise` grey levels (none below zero)."""
    diff = np.abs(a - b)
    if noise:
        diff = np.maximum(diff - noise, 0.0)
    return float(np.mean(diff[..., 0]) + 0.5 * (np.mean(diff[..., 1]) + np.mean(diff[..., 2])))


def is_intra(av_frame: av.VideoFrame) -> bool:
    """A keyframe or any intra-coded picture (its quality can pulse, see KEYFRAME_NOISE)."""
    return bool(av_frame.key_frame) or int(av_frame.pict_type) == 1  # AV_PICTURE_TYPE_I


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


@dataclass
class ShotDetector:
    """Finds shot boundaries frame by frame; `label` numbers each frame's shot (0, 1, ...).

    boundaries_ms: presentation times (ms) of the first frame of every shot after the first.
    busy_s: CPU seconds (of the decoding thread) spent on thumbnails and decisions: CPU
    time, not wall time, so other threads' load does not inflate it. frames: frames seen.
    """

    rules: ShotRules = ShotRules()
    boundaries_ms: list[float] = field(default_factory=list)
    frames: int = 0
    busy_s: float = 0.0
    _window: deque = field(default_factory=lambda: deque(maxlen=2 * LOOKAHEAD + 1))
    _decided: deque = field(default_factory=deque)
    _dark: bool | None = None
    _first_ms: float | None = None

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
        window.append(_Sample(time_ms, thumb, change, float(np.mean(thumb[..., 0])), sharp))
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
        boundary = self._is_cut(window, position) or dark
        if self._first_ms is None:
            self._first_ms = sample.time_ms
        elif boundary and self._far_from_last(sample.time_ms):
            self.boundaries_ms.append(sample.time_ms)
        self._decided.append(len(self.boundaries_ms))

    def _is_cut(self, window: list[_Sample], position: int) -> bool:
        change = window[position].change
        rules = self.rules
        if position == 0 or change < rules.min_change:
            return False
        sharp = window[position].sharp_change
        if sharp is not None and sharp < rules.min_change:  # an intra frame's quality pulse
            return False
        before = [s.change for s in window[:position] if s.change >= DUPLICATE_CHANGE][-2:]
        after = [s.change for s in window[position + 1:] if s.change >= DUPLICATE_CHANGE][:2]
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
