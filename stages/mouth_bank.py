"""The mouth-bank pass: before lip-syncing, collect each requested person's real mouths.

A pass of its own over the whole video (not only the synced ranges), decoded at
`sample_fps` (at most a fixed number of frames in all, so its cost and memory do not grow
with the video's length). Faces are detected every `DETECT_EVERY` samples and followed by
their landmarks in between (a detection again whenever one moved or its picture jumped).
A lipsync job detects on every sample, on the frames its track stage detects on, and hands
those detections to the track stage (`stages.follow.SharedDetections`), which then need
not detect there again. A detection fits landmarks only to the faces near a requested
person's face of the previous sample; another face keeps the detector's box (the track
stage fits one it needs, as after its own detections), and is fitted once it is named as
a requested person: the same landmarks, box and samples, without a fit (~1.5 ms) for every
other face of every sample.

a face is named by its identity embedding, never by where it stands: the embedding is
computed when a face starts (no face of the previous sample overlaps it) or when its
picture jumped (a cut, or a new person in the same place), and carried over otherwise.
Faces that are a requested person's, and usable (frontal enough, large enough, landmarks
that are a fixed point of the detector), give a `MouthSample` to that person's `MouthBank`.

A name carried over from the previous sample is a guess, not an identity: in a dissolve
the picture never jumps, and the track slides from one person onto another. So every
sample kept in a bank is checked against its own face: a sample whose face was named by its
embedding is checked already; one whose name was carried keeps a small crop of its face
and the run it belongs to (the face's samples since it was last named). When the pass
ends, the carried samples still in the bank (at most `capacity` per person) are checked
run by run (`stages.run_checks`): an embedding where the face's picture drifted
`CHECK_DRIFT_GREY_LEVELS` from the last checked one (a dissolve onto someone else does) and
at least every `CHECK_SPAN_MS`, and bisection where two checks disagree, find the samples
that are not the person (~100 ms an embedding: embedding every carried sample cost ~5 s on a
10 s two-person video, one a second ~2.4 s), and they are dropped.
"""
from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, replace

import cv2
import numpy as np

from models.faces.base import FaceBackend
from models.faces.face import Face, iou
from models.mouth_bank import MouthBank, MouthSample, sample_mouth
from stages.follow import SharedDetections, face_thumbnail
from stages.run_checks import run_verdicts
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
STABLE_LANDMARKS = 0.06
"""Largest move (inter-ocular distances) of the mouth landmarks when they are found again
from their own refined box: landmarks that are right are a fixed point of the detector;
ones that lag a moving face (the box of 200 ms earlier) or slid onto the cheek are not,
and their sample would paint a cheek as lips."""
CHECK_FACE_PX = 160
"""Width (pixels) a carried sample's face crop is scaled to for its identity check (dlib
embeds a 150 px chip), which bounds the memory the checks hold."""
CHECK_DRIFT_GREY_LEVELS = 20.0
"""Mean change (0-255) of a carried sample's 24x24 grey face thumbnail from the last checked
sample of its run (or the face where the run was named) above which it gets a check of its
own: a face half-way into a dissolve has drifted about 30 from where it started (see
`stages.follow.DRIFT_GREY_LEVELS`), so no sample that looks more like someone else than
like the checked face shares that check's verdict."""
CHECK_SPAN_MS = 4000.0
"""Longest stretch of a run (ms) whose samples share one check's verdict when their
pictures did not drift: bounds what a look-alike in the same place could slip in."""
JUMP_GREY_LEVELS = 30.0
"""Mean change (0-255) of a face's 16x16 grey thumbnail between samples above which it is
named again from its embedding (a cut, or another person in the same place); the
thumbnail is the track stage's 24x24 grey one."""


LATE_SCALE = 0.7
"""A carried sample's crop whose scale to CHECK_FACE_PX is at least this (a face up to ~230
px wide) is kept at its own resolution (at most ~2x the pixels) and scaled only if it gets
a check of its own: most carried samples share another's check (`stages.run_checks`), and
the area scaling costs ~0.7 ms a 720p face. A larger face's crop is scaled when it is cut."""


