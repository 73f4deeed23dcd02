"""The classical, weight-free lip-sync engine: audio features -> the person's own mouth.

Per face and frame:
  1. Landmarks: dlib's outer lips and lower jaw moved onto their real colour edges
     (`models.lip_contour`, `models.jaw_contour`). A face frame from them: origin at the
     mouth centre, u along the eye line, v pointing down the face, scale s = inter-ocular
     distance (pixels).
  2. Target landmarks: first remove the speaker's own mouth motion (close the inner lips
     onto their midline, the lower lip rising by most of the original gap and the chin by
     half of it, upper lip a little down; restore the mouth width to its slow per-track
     average), then open, widen and round from the MouthShape (lower lip and chin drop
     with the jaw, the upper lip lifts a little, the corners follow). With a mouth bank
     the widest opening is this person's own (`_warp_for`).
  3. Backward piecewise-affine warp over a per-track fixed triangulation of the lower-face
     landmarks plus a ring of fixed points around it, applied with one cv2.remap on a crop
     whose original mouth gap was first painted over with lip texture.
  4. The mouth: with the person's `MouthBank` (MouthRequest.bank), one real sample per
     frame, planned over the range (`models.mouth_select`), warped onto the target lips
     in its own lip shape opened to the target's gap, relit and blended (`models.mouth_transfer`). Without a bank, or
     where it lacks the shape (no open sample), a synthesised inner mouth:
     a dark cavity coloured from the lips, a band of upper teeth when open enough.
  5. Alpha: the lower face below the nose and down to under the lowest jaw line (source or
     target; `models.mouth_geometry.motion_reach`), Gaussian-feathered, zero at the crop
     border, times strength. The warp's motion is whole inside the target face
     (`motion_whole`) and fades to none at that reach (`models.warp_field.confine_motion`):
     wherever the alpha falls off, the warped picture is the original one, so no moved jaw
     edge is ever blended with the unmoved one (a doubled jaw, a step in the chin's outline).

Temporal state (per MouthRequest.track_key, a person within one shot): the closed-mouth
shape (2-frame average in face coordinates), the neutral mouth width (slow average), the
lip and skin colours (exponential averages), the triangulation and the bank samples'
weights, so that the target depends smoothly on the inputs and nothing flickers. A track
unseen for more than `STATE_GAP_FRAMES` frames starts afresh.
"""
from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
from scipy.spatial import Delaunay

from models.engine import MouthPatch, MouthRequest
from models.jaw_contour import JawHistory, refine_jaw
from models.lip_contour import refine_outer_lips
from models.mouth_bank import (
    CLOSED_GAP,
    OPEN_GAP,
    FaceAxes,
    MouthBank,
    lip_thickness,
    mouth_opening,
    mouth_width,
    teeth_share,
)
from models.mouth_cleanup import close_original_gap
from models.mouth_front_end import mouth_track
from models.mouth_geometry import (
    CONTROL,
    WarpConfig,
    articulate_local,
    articulate_many,
    chin_rise_limit,
    inset_inner_lips,
    jaw_skirt,
    lip_curves,
    lip_exponent,
    motion_reach,
    motion_whole,
    neutral_local,
    profile,
    ring_points,
)
from models.mouth_occlusion import OcclusionGate, bank_pictures, mouth_picture, picture_mask
from models.mouth_params import MouthParamConfig, MouthShape, MouthTrack
from models.mouth_select import (MEMORABLE_PAUSE_MS, PAUSE_MEMORY, SamplePlan, look_alike, spread_uses, switch_costs,
                                 vary_pauses)
from models.mouth_transfer import (
    MeshRaster,
    WeightedSample,
    paint_bank_mouth,
    with_sample_shape,
)
from models.visemes import shape_letter
from models.warp_field import confine_motion, smooth_away_from_lips

log = logging.getLogger(__name__)

