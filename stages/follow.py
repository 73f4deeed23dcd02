"""Following the requested faces on every frame of their time ranges (the "track" stage).

The full detector runs every `detect_interval` frames (DeepStream's `interval`); in
between, each followed face is refreshed with the backend's cheap landmark path from its
last box. Detections are matched to the followed faces by box overlap plus identity
similarity (Hungarian), so a face that was lost (left the frame, turned away) is found
again by who it is. Landmarks are smoothed with a One Euro filter against jitter.

People that are not requested are named on detection frames (stable `face_N`, as in
detect-faces) so the response can report them as unknown faces.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from models.faces.base import FaceBackend
from stages.identity import IdentityBook
from stages.smoothing import OneEuroFilter
from stages.syncability import SyncRules, assess
from stages.tracking import FaceTracker
from stream.frame import Face, Frame, iou
from stream.schema import FaceSpec
from stream.stage import Stage

NOT_VISIBLE = "not_visible"
SYNCED = "synced"


@dataclass
class Target:
    """A requested face: its spec, the face matched at its start, and its list index."""

    index: int
    spec: FaceSpec
    anchor: Face

    @property
    def key(self) -> str:
        return f"{self.index}:{self.spec.character_id}"

    def active_at(self, time_ms: float) -> bool:
        return self.spec.start_time_ms <= time_ms < self.spec.end_time_ms


@dataclass
class TargetObservation:
    """What the track stage saw of one target in one frame."""

    face: Face | None
    state: str  # "synced", a skip reason, or "not_visible"
    quality: float | None


@dataclass
class _Follow:
    face: Face | None = None
    filter: OneEuroFilter = field(default_factory=OneEuroFilter)


@dataclass
class UnknownSighting:
    time_ms: float
    character_id: str
    face: Face


class TrackStage(Stage):
    name = "track"

    def __init__(self, backend: FaceBackend, targets: list[Target], detect_interval: int = 5,
                 similarity_threshold: float = 0.5, rules: SyncRules = SyncRules()) -> None:
        self.backend = backend
        self.targets = targets
        self.detect_interval = max(1, detect_interval)
        self.threshold = similarity_threshold
        self.rules = rules
        self._follows = {t.index: _Follow() for t in targets}
        self.book = IdentityBook(backend.similarity, similarity_threshold)
        for target in targets:
            if target.anchor.embedding is not None:
                self.book.add_reference(target.spec.character_id, target.anchor.embedding)
        self.tracker = FaceTracker(backend.similarity, min_similarity=similarity_threshold)
        self._requested_ids = {t.spec.character_id for t in targets}
        self.unknown_sightings: list[UnknownSighting] = []
        self.people_seen: set[str] = set()
        self._detections = 0

    def process(self, frame: Frame):
        active = [t for t in self.targets if t.active_at(frame.time_ms)]
        for target in self.targets:
            if target not in active:
                self._follows[target.index] = _Follow()
        must_detect = frame.index % self.detect_interval == 0 or any(
            self._follows[t.index].face is None for t in active)
        if must_detect:
            detections = self.backend.detect(frame.image, with_embedding=True)
            self._detections += 1
            claimed = self._match(active, detections, frame.time_ms)
            self._name_people(frame, detections, claimed)
        else:
            self._refresh(frame, active)
        observations = {}
        for target in active:
            follow = self._follows[target.index]
            if follow.face is None:
                observations[target.index] = TargetObservation(None, NOT_VISIBLE, None)
                continue
            verdict = assess(follow.face, self.rules)
            observations[target.index] = TargetObservation(
                follow.face, SYNCED if verdict.syncable else verdict.skip_reason, verdict.sync_quality)
        frame.notes["targets"] = observations
        return (frame,)

    # ---- detection frames --------------------------------------------------------------
    def _match(self, active: list[Target], detections: list[Face], time_ms: float) -> set[int]:
        """Assign detections to active targets; returns the indices of claimed detections.

        A followed face pairs with a detection that overlaps it (IoU >= 0.3) or is the
        same person; a lost or new target pairs only with the same person, or with a box
        that overlaps the face matched at its start (IoU >= 0.5).
        """
        scores = np.full((len(active), len(detections)), -np.inf)
        for i, target in enumerate(active):
            follow = self._follows[target.index]
            box, min_overlap = (follow.face.bbox, 0.3) if follow.face is not None else (target.anchor.bbox, 0.5)
            for j, face in enumerate(detections):
                overlap = iou(box, face.bbox)
                sim = -1.0
                if face.embedding is not None and target.anchor.embedding is not None:
                    sim = self.backend.similarity(face.embedding, target.anchor.embedding)
                if overlap >= min_overlap or sim >= self.threshold:
                    scores[i, j] = overlap + max(sim, 0.0)
        claimed: set[int] = set()
        matched: dict[int, Face] = {}
        if active and detections:
            cost = np.where(np.isfinite(scores), -scores, 1e6)
            for i, j in zip(*linear_sum_assignment(cost)):
                if np.isfinite(scores[i, j]):
                    matched[active[i].index] = detections[j]
                    claimed.add(int(j))
        for target in active:
            follow = self._follows[target.index]
            face = matched.get(target.index)
            if face is None:
                follow.face = None
                follow.filter.reset()
            else:
                follow.face = self._smoothed(follow, face, time_ms)
        return claimed

    def _name_people(self, frame: Frame, detections: list[Face], claimed: set[int]) -> None:
        for target in self.targets:
            if self._follows[target.index].face is not None:
                self.people_seen.add(target.spec.character_id)
        others = [f for j, f in enumerate(detections) if j not in claimed and f.embedding is not None]
        tracks = self.tracker.update(others, self._detections)
        names = self.book.assign([t.embedding for t in tracks], [t.identity for t in tracks])
        for face, track, (name, _) in zip(others, tracks, names):
            track.identity = name
            self.people_seen.add(name)
            if name not in self._requested_ids:
                self.unknown_sightings.append(UnknownSighting(frame.time_ms, name, face))

    # ---- frames in between -------------------------------------------------------------
    def _refresh(self, frame: Frame, active: list[Target]) -> None:
        follows = [self._follows[t.index] for t in active if self._follows[t.index].face is not None]
        if not follows:
            return
        refreshed = self.backend.landmarks(frame.image, [f.face.bbox for f in follows])
        for follow, face in zip(follows, refreshed):
            face.score = follow.face.score
            face.embedding = follow.face.embedding
            follow.face = self._smoothed(follow, face, frame.time_ms)

    @staticmethod
    def _smoothed(follow: _Follow, face: Face, time_ms: float) -> Face:
        if face.landmarks is not None:
            face.landmarks = follow.filter(face.landmarks, time_ms / 1000.0)
        return face
