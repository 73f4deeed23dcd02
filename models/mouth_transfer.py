"""Paint real mouths from a `MouthBank` into a face: warp, relight, blend.

The target lips are the chosen sample's own shape opened to the audio-driven gap
(`with_sample_shape`). Each chosen sample is warped onto them with a piecewise-affine mesh
(its 20 lip landmarks plus a ring around them, one fixed triangulation for every sample and
target; sliver triangles between nearly closed lips left to their neighbours). Where the
target's gap is narrower than the sample's, the dark between the teeth goes first and the
teeth keep their size (`band_points`). Several samples are averaged
with their weights (already aligned, so nothing doubles). Their light is matched to the
current frame by a smooth additive correction: the difference between the frame and the
sample on a skin band around the lips, spread over the mouth by normalised Gaussian
convolution (a cheap membrane, as in seamless cloning); the lips' own colour is moved most
of the way to the frame's lips (a sample taken in other light keeps its redness). The
result covers the target's outer lips grown by `MASK_GROW` with a feathered edge: inside
it nothing of the original mouth survives.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
from scipy.spatial import Delaunay

from models.mouth_bank import TEXTURE_INTERPOLATION, FaceAxes, MouthSample, local_to_canonical
from models.mouth_metrics import INNER_PAIRS

N_RING = 16
RING_MARGIN = 0.22
"""Distance (s units) of the mesh's outer ring beyond the outer lips."""
MASK_GROW = 0.12
"""How far (s units) the painted mouth reaches beyond the target's outer lips."""
MASK_FEATHER = 0.035
"""Gaussian sigma (s units) of the painted mouth's edge."""
BAND = (0.05, 0.17)
"""Skin band around the outer lips (s units) where the light is compared."""
LIGHT_SIGMA = 0.2
"""Spread (s units) of the light correction."""
LIP_MATCH = 0.7
"""Share of the difference between the sample's lip colour and the frame's own that is
corrected (a sample taken in other light keeps paler or deeper lips than the frame's)."""
LIP_SHIFT = 40.0
"""Largest lip colour correction (levels per channel)."""
LIP_FEATHER = 0.02
"""Gaussian sigma (s units) of the lip colour correction's edge."""
LIP_POINTS = list(range(48, 68))
SLIVER_PX = 1.0
"""Mesh triangles thinner than this (pixels) are left to their neighbours when painting."""


@dataclass
class WeightedSample:
    sample: MouthSample
    weight: float


_OUTER_ANCHORS = ((60,), (60, 61), (61,), (62,), (63,), (63, 64), (64,), (64, 65), (65,), (66,), (67,), (67, 60))
"""For each outer-lip landmark 48-59, the inner-lip landmarks it lies over or under."""


def _anchors(uv: np.ndarray) -> np.ndarray:
    return np.stack([uv[list(ids)].mean(axis=0) for ids in _OUTER_ANCHORS])


SHAPE_WIDTH_FOLLOW = 0.5
"""Share (in log scale) of the target's mouth width the sample's shape takes: its own
width is the person's real mouth at this sound, the target's carries the frame's expression."""


