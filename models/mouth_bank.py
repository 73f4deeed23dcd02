"""A per-person bank of real mouth samples, taken from the video itself (Video Rewrite style).

In dubbing, the source video shows the actor speaking the original line: it already holds
their real lips, teeth and tongue at many openings, under the video's own lighting. Each
`MouthSample` is one such moment, resampled into a canonical, landmark-aligned frame
(`FaceAxes`: origin at the mouth centre, u along the eye line, v down the face, unit = the
inter-ocular distance s) at the face's own resolution (`sample_resolution`: 100-200 pixels
per s), with its 68 landmarks in that frame and the descriptors that choose it:

- opening: inner-lip gap at the centre (s units); width: mouth-corner distance (s);
- rounding: outer-lip height / width; teeth: share of the inner mouth's upper band that
  is teeth-coloured (0-1); pose: (pitch, yaw, roll) degrees;
- sharpness: variance of the Laplacian of the grey mouth area over the area's own variance
  (x100; motion blur scores low, and a toothy mouth's bright edges do not read sharper than
  the same focus on closed lips);
- brightness: mean luma (0-255) of the skin around the mouth.

Memory is bounded and independent of the video length: at most `capacity` samples
(85-340 kB each). Once full, a new sample competes with the closest pair in descriptor space
and the blurrier of the two goes, so the bank keeps the range of shapes, not the first N.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from models.lip_contour import refine_outer_lips
from models.mouth_metrics import INNER_PAIRS

PX_PER_S = 100
"""Base canonical resolution (pixels per inter-ocular distance): the least a sample is
taken at, and the resolution its sharpness is measured at, so that samples of one person
taken at different sizes compare."""
MAX_PX_PER_S = 200
"""The most a sample is taken at. A close-up (a 1080p face, s ~ 200 px) sampled at 100 was
pasted back upsampled 2x: its teeth and lip lines visibly softer than the frame around them.
At 200 a sample is ~340 kB, 16 MB for a full bank."""
BLUR_COST = 0.6
"""Cost (1 ~ visible) of a sample half as sharp as the bank's sharp end: a motion-blurred
mouth pasted into a sharp frame was a blind test's giveaway (quick start + sun.wav, 132)."""
U_RANGE = (-0.95, 0.95)
V_RANGE = (-0.5, 1.0)
"""Canonical window in s units around the mouth centre: under the nose to below the lower
lip of a wide-open mouth."""


def canonical_size(px_per_s: float = PX_PER_S) -> tuple[int, int]:
    """(width, height) in pixels of a sample's patch taken at `px_per_s` pixels per s."""
    return (int(round((U_RANGE[1] - U_RANGE[0]) * px_per_s)), int(round((V_RANGE[1] - V_RANGE[0]) * px_per_s)))


CANONICAL_SIZE = canonical_size()
"""(width, height) of a patch at the base resolution."""


TEXTURE_INTERPOLATION = cv2.INTER_CUBIC
"""How a mouth sample's texture is resampled (from its frame, then onto the target).
Bilinear at fractional offsets is a small blur each time, and a sample is resampled twice:
d10's output lips kept 0.58 of her real lips' Laplacian variance (median over the clip),
0.83 bicubic, and looked softer than her face at 4x. It costs the engine ~0.3 ms a
face-frame (the lower face's warp stays bilinear: bicubic there cost 1.4 ms more and
sharpened nothing that shows)."""


def sample_resolution(scale: float) -> int:
    """Pixels per s to sample a face whose inter-ocular distance is `scale` pixels: its own
    resolution rounded up to a multiple of 10, within [PX_PER_S, MAX_PX_PER_S], so the mouth
    is pasted back at the frame's own sharpness (a smaller face is upsampled, which costs
    nothing in detail)."""
    return int(min(MAX_PX_PER_S, max(PX_PER_S, 10 * np.ceil(scale / 10.0))))

