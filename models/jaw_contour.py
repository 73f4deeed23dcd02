"""Lower jaw landmarks moved onto the face's real silhouette, found by colour.

dlib's 68-point jaw line (points 0-16) is a prior more than a measurement: on a wide-open
mouth or a turned head its chin points sit up to 0.4 inter-ocular distances inside the
face (the far side of a turned jaw, the corner of a square chin). The engine raises the
chin along those points (`models.mouth_geometry.jaw_skirt` carries the shadow band under
them), so a real chin edge below them is left in the stretched zone between the moving jaw
and the fixed ring: a dark wedge of collar under the chin, a notch where the jaw meets the
sweater. So each lower jaw point is pushed along its outward normal to where the colour
leaves the chin's skin colour (CIELAB, lightness counted at half weight since the underside
of a chin is shaded skin):
- never further than `MAX_REACH`, more on a wide-open mouth (`OPEN_REACH`), and only where
  the outside clearly differs from the skin (a neck of the same skin and light has no edge
  to find: those points keep dlib's place);
- a point alone with an edge keeps dlib's place, and none moves more than `SPIKE` beyond
  both its neighbours (`_along_contour`);
- per frame the edges are noisy (a fold, a hand, the collar's seam): a track's edges are a
  median over its last frames (`JawHistory`), which a one-frame edge cannot move. The
  history also says how often the chin lies over clothing (`JawHistory.chin_edge`), which
  bounds how far the chin may rise (`models.mouth_geometry.chin_rise_limit`).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

POINTS = tuple(range(4, 13))
"""Jaw points refined: the chin and the jaw up to below the mouth corners."""
MAX_REACH = 0.3
"""Farthest a point moves outward on a closed mouth (inter-ocular distances): past it a
neck of the chin's own colour runs on to the collar, whose edge is not the chin's."""
OPEN_REACH = 0.75
"""Extra reach per unit of inner-lip gap beyond OPEN_FROM (s / s): dlib's chin lags a
dropped jaw, by 0.2-0.4 s on a laugh's wide-open mouth (quick start 163-175)."""
OPEN_FROM = 0.1
"""Inner-lip gap (s) from which the reach grows..."""
MAX_OPEN_REACH = 0.45
"""...up to this reach (s)."""
MAX_INWARD = 0.12
"""Farthest a point moves inward (inter-ocular distances)."""
STEP = 0.01
"""Sample spacing along each normal (inter-ocular distances)."""
MIN_CONTRAST = 14.0
"""Least colour distance (CIELAB, 0-255 scale, lightness at half weight) between the chin's
skin and what lies beyond the edge for the edge to count."""
OUTSIDE_RUN = 3
"""Consecutive samples past the half-way colour that confirm an edge (not a freckle)."""
SPIKE = 0.12
"""Farthest a point's offset lies beyond both its neighbours' (inter-ocular distances)."""
NEAR_RUN = 5
"""Samples before a crossing whose median is the level the colour rises from."""
LIGHTNESS_WEIGHT = 0.5
"""Weight of CIELAB lightness against its colour axes: a shaded chin is still skin."""
WORK_SCALE = 48.0
"""Inter-ocular distance (pixels) the jaw is scaled down to before its colour is read."""


def _skin_lab(lab: np.ndarray, pts: np.ndarray) -> np.ndarray | None:
    """Median CIELAB of the chin: between the lower lip and the jaw, above the jaw points."""
    chin = np.concatenate([pts[[57, 56, 55, 54]], pts[[10, 9, 8, 7, 6]], pts[[48, 59, 58]]])
    mask = np.zeros(lab.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(chin).astype(np.int32)], 1)
    values = lab[mask > 0]
    return np.median(values, axis=0) if len(values) >= 20 else None


def _inter_ocular(pts: np.ndarray) -> float:
    """Distance between the eye centres (pixels): the unit of every reach here."""
    return float(np.linalg.norm(pts[42:48].mean(axis=0) - pts[36:42].mean(axis=0)))


def _normals(pts: np.ndarray) -> np.ndarray:
    """Unit outward normals of the jaw contour at POINTS (image pixels)."""
    centre = pts[[30, 33, 51, 57]].mean(axis=0)
    out = []
    for i in POINTS:
        tangent = pts[i + 1] - pts[i - 1]
        n = np.array([tangent[1], -tangent[0]])
        n /= np.linalg.norm(n) + 1e-9
        if np.dot(n, pts[i] - centre) < 0:
            n = -n
        out.append(n)
    return np.array(out)


