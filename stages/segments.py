"""Segments: per requested face, the maximal runs of one state, with flicker merged.

PlanStage holds a short look-ahead window of frames so it can decide, per face and frame:

- the final state: a run of other states shorter than `min_run_ms` (200 ms by default)
  that returns to the previous state is flicker and is merged into it (a synced face
  that is lost for 3 frames stays synced, rendered from its last known landmarks);
- the strength of the effect: entering a synced run fades in, and leaving one fades out,
  over `fade_frames` (4) frames, so the mouth never pops.

A shot cut (frame.notes["shot"], see `stages.shots`) is a hard boundary: segments split
there, flicker is never merged across it (a face lost after a cut is not rendered from its
landmarks before it), and no fade crosses it. A synced run that starts at a cut or at the
video's first frame starts at full strength, and one that lasts up to a cut or to the end
of the video ends at full strength: the whole picture changes at a cut, and before the
first frame or after the last there is no original mouth to fade from or back to, so
there is no pop to hide.

SegmentBuilder turns the final per-frame states into the response's segments.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from models.faces.face import Face
from stages.follow import SYNCED, Target, TargetObservation
from stream.frame import Frame
from stream.stage import Stage


@dataclass
class RenderItem:
    """A face to re-animate in one frame, at `strength` in (0, 1]."""

    target: Target
    face: Face
    strength: float


@dataclass
class _Segment:
    state: str
    start_ms: float
    end_ms: float
    shot: int = 0
    frames: int = 0
    quality_sum: float = 0.0
    quality_count: int = 0
    # Running sums, not per-frame lists: a segment's memory does not grow with its length.
    box_sum: np.ndarray = field(default_factory=lambda: np.zeros(4))  # [x, y, w, h] pixels
    box_count: int = 0
    pose_sum: np.ndarray = field(default_factory=lambda: np.zeros(3))  # (pitch, yaw, roll) degrees
    pose_count: int = 0

    def add_face(self, face: Face) -> None:
        self.box_sum += face.xywh
        self.box_count += 1
        if face.pose is not None:
            self.pose_sum += face.pose
            self.pose_count += 1

    def as_json(self) -> dict:
        synced = self.state == SYNCED
        box = self.box_sum / self.box_count if self.box_count else None
        pose = self.pose_sum / self.pose_count if self.pose_count else None
        return {
            "start_ms": int(round(self.start_ms)),
            "end_ms": int(round(self.end_ms)),
            "synced": synced,
            "skip_reason": None if synced else self.state,
            "avg_quality": round(self.quality_sum / self.quality_count, 3) if synced and self.quality_count else None,
            "avg_bbox": None if box is None else [int(round(v)) for v in box],
            "avg_head_pose": None if pose is None else [round(float(v), 2) for v in pose],
        }


class SegmentBuilder:
    """Accumulates one face's final per-frame states into segments (bounded memory)."""

    def __init__(self) -> None:
        self.segments: list[_Segment] = []

    def add(self, state: str, start_ms: float, end_ms: float, face: Face | None, quality: float | None,
            shot: int = 0) -> None:
        """One frame's final state; a new segment starts when the state or the shot changes."""
        if not self.segments or self.segments[-1].state != state or self.segments[-1].shot != shot:
            self.segments.append(_Segment(state, start_ms, end_ms, shot=shot))
        segment = self.segments[-1]
        segment.end_ms = end_ms
        segment.frames += 1
        if quality is not None:
            segment.quality_sum += quality
            segment.quality_count += 1
        if face is not None:
            segment.add_face(face)

    def as_json(self) -> tuple[list[dict], dict]:
        segments = [s.as_json() for s in self.segments]
        total = sum(s["end_ms"] - s["start_ms"] for s in segments)
        synced = sum(s["end_ms"] - s["start_ms"] for s in segments if s["synced"])
        return segments, {"total_ms": total, "synced_ms": synced, "skipped_ms": total - synced}


@dataclass
class _TargetPlan:
    previous: str | None = None
    run_length: int = 0  # frames since the current final synced run began
    last_face: Face | None = None
    shot: int = 0