OPEN_GAP = 0.12
"""Inner-lip gap (s units) from which a mouth counts as open (teeth can show)."""
CLOSED_GAP = 0.04
"""Inner-lip gap (s units) under which a mouth counts as closed."""
TEETH_BAND = 0.45
"""Share of the inner mouth's height, from its top, where teeth are looked for."""
TEETH_GAP = 0.08
"""Inner-lip gap (s units) from which a target mouth shows teeth where the person's do
(sibilants, a smile); under CLOSED_GAP it never does."""
VISEME_COST = 1.5
"""Cost (1 ~ visible) off a sample whose own phone's mouth shape is the target's, and on
one whose is another (between open shapes, see OPEN_SHAPES, a fraction of it)."""
OPEN_SHAPES = frozenset("BCDH")
"""Mouth shapes that differ mainly in how far the lips part, which the shape cost already
matches: a sample labelled with another of them is as good (neither bonus nor penalty) and
one labelled with the same one only a little better (OPEN_SHAPE_MATCH). Closed, rounded,
spread and lip-to-teeth shapes differ in form, and a label is worth its full weight there.
(A person who shows their teeth as they speak keeps them: their toothy samples are rarely
labelled with exactly the target's open shape.)"""
OPEN_SHAPE_MATCH = 0.2
"""Share of VISEME_COST off for the same open shape."""
TEETH_SQUEEZE = 0.12
"""How far (s units) a toothy sample's opening may exceed the target's before it loses its
preference for teeth. The lower lip covers the extra (`models.mouth_transfer`), so the
teeth keep their size; much further, only a thin line of them would show. (0.05 while the
sample was squashed into the target's gap, its teeth then a white slit.)"""
OVER_OPEN_SPREAD = 0.08
"""Opening mismatch (s units) that costs 1 for a sample more open than a target from
TEETH_GAP up: the extra is hidden behind the lower lip, not squeezed."""
THICKNESS_SPREAD = 0.12
"""Difference in lip thickness (`lip_thickness`) between a sample and a target that costs 1.
The chosen sample's lips are shown whole (`models.mouth_transfer.with_sample_shape`): a
pouted "o" sample on an "ah" or "ee" reads as the wrong sound, and a spread one on an "oo"
as unrounded."""
NEAR_CLOSED_GAP = 0.08
"""A bank whose least open sample is under this gap can close the mouth: lips a little
apart, pressed together by the warp, still look like the person's closed lips."""


@dataclass(frozen=True)
class FaceAxes:
    """A face-aligned frame: p = origin + u*ex*scale + v*ey*scale, all in image pixels."""

    origin: np.ndarray
    ex: np.ndarray
    ey: np.ndarray
    scale: float

    @classmethod
    def from_landmarks(cls, pts: np.ndarray) -> FaceAxes:
        """Eye centres give the axis and scale; the mouth corners give the origin."""
        pts = np.asarray(pts, dtype=np.float64).reshape(68, 2)
        left, right = pts[36:42].mean(axis=0), pts[42:48].mean(axis=0)
        d = right - left
        scale = float(np.linalg.norm(d))
        ex = d / max(scale, 1e-6)
        ey = np.array([-ex[1], ex[0]])
        return cls(origin=(pts[48] + pts[54]) / 2.0, ex=ex, ey=ey, scale=max(scale, 1.0))

    def to_local(self, pts: np.ndarray) -> np.ndarray:
        """Image pixels -> local (u, v) in s units."""
        q = np.asarray(pts, dtype=np.float64) - self.origin
        return np.stack([q @ self.ex, q @ self.ey], axis=-1) / self.scale

    def to_image(self, uv: np.ndarray) -> np.ndarray:
        """Local (u, v) in s units -> image pixels."""
        uv = np.asarray(uv, dtype=np.float64) * self.scale
        return self.origin + uv[..., :1] * self.ex + uv[..., 1:2] * self.ey

    def canonical_to_image(self, px_per_s: float = PX_PER_S) -> np.ndarray:
        """2x3 affine taking canonical patch pixels (at `px_per_s`) to image pixels."""
        k = self.scale / px_per_s
        t = self.origin + self.scale * (U_RANGE[0] * self.ex + V_RANGE[0] * self.ey)
        return np.array([[k * self.ex[0], k * self.ey[0], t[0]], [k * self.ex[1], k * self.ey[1], t[1]]])


