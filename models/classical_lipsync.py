"""The classical, weight-free lip-sync engine: audio features -> the person's own mouth.

Per face and frame:
  1. Build a face frame from the 68 landmarks: origin at the mouth centre, u along the
     eye line, v pointing down the face, scale s = inter-ocular distance (pixels).
  2. Target landmarks: first remove the speaker's own mouth motion (close the inner lips
     onto their midline, the lower lip rising by most of the original gap and the chin by
     half of it, upper lip a little down; restore the mouth width to its slow per-track
     average), then open, widen and round from the MouthShape (lower lip and chin drop
     with the jaw, the upper lip lifts a little, the corners follow). With a mouth bank
     the widest opening is this person's own (`_warp_for`).
  3. Backward piecewise-affine warp over a per-track fixed triangulation of the lower-face
     landmarks plus a ring of fixed points around it, applied with one cv2.remap on a crop
     whose original mouth gap was first painted over with lip texture.
  4. The mouth: with the person's `MouthBank` (MouthRequest.bank), the best matching real
     samples, their weights smoothed over time, warped onto the target lips with their
     real lip thickness, relit and blended (`models.mouth_transfer`). Without a bank, or
     where it lacks the shape (no open / no closed sample), a synthesised inner mouth:
     a dark cavity coloured from the lips, a band of upper teeth when open enough.
  5. Alpha: the lower face below the nose and down to just under the lowest jaw line
     (source or target), Gaussian-feathered, zero at the crop border, times strength.

Temporal state (per MouthRequest.track_key, a person within one shot): the closed-mouth
shape (2-frame average in face coordinates), the neutral mouth width (slow average), the
lip and skin colours (exponential averages), the triangulation and the bank samples'
weights, so that the target depends smoothly on the inputs and nothing flickers. A track
unseen for more than `STATE_GAP_FRAMES` frames starts afresh.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Sequence

import cv2
import numpy as np
from scipy.spatial import Delaunay

from models.engine import MouthPatch, MouthRequest
from models.mouth_bank import (
    CLOSED_GAP,
    OPEN_GAP,
    FaceAxes,
    MouthBank,
    mouth_opening,
    mouth_width,
)
from models.mouth_front_end import mouth_track
from models.mouth_params import MouthParamConfig, MouthShape, MouthTrack
from models.mouth_select import SamplePlan, frame_weights, plan_samples, switch_costs
from models.mouth_transfer import (
    MeshRaster,
    WeightedSample,
    paint_bank_mouth,
    with_real_lips,
)

log = logging.getLogger(__name__)

UPPER_OUTER = (49, 50, 51, 52, 53)
LOWER_OUTER = (55, 56, 57, 58, 59)
UPPER_INNER = (61, 62, 63)
LOWER_INNER = (67, 66, 65)  # paired with UPPER_INNER column by column
CORNERS = (48, 54, 60, 64)
JAW = tuple(range(1, 16))
NOSE = (31, 32, 33, 34, 35)
CONTROL = JAW + NOSE + tuple(range(48, 68))
SKIRT = tuple(range(3, 14))
"""Jaw points that carry a skirt point below them (`_jaw_skirt`)."""
SKIRT_DEPTH = 0.1
"""How far (s units) below the jaw line the skirt points lie."""
JAW_MOTION_SPAN = 4.5
"""Jaw points (from the chin, point 8) over which the chin's move fades to nothing."""
N_RING = 20
STATE_GAP_FRAMES = 30
MIN_ARTICULATION = 0.28
"""Widest opening (s units) given to a person who opens little, where their bank allows."""
SYNTH_BEYOND = 0.08
"""How far (s units) past a person's widest sample the opening may be synthesised."""
MAX_PLAN_FRAMES = 1500
"""Frames planned ahead at once per track (60 s at 25 fps); a longer range plans again."""
REPLAN_WIDTH = 0.06
"""Change of the source's closed-mouth width (s units: a smile coming or going) after which
the rest is planned again, for the new expression."""
REPLAN_POSE_DEG = 10.0
"""Head turn (yaw or pitch, degrees) since the plan after which the rest is planned again."""
MAX_TRACK_STATES = 64
"""Per-track states kept (least recently used dropped): the engine is shared by every job
of a server, whose track keys are unique per job, so the table must not grow forever."""


@dataclass
class WarpConfig:
    """Shape of the synthetic articulation, in units of the inter-ocular distance s."""

    max_gap: float = 0.42  # inner-lip gap at openness 1
    lower_share: float = 0.85  # of the gap taken by the lower lip and chin (jaw drop)
    jaw_close_share: float = 0.5  # of the original gap by which the chin rises when closing
    corner_drop: float = 0.3  # corners move down by this share of the gap
    widen: float = 0.12  # relative mouth-width change at width 1
    narrow: float = 0.22  # relative mouth-width change at rounding 1
    mask_margin: float = 0.16  # alpha region beyond the jaw line
    feather: float = 0.045  # Gaussian sigma of the alpha edge
    ring_margin: float = 0.22  # fixed warp points beyond the alpha region


