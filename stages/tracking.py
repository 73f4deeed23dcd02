"""FaceTracker: links faces across frames by box overlap plus identity embedding.

Each new frame's faces are matched to live tracks with the Hungarian algorithm on
score = IoU + embedding similarity (ArcFace scale), gated so that a pair needs either a
real overlap (IoU >= min_iou) or a confident same-person similarity, and never pairs two
embeddings less similar than `veto_similarity` (different people in one place: a cut the
shot detector missed). A track that is not
seen for `max_missed` frames ends; a person coming back starts a new track, and the
identity book (not the tracker) gives them their old name. A shot cut ends every track
(`end_all`): box overlap means nothing across a cut.

`flow_offset` checks a landmark fit against pyramidal optical flow from the previous frame
(a few points flowed forward and back, ~0.3 ms a face), so the track stage catches a fit
that lost its face without fitting it twice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import cv2
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


FLOW_POINTS = (31, 33, 35, 48, 50, 52, 54, 62)
"""iBUG landmarks that carry the mouth region's motion: the nostrils' base (31-35), the mouth
corners (48, 54) and the upper lip (50, 52, 62). The upper lip rather than the lower: speech
moves the jaw, and the check is about where the face went, not how far the mouth opened."""
FLOW_FB_PX = 1.0
"""Forward-backward error (patch pixels) above which a flowed point is unreliable."""
FLOW_MIN_POINTS = 4
"""Reliable points needed for a verdict; with fewer the flow cannot judge (blur, occlusion)."""


@dataclass
class FlowPatch:
    """A grey patch of the previous frame around a followed face, and that face's fitted
    landmarks there (pixels in the frame): what `flow_offset` flows forward."""

    grey: np.ndarray  # uint8, every `step`-th pixel of `region`
    region: tuple[int, int, int, int]  # x1, y1, x2, y2 in the frame
    step: int  # frame pixels per patch pixel (large faces are flowed subsampled)
    points: np.ndarray  # [len(FLOW_POINTS), 2] frame pixels


def _patch_region(box: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """The face box grown by half its width on each side, clipped to the frame."""
    x1, y1, x2, y2 = (float(v) for v in box)
    pad = 0.5 * (x2 - x1)
    height, width = shape[:2]
    return (max(0, int(x1 - pad)), max(0, int(y1 - pad)), min(width, int(x2 + pad) + 1),
            min(height, int(y2 + pad) + 1))


def _grey(image: np.ndarray, region: tuple[int, int, int, int], step: int) -> np.ndarray:
    """Every `step`-th pixel of the region, grey. Converted whole, then subsampled: the same
    pixels a quarter of the cost (0.1 ms, not 0.4, for a 215 px face), since a strided RGB
    copy is slower than converting every pixel."""
    x1, y1, x2, y2 = region
    view = image[y1:y2, x1:x2]
    if view.strides[1:] != (view.shape[2] * view.itemsize, view.itemsize):  # OpenCV needs whole pixels
        view = np.ascontiguousarray(view)
    grey = cv2.cvtColor(view, cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(grey[::step, ::step]) if step > 1 else grey


GREY_MARGIN = 0.04
"""Share of a region's width added on each side when `FrameGrey` converts it. On the
benchmark's two faces (10 s, d12 shaky) the track stage converts 97 M pixels with it against
123 M without sharing (0.02: 98 M; 0.1: 103 M, the margins cost more than they share)."""


class FrameGrey:
    """One frame's grey pixels, converted region by region and kept while the frame is tracked.

    For each followed face the track stage converts the region around its last box (to flow
    the last fit into this frame, `flow_points`) and then the region around its new box (the
    patch the next frame flows from, `flow_patch`): mostly the same pixels. A region is
    converted with GREY_MARGIN on each side, so the second, when the face moved or grew less
    than that, is a slice of the first. RGB to grey is per pixel, so a slice holds the very
    values a conversion of its own would."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.converted: list[tuple[tuple[int, int, int, int], np.ndarray]] = []
        self.conversions = 0

    @property
    def shape(self) -> tuple[int, ...]:
        return self.image.shape

    def region(self, region: tuple[int, int, int, int], step: int) -> np.ndarray:
        """`_grey(image, region, step)`, from a region converted before when one covers it."""
        x1, y1, x2, y2 = region
        for (a1, b1, a2, b2), grey in self.converted:
            if a1 <= x1 and b1 <= y1 and x2 <= a2 and y2 <= b2:
                return np.ascontiguousarray(grey[y1 - b1:y2 - b1:step, x1 - a1:x2 - a1:step])
        height, width = self.image.shape[:2]
        margin = int(GREY_MARGIN * (x2 - x1))
        a1, b1 = max(0, x1 - margin), max(0, y1 - margin)
        grown = (a1, b1, min(width, x2 + margin), min(height, y2 + margin))
        grey = _grey(self.image, grown, 1)
        self.converted.append((grown, grey))
        self.conversions += 1
        return np.ascontiguousarray(grey[y1 - b1:y2 - b1:step, x1 - a1:x2 - a1:step])


