"""Following the requested faces on every frame of their time ranges (the "track" stage).

The full detector runs every `detect_interval` frames (DeepStream's `interval`); in
between, each followed face is refreshed with the backend's cheap landmark path from its
last box. Detections are matched to the followed faces by box overlap plus identity
similarity (Hungarian), so a face that was lost (left the frame, turned away) is found
again by who it is. Landmarks are smoothed with a One Euro filter against jitter.

People that are not requested are named on detection frames (stable `face_N`, as in
detect-faces, or the id of a reference character they match) so the response can report
them as unknown faces.

A shot cut (frame.notes["shot"] changes, see `stages.shots`) is a hard boundary: every
followed face and every naming track ends, the cut frame gets a full detection, and a
requested person is found again by identity alone (never by where their box was). When
another person stands where a request's bbox was, `place_warnings` says so.

Full detections that another pass over the same video already ran on a frame (the
mouth-bank pass, `SharedDetections`) are taken on that frame instead of detecting again,
when the frame needs a detection.

A face being rendered is re-identified (embedded and compared with the request's anchor)
at least every `REID_MS` (`REID_CONTINUOUS_MS` while optical flow follows it without a
break) and whenever its picture has drifted `DRIFT_GREY_LEVELS` from the
picture at its last check: in a dissolve the picture never jumps from one frame to the
next, yet after a few frames it is someone else's. A face that is not the person any more
is dropped (`not_visible`, nothing rendered) and the person is searched for by identity.
"""
from __future__ import annotations

import inspect
import uuid
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from models.faces.base import FaceBackend
from models.faces.face import Face, iou
from stages.identity import IdentityBook
from stages.smoothing import OneEuroFilter
from stages.syncability import SyncRules, assess
from stages.tracking import (FaceTracker, Flowed, FlowPatch, FrameGrey, flow_offset, flow_patch, flow_points,
                             flow_shift)
from stream.frame import Frame
from stream.stage import Stage

NOT_VISIBLE = "not_visible"
JUMP_GREY_LEVELS = 22.0
"""Mean absolute change (0-255) of a followed face's 24x24 grey thumbnail, frame to frame,
above which its landmark fit starts from its box moved by the optical flow (a shake), not
from the last box. Measured on d12 (a shaky hand-held talking head, detector box every
frame): median 11, 90th percentile 22; the jump at 2.04 s that the landmark path loses from
the last box scores 25, a cut far more. About one frame in ten of a shaky video jumps: on
the benchmark's two faces (10 s, d12 and d20) 21 frames, which each took a full detection
(~17 ms of RetinaFace) until the flow moved the box; now 7 frames in all get one (the fit
lost its face), and the mouth landmarks against a detection on every frame moved from
0.0064 to 0.0073 IOD (mean; 95th percentile 0.019 to 0.023, no face lost;
`python -m benchmarks.interval --intervals 5`)."""
SWAP_GREY_LEVELS = 45.0
"""A followed face's thumbnail change above which its box may now hold someone else (a cut
the shot detector missed, e.g. a small face swapped on a still set: 35-67 on the tests'
edited videos; a hand-held shake about 25): the face matched there is embedded and must
still be the same person (similarity >= the threshold), else the target is lost and found
again by identity."""
REID_MS = 1000.0
"""A rendered face is embedded and checked against its person at least this often (ms)..."""
REID_CONTINUOUS_MS = 3000.0
"""...or this often while optical flow has followed it without a break since its last check
(`_Follow.continuous`): every frame's fit agreed with where the last fit's points flowed
(a verdict from FLOW_MIN_POINTS reliable points, and not lost), no jump, no cut. Someone else
cannot take the face's place without breaking the flow or drifting the picture (a dissolve:
DRIFT_GREY_LEVELS), so the check a second buys nothing there; on the benchmark's two faces
it halves the embeddings (~100 ms each). A face the flow cannot judge (blur, no texture) is
checked every REID_MS."""
DRIFT_GREY_LEVELS = 30.0
"""Mean absolute change of a followed face's 24x24 thumbnail since its last identity check
above which it is checked again. Within a second of a check, d12 (shaky hand-held) drifts
by 15 (median), 31 (90th percentile); the other clips by 5-10 (median), 8-20. A face
blended half-way into another one in its place (a dissolve) drifts by 30, wholly by 59:
a dissolve triggers a check half-way, and another at its end."""
DRIFT_MIN_FRAMES = 4
"""Frames between two drift-triggered checks of one face (each costs an embedding)."""
CALM_GREY_LEVELS = 3.0
"""A followed face whose 24x24 thumbnail changed less than this (mean absolute, 0-255) since the
last frame is calm: its new fit starts from the last box on nearly the same picture, so it
lands where the last, checked, one did, and it is taken without the optical-flow check (at most
CALM_UNCHECKED frames in a row). On a detection frame a calm face keeps its `continuous` state:
nobody else can have taken a place whose picture did not change. On the benchmark's two faces
(10 s, d12 shaky, d20 still) 241 of 498 face-frames are calm, and the check disagreed on none
of them (largest offset 0.0086 of the face width, FLOW_SURE is 0.01); the five sample clips
alone are 15-70% calm, with one offset over FLOW_SURE (d12, 0.013). Tracks, landmarks, poses,
identity checks and detections came out bit-identical with and without the skip on all six."""
CALM_UNCHECKED = 4
"""Calm frames in a row whose fit goes unchecked; the next one is checked by the flow."""
SYNCED = "synced"
LANDMARK_SETTLE = 0.02
"""Largest move of the mouth's landmarks (share of the face width) when the landmark fit
is repeated from its own box; more means the fit had not converged on the face."""
FLOW_SURE = 0.5 * LANDMARK_SETTLE
FLOW_LOST = 1.5 * LANDMARK_SETTLE
"""A new fit within FLOW_SURE (share of the face width) of where optical flow carried the
last fit is taken as is, one beyond FLOW_LOST has lost its face; in between the fit is
repeated from its own box and LANDMARK_SETTLE decides. On d12 (127 refreshes, each checked
against a full detection): the flow offset's median is 0.003 and 95th percentile 0.013; every
fit the repeat flags (> 0.02) has a flow offset above 0.012, and the repeat is needed on
about 7% of the refreshes instead of all of them."""