@dataclass
class _TrackState:
    last_frame: int
    neutral_width: float  # mouth-corner distance / s
    lip_rgb: np.ndarray | None = None
    skin_rgb: np.ndarray | None = None
    neutral_uv: np.ndarray | None = None  # closed-mouth shape, local s units, smoothed
    triangles: np.ndarray | None = None
    plan: SamplePlan | None = None  # the bank sample per frame, planned ahead
    bank_id: int | None = None  # id() of the bank the plan was made with
    pose: np.ndarray | None = None  # (pitch, yaw, roll) degrees, smoothed: one frame's is noisy
    plan_width: float = 0.0  # the closed mouth's width (s units) the plan was made for


def _profile(u: np.ndarray, half_width: float, exponent: float) -> np.ndarray:
    """How much of the centre's vertical motion a lip point at u takes (1 centre, 0 corner)."""
    r = np.clip(1.0 - (u / max(half_width, 1e-6)) ** 2, 0.0, 1.0)
    return r ** exponent


def lip_exponent(shape: MouthShape) -> float:
    """Profile exponent: lower is boxier/rounder (rounded lips open more evenly)."""
    return 0.45 - 0.25 * float(shape.rounding)


def _jaw_weight(i: int) -> float:
    """How far the alpha mask reaches below jaw point i (1 at the chin, 0 at the ears)."""
    return float(max(0.0, np.cos(np.pi / 2 * abs(i - 8) / 6.0)))


def _jaw_motion(i: int) -> float:
    """How much of the chin's vertical move jaw point i takes: narrower than the mask, so
    the moved jaw edge meets the unmoved one inside the mask, not at its border (where a
    step would show as a jagged chin)."""
    return float(max(0.0, np.cos(np.pi / 2 * min(1.0, abs(i - 8) / JAW_MOTION_SPAN))))


def neutral_local(uv: np.ndarray, cfg: WarpConfig) -> np.ndarray:
    """Close the mouth in local coordinates (68x2, s-normalised): remove the inner-lip gap.

    The gap is measured at the three inner columns and interpolated along u; lower-lip
    points rise by lower_share of it (the jaw closes), upper-lip points drop by the rest.
    """
    out = uv.copy()
    cols_u = np.array([uv[60, 0]] + [(uv[a, 0] + uv[b, 0]) / 2 for a, b in zip(UPPER_INNER, LOWER_INNER)] + [uv[64, 0]])
    gaps = np.array([0.0] + [max(0.0, uv[b, 1] - uv[a, 1]) for a, b in zip(UPPER_INNER, LOWER_INNER)] + [0.0])
    order = np.argsort(cols_u)
    gap_at = lambda u: np.interp(u, cols_u[order], gaps[order])  # noqa: E731
    for i in UPPER_OUTER + UPPER_INNER:
        out[i, 1] += (1 - cfg.lower_share) * gap_at(uv[i, 0])
    for i in LOWER_OUTER + LOWER_INNER:
        out[i, 1] -= cfg.lower_share * gap_at(uv[i, 0])
    centre_gap = gaps[2]
    # The chin rises by less than the lower lip: a wide-open mouth closes partly by the
    # lips, and a full jaw lift would pull the neck and collar up under the chin.
    for i in JAW:
        out[i, 1] -= cfg.jaw_close_share * centre_gap * _jaw_motion(i)
    for a, b in zip(UPPER_INNER, LOWER_INNER):
        # Each inner pair meets at one point, so the closed inner polygon has no area.
        meet = out[a] + (out[b] - out[a]) * (1 - cfg.lower_share) if uv[b, 1] >= uv[a, 1] else (out[a] + out[b]) / 2
        out[a] = out[b] = meet
    return out


def articulate_local(neutral: np.ndarray, shape: MouthShape, neutral_width: float, cfg: WarpConfig) -> np.ndarray:
    """Open/widen/round a closed mouth (local s-normalised coordinates) to `shape`."""
    out = neutral.copy()
    lips = list(range(48, 68))
    width_now = max(neutral[54, 0] - neutral[48, 0], 1e-3)
    # The person's own expression stays: a smile (wider than their average mouth) keeps its
    # width; only a mouth narrower than average (the original's own "o") is widened back.
    factor = (max(neutral_width, width_now) / width_now) * (1 + cfg.widen * shape.width - cfg.narrow * shape.rounding)
    factor *= 1 - 0.06 * shape.openness
    out[lips, 0] = neutral[lips, 0] * factor

    gap = cfg.max_gap * float(np.clip(shape.openness, 0, 1))
    expo = lip_exponent(shape)
    hw_in, c_in = (out[64, 0] - out[60, 0]) / 2, (out[64, 0] + out[60, 0]) / 2
    hw_out, c_out = (out[54, 0] - out[48, 0]) / 2, (out[54, 0] + out[48, 0]) / 2
    corner = cfg.corner_drop * gap
    up = -(1 - cfg.lower_share) * gap
    down = cfg.lower_share * gap
    for idx, hw, c, move in (
        (UPPER_OUTER, hw_out, c_out, up),
        (UPPER_INNER, hw_in, c_in, up),
        (LOWER_OUTER, hw_out, c_out, down),
        (LOWER_INNER, hw_in, c_in, down),
    ):
        p = _profile(out[list(idx), 0] - c, hw, expo)
        out[list(idx), 1] += corner * (1 - p) + move * p
    out[list(CORNERS), 1] += corner
    # Rounded lips pout: a little thicker.
    out[list(UPPER_OUTER), 1] -= 0.04 * shape.rounding
    out[list(LOWER_OUTER), 1] += 0.04 * shape.rounding
    for i in JAW:
        out[i, 1] += down * _jaw_motion(i)
    return out


