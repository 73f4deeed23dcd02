"""The classical engine on real frames with dlib landmarks and real speech.

A landmark detector (dlib's 68-point predictor) re-measures the mouth on the rendered
frames: it must follow the target openness, closed targets must look closed, and nothing
outside the feathered lower-face patch may change.
"""
from __future__ import annotations

from pathlib import Path

import av
import cv2
import dlib
import face_recognition_models
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.classical_lipsync import MAX_TRACK_STATES, ClassicalLipSync
from models.engine import MouthPatch, MouthRequest
from models.faces.face import Face
from models.mouth_bank import FaceAxes
from models.mouth_metrics import mouth_opening
from models.mouth_params import MouthShape
from stages.audio import load_audio

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SR = 16000


def _media(rel: str) -> Path:
    path = DATA / rel
    if not path.exists():
        pytest.skip(f"sample media missing: {path} (see ../shared/data/README.md)")
    return path


@pytest.fixture(scope="module")
def dlib_models():
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())


def _frames(name: str, count: int, step: int = 1) -> list[np.ndarray]:
    out = []
    with av.open(str(_media(f"video/{name}"))) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % step == 0:
                out.append(f.to_ndarray(format="rgb24"))
            if len(out) == count:
                break
    return out


def _landmarks(models, image: np.ndarray, rect=None):
    det, pred = models
    if rect is None:
        found = det(image, 0)
        if not found:
            return None, None
        rect = max(found, key=lambda r: r.area())
    shape = pred(image, rect)
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32), rect


def _face(lm: np.ndarray, rect) -> Face:
    return Face(bbox=[rect.left(), rect.top(), rect.right(), rect.bottom()], score=1.0, kps=np.zeros((5, 2)), landmarks=lm)


def _blend(image: np.ndarray, p: MouthPatch) -> np.ndarray:
    out = image.astype(np.float32).copy()
    h, w = p.alpha.shape
    a = p.alpha[..., None]
    out[p.y : p.y + h, p.x : p.x + w] = a * p.pixels + (1 - a) * out[p.y : p.y + h, p.x : p.x + w]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def speech_run(dlib_models):
    """Render 3 s of d11 driven by sun.wav; measure the output mouth with dlib."""
    frames = _frames("d11.mp4", 75)
    audio = load_audio(_media("audio/sun.wav"), SR)
    engine = ClassicalLipSync()
    track = engine.prepare_audio(audio, SR, 25.0)
    targets, measured, originals, closed = [], [], [], []
    for i, img in enumerate(frames):
        lm, rect = _landmarks(dlib_models, img)
        assert lm is not None, f"no face in d11 frame {i}"
        t_ms = 1000.0 + i * 40.0
        shape = track.at(t_ms)
        (patch,) = engine.render([MouthRequest(i, t_ms, img, _face(lm, rect), track_key="girl")], track)
        out = _blend(img, patch)
        out_lm, _ = _landmarks(dlib_models, out, rect)
        targets.append(shape.openness)
        closed.append(shape.closed)
        measured.append(mouth_opening(out_lm))
        originals.append(mouth_opening(lm))
    return np.array(targets), np.array(measured), np.array(originals), np.array(closed)


def test_measured_opening_follows_target(speech_run):
    targets, measured, originals, _ = speech_run
    assert targets.std() > 0.15, "the audio excerpt should vary"
    r = np.corrcoef(targets, measured)[0, 1]
    assert r >= 0.5, r
    # The speaker's own motion is overridden: the output follows the audio, not the video.
    r_own = np.corrcoef(originals, measured)[0, 1]
    assert r > r_own + 0.2, (r, r_own)


def test_closed_targets_look_closed(speech_run):
    targets, measured, _, closed = speech_run
    shut = closed > 0.7
    wide = targets > 0.6
    assert shut.sum() >= 3 and wide.sum() >= 3
    assert np.median(measured[shut]) < 0.08
    assert np.median(measured[wide]) > np.median(measured[shut]) + 0.15