@dataclass
class _Unchecked:
    """A carried sample's face, kept to check its identity when the pass ends: the sample,
    its person and run (see `MouthBankStage._runs`), its face's crop and the face in it,
    both still to be scaled by `scale` (1: already at CHECK_FACE_PX, or smaller)."""

    sample: MouthSample | None
    person: str
    run: int
    crop: np.ndarray
    face: Face
    thumbnail: np.ndarray | None = None  # the face's 24x24 grey thumbnail in its frame
    scale: float = 1.0

    def scaled(self) -> tuple[np.ndarray, Face]:
        """The crop and the face in it, the face CHECK_FACE_PX wide (or smaller)."""
        if self.scale == 1.0:
            return self.crop, self.face
        return _scaled(self.crop, self.face, self.scale)


def _scaled(crop: np.ndarray, face: Face, k: float) -> tuple[np.ndarray, Face]:
    """A face crop and its face scaled by k < 1 (area averaging)."""
    size = (max(8, int(round(crop.shape[1] * k))), max(8, int(round(crop.shape[0] * k))))
    return (np.ascontiguousarray(cv2.resize(crop, size, interpolation=cv2.INTER_AREA)),
            replace(face, bbox=face.bbox * k, kps=face.kps * k, landmarks=face.landmarks * k))


def _face_crop(image: np.ndarray, face: Face) -> _Unchecked | None:
    """The face's box grown by half, to be scaled so the face is CHECK_FACE_PX wide (now,
    or when it is checked: LATE_SCALE), with the face's landmarks and box moved into the
    crop (enough for the backend's embedding)."""
    x1, y1, x2, y2 = face.bbox.astype(np.float64)
    grow = 0.5 * max(x2 - x1, y2 - y1)
    h, w = image.shape[:2]
    cx0, cy0 = int(max(0, x1 - grow)), int(max(0, y1 - grow))
    cx1, cy1 = int(min(w, x2 + grow)), int(min(h, y2 + grow))
    if cx1 - cx0 < 8 or cy1 - cy0 < 8:
        return None
    k = min(1.0, CHECK_FACE_PX / max(x2 - x1, 1.0))
    off = np.array([cx0, cy0], np.float32)
    moved = replace(face, bbox=(face.bbox.reshape(2, 2) - off).reshape(4), kps=face.kps - off,
                    landmarks=face.landmarks - off, embedding=None)
    crop = np.ascontiguousarray(image[cy0:cy1, cx0:cx1])
    if k < LATE_SCALE:
        crop, moved = _scaled(crop, moved, k)
        k = 1.0
    return _Unchecked(None, "", -1, crop, moved, scale=k)


def _drift(pictures: list[np.ndarray | None], start: np.ndarray | None):
    """drift(i, j) for `run_verdicts`: mean grey change between sample i's face thumbnail and
    sample j's (j = -1: the face where the run was named); a missing one counts as drifted."""
    def drift(i: int, j: int) -> float:
        other = start if j < 0 else pictures[j]
        if pictures[i] is None or other is None:
            return float("inf")
        return float(np.abs(pictures[i] - other).mean())
    return drift


@dataclass
class _Seen:
    """A face of the previous sample: its box, thumbnail, whom it was named as and the run
    (the face's samples since that naming) it belongs to."""

    box: np.ndarray
    thumbnail: np.ndarray
    person: str | None
    run: int = -1

    def jumped(self, thumbnail: np.ndarray) -> bool:
        """Is `thumbnail` (same box, this sample) too different to be this face still?"""
        return float(np.abs(self.thumbnail - thumbnail).mean()) >= JUMP_GREY_LEVELS