def _alpha_polygon(src_uv: np.ndarray, dst_uv: np.ndarray, cfg: WarpConfig) -> np.ndarray:
    """Local polygon of the lower face: under the nose, down to below the lower jaw line."""
    jaw = np.maximum(src_uv[list(range(2, 15))], dst_uv[list(range(2, 15))])
    jaw[:, 0] = np.where(jaw[:, 0] < 0, np.minimum(src_uv[2:15, 0], dst_uv[2:15, 0]), jaw[:, 0])
    centre = np.array([0.0, -0.25])
    d = jaw - centre
    d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-9
    # Around the chin the mask reaches below the jaw line (the chin drops with the jaw); on
    # the sides it stays inside it, so the cheeks' outline against the background is kept.
    w = np.array([_jaw_weight(i) for i in range(2, 15)])[:, None]
    # Where the chin moves, the mask reaches further by the move: the landmarks' jaw line
    # often lies above the real chin edge, and a feathered edge across the original edge
    # would mix the old chin's skin with the collar (a grey second jaw line).
    moved = np.clip(src_uv[2:15, 1] - dst_uv[2:15, 1], 0.0, None)[:, None]  # how far the chin rose
    jaw_out = jaw + ((cfg.mask_margin + moved) * w - 2.5 * cfg.feather * (1 - w)) * d
    nose_v = src_uv[33, 1] + 2.2 * cfg.feather  # the feathered edge ends at the nose base
    jaw_out[:, 1] = np.maximum(jaw_out[:, 1], nose_v)
    left_u, right_u = jaw_out[0, 0], jaw_out[-1, 0]
    top = np.array([[right_u, nose_v], [src_uv[35, 0] + 0.05, nose_v], [src_uv[31, 0] - 0.05, nose_v], [left_u, nose_v]])
    return np.concatenate([jaw_out, top], axis=0)


