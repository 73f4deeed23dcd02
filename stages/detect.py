"""Detect-faces stages: find faces in sampled frames, then track and name them.

DetectStage runs the face detector (boxes, landmarks, pose) on each frame. IdentifyStage
links the faces into tracks and names them (reference characters or stable `face_N`),
and judges syncability. They are two stages so detection of frame n+1 overlaps naming of
frame n. Identity embeddings are the expensive part of a face (about 100 ms each for the
embedded backend), so only faces that start a track, or whose track was last embedded
`EMBED_EVERY` samples ago, are embedded; the others take their track's running mean.
At a shot cut (frame.notes["shot"] changes, see `stages.shots`) every track ends and every
face is embedded and named again from its embedding alone, never from where it stands.
"""
from __future__ import annotations

from dataclasses import dataclass

from models.faces.base import FaceBackend
from models.faces.face import Face, iou
from stages.identity import IdentityBook
from stages.syncability import SyncRules, assess
from stages.tracking import FaceTracker
from stream.frame import Frame
from stream.stage import Stage

EMBED_EVERY = 3
"""Samples between two embeddings of a followed face (1 s at the default 3 fps)."""


class DetectStage(Stage):
    name = "detect"

    def __init__(self, backend: FaceBackend) -> None:
        self.backend = backend

    def process(self, frame: Frame):
        frame.faces = self.backend.detect(frame.image, with_embedding=False)
        return (frame,)


@dataclass
class FaceReport:
    """One face of one sampled frame, as /detect-faces reports it."""

    face: Face
    character_id: str
    similarity: float | None  # ArcFace cosine to the named character's headshot; None for face_N
    syncable: bool
    sync_quality: float | None
    skip_reason: str | None

    def as_json(self) -> dict:
        pitch, yaw, roll = self.face.pose or (0.0, 0.0, 0.0)
        return {
            "character_id": self.character_id,
            "bbox": self.face.xywh,
            "confidence": round(float(self.face.score), 4),
            "head_pose": [round(float(pitch), 2), round(float(yaw), 2), round(float(roll), 2)],
            "syncable": self.syncable,
            "sync_quality": self.sync_quality,
            "skip_reason": self.skip_reason,
            "track_id": self.face.track_id,
            "similarity": round(self.similarity, 4) if self.similarity is not None else None,
        }


class IdentifyStage(Stage):
    """Tracks faces across sampled frames and names them; sets frame.notes['faces']."""

    name = "identify"

    def __init__(self, backend: FaceBackend, book: IdentityBook, tracker: FaceTracker,
                 rules: SyncRules = SyncRules()) -> None:
        self.backend = backend
        self.book = book
        self.tracker = tracker
        self.rules = rules
        self._step = 0
        self._embedded_at: dict[int, int] = {}
        self._shot = 0

    def process(self, frame: Frame):
        faces = frame.faces
        shot = frame.notes.get("shot", 0)
        if shot != self._shot:
            self._shot = shot
            self.tracker.end_all()
            self._embedded_at.clear()
        self.backend.embed(frame.image, [f for f in faces if self._needs_embedding(f)])
        tracks = self.tracker.update(faces, self._step)
        for face, track in zip(faces, tracks):
            if face.embedding is not None:
                self._embedded_at[track.id] = self._step
        self._step += 1
        named = [(face, track) for face, track in zip(faces, tracks) if track.embedding is not None]
        faces, tracks = [f for f, _ in named], [t for _, t in named]
        names = self.book.assign([t.embedding for t in tracks], [t.identity for t in tracks])
        reports = []
        referenced = {i.id for i in self.book.identities if i.is_reference}
        for face, track, (identity, similarity) in zip(faces, tracks, names):
            similarity = similarity if identity in referenced else None  # face_N: no headshot to compare
            track.identity = identity
            face.identity, face.similarity = identity, similarity
            verdict = assess(face, self.rules)
            reports.append(FaceReport(face, identity, similarity, verdict.syncable,
                                      verdict.sync_quality, verdict.skip_reason))
        frame.notes["faces"] = reports
        frame.image = None  # nothing downstream needs the pixels; free them early
        return (frame,)

    def _needs_embedding(self, face: Face) -> bool:
        """Embed a face unless it clearly continues a track embedded in the last samples."""
        for track in self.tracker.tracks:
            if self._step - track.last_step <= 1 and iou(face.bbox, track.box) >= 0.5:
                return self._step - self._embedded_at.get(track.id, -EMBED_EVERY) >= EMBED_EVERY
        return True