@pytest.mark.parametrize("name", ["d12.mp4", "d20.mp4"])
def test_only_the_lower_face_changes_and_edges_are_seamless(dlib_models, name):
    engine = ClassicalLipSync()
    for k, img in enumerate(_frames(name, 4, step=25)):
        lm, rect = _landmarks(dlib_models, img)
        assert lm is not None
        patch = engine.render_one(MouthRequest(k, 0.0, img, _face(lm, rect), track_key=name), MouthShape(0.8, 0.2, 0.0, 0.0))
        out = _blend(img, patch)
        h, w = patch.alpha.shape

        # Outside the patch: bit-identical. Above the nose tip: alpha 0. Beside the face
        # (beyond its widest jaw points): the alpha may fade there, but nothing moved.
        outside = np.ones(img.shape[:2], bool)
        outside[patch.y : patch.y + h, patch.x : patch.x + w] = False
        assert np.array_equal(out[outside], img[outside])
        upper = int(lm[30, 1])  # nose tip row
        assert _psnr(out[:upper], img[:upper]) == float("inf")
        assert patch.alpha[: max(0, upper - patch.y)].max(initial=0.0) == 0.0
        face_w = lm[16, 0] - lm[0, 0]
        left, right = int(lm[0, 0] - 0.02 * face_w), int(np.ceil(lm[16, 0] + 0.02 * face_w))
        assert np.array_equal(out[:, :left], img[:, :left]) and np.array_equal(out[:, right:], img[:, right:])
        assert _psnr(out, img) > 25  # identity kept: only the mouth region moved

        # Feathered alpha: zero at the crop border, bounded gradient, full inside.
        a = patch.alpha
        assert a.max() > 0.99
        assert max(a[0].max(), a[-1].max(), a[:, 0].max(), a[:, -1].max()) < 1e-3
        gy, gx = np.gradient(a)
        assert np.hypot(gx, gy).max() < 3.0 / (0.045 * np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0)))
        # Near the mask border the blend differs little from the original (no seam).
        band = (a > 0.02) & (a < 0.3)
        crop_in = img[patch.y : patch.y + h, patch.x : patch.x + w].astype(np.float32)
        crop_out = out[patch.y : patch.y + h, patch.x : patch.x + w].astype(np.float32)
        assert np.abs(crop_out - crop_in)[band].mean() < 4.0


def test_target_overrides_original_opening(dlib_models):
    """At a fixed shape the target opening is the same whatever the speaker's own mouth did."""
    engine = ClassicalLipSync()
    originals, targets = [], {0.0: [], 0.5: [], 1.0: []}
    for k, img in enumerate(_frames("d12.mp4", 12, step=15)):
        lm, _ = _landmarks(dlib_models, img)
        if lm is None:
            continue
        originals.append(mouth_opening(lm))
        for o in targets:
            tl = engine.target_landmarks(lm, MouthShape(o, 0.0, 0.0, 1.0 if o == 0 else 0.0), "man", k)
            targets[o].append(mouth_opening(tl))
    assert np.ptp(originals) > 0.1, "the clip should contain both open and closed mouths"
    assert max(targets[0.0]) < 0.01
    for lo, hi in ((0.0, 0.5), (0.5, 1.0)):
        assert min(targets[hi]) > max(targets[lo])
    assert np.std(targets[1.0]) < 0.3 * np.std(originals) + 0.02


def test_strength_scales_alpha_and_missing_landmarks_give_empty_patch(dlib_models):
    img = _frames("d20.mp4", 1)[0]
    lm, rect = _landmarks(dlib_models, img)
    engine = ClassicalLipSync()
    shape = MouthShape(0.5, 0.0, 0.0, 0.0)
    full = engine.render_one(MouthRequest(0, 0.0, img, _face(lm, rect), "a", 1.0), shape)
    half = engine.render_one(MouthRequest(0, 0.0, img, _face(lm, rect), "a", 0.5), shape)
    assert np.allclose(half.alpha, 0.5 * full.alpha, atol=1e-6)
    blank = Face(bbox=[0, 0, 10, 10], score=1.0, kps=np.zeros((5, 2)))
    empty = engine.render_one(MouthRequest(0, 0.0, img, blank, "b"), shape)
    assert empty.alpha.max() == 0.0