class MouthBankStage(Stage):
    """Fills one `MouthBank` per requested person from the sampled frames it sees.

    people maps a person key (the target's key) to that person's reference embedding."""

    name = "bank"

    def __init__(self, backend: FaceBackend, people: dict[str, np.ndarray], similarity_threshold: float = 0.5,
                 capacity: int = 48, detect_every: int = DETECT_EVERY, shared: SharedDetections | None = None) -> None:
        self.backend = backend
        self.detect_every = max(1, detect_every)
        self.shared = shared
        """Where this pass's full detections go, by frame index, for the track stage."""
        self.people = people
        self.threshold = similarity_threshold
        self.banks = {key: MouthBank(capacity=capacity) for key in people}
        self.embeddings_computed = 0
        self.dropped_by_identity = 0
        """Carried samples dropped at the end because their face was not the person's."""
        self.carried_judged = 0
        """Carried samples whose identity the end of the pass decided..."""
        self.identity_checks = 0
        """...and the embeddings that took (one per sample before `stages.run_checks`)."""
        self._unchecked: dict[int, _Unchecked] = {}  # id(sample) -> its face, to check
        self._runs: dict[int, tuple[float, np.ndarray]] = {}
        """Run id -> time (ms) and face thumbnail of the sample where its face was named by
        its embedding."""
        self.detections = 0
        self._since_detection = 0
        self._previous: list[_Seen] = []
        # Faces continuing from the previous sample skip the backend's re-verification.
        self._accepts_known_boxes = "known_boxes" in inspect.signature(backend.detect).parameters
        # ...and faces no requested person was seen near need no landmarks (`_detected`)
        self._fits_near = "fit_near" in inspect.signature(backend.detect).parameters

    def process(self, frame: Frame):
        image = frame.image
        found = self._followed(image)
        detected = found is None
        if detected:
            found = [(face, face_thumbnail(image, face.bbox)) for face in self._detected(image)]
        seen = []
        for k, (face, thumb) in enumerate(found):
            carried = self._carried_over(face, thumb)
            checked = carried is None
            if checked:
                run = len(self._runs)
                person = self._name(image, face)
            else:
                person, run = carried.person, carried.run
            if person is not None and self._fits_near and face.pose is None:  # the detection left it unfitted
                face = self._fitted(image, face)
                thumb = face_thumbnail(image, face.bbox)
                found[k] = (face, thumb)
            if checked:
                self._runs[run] = (frame.time_ms, thumb)
            seen.append(_Seen(face.bbox, thumb, person, run))
            if person is not None and face.landmarks is not None and abs((face.pose or (0, 0, 0))[1]) <= MAX_YAW_DEG:
                stable = self._stable(image, face)
                sample = sample_mouth(image, stable.landmarks, stable.pose, frame.time_ms) if stable is not None else None
                if sample is not None:
                    sample.alone = len(found) == 1  # the original audio is then most likely theirs
                    crop = None if checked else _face_crop(image, face)
                    self._add(person, sample, None if crop is None else replace(crop, run=run, thumbnail=thumb))
                elif stable is None:
                    self.banks[person].reject()
        self._previous = seen
        if detected and self.shared is not None:  # after naming: the embeddings computed go too
            self.shared.put(frame.index, [face for face, _ in found])
        return ()

    def flush(self):
        """The pass has ended: check the identity of every carried sample still banked."""
        self._check_identities()
        return ()

    def _add(self, person: str, sample: MouthSample, unchecked: _Unchecked | None) -> None:
        """Bank the sample; a carried one keeps its face crop until its identity is checked.
        Crops of samples the bank has since let go are dropped, so at most `capacity` per
        person are held."""
        bank = self.banks[person]
        if unchecked is not None:
            self._unchecked[id(sample)] = replace(unchecked, sample=sample, person=person)
        else:  # a let-go sample's id may be reused by this one
            self._unchecked.pop(id(sample), None)
        bank.add(sample)
        if len(self._unchecked) > sum(b.capacity for b in self.banks.values()):
            kept = {id(s) for b in self.banks.values() for s in b.samples}
            self._unchecked = {k: v for k, v in self._unchecked.items() if k in kept}

    def _check_identities(self) -> None:
        """Drop each banked sample whose name was carried unless it is its person's face
        (the similarity threshold that names faces), checked run by run
        (`stages.run_checks.run_verdicts`: an embedding where the picture drifted, at least
        every CHECK_SPAN_MS, and bisection)."""
        for person, bank in self.banks.items():
            runs: dict[int, list[_Unchecked]] = {}
            for sample in bank.samples:
                pending = self._unchecked.get(id(sample))
                if pending is not None and pending.sample is sample:
                    runs.setdefault(pending.run, []).append(pending)
            wrong: set[int] = set()
            for run, pendings in runs.items():
                pendings.sort(key=lambda p: p.sample.time_ms)
                start_ms, start_picture = self._runs[run]
                verdicts = run_verdicts([p.sample.time_ms for p in pendings], start_ms,
                                        self._checker(pendings, person), CHECK_SPAN_MS,
                                        _drift([p.thumbnail for p in pendings], start_picture),
                                        CHECK_DRIFT_GREY_LEVELS)
                wrong.update(id(p.sample) for p, ok in zip(pendings, verdicts) if not ok)
                self.carried_judged += len(pendings)
            keep = [sample for sample in bank.samples if id(sample) not in wrong]
            self.dropped_by_identity += len(bank.samples) - len(keep)
            if len(keep) != len(bank.samples):
                log.info("mouth bank %s: %d sample(s) dropped, another person's face (a dissolve or a "
                         "swap the track followed)", person, len(bank.samples) - len(keep))
                bank.replace_samples(keep)
        self._unchecked.clear()

    def _checker(self, pendings: list[_Unchecked], person: str):
        """check(i) for `run_verdicts`: is pendings[i]'s face the person's (an embedding)."""
        return lambda i: self._is_person(pendings[i], person)

    def _is_person(self, pending: _Unchecked, person: str) -> bool:
        crop, face = pending.scaled()
        self.backend.embed(crop, [face])
        self.embeddings_computed += 1
        self.identity_checks += 1
        if face.embedding is None:
            return False
        return self.backend.similarity(face.embedding, self.people[person]) >= self.threshold

    def _stable(self, image: np.ndarray, face: Face) -> Face | None:
        """The face with its landmarks found again from their own box (~2 ms), or None when
        the mouth moved by more than STABLE_LANDMARKS: its landmarks are not to be trusted."""
        again = self.backend.landmarks(image, [face.bbox])
        if not again or again[0].landmarks is None:
            return None
        first, second = np.asarray(face.landmarks, np.float64), np.asarray(again[0].landmarks, np.float64)
        eyes = float(np.linalg.norm(second[36:42].mean(axis=0) - second[42:48].mean(axis=0)))
        moved = float(np.abs(first[48:68] - second[48:68]).max()) / max(eyes, 1.0)
        if moved > STABLE_LANDMARKS:
            return None
        pose = again[0].pose
        return again[0] if pose is None or abs(pose[1]) <= MAX_YAW_DEG else None

    def _detected(self, image: np.ndarray) -> list[Face]:
        """Every face, by the full detector (known boxes skip the backend's re-verification).

        Landmarks only where a requested person may be: near the faces of the last sample
        that were named as one (`fit_near`). Another face needs only its box and thumbnail
        (to follow it) and, when it starts or its picture jumps, an embedding (which fits
        its landmarks itself); one that turns out to be a requested person is fitted then
        (`_fitted`), to the same landmarks and box the detection would have given it."""
        self.detections += 1
        self._since_detection = 0
        if not self._accepts_known_boxes:
            return self.backend.detect(image, with_embedding=False)
        known = [old.box for old in self._previous]
        if not self._fits_near:
            return self.backend.detect(image, with_embedding=False, known_boxes=known)
        return self.backend.detect(image, with_embedding=False, known_boxes=known,
                                   fit_near=[old.box for old in self._previous if old.person is not None])

    def _fitted(self, image: np.ndarray, face: Face) -> Face:
        """A face the detection left without landmarks (`fit_near`), fitted from its box as
        the detection fits one, with the embedding it already has."""
        (fitted,) = self.backend.landmarks(image, [face.bbox], [face.score])
        fitted.embedding = face.embedding
        return fitted

    def _followed(self, image: np.ndarray) -> list[tuple[Face, np.ndarray]] | None:
        """The previous sample's faces refreshed by the cheap landmark path (~2 ms a face
        instead of a detection), with their thumbnails, or None when a detection is due:
        every `detect_every` samples (to find people who came in), or when a face moved or
        its picture jumped."""
        self._since_detection += 1
        if not self._previous or self._since_detection >= self.detect_every:
            return None
        faces = self.backend.landmarks(image, [old.box for old in self._previous])
        found = [(face, face_thumbnail(image, face.bbox)) for face in faces]
        for old, (face, thumb) in zip(self._previous, found):
            if iou(old.box, face.bbox) < 0.5 or old.jumped(thumb):
                return None
        return found

    def _carried_over(self, face: Face, thumb: np.ndarray) -> _Seen | None:
        """The previous sample's face this one continues (its name and run), or None."""
        for old in self._previous:
            if iou(old.box, face.bbox) >= CARRY_IOU and not old.jumped(thumb):
                return old
        return None

    def _name(self, image: np.ndarray, face: Face) -> str | None:
        """The requested person this face is, by embedding, or None."""
        self.backend.embed(image, [face])
        self.embeddings_computed += 1
        if face.embedding is None:
            return None
        scores = {key: self.backend.similarity(face.embedding, ref) for key, ref in self.people.items()}
        best = max(scores, key=scores.get, default=None)
        return best if best is not None and scores[best] >= self.threshold else None