def local_to_canonical(uv: np.ndarray, px_per_s: float = PX_PER_S) -> np.ndarray:
    """Local (u, v) s units -> canonical patch pixels (at `px_per_s`)."""
    return (np.asarray(uv, dtype=np.float64) - np.array([U_RANGE[0], V_RANGE[0]])) * px_per_s


def mouth_opening(uv: np.ndarray) -> float:
    """Inner-lip gap at the centre (s units; local landmarks)."""
    return float(max(0.0, uv[66, 1] - uv[62, 1]))


def lip_thickness(uv: np.ndarray) -> np.ndarray | float:
    """Outer-lip height less the inner gap, over the mouth width, at the centre (the
    lips' own thickness; rounded, pouted lips are thicker): uv is 68x2 or Nx68x2."""
    uv = np.asarray(uv)
    gap = np.maximum(0.0, uv[..., 66, 1] - uv[..., 62, 1])
    width = np.maximum(uv[..., 54, 0] - uv[..., 48, 0], 1e-3)
    return ((uv[..., 57, 1] - uv[..., 51, 1]) - gap) / width


def mouth_width(uv: np.ndarray) -> float:
    """Mouth-corner distance (s units; local landmarks)."""
    return float(uv[54, 0] - uv[48, 0])


@dataclass
class MouthSample:
    """One real mouth, canonical patch (HxWx3 uint8 RGB) plus landmarks (68x2 local s units)."""

    patch: np.ndarray
    uv: np.ndarray
    opening: float
    width: float
    rounding: float
    teeth: float
    pose: tuple[float, float, float]
    sharpness: float
    brightness: float
    time_ms: float
    centre_xy: tuple[float, float] = (0.0, 0.0)
    """Where the mouth centre was in its frame (pixels)."""
    px_per_s: int = PX_PER_S
    """The patch's resolution (pixels per s, `sample_resolution`)."""
    alone: bool = False
    """The only face in its frame: the original audio there is most likely this person's."""
    viseme: str | None = None
    """The mouth shape (`models.visemes` letter) of the phone the original audio sounds at
    `time_ms`, where that audio is this person's (`MouthBank.label_visemes`); else None."""
    bands: np.ndarray | None = None
    """Per central inner-lip pair, the shares of the gap from the top and from the bottom
    that the upper and the lower teeth (or tongue) fill (3x2, `inner_bands`); the rest is
    the dark between them. None: the whole gap one band."""

    def descriptor(self) -> np.ndarray:
        """Descriptor scaled so that 1 is a visible difference in each coordinate."""
        pitch, yaw, _ = self.pose
        return np.array([self.opening / 0.04, self.width / 0.06, self.rounding / 0.08, self.teeth / 0.15,
                         yaw / 10.0, pitch / 10.0, self.brightness / 25.0])