def test_track_state_belongs_to_its_key_and_the_table_is_bounded(dlib_models):
    """Jobs share one engine; a key's colours and mesh must never leak into another key."""
    first, second = _frames("d20.mp4", 1)[0], _frames("d11.mp4", 1)[0]
    (lm1, rect1), (lm2, rect2) = _landmarks(dlib_models, first), _landmarks(dlib_models, second)
    shape = MouthShape(0.6, 0.0, 0.0, 0.0)
    other_face = MouthRequest(1, 40.0, second, _face(lm2, rect2), "job2:0:bob")
    fresh = ClassicalLipSync().render_one(other_face, shape)

    shared = ClassicalLipSync()
    shared.render_one(MouthRequest(0, 0.0, first, _face(lm1, rect1), "job1:0:bob"), shape)
    separate = shared.render_one(other_face, shape)
    assert np.array_equal(separate.pixels, fresh.pixels) and np.array_equal(separate.alpha, fresh.alpha)

    shared.render_one(MouthRequest(0, 0.0, first, _face(lm1, rect1), "job2:0:bob"), shape)
    carried = shared.render_one(other_face, shape)  # same key: the other face's state carries over
    assert not np.array_equal(carried.pixels, fresh.pixels)

    for k in range(MAX_TRACK_STATES + 6):
        shared.render_one(MouthRequest(0, 0.0, first, _face(lm1, rect1), f"job{k}:0:a"), shape)
    assert len(shared._tracks) == MAX_TRACK_STATES


@pytest.mark.parametrize("name", ["d12.mp4", "d20.mp4"])
def test_where_the_patch_fades_below_the_mouth_it_is_the_original(dlib_models, name):
    """A moved jaw edge is never blended with the unmoved one: below the lips, wherever the
    alpha is not whole, the patch is the original picture, for a mouth opened wide (the chin
    drops) and one closed from the original (the chin rises). Before, the alpha faded beside
    the chin where the warp still moved the jaw: a step in the chin's outline and a doubled
    jaw edge against the collar (the quick start at 111 and 130, a blind judge's cue)."""
    engine = ClassicalLipSync()
    for k, img in enumerate(_frames(name, 3, step=25)):
        lm, rect = _landmarks(dlib_models, img)
        axes = FaceAxes.from_landmarks(lm)
        below_lips = axes.to_local(lm)[57, 1] + 0.15
        for shape in (MouthShape(1.0, 0.2, 0.0, 0.0), MouthShape(0.0, 0.0, 0.0, 1.0)):
            patch = engine.render_one(MouthRequest(k, 0.0, img, _face(lm, rect), track_key=f"{name}{shape.closed}"), shape)
            h, w = patch.alpha.shape
            gx, gy = np.meshgrid(np.arange(w) + patch.x, np.arange(h) + patch.y)
            below = axes.to_local(np.stack([gx, gy], axis=-1))[..., 1] > below_lips
            below[:3], below[-3:], below[:, :3], below[:, -3:] = False, False, False, False  # the crop's own fade-out, where the frame ends
            fading = below & (patch.alpha > 0.0) & (patch.alpha < 0.8)
            assert fading.sum() > 500
            crop = img[patch.y:patch.y + h, patch.x:patch.x + w].astype(np.float32)
            diff = np.abs(patch.pixels.astype(np.float32) - crop).max(axis=2)
            assert diff[fading].max() <= 1, (k, shape.closed)
            # Where the alpha is nearly whole, the original mixed in is a couple of levels at
            # most (measured 0-2.1; the moved jaw blended half and half read 40-55).
            ghost = (1.0 - patch.alpha) * diff
            assert ghost[below].max() <= 4, (k, shape.closed)
            if shape.openness == 1.0:
                assert diff[below & (patch.alpha >= 0.8)].max() > 10  # the chin did drop