class PlanStage(Stage):
    name = "plan"

    def __init__(self, targets: list[Target], fps: float, min_run_ms: float = 200.0,
                 fade_frames: int = 4) -> None:
        self.targets = targets
        self.fade_frames = max(1, fade_frames)
        self.min_run = max(1, int(round(min_run_ms / 1000 * fps)))
        self.window = self.min_run + self.fade_frames + 1
        self.frame_ms = 1000.0 / fps
        self.builders = {t.index: SegmentBuilder() for t in targets}
        self._plans = {t.index: _TargetPlan() for t in targets}
        self._pending: deque[Frame] = deque()
        self._shot: int | None = None
        self._ending = False  # flushing: the look-ahead reaches the end of the video

    def process(self, frame: Frame):
        self._pending.append(frame)
        if len(self._pending) > self.window:
            return (self._finalize(),)
        return ()

    def flush(self):
        self._ending = True
        out = []
        while self._pending:
            out.append(self._finalize())
        return out

    def _finalize(self) -> Frame:
        frame = self._pending.popleft()
        following = list(self._pending)
        end_ms = following[0].time_ms if following else frame.time_ms + self.frame_ms
        items = []
        shot = frame.notes.get("shot", 0)
        same_shot = []  # the look-ahead, up to the next cut
        for upcoming in following:
            if upcoming.notes.get("shot", 0) != shot:
                break
            same_shot.append(upcoming)
        cut_ahead = len(same_shot) < len(following) or self._ending
        # The video's first frame starts a shot too: before it there is no original mouth.
        first_of_shot = shot != self._shot if self._shot is not None else frame.index == 0
        self._shot = shot
        for target in self.targets:
            observation: TargetObservation | None = frame.notes["targets"].get(target.index)
            if observation is None:
                continue
            plan = self._plans[target.index]
            if plan.shot != shot:
                self._plans[target.index] = plan = _TargetPlan(shot=shot)
            future = [f.notes["targets"].get(target.index) for f in same_shot]
            states = [o.state if o else None for o in future]
            state = self._final_state(plan.previous, observation.state, states)
            face = observation.face or (plan.last_face if state == SYNCED else None)
            if observation.face is not None:
                plan.last_face = observation.face
            if state == SYNCED:
                plan.run_length = self.fade_frames if first_of_shot else plan.run_length + 1
            else:
                plan.run_length = 0
            plan.previous = state
            quality = observation.quality if state == SYNCED else None
            self.builders[target.index].add(state, frame.time_ms, min(end_ms, target.end_ms),
                                            face if observation.face is not None else None, quality, shot)
            if state == SYNCED and face is not None:
                strength = min(1.0, plan.run_length / self.fade_frames,
                               self._frames_left(states, cut_ahead) / self.fade_frames)
                if strength > 0:
                    items.append(RenderItem(target, face, strength))
        frame.notes["render"] = items
        return frame

    def _final_state(self, previous: str | None, state: str, future: list[str | None]) -> str:
        """Merge a short excursion away from `previous` that comes back to it."""
        if previous is None or state == previous:
            return state
        excursion = 1
        for upcoming in future:
            if upcoming == previous:
                return previous if excursion < self.min_run else state
            if upcoming is None:
                break
            excursion += 1
        return state

    def _frames_left(self, future: list[str | None], cut_ahead: bool = False) -> int:
        """Frames until the synced run ends, counting this one (a short flicker does not end it).

        cut_ahead: `future` stops at a cut or the end of the video; a run that lasts up to
        it does not fade out.
        """
        i = 0
        while i < len(future):
            if future[i] == SYNCED:
                i += 1
                continue
            if future[i] is None:  # the range or the stream ends
                return i + 1
            j = i
            while j < len(future) and future[j] not in (SYNCED, None):
                j += 1
            if j - i >= self.min_run or j == len(future):
                return i + 1
            i = j
        return self.fade_frames if cut_ahead else len(future) + 1