def _jaw_skirt(src_uv: np.ndarray, dst_uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mesh points SKIRT_DEPTH below the jaw line that move with the jaw: (source, target).

    The chin's edge against the neck or collar is a soft band of shadow a few pixels deep.
    Without these points the band is stretched between the moving jaw and the fixed ring,
    which shows as a grey second jaw line under a raised chin and a jagged edge where the
    stretch changes from triangle to triangle; with them the band moves rigidly with the
    jaw and only the collar or background further down is stretched."""
    centre = np.array([0.0, -0.25])
    jaw = src_uv[list(SKIRT)]
    d = jaw - centre
    d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-9
    src = jaw + SKIRT_DEPTH * d
    return src, src + (dst_uv[list(SKIRT)] - jaw)


def _ring(poly_uv: np.ndarray, margin: float) -> np.ndarray:
    """N_RING fixed points on an ellipse enclosing the alpha polygon by `margin`."""
    lo, hi = poly_uv.min(axis=0) - margin, poly_uv.max(axis=0) + margin
    c, r = (lo + hi) / 2, (hi - lo) / 2 * 1.1
    t = np.linspace(0, 2 * np.pi, N_RING, endpoint=False)
    return np.stack([c[0] + r[0] * np.cos(t), c[1] + r[1] * np.sin(t)], axis=1)


def _inset_inner_lips(uv: np.ndarray, inset: float) -> np.ndarray:
    """Move open inner-lip points into the lips by `inset` (local units, at most 30% of the
    gap), so that lip pixels are not sampled from the speaker's own teeth or cavity, which
    the landmark detector often includes in the lips."""
    out = uv.copy()
    for a, b in zip(UPPER_INNER, LOWER_INNER):
        d = min(inset, 0.3 * max(0.0, uv[b, 1] - uv[a, 1]))
        out[a, 1] -= d
        out[b, 1] += d
    return out


def _lip_curves(uv: np.ndarray, exponent: float) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Smooth inner-lip curves: chord between the inner corners plus a fitted bump.

    Returns (u centre, half width, upper coefficients, lower coefficients); the curve is
    v(u) = c0 + c1*(u-uc) + c2*profile(u-uc), fitted to the corners and three columns.
    """
    uc = (uv[60, 0] + uv[64, 0]) / 2
    hw = max((uv[64, 0] - uv[60, 0]) / 2, 1e-3)
    coefs = []
    for mid in (UPPER_INNER, LOWER_INNER):
        idx = [60, *mid, 64]
        x = uv[idx, 0] - uc
        basis = np.stack([np.ones_like(x), x, _profile(x, hw, exponent)], axis=1)
        coefs.append(np.linalg.lstsq(basis, uv[idx, 1], rcond=None)[0])
    return uc, hw, coefs[0], coefs[1]


def _gap_search_region(pts: np.ndarray, scale: float) -> np.ndarray:
    """Polygon (pixels) in which the speaker's own mouth gap, teeth and dark corners are
    looked for: the outer lips grown by 0.07 s, so that a gap the landmarks miss by a few
    pixels (tracked or smoothed landmarks lag a fast-moving mouth) is still found."""
    outer = pts[48:60].astype(np.float64)
    centre = outer.mean(axis=0)
    d = outer - centre
    d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-9
    return outer + 0.07 * scale * d


def _fill_vertical(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Replace masked pixels by interpolating, per column, the nearest unmasked pixels above
    and below: closed lips are upper-lip texture meeting lower-lip texture."""
    h, w = mask.shape
    rows = np.arange(h)[:, None].repeat(w, axis=1)
    above = np.maximum.accumulate(np.where(mask, -1, rows), axis=0)
    below = np.minimum.accumulate(np.where(mask, h, rows)[::-1], axis=0)[::-1]
    has_a, has_b = above >= 0, below < h
    above = np.where(has_a, above, np.where(has_b, below, 0))
    below = np.where(has_b, below, above)
    ys, xs = np.nonzero(mask)  # only the masked pixels are interpolated
    above, below = above[ys, xs], below[ys, xs]
    va = img[above, xs].astype(np.float32)
    vb = img[below, xs].astype(np.float32)
    t = np.clip((ys - above) / np.maximum(below - above, 1), 0.0, 1.0)[..., None]
    out = img.copy()
    out[ys, xs] = np.clip(va * (1 - t) + vb * t + 0.5, 0, 255).astype(np.uint8)
    return out


def close_original_gap(crop: np.ndarray, pts: np.ndarray, lip_rgb: np.ndarray | None, skin_rgb: np.ndarray | None, scale: float) -> np.ndarray:
    """A copy of `crop` with the speaker's own mouth opening painted over with lip texture.

    Inside `_gap_search_region`, the inner-lip polygon and every pixel that does not look like lip
    (darker than 0.72x the lip luma: the cavity and the corner shadows; or brighter than the
    lips and less saturated than both lips and skin: teeth), in blobs that reach into the outer-lip polygon, is refilled from
    the lips above and below. The warp then only
    squeezes or stretches lips, so no dark line or tooth survives a closing mouth, and the
    target cavity is painted afresh. pts: 68 landmarks in crop pixels; scale: s in pixels.
    """
    region = _gap_search_region(pts, scale)
    h, w = crop.shape[:2]
    bx0 = int(max(0, np.floor(region[:, 0].min()) - 2))
    by0 = int(max(0, np.floor(region[:, 1].min()) - 3))
    bx1 = int(min(w, np.ceil(region[:, 0].max()) + 3))
    by1 = int(min(h, np.ceil(region[:, 1].max()) + 4))
    if bx1 - bx0 < 3 or by1 - by0 < 3:
        return crop.copy()
    box = crop[by0:by1, bx0:bx1]
    off = np.array([bx0, by0])
    allowed = np.zeros(box.shape[:2], np.uint8)
    cv2.fillPoly(allowed, [np.round(region - off).astype(np.int32)], 1)
    lips = np.zeros_like(allowed)
    cv2.fillPoly(lips, [np.round(pts[48:60] - off).astype(np.int32)], 1)
    gap = np.zeros_like(allowed)
    cv2.fillPoly(gap, [np.round(pts[60:68] - off).astype(np.int32)], 1)
    f = box.astype(np.float32)
    luma = f @ np.array([0.299, 0.587, 0.114], np.float32)
    channels = f[..., 0], f[..., 1], f[..., 2]  # elementwise max/min beat numpy's reduce over a length-3 axis
    brightest = np.maximum(np.maximum(*channels[:2]), channels[2])
    sat = (brightest - np.minimum(np.minimum(*channels[:2]), channels[2])) / (brightest + 1.0)
    lip = np.asarray(lip_rgb if lip_rgb is not None else np.median(f[lips > 0], axis=0), np.float32)
    skin = np.asarray(skin_rgb if skin_rgb is not None else np.median(f[allowed == 0], axis=0), np.float32)
    lip_luma = float(lip @ np.array([0.299, 0.587, 0.114]))
    grey_limit = 0.8 * min(float(np.ptp(lip) / (lip.max() + 1.0)), float(np.ptp(skin) / (skin.max() + 1.0)))
    dark = luma < 0.72 * lip_luma
    teeth = (luma > 1.1 * lip_luma) & (sat < grey_limit)
    candidate = (((gap > 0) | dark | teeth) & (allowed > 0)).astype(np.uint8)
    if not candidate.any():
        return crop.copy()
    # Keep only the blobs that reach into the lips: shadows beside the mouth stay.
    n, labels = cv2.connectedComponents(candidate, connectivity=8)
    touching = np.unique(labels[(lips > 0) & (candidate > 0)])
    mask = np.isin(labels, touching[touching > 0])
    if not mask.any():
        return crop.copy()
    mask = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    out = crop.copy()
    out[by0:by1, bx0:bx1] = _fill_vertical(box, mask)
    return out


class ClassicalLipSync:
    """Weight-free engine (LipSyncEngine protocol): see the module docstring."""

    name = "classical"
    batch_size = 8
    uses_mouth_bank = True

    def __init__(self, warp: WarpConfig | None = None, audio: MouthParamConfig | None = None,
                 use_phones: bool = True) -> None:
        self.warp = warp or WarpConfig()
        self.audio = audio or MouthParamConfig()
        self.use_phones = use_phones
        self._tracks: OrderedDict[str, _TrackState] = OrderedDict()

    def prepare_audio(self, audio: np.ndarray, sample_rate: int, fps: float) -> MouthTrack:
        """The mouth targets: phonetic where the phones fit the speech, else acoustic
        (`models.mouth_front_end`; the track's `front_end` says which ran)."""
        return mouth_track(audio, sample_rate, fps, self.audio, use_phones=self.use_phones)

    @staticmethod
    def with_expressiveness(features: MouthTrack, expressiveness: float) -> MouthTrack:
        """The track with its motion scaled (expressiveness 0-1): 0.5 as analysed, 0 still, 1 twice
        as wide; openness, width and rounding are multiplied by 2 * expressiveness, capped at 1."""
        gain = 2.0 * float(expressiveness)
        return replace(features, **{name: np.clip(getattr(features, name) * gain, 0.0, 1.0)
                                    for name in ("openness", "width", "rounding")})

    def render(self, requests: Sequence[MouthRequest], audio_features: MouthTrack) -> list[MouthPatch]:
        return [self.render_one(r, audio_features.at(r.time_ms), audio_features) for r in requests]

    def reset(self) -> None:
        """Forget all per-track state (start of a new job)."""
        self._tracks.clear()

    # -- one face -------------------------------------------------------------------
    def target_landmarks(self, landmarks: np.ndarray, shape: MouthShape, track_key: str = "", frame_index: int = 0) -> np.ndarray:
        """The 68 target landmarks (image pixels) for `shape`; updates the track's state."""
        pts = np.asarray(landmarks, dtype=np.float64).reshape(68, 2)
        axes = FaceAxes.from_landmarks(pts)
        uv = axes.to_local(pts)
        state = self._state(track_key, frame_index, uv)
        dst_uv = articulate_local(self._neutral(state, uv), shape, state.neutral_width, self.warp)
        return axes.to_image(dst_uv)

    def _neutral(self, state: _TrackState, uv: np.ndarray) -> np.ndarray:
        """Closed-mouth shape for this frame, averaged with the track's previous one.

        The estimate inherits the landmark detector's noise on the inner lips; halving it
        each frame (a 2-frame exponential average in face coordinates, which head motion
        does not disturb) keeps the synthetic mouth from trembling.
        """
        now = neutral_local(uv, self.warp)
        if state.neutral_uv is not None and state.neutral_uv.shape == now.shape:
            now = 0.5 * (now + state.neutral_uv)
        state.neutral_uv = now
        return now

    def render_one(self, req: MouthRequest, shape: MouthShape, features: MouthTrack | None = None) -> MouthPatch:
        """One face's patch for `shape`. With the job's `features`, the bank samples are
        planned ahead over the rest of the track (`models.mouth_select`); without, the
        best sample for this frame alone is shown."""
        face = req.face
        if face.landmarks is None or len(face.landmarks) != 68 or req.strength <= 0:
            return MouthPatch(0, 0, np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1), np.float32))
        image = req.image
        pts = np.asarray(face.landmarks, dtype=np.float64).reshape(68, 2)
        axes = FaceAxes.from_landmarks(pts)
        s = axes.scale
        src_uv = axes.to_local(pts)
        state = self._state(req.track_key, req.frame_index, src_uv)
        warp = self._warp_for(req.bank)
        neutral = self._neutral(state, src_uv)
        dst_uv = articulate_local(neutral, shape, state.neutral_width, warp)
        chosen = self._choose_samples(req, state, dst_uv, neutral, warp, features)
        if chosen:
            dst_uv = with_real_lips(dst_uv, chosen)

        poly_uv = _alpha_polygon(src_uv, dst_uv, warp)
        ring_uv = _ring(poly_uv, warp.ring_margin)
        ctrl = list(CONTROL)
        skirt_src, skirt_dst = _jaw_skirt(src_uv, dst_uv)
        src_ctrl = np.concatenate([_inset_inner_lips(src_uv, 0.06)[ctrl], skirt_src, ring_uv])
        dst_ctrl = np.concatenate([dst_uv[ctrl], skirt_dst, ring_uv])
        if state.triangles is None:
            template = articulate_local(neutral_local(src_uv, warp), MouthShape(0.6, 0.0, 0.0, 0.0), state.neutral_width, warp)
            skirt = _jaw_skirt(template, template)[0]
            state.triangles = Delaunay(np.concatenate([template[ctrl], skirt, ring_uv])).simplices.astype(np.int32)
            log.debug("track %r: lower-face mesh of %d triangles", req.track_key, len(state.triangles))
        tris = state.triangles

        # Crop box: the ring's bounding box in the image, clipped to the frame.
        ring_img = axes.to_image(ring_uv)
        h_img, w_img = image.shape[:2]
        x0 = int(np.clip(np.floor(ring_img[:, 0].min()), 0, w_img - 1))
        y0 = int(np.clip(np.floor(ring_img[:, 1].min()), 0, h_img - 1))
        x1 = int(np.clip(np.ceil(ring_img[:, 0].max()) + 1, x0 + 1, w_img))
        y1 = int(np.clip(np.ceil(ring_img[:, 1].max()) + 1, y0 + 1, h_img))
        cw, ch = x1 - x0, y1 - y0
        off = np.array([x0, y0], dtype=np.float64)

        src_img = axes.to_image(src_ctrl) - off
        dst_img = axes.to_image(dst_ctrl) - off
        # Evaluated on every pixel: the closed-lip triangles are a pixel or two thin and map
        # to the whole original gap, so a coarser grid would smear the lip line.
        map_x, map_y = MeshRaster.of(dst_img, tris, cw, ch).maps(src_img, tris)

        crop_src = image[y0:y1, x0:x1]
        # The ring's source triangles lie inside the crop, so the warp reads only the crop.
        src_pts = axes.to_image(src_uv) - off
        self._update_colours(state, crop_src, src_pts)
        # The original mouth's gap is painted over first: landmarks lag a fast mouth by a
        # few pixels, and what they miss must not survive the warp.
        cleaned = close_original_gap(crop_src, src_pts, state.lip_rgb, state.skin_rgb, s)
        pixels = cv2.remap(cleaned, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if chosen and paint_bank_mouth(pixels, axes, dst_uv, off, chosen):
            req.bank.frames_from_bank += 1
        else:
            self._paint_mouth(pixels, axes, dst_uv, off, state, shape)
            if req.bank is not None:
                req.bank.frames_synthesised += 1

        poly_img = axes.to_image(poly_uv) - off
        alpha = self._alpha(poly_img, cw, ch, warp.feather * s) * float(np.clip(req.strength, 0.0, 1.0))
        return MouthPatch(x=x0, y=y0, pixels=pixels, alpha=alpha)

    # -- the mouth bank ---------------------------------------------------------------
    def _warp_for(self, bank: MouthBank | None) -> WarpConfig:
        """The articulation for this person: the widest opening follows how wide they open
        their mouth in the video (90th percentile of the bank), so that a shy speaker is
        not given a yawn and the chosen samples need little stretching. A person who opens
        little still visibly says the new speech: the widest opening is at least
        MIN_ARTICULATION, a bounded synthesis of at most SYNTH_BEYOND past their widest
        sample (the sample is stretched that far)."""
        coverage = bank.coverage() if bank is not None else None
        scale = bank.opening_scale() if bank is not None else None
        if scale is None or coverage is None:
            return self.warp
        floor = min(MIN_ARTICULATION, coverage.max_opening + SYNTH_BEYOND)
        return replace(self.warp, max_gap=float(np.clip(max(1.15 * scale, floor), 0.2, self.warp.max_gap)))

    def _choose_samples(self, req: MouthRequest, state: _TrackState, dst_uv: np.ndarray, neutral: np.ndarray,
                        warp: WarpConfig, features: MouthTrack | None) -> list[WeightedSample]:
        """The bank sample(s) to show for the target lips: the plan's one sample, or two
        across a planned change (a two-frame cross-fade).

        Empty when the bank cannot show this shape (no bank, or no open / closed sample
        for an open / closed target): the synthesised mouth is drawn instead."""
        bank: MouthBank | None = req.bank
        if bank is None or not bank.samples:
            return []
        opening = mouth_opening(dst_uv)
        coverage = bank.coverage()
        if (opening >= OPEN_GAP and not coverage.has_open) or (opening <= CLOSED_GAP and not coverage.has_closed):
            return []
        pose = self._smoothed_pose(state, req.face.pose)
        if features is None:
            best = int(np.argmin(bank.costs(opening, mouth_width(dst_uv), pose)))
            return [WeightedSample(bank.samples[best], 1.0)]
        plan = state.plan if state.bank_id == id(bank) else None
        k = plan.index_at(req.time_ms) if plan is not None and plan.bank_size == len(bank.samples) else None
        if k is not None and pose is not None and plan.pose is not None and \
                max(abs(pose[0] - plan.pose[0]), abs(pose[1] - plan.pose[1])) > REPLAN_POSE_DEG:
            k = None  # the head turned: plan the rest for the new pose
        width_now = mouth_width(neutral)
        if k is not None and abs(width_now - state.plan_width) > REPLAN_WIDTH:
            k = None  # the expression changed (a smile came or went): plan for it
        if k is None:
            previous = None
            if plan is not None and state.bank_id == id(bank) and plan.bank_size == len(bank.samples):
                last = plan.index_at(req.time_ms - 1000.0 / plan.fps)
                previous = int(plan.samples[last]) if last is not None else None
            plan = self._plan(bank, req.time_ms, neutral, state.neutral_width, warp, features, pose, previous)
            state.plan, state.bank_id, state.plan_width, k = plan, id(bank), width_now, 0
        return [WeightedSample(bank.samples[i], w) for i, w in frame_weights(plan.samples, k)]

    @staticmethod
    def _smoothed_pose(state: _TrackState, pose: tuple[float, float, float] | None) -> tuple[float, float, float] | None:
        """The track's head pose, exponentially averaged (a third of each new frame): the
        per-frame estimate jitters by several degrees, which must not re-plan the mouth."""
        if pose is None:
            return None if state.pose is None else tuple(state.pose)
        now = np.asarray(pose, dtype=np.float64)
        state.pose = now if state.pose is None else state.pose + (now - state.pose) / 3.0
        return tuple(float(v) for v in state.pose)

    @staticmethod
    def _plan(bank: MouthBank, start_ms: float, neutral: np.ndarray, neutral_width: float, warp: WarpConfig,
              features: MouthTrack, pose: tuple[float, float, float] | None, previous: int | None) -> SamplePlan:
        """Plan the bank sample of every frame from `start_ms` to the end of the audio (at
        most MAX_PLAN_FRAMES): the target lips of each frame from the audio, on this
        frame's closed mouth, then `models.mouth_select.plan_samples`."""
        fps = float(features.fps) or 25.0
        remaining = max(0.0, features.duration_ms - start_ms)
        count = int(min(MAX_PLAN_FRAMES, np.floor(remaining * fps / 1000.0) + 1))
        times = start_ms + np.arange(count) * 1000.0 / fps
        targets = [articulate_local(neutral, features.at(float(t)), neutral_width, warp) for t in times]
        openings = np.array([mouth_opening(uv) for uv in targets])
        widths = np.array([mouth_width(uv) for uv in targets])
        labels = features.phones_at(times)
        cost = bank.cost_matrix(openings, widths, pose)
        path = plan_samples(cost, switch_costs(openings, widths, labels), bank.appearance_distances(), previous)
        return SamplePlan(start_ms, fps, path, None if pose is None else tuple(pose), len(bank.samples))

    # -- pieces ---------------------------------------------------------------------
    def _state(self, key: str, frame_index: int, uv: np.ndarray) -> _TrackState:
        width = float(uv[54, 0] - uv[48, 0])
        st = self._tracks.get(key)
        if st is None or abs(frame_index - st.last_frame) > STATE_GAP_FRAMES:
            st = _TrackState(last_frame=frame_index, neutral_width=width)
            self._tracks[key] = st
        elif frame_index != st.last_frame:
            st.neutral_width += 0.03 * (width - st.neutral_width)
            st.last_frame = frame_index
        self._tracks.move_to_end(key)
        while len(self._tracks) > MAX_TRACK_STATES:
            self._tracks.popitem(last=False)
        return st

    @staticmethod
    def _alpha(poly: np.ndarray, w: int, h: int, sigma: float) -> np.ndarray:
        mask = np.zeros((h, w), dtype=np.uint8)
        cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)
        alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), max(sigma, 0.8))
        yy = np.minimum(np.arange(h), np.arange(h)[::-1]).astype(np.float32)
        xx = np.minimum(np.arange(w), np.arange(w)[::-1]).astype(np.float32)
        edge = np.clip(np.minimum(yy[:, None], xx[None, :]) / 2.0, 0.0, 1.0)
        return (alpha * edge).astype(np.float32)

    @staticmethod
    def _update_colours(state: _TrackState, crop: np.ndarray, pts: np.ndarray) -> None:
        """Average lip and skin colours (RGB floats) from the source crop, smoothed per track."""
        h, w = crop.shape[:2]
        lips = np.zeros((h, w), np.uint8)
        cv2.fillPoly(lips, [np.round(pts[48:60]).astype(np.int32)], 1)
        cv2.fillPoly(lips, [np.round(pts[60:68]).astype(np.int32)], 0)
        skin = np.zeros((h, w), np.uint8)
        cheek = np.round(np.stack([pts[31], pts[35], pts[54], pts[11], pts[8], pts[5], pts[48]])).astype(np.int32)
        cv2.fillPoly(skin, [cheek], 1)
        cv2.fillPoly(skin, [np.round(pts[48:60]).astype(np.int32)], 0)
        lip = np.array(cv2.mean(crop, mask=lips)[:3]) if lips.any() else None
        sk = np.array(cv2.mean(crop, mask=skin)[:3]) if skin.any() else None
        if lip is None or sk is None:
            return
        k = 0.1 if state.lip_rgb is not None else 1.0
        state.lip_rgb = lip if state.lip_rgb is None else state.lip_rgb + k * (lip - state.lip_rgb)
        state.skin_rgb = sk if state.skin_rgb is None else state.skin_rgb + k * (sk - state.skin_rgb)

    def _paint_mouth(self, pixels: np.ndarray, axes: FaceAxes, dst_uv: np.ndarray, off: np.ndarray, state: _TrackState, shape: MouthShape) -> None:
        """Draw the cavity and upper teeth inside the target inner lips (in place)."""
        s = axes.scale
        expo = lip_exponent(shape)
        uc, hw, cu, cl = _lip_curves(dst_uv, expo)
        gap = float(cl[2] - cu[2])  # centre gap, s units
        if gap * s < 1.0:
            self._paint_crease(pixels, axes, dst_uv, off, state)
            return
        inner_img = axes.to_image(dst_uv[60:68]) - off
        h, w = pixels.shape[:2]
        bx0 = int(max(0, np.floor(inner_img[:, 0].min()) - 3))
        by0 = int(max(0, np.floor(inner_img[:, 1].min()) - 3))
        bx1 = int(min(w, np.ceil(inner_img[:, 0].max()) + 4))
        by1 = int(min(h, np.ceil(inner_img[:, 1].max()) + 4))
        if bx1 <= bx0 or by1 <= by0:
            return
        gx, gy = np.meshgrid(np.arange(bx0, bx1, dtype=np.float64), np.arange(by0, by1, dtype=np.float64))
        luv = axes.to_local(np.stack([gx + off[0], gy + off[1]], axis=-1))
        x, pv = luv[..., 0] - uc, luv[..., 1]
        prof = _profile(x, hw, expo)
        up_v = cu[0] + cu[1] * x + cu[2] * prof
        lo_v = np.maximum(cl[0] + cl[1] * x + cl[2] * prof, up_v)
        px = 1.0 / s  # one pixel in local units
        inside = np.clip((pv - up_v) / px + 0.5, 0, 1) * np.clip((lo_v - pv) / px + 0.5, 0, 1)
        inside *= np.clip((hw - np.abs(x)) / px, 0, 1)
        poly = np.zeros((by1 - by0, bx1 - bx0), np.uint8)
        cv2.fillPoly(poly, [np.round((inner_img - [bx0, by0]) * 16).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)
        inside = np.maximum(inside, poly / 255.0)
        if not inside.any():
            return
        local_gap = np.maximum(lo_v - up_v, 1e-6)
        depth = np.clip((pv - up_v) / local_gap, 0, 1)  # 0 at the upper lip, 1 at the lower
        radial = np.clip(np.hypot(x / hw, 2 * depth - 1), 0, 1)  # 0 centre, 1 edge
        lip = state.lip_rgb if state.lip_rgb is not None else np.array([150.0, 80.0, 80.0])
        skin = state.skin_rgb if state.skin_rgb is not None else np.array([190.0, 150.0, 130.0])
        dark = lip * np.array([0.3, 0.15, 0.15])
        edge_col = lip * np.array([0.55, 0.32, 0.3])
        t = (1 - radial)[..., None] ** 0.7
        cavity = edge_col * (1 - t) + dark * t
        # Tongue hint low in the cavity when wide open.
        tongue = lip * np.array([0.7, 0.4, 0.4])
        tongue_w = np.clip((depth - 0.55) / 0.45, 0, 1) * np.clip((gap - 0.22) / 0.15, 0, 1) * np.clip(1 - np.abs(x) / hw, 0, 1) ** 0.5
        cavity = cavity * (1 - 0.5 * tongue_w[..., None]) + tongue * (0.5 * tongue_w[..., None])
        # Upper teeth: a soft light band under the upper lip, only when open enough.
        teeth_h = np.minimum(0.3 * local_gap, 0.075)
        below = (pv - up_v) / np.maximum(teeth_h, 1e-6)
        teeth_a = np.clip(1.0 - below, 0, 1) ** 0.6 * np.clip((gap - 0.05) / 0.12, 0, 1)
        teeth_a *= np.clip((1 - np.abs(x) / (0.85 * hw)) / 0.35, 0, 1)
        shade = (0.7 + 0.3 * np.clip(1 - (x / hw) ** 2, 0, 1)) * (1.0 - 0.25 * np.clip(below, 0, 1))
        luma = float(skin @ np.array([0.299, 0.587, 0.114]))
        teeth = np.array([240.0, 234.0, 220.0]) * np.clip(luma / 165.0, 0.5, 1.0)
        teeth_col = teeth[None, None, :] * shade[..., None]
        ta = 0.75 * teeth_a[..., None]
        col = cavity * (1 - ta) + teeth_col * ta
        a = cv2.GaussianBlur(inside.astype(np.float32), (0, 0), 0.5 + 0.004 * s)[..., None]
        region = pixels[by0:by1, bx0:bx1].astype(np.float32)
        pixels[by0:by1, bx0:bx1] = np.clip(region * (1 - a) + col * a, 0, 255).astype(np.uint8)

    @staticmethod
    def _paint_crease(pixels: np.ndarray, axes: FaceAxes, dst_uv: np.ndarray, off: np.ndarray, state: _TrackState) -> None:
        """Closed lips meet in a soft darker line (in place).

        The line fades out towards the corners and darkens only lip-coloured pixels, so it
        never draws a stroke onto the cheek (e.g. when the landmarks miss the mouth).
        """
        lip = state.lip_rgb if state.lip_rgb is not None else np.array([150.0, 80.0, 80.0])
        skin = state.skin_rgb if state.skin_rgb is not None else np.array([190.0, 150.0, 130.0])
        knots = axes.to_image(dst_uv[[60, 61, 62, 63, 64]]) - off
        seg = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(knots, axis=0), axis=1))]
        if seg[-1] < 2.0:
            return
        t = np.linspace(0.0, 1.0, 17)
        line = np.stack([np.interp(t * seg[-1], seg, knots[:, k]) for k in (0, 1)], axis=1)
        taper = np.sin(np.pi * t) ** 0.7
        h, w = pixels.shape[:2]
        x0, y0 = np.floor(line.min(axis=0)).astype(int) - 4
        x1, y1 = np.ceil(line.max(axis=0)).astype(int) + 5
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 <= x0 or y1 <= y0:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.float32)
        fixed = np.round((line - [x0, y0]) * 16).astype(np.int32)
        for k in range(len(line) - 1):
            level = 0.5 * (taper[k] + taper[k + 1])
            cv2.line(mask, tuple(fixed[k]), tuple(fixed[k + 1]), float(level), 1, lineType=cv2.LINE_AA, shift=4)
        region = pixels[y0:y1, x0:x1].astype(np.float32)
        d_lip = np.linalg.norm(region - lip, axis=2)
        d_skin = np.linalg.norm(region - skin, axis=2)
        lipness = np.clip(0.5 + (d_skin - d_lip) / (np.linalg.norm(lip - skin) + 1.0), 0.0, 1.0)
        a = (cv2.GaussianBlur(mask, (0, 0), 0.7) * lipness * 0.55)[..., None]
        col = lip * np.array([0.45, 0.28, 0.28])
        pixels[y0:y1, x0:x1] = np.clip(region * (1 - a) + col * a, 0, 255).astype(np.uint8)