def _dark_and_teeth(img: np.ndarray, lm: np.ndarray) -> tuple[int, int]:
    """(dark pixels beside the mouth, tooth-like pixels on the lips) in one frame.

    Dark: luma under 0.72x the cheek's median, in a band at mouth height reaching 0.2 s
    beyond the corners, outside the outer-lip polygon grown by 0.05 s (s = inter-ocular
    distance). Tooth-like: pixels inside the outer-lip polygon brighter than the lips and
    less saturated than both lips and cheek.
    """
    s = float(np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0)))
    lips = np.zeros(img.shape[:2], np.uint8)
    cv2.fillPoly(lips, [np.round(lm[48:60]).astype(np.int32)], 1)
    k = 2 * int(round(0.05 * s)) + 1
    grown = cv2.dilate(lips, np.ones((k, k), np.uint8)) > 0
    band = np.zeros(img.shape[:2], bool)
    y_mid = 0.5 * (lm[48, 1] + lm[54, 1])
    band[int(y_mid - 0.12 * s) : int(y_mid + 0.12 * s), int(lm[48, 0] - 0.2 * s) : int(lm[54, 0] + 0.2 * s)] = True
    f = img.astype(np.float32)
    luma = f @ np.array([0.299, 0.587, 0.114], np.float32)
    cheek = np.median(luma[band & ~grown])
    dark = int((band & ~grown & (luma < 0.72 * cheek)).sum())
    sat = (f.max(axis=2) - f.min(axis=2)) / (f.max(axis=2) + 1.0)
    ring = (lips > 0) & (luma < np.percentile(luma[lips > 0], 60))  # lip pixels, not teeth
    grey = 0.8 * min(np.median(sat[ring]), np.median(sat[band & ~grown]))
    teeth = int(((lips > 0) & (luma > 1.1 * np.median(luma[ring])) & (sat < grey)).sum())
    return dark, teeth


def test_closing_a_wide_smile_leaves_no_gap_teeth_or_dark_stroke(dlib_models):
    """d12 frames 36-63: a laugh with teeth showing, driven closed (silence)."""
    frames = _frames("d12.mp4", 64)[36:]
    engine = ClassicalLipSync()
    shut = MouthShape(0.0, 0.0, 0.0, 1.0)
    checked, measured = 0, []
    for k, img in enumerate(frames):
        lm, rect = _landmarks(dlib_models, img)
        assert lm is not None, f"no face in d12 frame {36 + k}"
        (patch,) = engine.render([MouthRequest(36 + k, 0.0, img, _face(lm, rect), "laugh")], _Fixed(shut))
        if mouth_opening(lm) < 0.15:
            continue
        out = _blend(img, patch)
        out_lm, _ = _landmarks(dlib_models, out, rect)
        measured.append(mouth_opening(out_lm))
        dark_in, teeth_in = _dark_and_teeth(img, lm)
        dark_out, teeth_out = _dark_and_teeth(out, lm)
        assert teeth_in > 20, "the original should show teeth"
        assert teeth_out <= max(3, 0.07 * teeth_in), (36 + k, teeth_in, teeth_out)  # >= 93% of the teeth gone
        assert dark_out <= dark_in + 5, (36 + k, dark_in, dark_out)
        checked += 1
    assert checked >= 15
    # dlib reads the output's lips on a motion-blurred frame (61) at 0.09-0.105 depending on
    # the jaw mesh, closed to the eye; every other frame reads under 0.09.
    assert max(measured) < 0.11, [round(m, 3) for m in measured]
    assert float(np.mean(measured)) < 0.06, [round(m, 3) for m in measured]


class _Fixed:
    """A MouthTrack stand-in that returns one shape at every time."""

    fps = 25.0

    def __init__(self, shape: MouthShape) -> None:
        self.shape = shape

    def at(self, time_ms: float) -> MouthShape:
        return self.shape