@dataclass
class Target:
    """A requested face: who (character_id), its time range (ms), the face matched at its start,
    and its index in the request.

    `job` makes `key` unique to one job: engines are shared between jobs (running side by
    side or one after another) and keep per-track state (colours, mesh, smoothing) by key,
    so two jobs' "0:alice" must never meet.
    """

    index: int
    character_id: str
    start_ms: float
    end_ms: float
    anchor: Face
    job: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def key(self) -> str:
        return f"{self.job}:{self.index}:{self.character_id}"

    def active_at(self, time_ms: float) -> bool:
        return self.start_ms <= time_ms < self.end_ms


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
    started: bool = False
    thumbnail: np.ndarray | None = None
    verify: bool = False  # check who is there (a jump, a drift, time): now, or at the next detection
    reference: np.ndarray | None = None  # thumbnail at the last identity check
    checked_ms: float | None = None
    checked_index: int = 0
    raw: np.ndarray | None = None  # the face's landmarks as fitted, before smoothing
    patch: FlowPatch | None = None  # this frame around the face, to check the next fit by flow
    continuous: bool = False  # followed by optical flow without a break since the last identity check
    jumped: bool = False  # its picture jumped on this frame (a shake): its fit starts where the flow went
    calm: bool = False  # its picture hardly changed on this frame (CALM_GREY_LEVELS)
    unchecked: int = 0  # fits in a row taken without the flow check (calm), up to CALM_UNCHECKED