def _grey_of(image: np.ndarray | FrameGrey, region: tuple[int, int, int, int], step: int) -> np.ndarray:
    return image.region(region, step) if isinstance(image, FrameGrey) else _grey(image, region, step)


def flow_patch(image: np.ndarray | FrameGrey, box: np.ndarray, landmarks: np.ndarray | None) -> FlowPatch | None:
    """The patch to flow from at the next frame (see `flow_offset`); None without 68 landmarks.

    Faces 160 px wide or more are flowed on every 2nd (3rd, ...) pixel, so that they are
    80-160 px wide there: Lucas-Kanade's error (about 0.1 patch pixel) stays under 0.5% of
    the face width, and the check costs ~0.3 ms a face (0.8 ms at full resolution). On d12
    (215 px) the verdicts are the same as at full resolution.
    """
    if landmarks is None or len(landmarks) != 68:
        return None
    region = _patch_region(box, image.shape)
    if region[2] - region[0] < 16 or region[3] - region[1] < 16:
        return None
    step = max(1, int(float(box[2] - box[0]) // 80))
    return FlowPatch(_grey_of(image, region, step), region, step,
                     np.asarray(landmarks, np.float32)[list(FLOW_POINTS)])


@dataclass
class Flowed:
    """Where optical flow carried a patch's FLOW_POINTS into a new frame: the reliable
    points' positions (frame pixels) and which of FLOW_POINTS they are."""

    points: np.ndarray  # [k, 2]
    good: np.ndarray  # [len(FLOW_POINTS)] bool


def flow_points(patch: FlowPatch, image: np.ndarray | FrameGrey) -> Flowed | None:
    """The previous fit's FLOW_POINTS flowed from the previous frame's patch into the same
    region of this frame (Lucas-Kanade, 3 levels) and back; points that do not return within
    FLOW_FB_PX are dropped. None when fewer than FLOW_MIN_POINTS flowed reliably."""
    x0, y0 = patch.region[:2]
    current = _grey_of(image, patch.region, patch.step)
    if current.shape != patch.grey.shape:  # another frame size: nothing to compare
        return None
    start = ((patch.points - (x0, y0)) / patch.step).astype(np.float32).reshape(-1, 1, 2)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)
    ahead, found, _ = cv2.calcOpticalFlowPyrLK(patch.grey, current, start, None, winSize=(15, 15),
                                               maxLevel=3, criteria=criteria)
    if ahead is None:
        return None
    back, returned, _ = cv2.calcOpticalFlowPyrLK(current, patch.grey, ahead, None, winSize=(15, 15),
                                                 maxLevel=3, criteria=criteria)
    if back is None:
        return None
    error = np.linalg.norm((back - start).reshape(-1, 2), axis=1)
    good = (found.ravel() == 1) & (returned.ravel() == 1) & (error <= FLOW_FB_PX)
    if int(good.sum()) < FLOW_MIN_POINTS:
        return None
    return Flowed(ahead.reshape(-1, 2)[good] * patch.step + (x0, y0), good)


def flow_offset(patch: FlowPatch, image: np.ndarray | FrameGrey, fitted: np.ndarray, flowed: Flowed | None = None) -> float | None:
    """Distance (frame pixels) between a new landmark fit and where optical flow carried the
    previous fit's points (`flow_points`, or `flowed` when already computed for this frame):
    the norm of the median (over the reliable points) of fitted minus flowed. None when too
    few points flowed reliably to judge: the caller then needs another way to check the fit.
    """
    flowed = flowed if flowed is not None else flow_points(patch, image)
    if flowed is None:
        return None
    fitted_points = np.asarray(fitted, np.float32)[list(FLOW_POINTS)][flowed.good]
    return float(np.linalg.norm(np.median(fitted_points - flowed.points, axis=0)))


def flow_shift(patch: FlowPatch, flowed: Flowed) -> np.ndarray:
    """How far (frame pixels, [dx, dy]) the face moved by the flow: the median displacement of
    its reliable points."""
    return np.median(flowed.points - patch.points[flowed.good], axis=0)