def test_the_opening_curve_lifts_only_an_animated_speaker():
    """The curve maps the targets' usual speech openness (75th percentile) to the person's
    usual share of their widest: 0.6 -> 0.7 gives log(0.7)/log(0.6); a shy speaker (usual
    0.3 of their widest) keeps 1; the lift is bounded; silence does not count as speech."""
    from models.classical_lipsync import CURVE_RANGE
    from models.mouth_bank import Coverage
    from models.mouth_geometry import WarpConfig, articulate_local
    from models.mouth_params import MouthShape, MouthTrack

    class Bank:
        def __init__(self, usual: float) -> None:
            self.usual = usual

        def speaking_opening(self) -> float:
            return self.usual

        def opening_scale(self) -> float:
            return 0.3 / 1.15

        def coverage(self) -> Coverage:
            return Coverage(10, 0.0, 0.3, 0.5)

    openness = np.concatenate([np.zeros(300), np.full(100, 0.6), np.full(33, 0.9)])
    zeros = np.zeros_like(openness)
    track = MouthTrack(np.arange(openness.size) * 10.0, openness, zeros, zeros, zeros, zeros)
    engine = ClassicalLipSync()
    assert engine._openness_curve(Bank(0.21), track, 0.3) == pytest.approx(np.log(0.7) / np.log(0.6))
    assert engine._openness_curve(Bank(0.09), track, 0.3) == 1.0
    assert engine._openness_curve(Bank(0.29), track, 0.3) == CURVE_RANGE[0]
    assert engine._openness_curve(Bank(0.45), track, 0.3) == CURVE_RANGE[0]  # past max_gap (capped)
    assert engine._openness_curve(Bank(0.24), None, 0.3) == 1.0
    assert engine._warp_for(Bank(0.21), track).openness_curve == pytest.approx(np.log(0.7) / np.log(0.6))
    assert engine._warp_for(Bank(0.21), None).openness_curve == 1.0
    neutral = np.zeros((68, 2))
    neutral[[48, 54, 60, 64], 0] = (-0.4, 0.4, -0.3, 0.3)  # points 62 and 66 at the centre
    for curve in (1.0, 0.7):
        cfg = WarpConfig(max_gap=0.3, openness_curve=curve)
        uv = articulate_local(neutral, MouthShape(0.5, 0.0, 0.0, 0.0), 0.8, cfg)
        assert uv[66, 1] - uv[62, 1] == pytest.approx(0.3 * 0.5 ** curve, rel=1e-6)
        closed = articulate_local(neutral, MouthShape(0.0, 0.0, 0.0, 1.0), 0.8, cfg)
        assert closed[66, 1] - closed[62, 1] == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=80, deadline=None)
@given(openness=st.floats(0.0, 1.0), other=st.floats(0.0, 1.0), closed=st.sampled_from([0.0, 1.0]),
       gap=st.floats(0.05, 0.3), teeth=st.floats(0.0, 0.8), never_closes=st.booleans(), pause=st.booleans())
def test_a_grin_is_kept_by_the_rules_of_the_persons_own_footage(openness, other, closed, gap, teeth, never_closes, pause):
    """`_keep_grin`: a face that does not grin is left alone; p/b/m closures always close;
    a pause closes unless the person never closes their mouth, who then keeps their grin's
    gap; speech of such a person opens from most of the grin and still follows the speech
    (a wider target is a wider mouth), and a grinning talker's never goes under their floor."""
    from models.classical_lipsync import GRIN_REST_KEEP, GRIN_TEETH, _TrackState
    from models.mouth_geometry import WarpConfig

    warp = WarpConfig(max_gap=0.42, openness_curve=0.8)
    state = _TrackState(last_frame=0, neutral_width=0.8)
    state.teeth = state.grin_teeth = teeth
    state.gap = gap
    speaking = 0.0 if closed else openness
    shape = MouthShape(speaking, 0.2, 0.5, closed)
    kept = ClassicalLipSync._keep_grin(shape, state, warp, never_closes, pause and never_closes)
    if teeth < GRIN_TEETH or (closed and not (never_closes and pause)):
        assert kept == shape
        return
    if never_closes and pause:
        assert kept.closed == 0.0
        assert kept.openness == pytest.approx(min(1.0, (gap / warp.max_gap) ** (1 / warp.openness_curve)))
        return
    assert kept.openness >= speaking - 1e-12 and kept.rounding <= shape.rounding
    wider = ClassicalLipSync._keep_grin(MouthShape(max(openness, other), 0.2, 0.5, 0.0), state, warp, never_closes, False)
    assert wider.openness >= kept.openness - 1e-12
    if never_closes:  # articulation survives: it is spread over the range above the grin
        rest = min(1.0, (GRIN_REST_KEEP * gap / warp.max_gap) ** (1 / warp.openness_curve))
        assert kept.openness >= rest - 1e-12
        if other > openness + 0.01 and rest < 0.99:
            assert wider.openness > kept.openness