def face_thumbnail(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The box's picture as a 24x24 grey float thumbnail (the box clipped to the frame).

    Every k-th pixel (about 48 per side) is averaged down rather than the whole box: the
    same thumbnail to within a grey level, at a fraction of the cost on large faces.
    """
    height, width = image.shape[:2]
    x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
    x2, y2 = min(width, int(box[2]) + 1), min(height, int(box[3]) + 1)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return np.zeros((24, 24), np.float32)
    step = max(1, min(x2 - x1, y2 - y1) // 48)
    region = cv2.resize(image[y1:y2:step, x1:x2:step], (24, 24), interpolation=cv2.INTER_AREA)
    return region.mean(axis=2, dtype=np.float32)


def _flow_offset(follow: _Follow, grey: FrameGrey, face: Face, flowed: Flowed | None = None) -> float | None:
    """`stages.tracking.flow_offset` of a new fit of a followed face into this frame (`grey`;
    None: no verdict); `flowed`: the flow into this frame when already computed."""
    if follow.patch is None or face.landmarks is None or len(face.landmarks) != 68:
        return None
    return flow_offset(follow.patch, grey, face.landmarks, flowed)


def _mouth_centre(face: Face) -> np.ndarray:
    """The mean of the 20 lip landmarks, or the box centre for a backend without them."""
    if face.landmarks is not None and len(face.landmarks) == 68:
        return face.landmarks[48:68].mean(axis=0)
    return np.asarray(face.center)


@dataclass
class SharedDetections:
    """Full detections (`FaceBackend.detect`, every face with its landmarks) that one pass
    over a video ran, by frame index, for a later pass over the same video to take instead of
    detecting again: the mouth-bank pass samples the frames the track stage will detect on.
    Holds at most what the first pass sampled (the bank pass caps its frames), and each
    frame's entry goes once taken."""

    faces: dict[int, list[Face]] = field(default_factory=dict)
    taken: int = 0
    """Entries a later pass used in place of its own detection."""

    def put(self, index: int, faces: list[Face]) -> None:
        """Keep copies of a frame's detected faces (the first pass may go on changing its own)."""
        self.faces[index] = [replace(f, bbox=f.bbox.copy(), landmarks=None if f.landmarks is None
                                     else np.array(f.landmarks, copy=True)) for f in faces]

    def take(self, index: int) -> list[Face] | None:
        """The faces detected on frame `index`, or None; the entry goes either way."""
        return self.faces.pop(index, None)


@dataclass
class UnknownSighting:
    """A person seen at a detection but not requested, for the report's `unknown_faces`: when
    (ms), their name and the face (its box and pose; no landmarks or embedding)."""

    time_ms: float
    character_id: str
    face: Face


class TrackStage(Stage):
    name = "track"

    def __init__(self, backend: FaceBackend, targets: list[Target], detect_interval: int = 5,
                 similarity_threshold: float = 0.5, rules: SyncRules = SyncRules(),
                 shared: SharedDetections | None = None) -> None:
        self.backend = backend
        self.shared = shared
        self.targets = targets
        self.detect_interval = max(1, detect_interval)
        self.threshold = similarity_threshold
        self.rules = rules
        self._follows = {t.index: _Follow() for t in targets}
        self.book = IdentityBook(backend.similarity, similarity_threshold)
        for target in targets:
            if target.anchor.embedding is not None:
                self.book.add_reference(target.character_id, target.anchor.embedding)
        self.tracker = FaceTracker(backend.similarity, min_similarity=similarity_threshold)
        self._requested_ids = {t.character_id for t in targets}
        self.unknown_sightings: list[UnknownSighting] = []
        self.people_seen: set[str] = set()
        self._detections = 0
        self._shot = 0
        self._place_taken: dict[int, list[tuple[float, str]]] = {t.index: [] for t in targets}
        self._accepts_known_boxes = "known_boxes" in inspect.signature(backend.detect).parameters
        self._fits_near = "fit_near" in inspect.signature(backend.detect).parameters
        self.identity_checks = 0
        """Faces re-identified while followed (each an embedding)."""
        self._pictures: dict[int, np.ndarray] = {}  # this frame's thumbnails at the followed boxes
        self._grey: FrameGrey | None = None  # the frame being processed, grey where converted
        self.identity_drops = 0
        """Followed faces dropped because they were not the person any more."""

    def add_references(self, references: list[tuple[str, np.ndarray]]) -> None:
        """Reference characters (id, embedding) that name people who are not requested."""
        known = {identity.id for identity in self.book.identities}
        for character_id, embedding in references:
            if character_id not in known:
                self.book.add_reference(character_id, embedding)

    def process(self, frame: Frame):
        self._grey = FrameGrey(frame.image)  # this frame's grey regions, shared by the flow checks and patches
        shot = frame.notes.get("shot", 0)
        cut = shot != self._shot
        if cut:
            self._shot = shot
            self._end_shot()
        active = [t for t in self.targets if t.active_at(frame.time_ms)]
        for target in self.targets:
            if target not in active:
                self._follows[target.index] = _Follow()
        swapped = self._jumped(frame, active)  # on every frame: a large jump also flags a check of who is there
        due = self._identity_due(frame, active)
        must_detect = cut or swapped or frame.index % self.detect_interval == 0 or any(
            not self._follows[t.index].started for t in active)
        shared = self.shared.take(frame.index) if self.shared is not None else None
        if not must_detect:  # the landmark path lost a face, or a due check found someone else
            refreshed = self._refresh(frame, active)
            if refreshed:  # a face whose flow broke on this frame is checked on this frame
                due = self._identity_due(frame, active, drift=False) or due
            must_detect = not refreshed or (due and not self._verify_followed(frame, active))
        if must_detect:
            detections = self._detect(frame, active) if shared is None else shared
            if shared is not None:
                self.shared.taken += 1
            self._detections += 1
            claimed = self._match(active, detections, frame)
            names = self._name_people(frame, detections, claimed)
            if cut:
                self._check_places(frame.time_ms, active, detections, names)
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
        for target in active:
            follow = self._follows[target.index]
            follow.thumbnail = None if follow.face is None else face_thumbnail(frame.image, follow.face.bbox)
            follow.patch = None if follow.face is None else flow_patch(self._grey, follow.face.bbox, follow.raw)
        self._grey = None  # (it holds the frame)
        return (frame,)

    def _end_shot(self) -> None:
        """A cut: forget every followed face and naming track. A target that had started stays
        started, so it is matched again by identity only (its anchor box belongs to another shot)."""
        for follow in self._follows.values():
            follow.face = None
            follow.thumbnail = None
            follow.checked_ms = None
            follow.filter.reset()
        self.tracker.end_all()

    def _check_places(self, time_ms: float, active: list[Target], detections: list[Face],
                      names: dict[int, str]) -> None:
        """After a cut, note each target whose request bbox is now held by someone else."""
        for target in active:
            followed = self._follows[target.index].face
            for face in detections:
                if id(face) in names and face is not followed and iou(target.anchor.bbox, face.bbox) >= 0.3:
                    self._place_taken[target.index].append((time_ms, names[id(face)]))
                    break

    def place_warnings(self) -> list[str]:
        """One sentence per target whose place was taken by another person after a cut."""
        warnings = []
        for target in self.targets:
            taken = self._place_taken[target.index]
            if not taken:
                continue
            when = ", ".join(f"{t / 1000:.2f} s ({name})" for t, name in taken[:5])
            more = f" and {len(taken) - 5} more" if len(taken) > 5 else ""
            who = target.character_id
            warnings.append(f"face {who}: after the cut(s) at {when}{more} another person is where the request's "
                            f"bbox was; {who} was followed by identity there (not_visible where absent), "
                            "never by position")
        return warnings

    def _jumped(self, frame: Frame, active: list[Target]) -> bool:
        """Did a followed face's picture change so much that its box may hold someone else
        (SWAP_GREY_LEVELS)? Then this frame gets a full detection and the face found there
        is checked to be the same person. After a smaller jump (JUMP_GREY_LEVELS: a shake)
        the face's smoothing restarts and its landmark fit starts from its box moved where
        the optical flow carried it (`_refresh`); a fit that still lost the face gets the
        detection."""
        jumped = False
        self._pictures = {}
        for target in active:
            follow = self._follows[target.index]
            follow.jumped = follow.calm = False
            if follow.face is None or follow.thumbnail is None:
                continue
            picture = self._pictures[target.index] = face_thumbnail(frame.image, follow.face.bbox)
            change = float(np.mean(np.abs(picture - follow.thumbnail)))
            follow.calm = change < CALM_GREY_LEVELS
            if change > JUMP_GREY_LEVELS:
                follow.filter.reset()  # (the flow check at the detection says whether it stayed continuous)
                follow.verify = change > SWAP_GREY_LEVELS
                follow.jumped = True
                jumped = jumped or follow.verify
        return jumped

    def _identity_due(self, frame: Frame, active: list[Target], drift: bool = True) -> bool:
        """Flag the followed faces whose identity check is due: REID_MS since the last
        (REID_CONTINUOUS_MS while the optical flow followed it without a break), or (with
        `drift`) their picture drifted DRIFT_GREY_LEVELS from the one at the last check."""
        due = False
        for target in active:
            follow = self._follows[target.index]
            if follow.face is None or target.anchor.embedding is None:
                continue
            if follow.checked_ms is None or follow.reference is None:
                self._checked(follow, frame, follow.face)  # followed since a match: that was a check
                continue
            late = frame.time_ms - follow.checked_ms >= (REID_CONTINUOUS_MS if follow.continuous else REID_MS)
            drifted = drift and frame.index - follow.checked_index >= DRIFT_MIN_FRAMES and float(np.mean(np.abs(
                self._picture(frame, target.index, follow.face) - follow.reference))) > DRIFT_GREY_LEVELS
            if late or drifted:
                follow.verify = True
                due = True
        return due

    def _picture(self, frame: Frame, index: int, face: Face) -> np.ndarray:
        """A followed face's thumbnail in this frame at its last box (`_jumped` made it)."""
        picture = self._pictures.get(index)
        return face_thumbnail(frame.image, face.bbox) if picture is None else picture

    def _flowed(self, follow: _Follow, face: Face) -> None:
        """A followed face matched on a detection frame stays `continuous` only when the
        optical flow from the last frame carried its points to this fit (not lost); a calm one
        (`_unchecked`) stays as it was."""
        if self._unchecked(follow):
            follow.unchecked += 1
            return
        follow.unchecked = 0
        offset = _flow_offset(follow, self._grey, face)
        if offset is None or offset > FLOW_LOST * face.width:
            follow.continuous = False

    @staticmethod
    def _unchecked(follow: _Follow) -> bool:
        """Whether a followed face's fit on this frame goes without the flow check: its picture
        is calm (CALM_GREY_LEVELS) and the flow checked one of its last CALM_UNCHECKED fits."""
        return follow.calm and follow.unchecked < CALM_UNCHECKED

    @staticmethod
    def _checked(follow: _Follow, frame: Frame, face: Face) -> None:
        follow.checked_ms, follow.checked_index = frame.time_ms, frame.index
        follow.continuous = True  # from here, until the optical flow breaks
        follow.reference = face_thumbnail(frame.image, face.bbox)

    # ---- detection frames --------------------------------------------------------------
    def _detect(self, frame: Frame, active: list[Target]) -> list[Face]:
        """The backend's full detection, told which boxes are already known faces.

        Boxes of the followed faces (last frame) and of the people named at the last
        detection were verified before; a backend that accepts `known_boxes` skips its
        re-verification of candidates there (the default backend's dlib check).
        """
        if not self._accepts_known_boxes:
            return self.backend.detect(frame.image, with_embedding=False)
        followed = [f.face.bbox for f in self._follows.values() if f.face is not None]
        known = followed + [t.box for t in self.tracker.tracks if self._detections - t.last_step <= 1]
        if not self._fits_near:
            return self.backend.detect(frame.image, with_embedding=False, known_boxes=known)
        # Landmarks only where a face will be rendered: the followed faces and the anchors of
        # targets not yet started; a lost target's face gets them once matched (`_fit_matched`).
        starting = [t.anchor.bbox for t in active if not self._follows[t.index].started]
        return self.backend.detect(frame.image, with_embedding=False, known_boxes=known,
                                   fit_near=followed + starting)

    def _fit_matched(self, frame: Frame, matched: dict[int, Face], detections: list[Face]) -> None:
        """Fit the landmarks (and pose) of matched faces that detection left without them."""
        for index, face in list(matched.items()):
            if face.pose is not None or not self._fits_near:
                continue
            (fitted,) = self.backend.landmarks(frame.image, [face.bbox], [face.score])
            fitted.embedding = face.embedding
            matched[index] = fitted
            detections[next(j for j, d in enumerate(detections) if d is face)] = fitted

    def _match(self, active: list[Target], detections: list[Face], frame: Frame) -> set[int]:
        """Assign detections to active targets; returns the indices of claimed detections.

        Followed faces pair with the detection that overlaps them most (IoU >= 0.3), which
        needs no identity embedding (the expensive part of a detection). Only when a target
        is new or lost are the remaining detections embedded, and it then pairs with the same
        person, or with a box overlapping the face matched at its start (IoU >= 0.5).
        """
        claimed: set[int] = set()
        followed = [t for t in active if self._follows[t.index].face is not None]
        searching = [t for t in active if self._follows[t.index].face is None]
        matched = self._assign(followed, detections, claimed, lambda t, face: (
            iou(self._follows[t.index].face.bbox, face.bbox), 0.3))
        for target in followed:
            face = matched.get(target.index)
            if face is not None:
                self._flowed(self._follows[target.index], face)
        self._verify(followed, matched, detections, claimed, frame)
        lost = [t for t in followed if t.index not in matched]
        searching += lost
        if searching:
            if self._needs_identity(searching, detections, claimed):
                free = [face for j, face in enumerate(detections) if j not in claimed and face.embedding is None]
                self.backend.embed(frame.image, free)

            def score(target: Target, face: Face) -> tuple[float, float]:
                overlap = iou(target.anchor.bbox, face.bbox) if not self._follows[target.index].started else 0.0
                sim = -1.0
                if face.embedding is not None and target.anchor.embedding is not None:
                    sim = self.backend.similarity(face.embedding, target.anchor.embedding)
                return (overlap + max(sim, 0.0), 0.0) if overlap >= 0.5 or sim >= self.threshold else (-1.0, 0.0)

            matched.update(self._assign(searching, detections, claimed, score))
        self._fit_matched(frame, matched, detections)
        for target in active:
            follow = self._follows[target.index]
            follow.started = True
            face = matched.get(target.index)
            if face is None:
                follow.face = None
                follow.checked_ms = None
                follow.filter.reset()
            else:
                if face.embedding is None:
                    face.embedding = target.anchor.embedding
                follow.face = self._smoothed(follow, face, frame.time_ms)
        return claimed

    def _verify(self, followed: list[Target], matched: dict[int, Face], detections: list[Face],
                claimed: set[int], frame: Frame) -> None:
        """Unmatch a flagged target (its picture jumped or drifted, or its check is due) whose
        box now holds a different person (by embedding)."""
        for target in followed:
            follow = self._follows[target.index]
            face = matched.get(target.index)
            if not follow.verify or face is None or target.anchor.embedding is None:
                follow.verify = False
                continue
            follow.verify = False
            if face.embedding is None:
                self.backend.embed(frame.image, [face])
            self.identity_checks += 1
            self._checked(follow, frame, face)
            if face.embedding is not None and \
                    self.backend.similarity(face.embedding, target.anchor.embedding) < self.threshold:
                self.identity_drops += 1
                follow.checked_ms = None
                del matched[target.index]
                claimed.discard(next(j for j, d in enumerate(detections) if d is face))

    def _verify_followed(self, frame: Frame, active: list[Target]) -> bool:
        """The identity checks due on a frame without a detection, on the faces the landmark
        path just followed: an embedding each and no detection (~30 ms saved per check).
        False when one is not its person any more: the frame then gets a full detection,
        whose match checks it again, drops it and searches for the person (`_verify`)."""
        for target in active:
            follow = self._follows[target.index]
            if not follow.verify or follow.face is None or target.anchor.embedding is None:
                continue
            probe = replace(follow.face, landmarks=follow.raw, embedding=None)  # its own, not the carried one
            self.backend.embed(frame.image, [probe])
            if probe.embedding is None or \
                    self.backend.similarity(probe.embedding, target.anchor.embedding) < self.threshold:
                return False
            self.identity_checks += 1
            follow.verify = False
            self._checked(follow, frame, follow.face)
        return True

    def _needs_identity(self, searching: list[Target], detections: list[Face], claimed: set[int]) -> bool:
        """Whether matching the searching targets needs identity embeddings (~100 ms a face).

        A target at its start is matched by its anchor box; when exactly one free detection
        overlaps that box (IoU >= 0.5) for every such target, and no two targets share it,
        the match is certain without embeddings. A lost target needs them to be found again.
        """
        chosen: set[int] = set()
        for target in searching:
            if self._follows[target.index].started:
                return True
            near = [j for j, face in enumerate(detections)
                    if j not in claimed and iou(target.anchor.bbox, face.bbox) >= 0.5]
            if len(near) != 1 or near[0] in chosen:
                return True
            chosen.add(near[0])
        return False

    @staticmethod
    def _assign(targets: list[Target], detections: list[Face], claimed: set[int], score) -> dict[int, Face]:
        """Hungarian assignment of unclaimed detections to targets; score(t, f) -> (value, minimum)."""
        if not targets or not detections:
            return {}
        values = np.full((len(targets), len(detections)), -np.inf)
        for i, target in enumerate(targets):
            for j, face in enumerate(detections):
                if j in claimed:
                    continue
                value, minimum = score(target, face)
                if value >= minimum and value > 0:
                    values[i, j] = value
        matched = {}
        cost = np.where(np.isfinite(values), -values, 1e6)
        for i, j in zip(*linear_sum_assignment(cost)):
            if np.isfinite(values[i, j]):
                matched[targets[i].index] = detections[j]
                claimed.add(int(j))
        return matched

    def _name_people(self, frame: Frame, detections: list[Face], claimed: set[int]) -> dict[int, str]:
        """Name the people no target claimed; returns {id(face): name}."""
        for target in self.targets:
            if self._follows[target.index].face is not None:
                self.people_seen.add(target.character_id)
        others = [f for j, f in enumerate(detections) if j not in claimed]
        live = [t.box for t in self.tracker.tracks if self._detections - t.last_step <= 1]
        new = [f for f in others if f.embedding is None and not any(iou(f.bbox, box) >= 0.3 for box in live)]
        self.backend.embed(frame.image, new)
        unposed = [f for f in new if f.pose is None] if self._fits_near else []
        for face, fitted in zip(unposed, self.backend.landmarks(frame.image, [f.bbox for f in unposed])):
            face.pose = fitted.pose  # detection left it unfitted: a pose for the report, once a track
        tracks = self.tracker.update(others, self._detections)
        named = [(f, t) for f, t in zip(others, tracks) if t.embedding is not None]
        names = self.book.assign([t.embedding for _, t in named], [t.identity for _, t in named])
        by_face = {}
        for (face, track), (name, _) in zip(named, names):
            track.identity = name
            by_face[id(face)] = name
            self.people_seen.add(name)
            if name not in self._requested_ids:
                # the report needs its box and pose: its landmarks and embedding (~1.3 KB) are not kept
                self.unknown_sightings.append(UnknownSighting(frame.time_ms, name,
                                                              replace(face, landmarks=None, embedding=None)))
        return by_face

    # ---- frames in between -------------------------------------------------------------
    def _refresh(self, frame: Frame, active: list[Target]) -> bool:
        """Follow the faces by the cheap landmark path; False (nothing changed) when it lost one.

        A fit pulled off its face by fast motion or blur (the mouth up to 80 px from where
        detection puts it on d12) gets a full detection instead of a mouth painted beside the
        real one. Pyramidal optical flow catches it without fitting twice: a few points of
        the last fit are flowed into this frame and back (`stages.tracking.flow_offset`); a
        fit near where they went is kept, one far from it is lost (FLOW_SURE, FLOW_LOST).
        In between, or where the flow cannot judge (too few points come back), the fit is
        repeated from its own box: a converged fit stays put (under 1.3 px of mouth motion
        on d12's 215 px face), a lost one moves again. A calm face's fit (`_unchecked`) is
        kept without the flow."""
        follows = [self._follows[t.index] for t in active if self._follows[t.index].face is not None]
        if not follows:
            return True
        calm = [self._unchecked(f) for f in follows]
        flows = [None if f.patch is None or unchecked else flow_points(f.patch, self._grey)
                 for f, unchecked in zip(follows, calm)]
        refreshed = self.backend.landmarks(frame.image, [f.face.bbox + np.tile(flow_shift(f.patch, flowed), 2)
                                                         if f.jumped and flowed is not None else f.face.bbox
                                                         for f, flowed in zip(follows, flows)])
        unsure, judged = [], []
        for follow, face, flowed, unchecked in zip(follows, refreshed, flows, calm):
            if unchecked:
                judged.append(True)  # (its `continuous` stays)
                continue
            offset = None if flowed is None else _flow_offset(follow, self._grey, face, flowed)
            if offset is not None and offset > FLOW_LOST * face.width:
                return False
            if offset is None or offset > FLOW_SURE * face.width:
                unsure.append(face)
            judged.append(offset is not None)
        again = self.backend.landmarks(frame.image, [f.bbox for f in unsure]) if unsure else []
        for first, second in zip(unsure, again):
            moved = np.linalg.norm(_mouth_centre(first) - _mouth_centre(second))
            if moved > LANDMARK_SETTLE * first.width:
                return False
        for follow, face, flowed, unchecked in zip(follows, refreshed, judged, calm):
            follow.unchecked = follow.unchecked + 1 if unchecked else 0
            face.score = follow.face.score
            face.embedding = follow.face.embedding
            follow.continuous = follow.continuous and flowed
            follow.face = self._smoothed(follow, face, frame.time_ms)
        return True

    @staticmethod
    def _smoothed(follow: _Follow, face: Face, time_ms: float) -> Face:
        follow.raw = face.landmarks
        if face.landmarks is not None:
            face.landmarks = follow.filter(face.landmarks, time_ms / 1000.0)
        return face
