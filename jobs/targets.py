"""Resolving the requested faces: which detected face each request's bbox means.

The bbox is matched at its start time, or, when no face is there, a little before or after;
those nearby frames must be in the same shot (`stages.shots`), since across a cut the same
place may hold another person.
"""
from __future__ import annotations

import uuid
from typing import Callable, Iterator

import av
import numpy as np

from jobs.schema import FaceSpec
from models.faces.base import FaceBackend
from models.faces.face import Face, iou, xywh_to_xyxy
from stages.colour import frame_to_rgb
from stages.decode import open_media, rotate_upright
from stages.follow import Target
from stages.shots import ShotDetector
from stream.errors import InputError

_PROBE_OFFSETS_MS = (0, 200, -200, 500, -500)
_SAME_FACE_IOU = 0.5
"""Faces found at two probe times that overlap this much are one person, listed once in an error."""
_SHOT_LEAD_MS = 1000.0
"""Decoded before the probes, so the shot detector's first boundary can be one of theirs."""


Found = tuple[float, np.ndarray]
"""(time_ms, RGB image) of a decoded frame."""


def frame_at(path: str, time_ms: float) -> Found | None:
    """(time_ms, RGB image) of the frame shown at `time_ms`, by seeking: past the end, the
    last frame (what a player shows there); None only when no frame decodes."""
    with FrameReader(path) as reader:
        return reader(time_ms)


class FrameReader:
    """`frame_at` for several times of one video through one open decoder, for probes asked
    in time order (a job's requested faces, sorted by start).

    A time at or after the last one decodes on from where that stopped when no keyframe
    lies in between (a seek would start decoding from a keyframe at or before that point,
    so decoding on costs less); otherwise it seeks as `frame_at` does. A second demuxer
    finds the keyframe a seek would land on (one packet read, no decoding). The frames are
    `frame_at`'s; no probe costs more than its seek. Auto mode's ~10 ranges of a 10 s video
    whose only keyframe is its first cost one decode of the video instead of ten of its
    first halves. Close it (or use `with`)."""

    def __init__(self, path: str) -> None:
        self.path = str(path)
        self._container = open_media(self.path)
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._peek: av.container.InputContainer | None = None
        self._frames: Iterator[tuple[float, av.VideoFrame]] | None = None
        self._held: tuple[float, av.VideoFrame] | None = None  # the frame the last probe returned
        self._ahead: tuple[float, av.VideoFrame] | None = None  # decoded past it, not returned yet

    def __enter__(self) -> "FrameReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()
        if self._peek is not None:
            self._peek.close()

    def __call__(self, time_ms: float) -> Found | None:
        """The frame shown at `time_ms` (see `frame_at`)."""
        target = max(0.0, time_ms) / 1000
        if not self._continues_to(target):
            self._seek(target)
        chosen = self._held
        while True:
            item = self._ahead or next(self._frames, None)
            self._ahead = None
            if item is None:
                break
            if item[0] > target + 1e-6 and chosen is not None:
                self._ahead = item
                break
            chosen = item
            if item[0] >= target - 1e-6:
                break
        self._held = chosen
        if chosen is None:
            return None
        frame = chosen[1]
        image = rotate_upright(frame_to_rgb(frame), int(round(frame.rotation or 0)) % 360)
        return float(frame.pts * self._stream.time_base * 1000), image

    def _seek(self, target: float) -> None:
        """Decode from the keyframe at or before `target` (s) next."""
        self._container.seek(int(target / self._stream.time_base), stream=self._stream, backward=True)
        self._frames, self._held, self._ahead = self._decoded(), None, None

    def _decoded(self) -> Iterator[tuple[float, av.VideoFrame]]:
        for frame in self._container.decode(self._stream):
            if frame.pts is not None:
                yield float(frame.pts * self._stream.time_base), frame

    def _continues_to(self, target: float) -> bool:
        """Whether decoding on from the current position reaches `target` (s) no later than a seek would."""
        if self._frames is None or self._held is None or target < self._held[0] - 1e-6:
            return False
        position = (self._ahead or self._held)[0]
        return target <= position or self._keyframe_before(target) <= position

    def _keyframe_before(self, target: float) -> float:
        """Time (s) of the keyframe a seek to `target` lands on (+inf when unknown)."""
        if self._peek is None:
            self._peek = open_media(self.path)
        stream = self._peek.streams.video[0]
        self._peek.seek(int(target / stream.time_base), stream=stream, backward=True)
        for packet in self._peek.demux(stream):
            if packet.pts is not None:
                return float(packet.pts * stream.time_base)
        return float("inf")