@settings(max_examples=60, deadline=None)
@given(w=st.integers(20, 300), h=st.integers(20, 300), cx=st.floats(-30, 330), cy=st.floats(-30, 330),
       r=st.floats(3, 150), sigma=st.floats(0.3, 12))
def test_the_alpha_blurred_around_its_polygon_is_the_whole_crops_blur(w, h, cx, cy, r, sigma):
    """`_alpha` blurs only the polygon's grown box; everything else must match blurring the
    whole crop (then fading its outer 2 px), wherever the polygon lies, edges included."""
    t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    poly = np.stack([cx + r * np.cos(t), cy + 0.7 * r * np.sin(t)], axis=1)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)
    whole = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), max(sigma, 0.8))
    yy = np.minimum(np.arange(h), np.arange(h)[::-1]).astype(np.float32)
    xx = np.minimum(np.arange(w), np.arange(w)[::-1]).astype(np.float32)
    whole *= np.clip(np.minimum(yy[:, None], xx[None, :]) / 2.0, 0.0, 1.0)
    np.testing.assert_allclose(ClassicalLipSync._alpha(poly, w, h, sigma), whole, atol=1e-5)


def _first_frame_and_mouth(dlib_models):
    """d12's first frame, its face and its own mouth's bank sample (closed, filmed at 0 ms)."""
    from models.mouth_bank import sample_mouth

    (image,) = _frames("d12.mp4", 1, step=1)
    lm, rect = _landmarks(dlib_models, image)
    return image, _face(lm, rect), sample_mouth(image, lm, (0.0, 0.0, 0.0), 0.0)


def test_the_plan_gives_a_rounded_vowel_the_persons_pouted_lips(dlib_models):
    """The chosen sample's lips are shown whole, so the plan matches the targets' lip
    thickness: of two samples alike but for a pout, an "oo" (rounding 1) gets the pouted one
    and an "ah" (rounding 0) the other."""
    from dataclasses import replace

    from models.mouth_bank import MouthBank
    from models.mouth_params import MouthTrack

    image, face, plain = _first_frame_and_mouth(dlib_models)
    uv = plain.uv.copy()
    uv[[49, 50, 51, 52, 53], 1] -= 0.06
    uv[[55, 56, 57, 58, 59], 1] += 0.06
    pouted = replace(plain, uv=uv, opening=0.2, rounding=float((uv[57, 1] - uv[51, 1]) / plain.width))
    plain = replace(plain, opening=0.2)  # both open as the targets below
    steps = np.arange(100)
    for rounding, want in ((0.0, 0), (1.0, 1)):
        track = MouthTrack(steps * 10.0, np.full(100, 0.6), np.zeros(100), np.full(100, rounding),
                           np.zeros(100), np.ones(100))
        bank = MouthBank()
        bank.add(plain)
        bank.add(pouted)
        engine = ClassicalLipSync()
        engine.render([MouthRequest(0, 0.0, image, face, "k", 1.0, bank)], track)
        assert int(engine._tracks["k"].plan.samples[0]) == want, f"rounding {rounding}"