def with_sample_shape(dst_uv: np.ndarray, sample_uv: np.ndarray) -> np.ndarray:
    """Target landmarks whose lips are the chosen sample's own, opened to the target's gap.

    A parametric mouth (symmetric curves, a fixed profile) warped onto a real sample bends
    its texture: an "o" comes out squashed, closed lips of a tilted head get a notch. The
    person's own mouth at this sound already has the right shape, so the lips take it
    whole (their midline, thickness, asymmetry, corners): only the inner gap is scaled to
    the target's, which the speech drives (p/b/m close fully), the width moves half way
    to the target's (SHAPE_WIDTH_FOLLOW) and the mouth sits where the target's upper lip
    and corners are (local s units throughout)."""
    sample = np.asarray(sample_uv, dtype=np.float64).reshape(68, 2)
    lips = sample[48:68].copy()  # rows 0-11 outer 48-59, 12-19 inner 60-67
    anchors = _anchors(sample)
    outer_offset = sample[48:60] - anchors
    gap_now = sample[66, 1] - sample[62, 1]
    gap_want = max(0.0, float(dst_uv[66, 1] - dst_uv[62, 1]))
    for a, b in INNER_PAIRS:
        if gap_now > 0.01:
            lips[b - 48, 1] = sample[a, 1] + (sample[b, 1] - sample[a, 1]) * gap_want / gap_now
        else:  # a closed sample for an open target: part the lips evenly
            lips[b - 48, 1] = sample[a, 1] + gap_want
    inner = sample.copy()
    inner[60:68] = lips[12:20]
    lips[:12] = _anchors(inner) + outer_offset  # the outer lips keep their thickness
    width_s = max(sample[54, 0] - sample[48, 0], 1e-3)
    width_t = max(float(dst_uv[54, 0] - dst_uv[48, 0]), 1e-3)
    scale = (width_t / width_s) ** SHAPE_WIDTH_FOLLOW
    centre_s = 0.5 * (sample[48, 0] + sample[54, 0])
    centre_t = 0.5 * (dst_uv[48, 0] + dst_uv[54, 0])
    lips[:, 0] = centre_t + (lips[:, 0] - centre_s) * scale
    lips[:, 1] += dst_uv[62, 1] - sample[62, 1]
    out = np.asarray(dst_uv, dtype=np.float64).copy()
    out[48:68] = lips
    return out


_RING_ANGLES = np.linspace(0, 2 * np.pi, N_RING, endpoint=False)
_RING_UNIT = np.stack([np.cos(_RING_ANGLES), np.sin(_RING_ANGLES)], axis=1)


def lip_ring(uv: np.ndarray) -> np.ndarray:
    """N_RING points (local s units) on an ellipse enclosing the outer lips by RING_MARGIN."""
    outer = uv[48:60]
    lo, hi = outer.min(axis=0), outer.max(axis=0)
    c, r = (lo + hi) / 2, (hi - lo) / 2 + RING_MARGIN
    return c + r * _RING_UNIT


def _template_triangles() -> np.ndarray:
    """One triangulation for every mouth: Delaunay of an open template mouth and its ring."""
    uv = np.zeros((68, 2))

    def ellipse(ids: Sequence[int], angles: Sequence[float], a: float, b: float) -> None:
        for i, t in zip(ids, angles):
            uv[i] = (a * np.cos(t), -b * np.sin(t))

    sixth = np.pi / 6
    ellipse(range(48, 60), [np.pi - k * sixth for k in range(12)], 0.45, 0.28)
    quarter = np.pi / 4
    ellipse(range(60, 68), [np.pi - k * quarter for k in range(8)], 0.33, 0.14)
    points = np.concatenate([uv[LIP_POINTS], lip_ring(uv)])
    return Delaunay(points).simplices.astype(np.int32)


TRIANGLES = _template_triangles()


def control_points(uv: np.ndarray) -> np.ndarray:
    """The mesh's control points (local s units): the 20 lip landmarks, then the ring."""
    return np.concatenate([uv[LIP_POINTS], lip_ring(uv)])


def _strip(upper: Sequence[int], lower: Sequence[int]) -> list[list[int]]:
    """Triangles between two rows of five points across the inner mouth that share their
    end points (the mouth corners 60 and 64)."""
    tris = [[upper[0], upper[1], lower[1]]]
    for k in (1, 2):
        tris += [[upper[k], upper[k + 1], lower[k + 1]], [upper[k], lower[k + 1], lower[k]]]
    return tris + [[upper[3], upper[4], lower[3]]]


def _band_triangles() -> np.ndarray:
    """TRIANGLES with the inner mouth cut into three strips: from the upper inner lip to
    the end of the upper teeth, the dark between, and the lower band to the lower inner
    lip. Their points (`band_points`) follow the control points."""
    inner = set(range(60 - 48, 68 - 48))
    outside = [row for row in TRIANGLES.tolist() if not set(row) <= inner]
    base = len(LIP_POINTS) + N_RING
    top_row = [12, base, base + 1, base + 2, 16]  # 60, the teeth's end under 61 62 63, 64
    low_row = [12, base + 3, base + 4, base + 5, 16]
    upper_lip = [12, 13, 14, 15, 16]  # 60 61 62 63 64
    lower_lip = [12, 19, 18, 17, 16]  # 60 67 66 65 64
    strips = _strip(upper_lip, top_row) + _strip(top_row, low_row) + _strip(low_row, lower_lip)
    return np.asarray(outside + strips, dtype=np.int32)