def shot_span(path: str, time_ms: float, reach_ms: float) -> tuple[float, float]:
    """[start, end) ms of the shot holding `time_ms`, as far as `reach_ms` either side shows."""
    detector = ShotDetector()
    with open_media(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        first_ms = max(0.0, time_ms - reach_ms - _SHOT_LEAD_MS)
        container.seek(int(first_ms / 1000 / stream.time_base), stream=stream, backward=True)

        def entries():
            for index, frame in enumerate(container.decode(stream)):
                if frame.pts is None:
                    continue
                if frame.pts * stream.time_base * 1000 > time_ms + reach_ms:
                    return
                yield index, frame.pts, stream.time_base, frame

        for _ in detector.label(entries()):
            pass
    start = max((b for b in detector.boundaries_ms if b <= time_ms), default=float("-inf"))
    end = min((b for b in detector.boundaries_ms if b > time_ms), default=float("inf"))
    return start, end


def _best_match(spec_box: np.ndarray, faces: list[Face]) -> Face | None:
    """The detection the caller's box means: best IoU, or the one whose centre it contains."""
    scored = [(iou(spec_box, f.bbox), f) for f in faces]
    scored = [(s, f) for s, f in scored if s >= 0.3 or (
        spec_box[0] <= f.center[0] <= spec_box[2] and spec_box[1] <= f.center[1] <= spec_box[3])]
    return max(scored, key=lambda pair: pair[0])[1] if scored else None


def resolve_targets(video: str, specs: list[FaceSpec], backend: FaceBackend, duration_ms: float,
                    frames: Callable[[float], Found | None] | None = None) -> list[Target]:
    """Match each requested bbox against the faces detected near its start time.

    The targets of one call share one job token (see `Target`). frames: the frame shown at
    a time (ms) of `video`, `frame_at` by default; a job passes its `FrameReader`."""
    frames = frames or (lambda time_ms: frame_at(video, time_ms))
    job = uuid.uuid4().hex[:12]
    targets = []
    for index, spec in enumerate(specs):
        where = f"faces[{index}] ({spec.character_id})"
        if spec.start_time_ms >= duration_ms:
            raise InputError(f"{where}: start_time_ms {spec.start_time_ms:g} is outside the video "
                             f"(duration {duration_ms:.0f} ms)")
        box = xywh_to_xyxy(spec.bbox)
        seen: list[Face] = []
        probed: set[float] = set()
        match = None
        span = None
        for offset in _PROBE_OFFSETS_MS:
            probe_ms = min(max(spec.start_time_ms + offset, 0.0), duration_ms - 1)
            if probe_ms in probed:  # clamped at the video's start or end: the same frame again
                continue
            probed.add(probe_ms)
            if offset:
                span = span or shot_span(video, spec.start_time_ms, max(map(abs, _PROBE_OFFSETS_MS)))
                if not span[0] <= probe_ms < span[1]:
                    continue
            found = frames(probe_ms)
            if found is None:
                continue
            faces = backend.detect(found[1], with_embedding=True)
            seen.extend(f for f in faces if all(iou(f.bbox, other.bbox) < _SAME_FACE_IOU for other in seen))
            match = _best_match(box, faces)
            if match is not None:
                break
        if match is None:
            listed = ", ".join(str([int(v) for v in f.xywh]) for f in seen[:6]) or "none"
            raise InputError(f"{where}: bbox {[int(v) for v in spec.bbox]} matches no face detected near "
                             f"{spec.start_time_ms:.0f} ms (faces found there: {listed}); "
                             "use a bbox from /detect-faces at that time")
        targets.append(Target(index, spec.character_id, spec.start_time_ms, spec.end_time_ms, match, job))
    return targets