def _half_second_pauses_and_speech():
    """3 s of mouth targets (10 ms steps): 500 ms pauses from 0 ms, 500 ms of speech between."""
    from models.mouth_params import MouthTrack

    steps = np.arange(300)
    pause = (steps // 50) % 2 == 0
    return MouthTrack(steps * 10.0, np.where(pause, 0.0, 0.6), np.zeros(300), np.zeros(300),
                      pause.astype(float), np.where(pause, 0.0, 1.0))


def _planned(image, face, bank):
    """A fresh engine that rendered the first frame of `_half_second_pauses_and_speech` with
    `bank`, and the plan it made: the sample per frame."""
    engine = ClassicalLipSync()
    engine.render([MouthRequest(0, 0.0, image, face, "k", 1.0, bank)], _half_second_pauses_and_speech())
    return engine, engine._tracks["k"].plan.samples


def test_each_pause_shows_another_of_the_persons_closed_mouths(dlib_models):
    """Three pauses and three of the person's closed mouths, filmed seconds apart and alike
    (so alike in cost): the plan shows a different one in each pause, each held through it,
    and the open sample in the speech between (`models.mouth_select.vary_pauses`, wired to
    the track's pause numbers). Without it all three pauses showed the first."""
    from dataclasses import replace

    from models.mouth_bank import MouthBank

    image, face, closed = _first_frame_and_mouth(dlib_models)
    bank = MouthBank()
    for t in (0.0, 3000.0, 6000.0):
        bank.add(replace(closed, time_ms=t))
    bank.add(replace(closed, opening=0.3, time_ms=9000.0))
    _, plan = _planned(image, face, bank)
    shown = [set(plan[a:b].tolist()) for a, b in ((0, 12), (25, 37), (50, 62))]
    assert all(len(s) == 1 for s in shown), shown
    assert sorted(s.pop() for s in shown) == [0, 1, 2]
    assert set(plan[15:22].tolist()) == {3}


def test_a_pause_is_remembered_once_it_has_been_seen_long_enough(dlib_models):
    """The track remembers a pause's closed mouth for the next plans only once it has
    shown it MEMORABLE_PAUSE_MS (4 frames at 25 fps): a 2-frame closure must not push a
    long pause's mouth out of the memory (d20 + yongen.wav's two long pauses showed one)."""
    from models.mouth_select import MEMORABLE_PAUSE_MS
    from models.mouth_bank import MouthBank
    from models.mouth_params import MouthTrack

    image, face, closed = _first_frame_and_mouth(dlib_models)
    bank = MouthBank()
    bank.add(closed)
    steps = np.arange(300)
    pause = steps < 100  # a 1 s pause, then speech
    track = MouthTrack(steps * 10.0, np.where(pause, 0.0, 0.6), np.zeros(300), np.zeros(300),
                       pause.astype(float), np.where(pause, 0.0, 1.0))
    engine = ClassicalLipSync()
    memorable = int(round(MEMORABLE_PAUSE_MS / 40.0))
    assert memorable >= 3
    for frame in range(memorable - 1):
        engine.render([MouthRequest(frame, frame * 40.0, image, face, "k", 1.0, bank)], track)
    assert engine._tracks["k"].pause_samples == []
    engine.render([MouthRequest(memorable - 1, (memorable - 1) * 40.0, image, face, "k", 1.0, bank)], track)
    assert engine._tracks["k"].pause_samples == [0]
    for frame in range(memorable, memorable + 5):  # the same pause goes on: remembered once
        engine.render([MouthRequest(frame, frame * 40.0, image, face, "k", 1.0, bank)], track)
    assert engine._tracks["k"].pause_samples == [0]


def test_the_speech_between_pauses_does_not_show_one_open_mouth_every_time(dlib_models):
    """Two of the person's open mouths alike in cost and three stretches of speech: the
    plan shows both, each held through its stretch (`models.mouth_select.spread_uses`,
    wired to the track's speech frames); the frames shown count for the next plan.
    Without it every stretch showed the first."""
    from dataclasses import replace

    from models.mouth_bank import MouthBank

    image, face, closed = _first_frame_and_mouth(dlib_models)
    bank = MouthBank()
    bank.add(closed)
    for t in (3000.0, 9000.0):
        bank.add(replace(closed, opening=0.3, time_ms=t))
    engine, plan = _planned(image, face, bank)
    shown = [set(plan[a:b].tolist()) for a, b in ((15, 22), (40, 47), (65, 72))]
    assert all(len(s) == 1 for s in shown), shown
    assert set.union(*shown) == {1, 2}
    engine.render([MouthRequest(16, 640.0, image, face, "k", 1.0, bank)], _half_second_pauses_and_speech())
    assert engine._tracks["k"].speech_uses.argmax() == plan[16] and engine._tracks["k"].speech_uses.sum() > 0


def test_samples_filmed_a_moment_apart_share_their_uses(dlib_models):
    """Two open mouths filmed 100 ms apart and a third from seconds later, a third as
    sharp (0.95 dearer): counted as the one mouth they look like (`mouth_select.look_alike`,
    wired to the bank's sample times), the first two leave the third one of the three
    stretches of speech. Counted apart, they shared all of it (d10's clenched teeth, sampled three times in
    0.7 s, showed on 97 of 448 frames)."""
    from dataclasses import replace

    from models.mouth_bank import MouthBank

    image, face, closed = _first_frame_and_mouth(dlib_models)
    bank = MouthBank()
    bank.add(closed)
    for t in (3000.0, 3100.0):
        bank.add(replace(closed, opening=0.3, time_ms=t))
    bank.add(replace(closed, opening=0.3, time_ms=9000.0, sharpness=closed.sharpness / 3))
    _, plan = _planned(image, face, bank)
    assert np.bincount(plan, minlength=4)[1:].tolist() == [12, 12, 12]  # a stretch each


def test_a_face_that_shows_no_teeth_gets_no_grimace_of_teeth(dlib_models):
    """Teeth earn a sample the plan's preference only up to the face's own teeth share plus
    TEETH_CAP_OVER, and at least TEETH_CAP: on a closed-mouth frame (no teeth), of two open
    samples alike but for teeth (0.5 and 0.95) and sharpness, the sharper 0.5 one is shown;
    priced by its whole share, the toothier, blurrier one won."""
    from dataclasses import replace

    from models.classical_lipsync import TEETH_CAP
    from models.mouth_bank import MouthBank
    from models.mouth_params import MouthTrack

    assert 0.5 > TEETH_CAP
    image, face, closed = _first_frame_and_mouth(dlib_models)
    bank = MouthBank()
    bank.add(replace(closed, opening=0.3, teeth=0.5, time_ms=3000.0))
    bank.add(replace(closed, opening=0.3, teeth=0.95, time_ms=9000.0, sharpness=closed.sharpness / 2))
    steps = np.arange(100)
    track = MouthTrack(steps * 10.0, np.full(100, 0.6), np.zeros(100), np.zeros(100), np.zeros(100), np.ones(100))
    engine = ClassicalLipSync()
    engine.render([MouthRequest(0, 0.0, image, face, "k", 1.0, bank)], track)
    assert engine._tracks["k"].grin_teeth < 0.05
    assert set(engine._tracks["k"].plan.samples.tolist()) == {0}


def test_a_grin_is_judged_by_its_teeth_over_the_last_second(dlib_models):
    """d12 frame 45 grins with its teeth showing. While its teeth hide for a few frames (the
    inner mouth painted dark, as a syllable's lips over the teeth), the grin holds; after
    GRIN_HOLD_S of hidden teeth it is gone. (Planned on such a dip, the quick start lost its
    grin for the half second after it.)"""
    from models.classical_lipsync import GRIN_HOLD_S, GRIN_TEETH, _TrackState

    image = _frames("d12.mp4", 46)[45]
    lm, _ = _landmarks(dlib_models, image)
    axes = FaceAxes.from_landmarks(lm)
    hidden = image.copy()
    cv2.fillPoly(hidden, [np.round(lm[60:68]).astype(np.int32)], (60, 30, 35))
    state = _TrackState(last_frame=0, neutral_width=0.8)
    fps = 25.0
    for _ in range(10):
        ClassicalLipSync._update_grin(state, image, axes, lm, axes.to_local(lm), fps)
    peak = state.grin_teeth
    assert peak >= GRIN_TEETH and state.teeth >= GRIN_TEETH
    for _ in range(8):
        ClassicalLipSync._update_grin(state, hidden, axes, lm, axes.to_local(lm), fps)
    assert state.teeth < 0.1 and state.grin_teeth == peak  # the grin holds through the dip
    for _ in range(int(GRIN_HOLD_S * fps)):
        ClassicalLipSync._update_grin(state, hidden, axes, lm, axes.to_local(lm), fps)
    assert state.grin_teeth < 0.1  # a second on, the grin is gone