STATE_GAP_FRAMES = 30
MIN_ARTICULATION = 0.28
"""Widest opening (s units) given to a person who opens little, where their bank allows."""
SYNTH_BEYOND = 0.08
"""How far (s units) past a person's widest sample the opening may be synthesised."""
CURVE_RANGE = (0.65, 1.0)
"""Bounds of the opening curve (`WarpConfig.openness_curve`) fitted per person: an animated
speaker's usual opening is a larger share of their widest than the phones' targets say, so
their mid openings are raised (never lowered: a shy speaker keeps the targets as they are)."""
SPEECH_OPENNESS = 0.02
"""Openness (0-1) above which a target frame counts as speech when its usual opening is measured."""
MAX_PLAN_FRAMES = 1500
"""Frames planned ahead at once per track (60 s at 25 fps); a longer range plans again."""
REPLAN_WIDTH = 0.06
"""Change of the source's closed-mouth width (s units: a smile coming or going) after which
the rest is planned again, for the new expression."""
REPLAN_POSE_DEG = 10.0
"""Head turn (yaw or pitch, degrees) since the plan after which the rest is planned again."""
GRIN_TEETH = 0.25
"""Share of the original mouth's upper band showing teeth (smoothed) from which the face
counts as grinning: while it speaks, its teeth stay in view."""
GRIN_KEEP = 0.5
"""While grinning, a speech frame's lips stay at least this share of the original's gap
apart (at most OPEN_GAP): the person's own expression, teeth showing, with the opening
still following the speech above it. Closures (p/b/m) and silence still close."""
GRIN_REST_KEEP = 0.8
"""Share of the original's (smoothed) gap a person who never closes their mouth speaks from
(`_keep_grin`): their grin is their rest, and a talker's fewer teeth read as edited."""
GRIN_GAP_RATE = 0.08
"""Per-frame weight of the original's gap in its running average (~12 frames) that GRIN_KEEP
takes a share of."""
TEETH_CAP = 0.45
"""Teeth share (`teeth_share`) up to which a toothy target prefers a sample for its teeth
(`MouthBank.cost_matrix`'s teeth_cap) while the person's own mouth shows fewer: a clearly
toothy mouth. d10 + sun.wav showed her toothiest sample (0.8: teeth clenched, both rows)
and two neighbours of it on 97 of 448 frames; two blind judges picked it out in nine pairs."""
TEETH_CAP_OVER = 0.15
"""How much more teeth share than the person's own grin (`GRIN_HOLD_S`) still earns a
sample the preference: a grin keeps all its teeth (the quick start's 61-63 lost theirs
under a flat cap of 0.45)."""
GRIN_ROUNDING = 0.5
"""Share of a rounded vowel's rounding a grinning face takes."""
REPLAN_TEETH = 0.3
"""Change of the original's held teeth share (`GRIN_HOLD_S`: a grin coming or going) after
which the rest is planned again."""
GRIN_HOLD_S = 1.0
"""Time (s) over which the teeth share the grin is judged by falls from its peak to none:
a grinning speaker's teeth hide for a syllable or two and come back. Planned on the dip
itself, the quick start lost its grin for the half second after it (frames 61-63): the plan
made at frame 55, as his teeth share fell 0.55 -> 0.17, chose toothless mouths to the next."""
USE_MEMORY_S = 20.0
"""Time constant (s of the track's frames) over which a sample's uses in speech fade from
the plan's memory (`models.mouth_select.spread_uses`): the viewer remembers a mouth seen
a few seconds ago, not one from minutes back."""
MOTION_ABOVE = 0.3
"""How far (s units) above the nose base the lower face's motion fades out (`confine_motion`):
there it is next to nothing, and the alpha mask ends at the nose base anyway."""
MAX_TRACK_STATES = 64
"""Per-track states kept (least recently used dropped): the engine is shared by every job
of a server, whose track keys are unique per job, so the table must not grow forever."""


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
    teeth: float = 0.0  # share of the original mouth's upper band showing teeth, smoothed
    grin_teeth: float = 0.0  # the most `teeth` over the last GRIN_HOLD_S
    recent_teeth: deque = field(default_factory=deque)  # `teeth` of those frames, oldest first
    gap: float = 0.0  # the original's inner-lip gap (s units), smoothed
    grin_seen: bool = False  # teeth and gap measured once: they start there, not from 0
    plan_teeth: float = 0.0  # `grin_teeth` when the plan was made
    jaw: JawHistory = field(default_factory=JawHistory)  # recent jaw edges (`models.jaw_contour`)
    warp_inputs: tuple = ()  # (bank, its columns, features) that `warp` was made from
    warp: WarpConfig | None = None  # `_warp_for` those, kept: it reads percentiles of the whole track
    gate: OcclusionGate = field(default_factory=OcclusionGate)  # how much of the mouth to show (a cover)
    pictures_inputs: tuple = ()  # (bank, its columns) that `pictures` were made from
    pictures: tuple | None = None  # the bank's grey mouth pictures, squared, their times (`models.mouth_occlusion`)
    pause_samples: list[int] = field(default_factory=list)  # bank samples the memorable pauses showed, oldest first (PAUSE_MEMORY)
    pause_run: tuple[int, int] = (-1, 0)  # the sample the current pause shows, and for how many frames
    speech_uses: np.ndarray | None = None  # per bank sample, speech frames it showed (fading, `USE_MEMORY_S`)


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
        warp = replace(self.warp, max_chin_rise=chin_rise_limit(self.warp, state.jaw.chin_edge))
        now = neutral_local(uv, warp)
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
        pts = refine_outer_lips(image, face.landmarks)
        axes = FaceAxes.from_landmarks(pts)
        s = axes.scale
        state = self._state(req.track_key, req.frame_index, axes.to_local(pts))
        shown = self._shown(state, image, axes, pts, req.bank, req.time_ms)
        if shown <= 0.0:  # something covers the mouth: the frame stays as it is
            req.bank.frames_occluded += 1
            return MouthPatch(0, 0, np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1), np.float32))
        pts = refine_jaw(image, pts, state.jaw, req.frame_index)
        src_uv = axes.to_local(pts)
        warp = self._track_warp(state, req.bank, features)
        neutral = self._neutral(state, src_uv)
        self._update_grin(state, image, axes, pts, src_uv, features.fps if features is not None else 0.0)
        never_closes = self._never_closes(req.bank)
        pause = never_closes and features is not None and bool(features.pause_at(np.array([req.time_ms]))[0])
        shape = self._keep_grin(shape, state, warp, never_closes, pause)
        dst_uv = articulate_local(neutral, shape, state.neutral_width, warp)
        chosen = self._choose_samples(req, state, dst_uv, neutral, warp, features)
        if chosen:
            dst_uv = with_sample_shape(dst_uv, chosen[0].sample.uv)

        nose_v = src_uv[33, 1] + 2.2 * warp.feather  # the alpha's feathered edge ends at the nose base
        # The alpha is whole (over 0.9) wherever the warp moves: its feathered edge lies beyond.
        poly_uv = motion_reach(src_uv, dst_uv, nose_v, beyond=2.0 * warp.feather)
        ring_uv = ring_points(poly_uv, warp.ring_margin)
        ctrl = list(CONTROL)
        skirt_src, skirt_dst = jaw_skirt(src_uv, dst_uv)
        src_ctrl = np.concatenate([inset_inner_lips(src_uv, 0.06)[ctrl], skirt_src, ring_uv])
        dst_ctrl = np.concatenate([dst_uv[ctrl], skirt_dst, ring_uv])
        if state.triangles is None:
            template = articulate_local(neutral_local(src_uv, warp), MouthShape(0.6, 0.0, 0.0, 0.0), state.neutral_width, warp)
            skirt = jaw_skirt(template, template)[0]
            state.triangles = Delaunay(np.concatenate([template[ctrl], skirt, ring_uv])).simplices.astype(np.int32)
            log.debug("track %r: lower-face mesh of %d triangles", req.track_key, len(state.triangles))
        tris = state.triangles

        # Crop box: the alpha polygon's bounding box and its feather's reach (3 sigma), clipped
        # to the frame. The ring lies further out: what of the mesh the box leaves out moves
        # nothing (`confine_motion`), and a box to the ring cost ~1.5 ms a face-frame more.
        poly_box = axes.to_image(poly_uv)
        reach = 3.0 * warp.feather * s + 2.0
        h_img, w_img = image.shape[:2]
        x0 = int(np.clip(np.floor(poly_box[:, 0].min() - reach), 0, w_img - 1))
        y0 = int(np.clip(np.floor(poly_box[:, 1].min() - reach), 0, h_img - 1))
        x1 = int(np.clip(np.ceil(poly_box[:, 0].max() + reach) + 1, x0 + 1, w_img))
        y1 = int(np.clip(np.ceil(poly_box[:, 1].max() + reach) + 1, y0 + 1, h_img))
        cw, ch = x1 - x0, y1 - y0
        off = np.array([x0, y0], dtype=np.float64)

        src_img = axes.to_image(src_ctrl) - off
        dst_img = axes.to_image(dst_ctrl) - off
        # Evaluated on every pixel: the closed-lip triangles are a pixel or two thin and map
        # to the whole original gap, so a coarser grid would smear the lip line.
        map_x, map_y = MeshRaster.of(dst_img, tris, cw, ch).maps(src_img, tris)
        # Smooth away from the lips: a straight chin edge must not bend at triangle edges.
        map_x, map_y = smooth_away_from_lips(map_x, map_y, axes.to_image(dst_uv[48:60]) - off, s)
        # Beyond the face nothing moves: the alpha's edge then never cuts through a moved edge.
        confine_motion(map_x, map_y, axes.to_image(motion_whole(dst_uv, nose_v)) - off,
                       axes.to_image(motion_reach(src_uv, dst_uv, nose_v - MOTION_ABOVE)) - off, s)

        crop_src = image[y0:y1, x0:x1]
        # Where the alpha shows anything, the warp reads inside the crop: beyond `motion_reach`
        # it reads each pixel itself, and within it the source outline lies inside the box.
        src_pts = axes.to_image(src_uv) - off
        self._update_colours(state, crop_src, src_pts)
        # The original mouth's gap is painted over first: landmarks lag a fast mouth by a
        # few pixels, and what they miss must not survive the warp.
        cleaned = close_original_gap(crop_src, src_pts, state.lip_rgb, state.skin_rgb, s)
        # Bilinear: the mouth is painted over it from the bicubic sample, and this warp over the
        # whole lower face costs 1.4 ms a face-frame more bicubic, with no sharper lips.
        pixels = cv2.remap(cleaned, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if chosen and paint_bank_mouth(pixels, axes, dst_uv, off, chosen, state.lip_rgb):
            req.bank.frames_from_bank += 1
        else:
            self._paint_mouth(pixels, axes, dst_uv, off, state, shape)
            if req.bank is not None:
                req.bank.frames_synthesised += 1

        poly_img = axes.to_image(poly_uv) - off
        alpha = self._alpha(poly_img, cw, ch, warp.feather * s) * (float(np.clip(req.strength, 0.0, 1.0)) * shown)
        return MouthPatch(x=x0, y=y0, pixels=pixels, alpha=alpha)

    # -- the mouth bank ---------------------------------------------------------------
    @staticmethod
    def _shown(state: _TrackState, image: np.ndarray, axes: FaceAxes, pts: np.ndarray, bank: MouthBank | None,
               time_ms: float) -> float:
        """How much of the synced mouth to show (0-1): none while something covers the mouth,
        which then looks like none of the person's own bank mouths (`models.mouth_occlusion`).
        Without a bank there is nothing to compare against: all of it."""
        if bank is None or not bank.samples:
            return 1.0
        inputs = (bank, bank.columns())
        if state.pictures is None or any(a is not b for a, b in zip(inputs, state.pictures_inputs)):
            pictures = bank_pictures(bank)
            state.pictures_inputs = inputs
            state.pictures = (pictures, pictures * pictures, np.array([sample.time_ms for sample in bank.samples]))
        pictures, squares, times = state.pictures
        return state.gate.update(mouth_picture(image, axes), picture_mask(axes.to_local(pts)), pictures, times,
                                 time_ms, squares)

    def _track_warp(self, state: _TrackState, bank: MouthBank | None, features: MouthTrack | None) -> WarpConfig:
        """`_warp_for` this track's bank and features, made again only when either is another
        object or the bank's samples changed (0.4 ms a face-frame: percentiles over the bank
        and the whole track's openness)."""
        inputs = (bank, None if bank is None else bank.columns(), features)
        if state.warp is None or any(a is not b for a, b in zip(inputs, state.warp_inputs)):
            state.warp_inputs, state.warp = inputs, self._warp_for(bank, features)
        return state.warp

    def _warp_for(self, bank: MouthBank | None, features: MouthTrack | None = None) -> WarpConfig:
        """The articulation for this person: the widest opening follows how wide they open
        their mouth in the video (90th percentile of the bank), so that a shy speaker is
        not given a yawn and the chosen samples need little stretching. A person who opens
        little still visibly says the new speech: the widest opening is at least
        MIN_ARTICULATION, a bounded synthesis of at most SYNTH_BEYOND past their widest
        sample (the sample is stretched that far). Their usual opening sets the curve from
        openness to gap (`_openness_curve`)."""
        coverage = bank.coverage() if bank is not None else None
        scale = bank.opening_scale() if bank is not None else None
        if scale is None or coverage is None:
            return self.warp
        floor = min(MIN_ARTICULATION, coverage.max_opening + SYNTH_BEYOND)
        max_gap = float(np.clip(max(1.15 * scale, floor), 0.2, self.warp.max_gap))
        return replace(self.warp, max_gap=max_gap, openness_curve=self._openness_curve(bank, features, max_gap))

    def _openness_curve(self, bank: MouthBank, features: MouthTrack | None, max_gap: float) -> float:
        """The exponent that maps the targets' usual speech opening (75th percentile of the
        track's openness over speech) to the person's own usual opening (the bank's 75th
        percentile, as a share of `max_gap`), within CURVE_RANGE. d11's girl opens to 0.24
        s units three quarters of the time where the phones' targets gave her 0.17: her
        dub looked half-hearted next to her own speech. s29's woman, who grins through her
        whole video, gets it too: her speaking grin then shows her teeth about as she does."""
        own = bank.speaking_opening()
        if features is None or own is None:
            return 1.0
        speech = features.openness[features.openness > SPEECH_OPENNESS]  # ~50 us for a minute of audio
        target = float(np.percentile(speech, 75)) if speech.size else 0.0
        share = min(own / max_gap, 0.99)  # usually as open as their widest target: the most lift
        if not 0.0 < target < 1.0 or share <= 0.0:
            return 1.0
        return float(np.clip(np.log(share) / np.log(target), *CURVE_RANGE))

    def _choose_samples(self, req: MouthRequest, state: _TrackState, dst_uv: np.ndarray, neutral: np.ndarray,
                        warp: WarpConfig, features: MouthTrack | None) -> list[WeightedSample]:
        """The bank sample to show for the target lips: the plan's one sample (never a
        blend of several mouths).

        Empty when the bank cannot show this shape (no bank, or no open sample for an
        open target): the synthesised mouth is drawn instead. A bank with no closed sample
        (a person who grins or talks through the whole video) still closes: its least
        open sample's own lips pressed together look like theirs, where warping the
        original's open lips shut smears them."""
        bank: MouthBank | None = req.bank
        if bank is None or not bank.samples:
            return []
        opening = mouth_opening(dst_uv)
        coverage = bank.coverage()
        if opening >= OPEN_GAP and not coverage.has_open:
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
        if k is not None and (abs(width_now - state.plan_width) > REPLAN_WIDTH
                              or abs(state.grin_teeth - state.plan_teeth) > REPLAN_TEETH):
            k = None  # the expression changed (a smile came or went): plan for it
        if k is None:
            previous = None
            if plan is not None and state.bank_id == id(bank) and plan.bank_size == len(bank.samples):
                last = plan.index_at(req.time_ms - 1000.0 / plan.fps)
                previous = int(plan.samples[last]) if last is not None else None
            if state.bank_id != id(bank):
                state.pause_samples, state.speech_uses = [], None  # indices into another bank
            plan = self._plan(bank, req.time_ms, neutral, state, warp, features, pose, previous)
            state.plan, state.bank_id, state.plan_width, state.plan_teeth, k = plan, id(bank), width_now, state.grin_teeth, 0
        shown = int(plan.samples[k])
        if features.pause_at(np.array([req.time_ms]))[0]:
            run = state.pause_run[1] + 1 if state.pause_run[0] == shown else 1
            state.pause_run = (shown, run)
            if run == self._memorable_frames(plan.fps):
                state.pause_samples = (state.pause_samples + [shown])[-PAUSE_MEMORY:]
            return [WeightedSample(bank.samples[shown], 1.0)]
        state.pause_run = (-1, 0)
        if state.speech_uses is None or len(state.speech_uses) != len(bank.samples):
            state.speech_uses = np.zeros(len(bank.samples))
        state.speech_uses *= np.exp(-1.0 / (USE_MEMORY_S * plan.fps))
        state.speech_uses[shown] += 1.0
        return [WeightedSample(bank.samples[shown], 1.0)]

    @staticmethod
    def _memorable_frames(fps: float) -> int:
        """Frames a pause lasts at least to be remembered (`MEMORABLE_PAUSE_MS`), at least 1."""
        return max(1, int(round(MEMORABLE_PAUSE_MS * fps / 1000.0)))

    @staticmethod
    def _smoothed_pose(state: _TrackState, pose: tuple[float, float, float] | None) -> tuple[float, float, float] | None:
        """The track's head pose, exponentially averaged (a third of each new frame): the
        per-frame estimate jitters by several degrees, which must not re-plan the mouth."""
        if pose is None:
            return None if state.pose is None else tuple(state.pose)
        now = np.asarray(pose, dtype=np.float64)
        state.pose = now if state.pose is None else state.pose + (now - state.pose) / 3.0
        return tuple(float(v) for v in state.pose)

    @classmethod
    def _plan(cls, bank: MouthBank, start_ms: float, neutral: np.ndarray, state: _TrackState, warp: WarpConfig,
              features: MouthTrack, pose: tuple[float, float, float] | None, previous: int | None) -> SamplePlan:
        """Plan the bank sample of every frame from `start_ms` to the end of the audio (at
        most MAX_PLAN_FRAMES): the target lips of each frame from the audio, on this
        frame's closed mouth, each pause given its own closed mouth where the bank has
        several (`models.mouth_select.vary_pauses`), then the plan (`models.mouth_select.spread_uses`:
        no sample shown much more than the others)."""
        fps = float(features.fps) or 25.0
        remaining = max(0.0, features.duration_ms - start_ms)
        count = int(min(MAX_PLAN_FRAMES, np.floor(remaining * fps / 1000.0) + 1))
        times = start_ms + np.arange(count) * 1000.0 / fps
        # Shapes repeat (a phone's shape holds for frames, silence is all closed): each
        # distinct shape, to 0.01, is articulated once, all in one vectorised pass.
        never_closes = cls._never_closes(bank)
        pauses = features.pause_at(times)
        keys = np.array([[shape.openness, shape.width, shape.rounding]
                         for shape in (cls._keep_grin(features.at(float(t)), state, warp, never_closes, bool(p))
                                       for t, p in zip(times, pauses))])
        distinct, which = np.unique(np.round(keys, 2), axis=0, return_inverse=True)
        uv = articulate_many(neutral, distinct, state.neutral_width, warp)
        openings = np.maximum(0.0, uv[:, 66, 1] - uv[:, 62, 1])[which.ravel()]  # `mouth_opening`
        widths = (uv[:, 54, 0] - uv[:, 48, 0])[which.ravel()]  # `mouth_width`
        thicknesses = lip_thickness(uv)[which.ravel()]
        labels = features.phones_at(times)
        visemes = None if labels is None else np.array([shape_letter(str(label)) for label in labels])
        cost = bank.cost_matrix(openings, widths, pose, show_teeth=min(1.0, state.grin_teeth / (2 * GRIN_TEETH)),
                                visemes=visemes, thicknesses=thicknesses,
                                teeth_cap=max(TEETH_CAP, state.grin_teeth + TEETH_CAP_OVER))
        numbers = features.pause_number_at(np.concatenate([[start_ms - 1000.0 / fps], times]))
        in_pause = previous is not None and numbers[0] == numbers[1] >= 0
        cost = vary_pauses(cost, numbers[1:], bank.columns()["time_ms"], state.pause_samples,
                           showing=previous if in_pause else None, memorable_frames=cls._memorable_frames(fps))
        path = spread_uses(cost, switch_costs(openings, widths, labels), bank.appearance_distances(), previous,
                           speech=~pauses, shown_before=state.speech_uses, alike=look_alike(bank.columns()["time_ms"]))
        return SamplePlan(start_ms, fps, path, None if pose is None else tuple(pose), len(bank.samples))

    # -- the person's own expression --------------------------------------------------
    @staticmethod
    def _update_grin(state: _TrackState, image: np.ndarray, axes: FaceAxes, pts: np.ndarray, src_uv: np.ndarray,
                     fps: float = 0.0) -> None:
        """Measure how much the original mouth shows its teeth (`teeth_share` of its inner
        lips' upper band, against the skin around the mouth), smoothed over ~3 frames (one
        frame's landmarks and lighting are noisy), its most over the last GRIN_HOLD_S (at
        `fps`, 25 when unknown), and its gap, smoothed over ~12."""
        gap = mouth_opening(src_uv)
        teeth = 0.0
        if gap >= CLOSED_GAP:
            x0, y0 = np.floor(pts[48:60].min(axis=0)).astype(int) - 2
            x1, y1 = np.ceil(pts[48:60].max(axis=0)).astype(int) + 3
            h, w = image.shape[:2]
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
            if x1 - x0 >= 4 and y1 - y0 >= 4:
                crop = np.ascontiguousarray(image[y0:y1, x0:x1])
                inner = np.zeros((y1 - y0, x1 - x0), np.uint8)
                cv2.fillPoly(inner, [np.round(pts[60:68] - [x0, y0]).astype(np.int32)], 1)
                skin = state.skin_rgb if state.skin_rgb is not None else np.full(3, 170.0)
                teeth = teeth_share(crop, inner, float(skin @ np.array([0.299, 0.587, 0.114])))
        if not state.grin_seen:  # a track that starts on a grin grins from its first frame
            state.teeth, state.gap, state.grin_seen = teeth, gap, True
        state.teeth += 0.4 * (teeth - state.teeth)
        state.recent_teeth.append(state.teeth)
        while len(state.recent_teeth) > max(1, round(GRIN_HOLD_S * (fps or 25.0))):
            state.recent_teeth.popleft()
        state.grin_teeth = max(state.recent_teeth)
        # The grin's gap, averaged over about half a second: the lips' floor while grinning
        # holds the grin, not the original speech's own syllables.
        state.gap += GRIN_GAP_RATE * (gap - state.gap)

    @staticmethod
    def _keep_grin(shape: MouthShape, state: _TrackState, warp: WarpConfig, never_closes: bool = False,
                   pause: bool = False) -> MouthShape:
        """A speech frame of a grinning face keeps its lips GRIN_KEEP of the original's gap
        apart (at most OPEN_GAP), so its teeth stay in view, and rounds them less
        (GRIN_ROUNDING: the smile holds the corners out); closures and silence
        (shape.closed) still close.

        A person whose footage never shows their mouth closed (`never_closes`: no closed
        sample in their bank) rests in their grin: in a pause (`pause`, see
        `MouthTrack.pause_at`) their lips stay the original's whole (smoothed) gap apart,
        as in their video, and speech opens from GRIN_REST_KEEP of it, the openness
        spread over the rest of the range (a floor that flattened everything under it cost
        Light-ASD 0.69 -> 0.58; this lifts it to 0.73, with her teeth in view). Lips pressed
        shut are a face the viewer never saw them make, and read as edited (5 of 14 blind
        pairs of s29 + sun.wav, all picked); their p/b/m closures still close."""
        if state.grin_teeth < GRIN_TEETH:
            return shape
        curve = 1.0 / warp.openness_curve
        if never_closes and pause:
            openness = min(1.0, (state.gap / max(warp.max_gap, 1e-6)) ** curve)
            return replace(shape, openness=float(openness), closed=0.0, rounding=GRIN_ROUNDING * shape.rounding)
        if shape.closed >= 0.5:
            return shape
        if never_closes:  # speech opens from the grin: the rest of the range on top of it
            rest = min(1.0, (GRIN_REST_KEEP * state.gap / max(warp.max_gap, 1e-6)) ** curve)
            openness = rest + (1.0 - rest) * shape.openness
        else:
            openness = max(shape.openness, (min(GRIN_KEEP * state.gap, OPEN_GAP) / max(warp.max_gap, 1e-6)) ** curve)
        return replace(shape, openness=float(openness), rounding=GRIN_ROUNDING * shape.rounding)

    @staticmethod
    def _never_closes(bank: MouthBank | None) -> bool:
        """Whether the person's footage never shows their mouth closed: a bank with samples,
        none of them closed."""
        return bank is not None and bool(bank.samples) and not bank.coverage().has_closed

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
        sigma = max(sigma, 0.8)
        # Blurred only around the polygon (its box grown by the kernel's radius, OpenCV's
        # 4 sigma for float images): everything further out stays 0, and the crop's own
        # edges reflect as before, so the values are the whole crop's blur (~0.5 ms less).
        reach = int(np.ceil(4 * sigma)) + 2
        x0, y0 = np.floor(poly.min(axis=0)).astype(int) - reach
        x1, y1 = np.ceil(poly.max(axis=0)).astype(int) + reach + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        alpha = np.zeros((h, w), dtype=np.float32)
        if x1 > x0 and y1 > y0:
            alpha[y0:y1, x0:x1] = cv2.GaussianBlur(mask[y0:y1, x0:x1].astype(np.float32) / 255.0, (0, 0), sigma)
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
        uc, hw, cu, cl = lip_curves(dst_uv, expo)
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
        prof = profile(x, hw, expo)
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