BAND_TRIANGLES = _band_triangles()


MAX_DARK_STRETCH = 3.0
"""The most the dark between the teeth is stretched when a sample is opened wider (its
texture is nearly flat, so it stretches well; past this the teeth grow with it)."""
FREE_TEETH_GROWTH = 1.2
"""How much a sample's teeth grow with the whole mouth when it is opened wider, before the
dark between them takes the rest: a little more teeth shows as a jaw drops a little, and
s29's grin, opened 1.05-1.2x on a third of her frames, showed every shadow between her lower
teeth stretched into a dark streak when the dark took it all (a blind tester's giveaway)."""
THIN_DARK_SHARE = 0.1
FULL_DARK_SHARE = 0.3
"""Shares of a sample's gap between which its dark may stretch from not at all to
MAX_DARK_STRETCH (`dark_stretch_limit`)."""


def widened_teeth_scale(h_top: float, h_bottom: float, gap_s: float, gap_t: float) -> float:
    """The scale of a sample's teeth bands (heights h_top and h_bottom, s units, of a gap
    gap_s) in a wider target gap gap_t: the whole mouth's up to FREE_TEETH_GROWTH; past it
    no more while the dark between can take the rest within `dark_stretch_limit`, then as
    little more as it needs, and never more than the dark's own scale (so a sample with
    little dark between, closed or featureless, is stretched whole)."""
    teeth = h_top + h_bottom
    dark = max(0.0, gap_s - teeth)
    if teeth <= 1e-9 or gap_t <= gap_s:
        return 1.0
    whole = gap_t / gap_s
    scale = max(FREE_TEETH_GROWTH, (gap_t - dark_stretch_limit(dark / gap_s) * dark) / teeth)
    return float(min(scale, whole))


def dark_stretch_limit(dark_share: float) -> float:
    """How far the dark between a sample's teeth may stretch, given its share of the gap:
    MAX_DARK_STRETCH from FULL_DARK_SHARE up, nothing under THIN_DARK_SHARE, linear
    between. A thin dark line where the teeth meet is mostly the shadows between their
    tips; stretched 3x they became dark stripes through the teeth (d10 351, a blind
    tester's giveaway), where stretching the whole mouth only makes the teeth taller."""
    ramp = (dark_share - THIN_DARK_SHARE) / (FULL_DARK_SHARE - THIN_DARK_SHARE)
    return 1.0 + (MAX_DARK_STRETCH - 1.0) * float(np.clip(ramp, 0.0, 1.0))


