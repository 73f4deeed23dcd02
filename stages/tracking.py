"""FaceTracker: links faces across frames by box overlap plus identity embedding.

Each new frame's faces are matched to live tracks with the Hungarian algorithm on
score = IoU + embedding similarity (ArcFace scale), gated so that a pair needs either a
real overlap (IoU >= min_iou) or a confident same-person similarity, and never pairs two
embeddings less similar than `veto_similarity` (different people in one place: a cut the
shot detector missed). A track that is not
seen for `max_missed` frames ends; a person coming back starts a new track, and the
identity book (not the tracker) gives them their old name. A shot cut ends every track
(`end_all`): box overlap means nothing across a cut.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from models.faces.face import Face, iou


@dataclass
class Track:
    id: int
    box: np.ndarray
    embedding: np.ndarray | None
    last_step: int
    hits: int = 1
    identity: str | None = None

    def update(self, face: Face, step: int) -> None:
        self.box = face.bbox.copy()
        self.last_step = step
        self.hits += 1
        if face.embedding is not None:
            if self.embedding is None:
                self.embedding = face.embedding.astype(np.float32)
            else:
                weight = 1.0 / min(self.hits, 20)  # running mean over the last ~20 sightings
                mean = (1 - weight) * self.embedding + weight * face.embedding
                self.embedding = mean / (np.linalg.norm(mean) + 1e-12)


class FaceTracker:
    def __init__(self, similarity: Callable[[np.ndarray, np.ndarray], float] | None = None,
                 min_iou: float = 0.2, min_similarity: float = 0.5, max_missed: int = 2,
                 veto_similarity: float = 0.3) -> None:
        self.similarity = similarity
        self.min_iou = min_iou
        self.min_similarity = min_similarity
        self.veto_similarity = veto_similarity
        self.max_missed = max_missed
        self.tracks: list[Track] = []
        self._next_id = 1

    def end_all(self) -> None:
        """End every live track (a cut): the next faces start new tracks, named afresh."""
        self.tracks = []

    def update(self, faces: Sequence[Face], step: int) -> list[Track]:
        """Set face.track_id for every face of frame `step`; returns their tracks in order."""
        live = [t for t in self.tracks if step - t.last_step <= self.max_missed]
        self.tracks = live
        scores = np.full((len(faces), len(live)), -np.inf)
        for i, face in enumerate(faces):
            for j, track in enumerate(live):
                overlap = iou(face.bbox, track.box)
                sim = 0.0
                if self.similarity is not None and face.embedding is not None and track.embedding is not None:
                    sim = self.similarity(face.embedding, track.embedding)
                    if sim < self.veto_similarity:
                        continue
                if overlap >= self.min_iou or sim >= self.min_similarity:
                    scores[i, j] = overlap + max(sim, 0.0)
        chosen: list[Track | None] = [None] * len(faces)
        if faces and live:
            cost = np.where(np.isfinite(scores), -scores, 1e6)
            for i, j in zip(*linear_sum_assignment(cost)):
                if np.isfinite(scores[i, j]):
                    live[j].update(faces[i], step)
                    chosen[i] = live[j]
        for i, face in enumerate(faces):
            if chosen[i] is None:
                track = Track(self._next_id, face.bbox.copy(),
                              None if face.embedding is None else face.embedding.astype(np.float32), step)
                self._next_id += 1
                self.tracks.append(track)
                chosen[i] = track
            face.track_id = chosen[i].id
        return chosen  # type: ignore[return-value]
