"""The mouth-bank pass: before lip-syncing, collect each requested person's real mouths.

A pass of its own over the whole video (not only the synced ranges), decoded at
`sample_fps` (at most a fixed number of frames in all, so its cost and memory do not grow
with the video's length). Faces are detected every `DETECT_EVERY` samples and followed by
their landmarks in between (a detection again whenever one moved or its picture jumped);
a face is named by its identity embedding, never by where it stands: the embedding is
computed when a face starts (no face of the previous sample overlaps it) or when its
picture jumped (a cut, or a new person in the same place), and carried over otherwise.
Faces that are a requested person's, and usable (frontal enough, large enough), give a
`MouthSample` to that person's `MouthBank`.
"""
from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass

import numpy as np

from models.faces.base import FaceBackend
from models.faces.face import Face, iou
from models.mouth_bank import MouthBank, sample_mouth
from stages.follow import face_thumbnail
from stream.frame import Frame
from stream.stage import Stage

log = logging.getLogger(__name__)

MAX_YAW_DEG = 35.0
"""Faces turned further than this give no sample: their mouth is foreshortened."""
DETECT_EVERY = 5
"""A full detection every this many samples (1 s at 5 fps); the faces are followed by
their landmarks in between."""
CARRY_IOU = 0.3
"""Box overlap with a face of the previous sample (200 ms earlier) above which a face
whose picture did not jump keeps that face's name without a new embedding (~110 ms)."""
JUMP_GREY_LEVELS = 30.0
"""Mean change (0-255) of a face's 16x16 grey thumbnail between samples above which it is
named again from its embedding (a cut, or another person in the same place); the
thumbnail is the track stage's 24x24 grey one."""


@dataclass
class _Seen:
    """A face of the previous sample: its box, thumbnail and whom it was named as."""

    box: np.ndarray
    thumbnail: np.ndarray
    person: str | None

    def jumped(self, thumbnail: np.ndarray) -> bool:
        """Is `thumbnail` (same box, this sample) too different to be this face still?"""
        return float(np.abs(self.thumbnail - thumbnail).mean()) >= JUMP_GREY_LEVELS


class MouthBankStage(Stage):
    """Fills one `MouthBank` per requested person from the sampled frames it sees.

    people maps a person key (the target's key) to that person's reference embedding."""

    name = "bank"

    def __init__(self, backend: FaceBackend, people: dict[str, np.ndarray], similarity_threshold: float = 0.5,
                 capacity: int = 48) -> None:
        self.backend = backend
        self.people = people
        self.threshold = similarity_threshold
        self.banks = {key: MouthBank(capacity=capacity) for key in people}
        self.embeddings_computed = 0
        self.detections = 0
        self._since_detection = 0
        self._previous: list[_Seen] = []
        # Faces continuing from the previous sample skip the backend's re-verification.
        self._accepts_known_boxes = "known_boxes" in inspect.signature(backend.detect).parameters

    def process(self, frame: Frame):
        image = frame.image
        found = self._followed(image)
        if found is None:
            found = [(face, face_thumbnail(image, face.bbox)) for face in self._detected(image)]
        seen = []
        for face, thumb in found:
            person = self._carried_over(face, thumb)
            if person is False:
                person = self._name(image, face)
            seen.append(_Seen(face.bbox, thumb, person))
            if person is not None and face.landmarks is not None and abs((face.pose or (0, 0, 0))[1]) <= MAX_YAW_DEG:
                sample = sample_mouth(image, face.landmarks, face.pose, frame.time_ms)
                if sample is not None:
                    self.banks[person].add(sample)
        self._previous = seen
        return ()

    def _detected(self, image: np.ndarray) -> list[Face]:
        """Every face, by the full detector (known boxes skip the backend's re-verification)."""
        self.detections += 1
        self._since_detection = 0
        if self._accepts_known_boxes:
            return self.backend.detect(image, with_embedding=False, known_boxes=[old.box for old in self._previous])
        return self.backend.detect(image, with_embedding=False)

    def _followed(self, image: np.ndarray) -> list[tuple[Face, np.ndarray]] | None:
        """The previous sample's faces refreshed by the cheap landmark path (~2 ms a face
        instead of a detection), with their thumbnails, or None when a detection is due:
        every `DETECT_EVERY` samples (to find people who came in), or when a face moved or
        its picture jumped."""
        self._since_detection += 1
        if not self._previous or self._since_detection >= DETECT_EVERY:
            return None
        faces = self.backend.landmarks(image, [old.box for old in self._previous])
        found = [(face, face_thumbnail(image, face.bbox)) for face in faces]
        for old, (face, thumb) in zip(self._previous, found):
            if iou(old.box, face.bbox) < 0.5 or old.jumped(thumb):
                return None
        return found

    def _carried_over(self, face: Face, thumb: np.ndarray) -> str | None | bool:
        """The name of the previous sample's face this one continues, or False if none does."""
        for old in self._previous:
            if iou(old.box, face.bbox) >= CARRY_IOU and not old.jumped(thumb):
                return old.person
        return False

    def _name(self, image: np.ndarray, face: Face) -> str | None:
        """The requested person this face is, by embedding, or None."""
        self.backend.embed(image, [face])
        self.embeddings_computed += 1
        if face.embedding is None:
            return None
        scores = {key: self.backend.similarity(face.embedding, ref) for key, ref in self.people.items()}
        best = max(scores, key=scores.get, default=None)
        return best if best is not None and scores[best] >= self.threshold else None