def jaw_offsets(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """How far (pixels, + outward) each POINTS jaw point is from the silhouette edge along
    its normal; 0 where no clear edge is found. The jaw is read at WORK_SCALE (area
    resampling also takes out the noise a blur would), about 0.5 ms a face."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(68, 2)
    s = _inter_ocular(pts)
    offsets = np.zeros(len(POINTS))
    if s < 8:
        return offsets
    gap = float(np.linalg.norm(pts[66] - pts[62])) / s
    reach = min(MAX_REACH + OPEN_REACH * max(0.0, gap - OPEN_FROM), MAX_OPEN_REACH)
    margin = (reach + 0.05) * s
    h, w = image.shape[:2]
    region = np.concatenate([pts[list(POINTS)], pts[48:60]])
    x0, y0 = np.maximum(np.floor(region.min(axis=0) - margin).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(region.max(axis=0) + margin).astype(int) + 1, [w, h])
    if x1 - x0 < 8 or y1 - y0 < 8:
        return offsets
    zoom = min(1.0, WORK_SCALE / s)
    crop = np.ascontiguousarray(image[y0:y1, x0:x1])
    if zoom < 1.0:
        size = (max(2, round((x1 - x0) * zoom)), max(2, round((y1 - y0) * zoom)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(crop, cv2.COLOR_RGB2LAB).astype(np.float32)
    local = (pts - (x0, y0)) * zoom
    skin = _skin_lab(lab, local)
    if skin is None:
        return offsets
    weight = np.array([LIGHTNESS_WEIGHT, 1.0, 1.0], np.float32)
    distance = np.linalg.norm((lab - skin) * weight, axis=2)
    steps = np.arange(-MAX_INWARD, reach + 1e-9, STEP) * s
    rays = local[list(POINTS)][:, None, :] + (zoom * steps)[None, :, None] * _normals(pts)[:, None, :]
    profile = cv2.remap(distance, rays[..., 0].astype(np.float32), rays[..., 1].astype(np.float32),
                        cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return _edges(profile, steps)


def _edges(profile: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Per row of `profile` (colour distance from the skin along one normal, at `steps`
    pixels): the first sample where the colour crosses half way from the level just before
    it (the median of the NEAR_RUN samples up to it: a shaded underside of the chin reads
    higher than the chin above it, and must not hide the edge beyond) to the outside's (the
    median of the next OUTSIDE_RUN samples) and stays past it over those samples, where the
    outside differs from the jaw's own colour (the median of the samples up to the dlib
    point) by MIN_CONTRAST; 0 without such an edge."""
    inside = np.median(profile[:, steps <= 0], axis=1)[:, None]
    runs = np.lib.stride_tricks.sliding_window_view(profile[:, 1:], OUTSIDE_RUN, axis=1)
    outside = np.median(runs, axis=2)
    padded = np.concatenate([np.repeat(profile[:, :1], NEAR_RUN - 1, axis=1), profile], axis=1)
    near = np.median(np.lib.stride_tricks.sliding_window_view(padded, NEAR_RUN, axis=1), axis=2)[:, :-OUTSIDE_RUN]
    half = near + 0.5 * (outside - near)
    before = profile[:, :-OUTSIDE_RUN]
    edge = (outside - inside >= MIN_CONTRAST) & (before < half) & (half <= runs.min(axis=2))
    found = edge.any(axis=1)
    j = np.argmax(edge, axis=1)  # the first crossing: sample j lies before it, j + 1 after
    rows = np.arange(len(profile))
    rise = np.maximum(profile[rows, j + 1] - profile[rows, j], 1e-6)
    t = np.clip((half[rows, j] - profile[rows, j]) / rise, 0.0, 1.0)
    return np.where(found, steps[j] + t * (steps[j + 1] - steps[j]), 0.0)


def _along_contour(offsets: np.ndarray) -> np.ndarray:
    """The offsets of points whose neighbour found an edge too (0 for the others: a single
    stray edge, a shadow or a collar seam, must not bend the contour), each kept within
    SPIKE of its neighbours' range (the unrefined points 3 and 13 count as 0): a single
    point run on to the collar would bend the chin into a spike, while a chin's real
    corner, where dlib's jaw cuts across a square chin, moves its neighbours too."""
    found = np.concatenate([[False], offsets != 0, [False]])
    kept = offsets * (found[1:-1] & (found[:-2] | found[2:]))
    padded = np.concatenate([[0.0], kept, [0.0]])
    low = np.minimum(padded[:-2], padded[2:]) - SPIKE
    high = np.maximum(padded[:-2], padded[2:]) + SPIKE
    return np.clip(kept, low, high)


def _moved(pts: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    out = pts.copy()
    out[list(POINTS)] += offsets[:, None] * _normals(pts)
    return out


def refine_jaw(image: np.ndarray, landmarks: np.ndarray, history: JawHistory | None = None,
               frame_index: int = 0) -> np.ndarray:
    """The 68 landmarks (pixels) with the lower jaw points (POINTS) on the face's silhouette.

    image: RGB uint8 frame. Returns a new float64 68x2 array; the other points are
    unchanged. A point moves only where a neighbour found an edge too, and at most SPIKE
    beyond its neighbours. With a track's `history`, each point's edge is the median over
    its last HISTORY frames, so an edge seen in one frame only (a hand, a fold) neither
    moves nor flickers the jaw."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(68, 2).copy()
    offsets = jaw_offsets(image, pts)
    if history is not None:
        s = max(_inter_ocular(pts), 1e-6)
        offsets = history.smoothed(frame_index, offsets / s) * s
    kept = _along_contour(offsets)
    return _moved(pts, kept) if kept.any() else pts


HISTORY = 5
"""Frames over which a track's jaw edges are a median (200 ms at 25 fps)."""
CHIN = [POINTS.index(i) for i in (7, 8, 9)]
"""Indices (in POINTS) of the chin's points, whose edges say what lies under the chin."""
EDGE_RATE = 0.08
"""Per-frame weight of the exponential average `JawHistory.chin_edge` (about half a second
at 25 fps): slow enough that the chin's reach does not flicker."""


@dataclass
class JawHistory:
    """One track's recent jaw edge offsets (inter-ocular distances, 0 = no edge found), and
    `chin_edge`: how often the chin's points find an edge (0-1, an exponential average), so
    how often the chin lies over clothing or background rather than a neck of its own skin."""

    recent: deque = field(default_factory=lambda: deque(maxlen=HISTORY))
    last_frame: int | None = None
    chin_edge: float = 0.0

    def smoothed(self, frame_index: int, offsets: np.ndarray) -> np.ndarray:
        """This frame's offsets folded in (once per frame), then the per-point median."""
        if frame_index == self.last_frame and self.recent:
            self.recent[-1] = offsets
        else:
            self.recent.append(offsets)
            self.last_frame = frame_index
            found = float(np.mean(offsets[CHIN] != 0))
            self.chin_edge += EDGE_RATE * (found - self.chin_edge)
        return np.median(np.stack(self.recent), axis=0)