def band_points(sample_uv: np.ndarray, dst_uv: np.ndarray, bands: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The inner mouth's band points in the sample and in the target (local s units): for
    each central inner-lip pair, where the upper band ends and where the lower band begins.

    A mouth that closes does not shrink its teeth: the teeth stay with the jaws and the
    dark between them goes first; then the lower band goes behind the upper teeth (cut from
    its top, as a closing bite hides the lower teeth), and last the lower lip rises over the
    upper teeth. So where the target's gap is narrower than the sample's, the upper teeth
    keep their size as long as they can, instead of the whole inner mouth being squashed
    (a toothy sample pressed to half its opening showed its teeth as a thin white slit),
    and the lower teeth show while there is room (cut by the lower lip alone, a grin lost
    them). Where it is wider, the whole grows a little, then the jaws part: the teeth keep
    their size and the dark between them opens where it is a real gap
    (`widened_teeth_scale`)."""
    if bands is None:
        bands = np.tile([1.0, 0.0], (len(INNER_PAIRS), 1))
    src, dst = [], []
    for (a, b), (top, bottom) in zip(INNER_PAIRS, bands.tolist()):
        a_s, b_s, a_t, b_t = sample_uv[a], sample_uv[b], dst_uv[a], dst_uv[b]
        gap_s = float(b_s[1] - a_s[1])
        gap_t = float(b_t[1] - a_t[1])
        if gap_s <= 1e-6:  # shut: nothing between the lips to keep
            src_top = at_top = top
            src_bottom = at_bottom = bottom
        elif gap_t >= gap_s:  # the teeth grow least, the dark between most
            src_top, src_bottom = top, bottom
            grown = widened_teeth_scale(top * gap_s, bottom * gap_s, gap_s, gap_t) * gap_s / gap_t
            at_top, at_bottom = top * grown, bottom * grown
        else:
            h_top, h_bottom = top * gap_s, bottom * gap_s
            excess = max(0.0, h_top + h_bottom - gap_t)  # what the dark between could not take
            kept_bottom = max(0.0, h_bottom - excess)
            kept_top = h_top - max(0.0, excess - h_bottom)
            src_top, src_bottom = kept_top / gap_s, kept_bottom / gap_s
            at_top = kept_top / gap_t if gap_t > 1e-9 else 1.0
            at_bottom = kept_bottom / gap_t if gap_t > 1e-9 else 0.0
        src.append((a_s + src_top * (b_s - a_s), b_s - src_bottom * (b_s - a_s)))
        dst.append((a_t + at_top * (b_t - a_t), b_t - at_bottom * (b_t - a_t)))
    src_rows = np.asarray([p for p, _ in src] + [q for _, q in src])
    dst_rows = np.asarray([p for p, _ in dst] + [q for _, q in dst])
    return src_rows, dst_rows


def shared_band_points(chosen: Sequence[WeightedSample], dst_uv: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Each chosen sample's band points in the sample, and one set in the target: their
    weighted mean. One mesh serves all the samples and their bands' edges meet there, so a
    cross-fade does not double the teeth's edge."""
    total = sum(c.weight for c in chosen)
    points = [band_points(c.sample.uv.astype(np.float64), dst_uv, c.sample.bands) for c in chosen]
    dst = sum((c.weight / total) * dst for c, (_, dst) in zip(chosen, points))
    return [src for src, _ in points], np.asarray(dst)


@dataclass
class MeshRaster:
    """Which triangle of a mesh (in its destination position) owns each pixel of a w x h
    box. Triangles with no area (closed inner lips) own nothing: their neighbours own
    those pixels.

    `owner` holds 1 + the triangle's index, 0 outside the mesh: 8-bit when the mesh has
    under 255 triangles (every mouth mesh here), so that `maps` looks coefficients up with
    cv2.LUT (which releases the GIL) instead of numpy's take."""

    owner: np.ndarray
    dst_h: np.ndarray  # T x 3 x 3: each triangle's vertices as rows [x, y, 1]
    keep: np.ndarray

    @classmethod
    def of(cls, dst: np.ndarray, tris: np.ndarray, w: int, h: int, min_height: float = 0.0) -> MeshRaster:
        """min_height (pixels): triangles thinner than this own nothing either (a sliver
        between nearly closed lips would map the sample's whole gap into a jagged line)."""
        d = dst[tris]
        dst_h = np.concatenate([d, np.ones((len(tris), 3, 1))], axis=2)
        e1, e2 = d[:, 1] - d[:, 0], d[:, 2] - d[:, 0]
        area = np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]) / 2
        sides = np.stack([e1, e2, d[:, 2] - d[:, 1]], axis=1)
        longest = np.sqrt(np.max(np.einsum("tki,tki->tk", sides, sides), axis=1))
        keep = (area > 0.25) & (2 * area / np.maximum(longest, 1e-9) >= min_height)
        owner = np.zeros((h, w), np.uint8 if len(tris) < 255 else np.uint16)
        ids = np.flatnonzero(keep)
        # Painted in index order, a later triangle takes the pixels on an edge it shares.
        for k, corners in zip((ids + 1).tolist(), np.round(d[ids] * 16).astype(np.int32)):
            cv2.fillConvexPoly(owner, corners, k, lineType=cv2.LINE_8, shift=4)
        _fill_pinholes(owner)
        return cls(owner, dst_h, keep)

    def maps(self, src: np.ndarray, tris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Backward maps for cv2.remap (box pixel -> src pixel, float32) to the mesh at `src`."""
        affine = np.zeros((len(tris) + 1, 2, 3))
        affine[:, 0, 0] = affine[:, 1, 1] = 1.0  # owner 0 (outside) reads its own pixel
        if self.keep.any():
            solved = np.linalg.solve(self.dst_h[self.keep], src[tris][self.keep])
            affine[1:][self.keep] = np.transpose(solved, (0, 2, 1))
        coef = affine.reshape(-1, 6).T.astype(np.float32)
        if self.owner.dtype == np.uint8:
            table = np.zeros((6, 256), np.float32)
            table[:, :coef.shape[1]] = coef
            c = [cv2.LUT(self.owner, row) for row in table]
        else:
            c = [row.take(self.owner) for row in coef]
        h, w = self.owner.shape
        xs = np.arange(w, dtype=np.float32)[None, :]
        ys = np.arange(h, dtype=np.float32)[:, None]
        for a, b, offset in (c[:3], c[3:]):  # in place: a * x + b * y + offset
            a *= xs
            b *= ys
            a += b
            a += offset
        return c[0], c[3]

    @property
    def covered(self) -> np.ndarray:
        return self.owner > 0


_SQUARE = np.ones((3, 3), np.uint8)


def _fill_pinholes(owner: np.ndarray) -> None:
    """Give pixels the mesh misses between its triangles (along a line of closed lips,
    where the triangles collapse) a neighbour's triangle, in place. Left outside they
    would read the image unwarped: the original open mouth, teeth sparkling along the lip
    line. A missed pixel is filled when the mesh's closing (3x3) covers it; it takes the
    highest-numbered triangle among its 8 neighbours."""
    if cv2.countNonZero(owner) == owner.size:
        return
    neighbour = cv2.dilate(owner, _SQUARE)
    inside = cv2.erode(cv2.compare(neighbour, 0, cv2.CMP_GT), _SQUARE)  # the closing of the mesh
    fill = cv2.bitwise_and(inside, cv2.compare(owner, 0, cv2.CMP_EQ))
    cv2.copyTo(neighbour, fill, owner)


def _smooth_fill(values: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Normalised Gaussian convolution: `values` known where `mask`, spread smoothly over
    the whole box. Computed on a grid `sigma / 4` times coarser (it is smooth anyway)."""
    h, w = mask.shape
    step = max(1, int(sigma / 4))
    small = (max(1, w // step), max(1, h // step))
    weight = cv2.resize(mask.astype(np.float32), small, interpolation=cv2.INTER_AREA)
    total = cv2.resize(values * mask[..., None], small, interpolation=cv2.INTER_AREA)
    # Blurred together on the coarse grid: the values (zero where unknown) and their weight.
    both = cv2.GaussianBlur(cv2.merge([*cv2.split(total), weight]), (0, 0), sigma / step)
    filled = both[..., :-1] / np.maximum(both[..., -1:], 1e-3)
    return cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR)


def _soften_lip_line(warped: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Blur a band ~3 px wide along closed lips' meeting line (pixels, box coordinates).

    There the upper lip's triangles meet the lower lip's, which read the sample from two
    different places, so the pixel-sharp edge between them would show as a staircase."""
    band = np.zeros(warped.shape[:2], np.float32)
    cv2.polylines(band, [np.round(line * 16).astype(np.int32)], False, 1.0, thickness=3, lineType=cv2.LINE_AA, shift=4)
    band = cv2.GaussianBlur(band, (0, 0), 0.8)[..., None]
    return warped * (1 - band) + cv2.GaussianBlur(warped, (0, 0), 1.0) * band


def _match_lip_colour(warped: np.ndarray, lips: np.ndarray, inner_px: np.ndarray, lip_rgb: np.ndarray,
                      scale: float) -> None:
    """Move the painted lips' mean colour LIP_MATCH of the way to `lip_rgb` (the frame's own
    lips, averaged over the last frames), in place, feathered so no edge shows."""
    ring = lips.copy()
    cv2.fillPoly(ring, [np.round(inner_px * 16).astype(np.int32)], 0, lineType=cv2.LINE_8, shift=4)
    if ring.sum() < 8:
        return
    shift = np.clip(LIP_MATCH * (np.asarray(lip_rgb, np.float32) - cv2.mean(warped, mask=ring)[:3]), -LIP_SHIFT, LIP_SHIFT)
    weight = cv2.GaussianBlur(ring.astype(np.float32), (0, 0), max(LIP_FEATHER * scale, 0.7))
    warped += weight[..., None] * shift.astype(np.float32)


def paint_bank_mouth(pixels: np.ndarray, axes: FaceAxes, dst_uv: np.ndarray, offset: np.ndarray,
                     chosen: Sequence[WeightedSample], lip_rgb: np.ndarray | None = None) -> bool:
    """Paint the weighted samples onto the target lips `dst_uv` (local s units) in place.

    pixels is the crop (HxWx3 uint8) whose top-left is `offset` in the image that `axes`
    describes; lip_rgb, the frame's own lip colour (RGB 0-255), which the painted lips are
    moved towards (`_match_lip_colour`; None keeps the sample's). False when nothing was
    painted (the mouth is outside the crop)."""
    s = axes.scale
    h, w = pixels.shape[:2]
    dst_ctrl = axes.to_image(control_points(dst_uv)) - offset
    x0, y0 = np.floor(dst_ctrl.min(axis=0)).astype(int)
    x1, y1 = np.ceil(dst_ctrl.max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 4 or y1 - y0 < 4 or not chosen:
        return False
    rw, rh = x1 - x0, y1 - y0
    total = sum(c.weight for c in chosen)
    src_bands, dst_bands = shared_band_points(chosen, dst_uv)
    dst_mesh = np.concatenate([dst_ctrl, axes.to_image(dst_bands) - offset])
    raster = MeshRaster.of(dst_mesh - [x0, y0], BAND_TRIANGLES, rw, rh, min_height=SLIVER_PX)  # shared by the samples
    covered = raster.covered
    warped = np.zeros((rh, rw, 3), np.float32)
    target_gap = float(dst_uv[66, 1] - dst_uv[62, 1])
    for item, src_rows in zip(chosen, src_bands):
        src_mesh = np.concatenate([control_points(item.sample.uv.astype(np.float64)), src_rows])
        mx, my = raster.maps(local_to_canonical(src_mesh, item.sample.px_per_s), BAND_TRIANGLES)
        warped += (item.weight / total) * cv2.remap(item.sample.patch, mx, my, TEXTURE_INTERPOLATION,
                                                    borderMode=cv2.BORDER_REFLECT).astype(np.float32)

    if target_gap * s < 2.0:
        warped = _soften_lip_line(warped, axes.to_image(dst_uv[60:65]) - offset - [x0, y0])

    lips_px = axes.to_image(dst_uv[48:60]) - offset - [x0, y0]
    lips = np.zeros((rh, rw), np.uint8)
    cv2.fillPoly(lips, [np.round(lips_px * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    base = pixels[y0:y1, x0:x1].astype(np.float32)
    # Distance (px) from the lips: one distance transform instead of three large dilations.
    away = cv2.distanceTransform((lips == 0).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    band = (away > BAND[0] * s) & (away <= BAND[1] * s) & covered
    if band.sum() >= 8:
        warped += np.clip(_smooth_fill(base - warped, band, LIGHT_SIGMA * s), -80, 80)
    if lip_rgb is not None:
        _match_lip_colour(warped, lips, axes.to_image(dst_uv[60:68]) - offset - [x0, y0], lip_rgb, s)
    alpha = cv2.GaussianBlur((away <= MASK_GROW * s).astype(np.float32), (0, 0), max(MASK_FEATHER * s, 0.7))
    alpha = np.maximum(alpha, lips, out=alpha)
    alpha *= covered
    a = alpha[..., None]
    base *= 1 - a  # in place: base * (1 - a) + warped * a + 0.5
    warped *= a
    base += warped
    base += 0.5
    pixels[y0:y1, x0:x1] = np.clip(base, 0, 255, out=base)  # truncated to 8 bits as astype does
    return True