def _region_masks(uv_px: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(inner-mouth mask, skin ring around the outer lips) in base canonical pixels
    (`PX_PER_S`), uint8 0/1."""
    w, h = size
    inner = np.zeros((h, w), np.uint8)
    cv2.fillPoly(inner, [np.round(uv_px[60:68]).astype(np.int32)], 1)
    lips = np.zeros((h, w), np.uint8)
    cv2.fillPoly(lips, [np.round(uv_px[48:60]).astype(np.int32)], 1)
    grow = max(3, int(0.12 * PX_PER_S))
    ring = cv2.dilate(lips, np.ones((grow, grow), np.uint8)) - cv2.dilate(lips, np.ones((5, 5), np.uint8))
    return inner, ring


def teeth_share(patch: np.ndarray, inner: np.ndarray, skin_luma: float) -> float:
    """Share of the upper band of the inner mouth (its top `TEETH_BAND` of the height,
    where the upper teeth sit under the lip) that looks like teeth: bright (at least 80%
    of the skin's luma) and unsaturated (HSV saturation < 0.35). The band, not the whole
    inner mouth: a wide-open mouth showing its upper teeth over a large tongue is a
    toothy mouth, and the whole-area share called it toothless."""
    if inner.sum() < 8:
        return 0.0
    rows = np.flatnonzero(inner.any(axis=1))
    top, bottom = int(rows[0]), int(rows[-1])
    band = inner.copy()
    band[top + int(np.ceil(TEETH_BAND * (bottom - top + 1))):] = 0
    hsv = cv2.cvtColor(patch, cv2.COLOR_RGB2HSV)
    sat, val = hsv[..., 1][band > 0] / 255.0, hsv[..., 2][band > 0].astype(np.float64)
    teeth = (sat < 0.35) & (val > 0.8 * skin_luma)
    return float(teeth.mean())


BAND_SAMPLES = 16
"""Points read along each central inner-lip pair by `inner_bands`."""
BAND_CONTRAST = 20.0
"""Luma range (levels) under which an inner mouth is one band (nothing to tell apart)."""


def _line_bands(profile: np.ndarray) -> tuple[float, float]:
    """(top, bottom) shares of one line across the gap (luma `profile`, upper lip first)
    that its bright runs next to the lips fill; (1, 0) for a featureless line."""
    hi, lo = float(profile[1:-1].max()), float(profile[1:-1].min())
    if hi - lo < BAND_CONTRAST:
        return 1.0, 0.0
    bright = np.flatnonzero(profile >= 0.5 * (hi + lo))
    runs = np.split(bright, np.flatnonzero(np.diff(bright) > 1) + 1)
    last = len(profile) - 1
    top = bottom = 0.0
    if runs[0][0] <= last / 2:  # the upper teeth under the upper lip
        top = min(1.0, (runs[0][-1] + 0.5) / last)
        runs = runs[1:]
    if runs:  # a lit band over the lower lip, after a darker one: the lower teeth or tongue
        bottom = min(1.0 - top, 1.0 - (runs[-1][0] - 0.5) / last)
    return top, bottom


def inner_bands(grey: np.ndarray, uv_px: np.ndarray, opening: float) -> np.ndarray:
    """Per central inner-lip pair (`INNER_PAIRS`), (top, bottom): the shares of the line
    between them that the bright parts next to the upper and to the lower lip fill, the
    upper teeth and the lower teeth (or tongue) where lit. Read on the luma (`grey`,
    canonical pixels at `uv_px`), bright meaning above the middle of the line's range; each
    line on its own, as the lower teeth are a narrow row that an average washes out.

    A mouth that closes keeps these at their size and loses the dark between them first
    (`models.mouth_transfer`): the teeth stay with the jaws, the gap between them goes.
    (1, 0), the whole line one band, for a closed mouth or a featureless line."""
    bands = np.tile(np.array([1.0, 0.0], np.float32), (len(INNER_PAIRS), 1))
    if opening < CLOSED_GAP:
        return bands
    t = np.linspace(0.0, 1.0, BAND_SAMPLES)[:, None]
    line = np.concatenate([uv_px[a] + t * (uv_px[b] - uv_px[a]) for a, b in INNER_PAIRS]).astype(np.float32)
    values = cv2.remap(grey, line[:, :1].copy(), line[:, 1:].copy(), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    for row, profile in zip(bands, values.astype(np.float32).reshape(len(INNER_PAIRS), BAND_SAMPLES)):
        row[:] = _line_bands(profile)
    return bands


def _laplacian(grey: np.ndarray) -> np.ndarray:
    """4-neighbour Laplacian of the interior (numpy: on a patch this small OpenCV's thread
    pool costs more than the arithmetic)."""
    if grey.shape[0] < 3 or grey.shape[1] < 3:
        return np.zeros(0, np.float32)
    return (4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:])


def viseme_match(targets: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """T x K label term of the cost, in VISEME_COST units: -1 for a sample labelled with the
    target's shape, +1 for one labelled with another, 0 unlabelled ("") or both open shapes
    (-OPEN_SHAPE_MATCH when it is the same open shape)."""
    targets = np.asarray(targets).reshape(-1, 1)
    labels = np.asarray(labels)[None, :]
    same = targets == labels
    both_open = np.isin(targets, list(OPEN_SHAPES)) & np.isin(labels, list(OPEN_SHAPES))
    term = np.where(same, -1.0, 1.0)
    term = np.where(both_open, np.where(same, -OPEN_SHAPE_MATCH, 0.0), term)
    return np.where(labels != "", term, 0.0)


def canonical_window(image: np.ndarray, axes: FaceAxes, px_per_s: int, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """The face's canonical window at `px_per_s` pixels per s (uint8 RGB)."""
    return cv2.warpAffine(image, axes.canonical_to_image(px_per_s), canonical_size(px_per_s),
                          flags=interpolation | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)


def sample_mouth(image: np.ndarray, landmarks: np.ndarray, pose: tuple[float, float, float] | None,
                 time_ms: float) -> MouthSample | None:
    """The canonical mouth sample of one face (RGB uint8 frame, 68 landmarks in pixels): its
    texture at the face's own resolution, its descriptors read at the base one.

    None when the face is too small (s < 24 px) for a useful mouth texture."""
    pts = refine_outer_lips(image, landmarks)  # the lips' real edge: their whole texture is the sample's
    axes = FaceAxes.from_landmarks(pts)
    if axes.scale < 24:
        return None
    patch = canonical_window(image, axes, PX_PER_S)  # the descriptors are read at the base resolution
    px_per_s = sample_resolution(axes.scale)
    texture = canonical_window(image, axes, px_per_s, TEXTURE_INTERPOLATION)
    uv = axes.to_local(pts)
    uv_px = local_to_canonical(uv)
    inner, ring = _region_masks(uv_px, CANONICAL_SIZE)
    grey = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY)
    skin_luma = float(grey[ring > 0].mean()) if ring.any() else float(grey.mean())
    x0, y0 = np.floor(uv_px[48:60].min(axis=0)).astype(int)
    x1, y1 = np.ceil(uv_px[48:60].max(axis=0)).astype(int)
    lips = grey[max(y0, 0):y1, max(x0, 0):x1].astype(np.float32)
    lap = _laplacian(lips)
    sharpness = 100.0 * float(lap.var()) / max(float(lips.var()), 1.0) if lap.size else 0.0
    width = mouth_width(uv)
    return MouthSample(
        patch=texture, px_per_s=px_per_s, uv=uv.astype(np.float32), opening=mouth_opening(uv), width=width,
        rounding=float((uv[57, 1] - uv[51, 1]) / max(width, 1e-3)),
        teeth=teeth_share(patch, inner, skin_luma), pose=tuple(pose) if pose is not None else (0.0, 0.0, 0.0),
        sharpness=sharpness, brightness=skin_luma, time_ms=float(time_ms),
        bands=inner_bands(grey, uv_px, mouth_opening(uv)),
        centre_xy=(float(axes.origin[0]), float(axes.origin[1])))


@dataclass
class Coverage:
    """What shapes a bank can show: its opening range (s units) and whether it has teeth."""

    samples: int
    min_opening: float
    max_opening: float
    teeth: float

    @property
    def has_closed(self) -> bool:
        return self.samples > 0 and self.min_opening <= NEAR_CLOSED_GAP

    @property
    def has_open(self) -> bool:
        return self.samples > 0 and self.max_opening >= OPEN_GAP


@dataclass
class MouthBank:
    """At most `capacity` diverse samples of one person's mouth (see the module docstring)."""

    capacity: int = 48
    samples: list[MouthSample] = field(default_factory=list)
    seen: int = 0
    """Frames in which this person's mouth was looked at (kept, replaced or rejected)."""
    rejected: int = 0
    """Of those, frames whose mouth was not usable (landmarks not to be trusted)."""
    frames_from_bank: int = 0
    """Frames the engine painted from this bank (counted while rendering)."""
    frames_synthesised: int = 0
    """Frames the engine had to synthesise because the bank lacked the shape."""
    frames_occluded: int = 0
    """Frames the engine left as they were: something covered the mouth (`models.mouth_occlusion`)."""
    _columns: dict | None = field(default=None, init=False, repr=False, compare=False)

    def reject(self) -> None:
        """Count a frame of this person whose mouth was not usable."""
        self.seen += 1
        self.rejected += 1

    def add(self, sample: MouthSample) -> None:
        """Keep the sample if the bank has room; otherwise keep the most diverse set."""
        self.seen += 1
        self._columns = None
        self.samples.append(sample)
        if len(self.samples) <= self.capacity:
            return
        desc = np.stack([s.descriptor() for s in self.samples])
        d = np.linalg.norm(desc[:, None, :] - desc[None, :, :], axis=2)
        np.fill_diagonal(d, np.inf)
        i, j = np.unravel_index(int(np.argmin(d)), d.shape)
        drop = i if self.samples[i].sharpness < self.samples[j].sharpness else j
        self.samples.pop(int(drop))

    def replace_samples(self, samples: list[MouthSample]) -> None:
        """Keep only `samples` (e.g. after an identity check dropped some)."""
        self.samples = list(samples)
        self._columns = None

    def label_visemes(self, viseme_at: Callable[[float], str | None]) -> int:
        """Label each sample that was alone in its frame with the mouth shape the original
        audio says at its time (Video Rewrite: the person's own footage, labelled the way
        the new speech is). viseme_at: time (ms) -> shape letter or None. Returns how many
        samples were labelled."""
        for sample in self.samples:
            sample.viseme = viseme_at(sample.time_ms) if sample.alone else None
        self._columns = None
        return sum(sample.viseme is not None for sample in self.samples)

    def columns(self) -> dict[str, np.ndarray]:
        """The samples' descriptors as arrays (opening, width, lip thickness, pitch, yaw, sharpness,
        teeth, brightness, viseme, time), built once after the bank pass rather than on every rendered frame."""
        if self._columns is None:
            self._columns = {
                "opening": np.array([s.opening for s in self.samples]),
                "width": np.array([s.width for s in self.samples]),
                "thickness": np.array([float(lip_thickness(s.uv)) for s in self.samples]),
                "pitch": np.array([s.pose[0] for s in self.samples]),
                "yaw": np.array([s.pose[1] for s in self.samples]),
                "sharpness": np.array([s.sharpness for s in self.samples]),
                "teeth": np.array([s.teeth for s in self.samples]),
                "brightness": np.array([s.brightness for s in self.samples]),
                "viseme": np.array([s.viseme or "" for s in self.samples]),
                "time_ms": np.array([s.time_ms for s in self.samples]),
            }
        return self._columns

    def coverage(self) -> Coverage:
        if not self.samples:
            return Coverage(0, 0.0, 0.0, 0.0)
        col = self.columns()
        open_teeth = col["teeth"][col["opening"] >= OPEN_GAP]
        return Coverage(len(self.samples), float(col["opening"].min()), float(col["opening"].max()),
                        float(open_teeth.max()) if open_teeth.size else 0.0)

    def opening_scale(self) -> float | None:
        """How wide this person opens when speaking: the 90th percentile of the sampled
        openings (s units), or None when the bank shows no open mouth."""
        openings = self.columns()["opening"]
        if not openings.size or openings.max() < OPEN_GAP:
            return None
        return float(np.percentile(openings, 90))

    def speaking_opening(self) -> float | None:
        """How open this person's mouth usually is: the 75th percentile of the sampled
        openings (s units; the samples span their speech and pauses), or None when the bank
        shows no open mouth."""
        openings = self.columns()["opening"]
        if not openings.size or openings.max() < OPEN_GAP:
            return None
        return float(np.percentile(openings, 75))

    def costs(self, opening: float, width: float, pose: tuple[float, float, float] | None) -> np.ndarray:
        """Per-sample cost of showing it for one target mouth (see `cost_matrix`)."""
        if not self.samples:
            return np.zeros(0)
        return self.cost_matrix(np.array([opening]), np.array([width]), pose)[0]

    def cost_matrix(self, openings: np.ndarray, widths: np.ndarray,
                    pose: tuple[float, float, float] | None, show_teeth: float = 0.0,
                    visemes: np.ndarray | None = None, thicknesses: np.ndarray | None = None,
                    teeth_cap: float = 1.0) -> np.ndarray:
        """T x K cost of showing each sample for each of T target mouths (lower is better,
        1 ~ visible); openings and widths in s units; show_teeth (0-1): how much the
        person's own mouth shows its teeth now (a grin), see below; teeth_cap: the teeth
        share (`teeth_share`) beyond which a sample earns no more of that preference (a
        mouth showing more teeth than the person's own expression does reads as a
        grimace, and priced by its whole share the toothiest sample won every toothy
        frame: d10's clenched teeth on 97 of 448); visemes: the target's
        mouth-shape letter per frame, when the new speech's phones are known;
        thicknesses: the target lips' `lip_thickness` (rounding pouts them), when known.

        Shape dominates (the sample is warped to the target's lips, so a mismatch
        stretches its texture); pose follows (light is matched when painting, see
        `models.mouth_transfer`); blurred samples pay a little more, and so do samples
        without teeth for an open target, with teeth for a closed one."""
        openings = np.asarray(openings, dtype=np.float64).reshape(-1, 1)
        widths = np.asarray(widths, dtype=np.float64).reshape(-1, 1)
        if not self.samples:
            return np.zeros((len(openings), 0))
        col = self.columns()
        is_open = openings >= OPEN_GAP
        # A nearly closed target takes nearly closed lips (an open sample squeezed shut
        # shows its cavity as a dark line); open ones tolerate more stretch for teeth.
        spread = np.where(is_open, 0.06, 0.03)
        # A sample more open than a target that shows teeth is not squashed but cut by the
        # target's lower lip (`models.mouth_transfer`): its upper teeth keep their size.
        excess = col["opening"][None, :] - openings
        spread = np.where((excess > 0) & (openings >= TEETH_GAP), OVER_OPEN_SPREAD, spread)
        cost = (excess / spread) ** 2 + ((col["width"][None, :] - widths) / 0.08) ** 2
        if thicknesses is not None:
            thicknesses = np.asarray(thicknesses, dtype=np.float64).reshape(-1, 1)
            cost += ((col["thickness"][None, :] - thicknesses) / THICKNESS_SPREAD) ** 2
        if pose is not None:
            cost += (((col["yaw"] - pose[1]) / 12.0) ** 2 + ((col["pitch"] - pose[0]) / 15.0) ** 2)[None, :]
        # Blur: each halving of the sharpness under the bank's sharp end (its 75th
        # percentile) costs BLUR_COST, up to three halvings' worth.
        sharp = np.maximum(col["sharpness"], 1e-6)
        reference = max(float(np.percentile(sharp, 75)), 1e-6)
        cost += BLUR_COST * np.clip(np.log2(reference / sharp), 0.0, 3.0)[None, :]
        # Closed targets avoid samples that show teeth (teeth the landmarks put inside the
        # lips would show as a white line); from TEETH_GAP up they favour them, twice as
        # much while the person's own mouth shows its teeth (`show_teeth`: a grin keeps its
        # teeth while it speaks); in between the preference ramps from one to the other.
        # The preference for teeth holds only for a sample that needs little squeezing: a
        # toothy sample closed far under its own opening shows only a thin line of teeth,
        # worse than the person's own toothless mouth.
        ramp = np.clip((openings - CLOSED_GAP) / (TEETH_GAP - CLOSED_GAP), 0.0, 1.0)
        preference = -1.0 + ramp * (2.0 + float(np.clip(show_teeth, 0.0, 1.0)))
        squeeze = np.clip(col["opening"][None, :] - openings, 0.0, None)
        preference = np.where(preference > 0, preference * np.clip(1.0 - squeeze / TEETH_SQUEEZE, 0.0, 1.0),
                              preference)
        teeth = col["teeth"][None, :]
        cost -= 3.0 * preference * np.where(preference > 0, np.minimum(teeth, teeth_cap), teeth)
        # Squeezing teeth shut costs on top of the shape mismatch.
        cost += (squeeze / TEETH_SQUEEZE) ** 2 * teeth
        # Video Rewrite: a sample labelled with the shape the target says (its own phone in
        # the original audio) costs less, one labelled with another shape more; unlabelled
        # samples are neutral.
        if visemes is not None and len(visemes) == len(openings):
            cost += VISEME_COST * viseme_match(np.asarray(visemes), col["viseme"])
        return cost

    def appearance_distances(self) -> np.ndarray:
        """K x K distance between the samples' looks (teeth, brightness, pose; 1 ~ visible):
        what a switch from one to the other shows beyond the change of shape."""
        if not self.samples:
            return np.zeros((0, 0))
        col = self.columns()
        look = np.stack([col["teeth"] / 0.15, col["brightness"] / 25.0, col["yaw"] / 10.0, col["pitch"] / 10.0], axis=1)
        return np.linalg.norm(look[:, None, :] - look[None, :, :], axis=2)
