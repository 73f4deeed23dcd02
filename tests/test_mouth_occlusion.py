"""A covered mouth is left as it is: models/mouth_occlusion.py and the engine's use of it."""
from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.classical_lipsync import ClassicalLipSync
from models.engine import MouthRequest
from models.faces.default import DefaultFaceBackend
from models.lip_contour import refine_outer_lips
from models.mouth_bank import FaceAxes, MouthBank, sample_mouth
from models.mouth_occlusion import (
    CLEAR_ABOVE,
    COVER_AFTER,
    COVERED_BELOW,
    FADE_IN_FRAMES,
    OcclusionGate,
    bank_pictures,
    likeness,
    mouth_picture,
    picture_mask,
)
from models.mouth_params import MouthTrack

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def d12():
    """d12's first 90 frames, their faces, the hand that enters at frame 180 (bottom left),
    and a bank of every fifth frame's mouth, as the bank pass takes them."""
    path = DATA / "video" / "d12.mp4"
    if not path.exists():
        pytest.skip(f"sample media missing: {path}")
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    backend = DefaultFaceBackend()
    faces = [backend.detect(image, with_embedding=False)[0] for image in frames[:90]]
    bank = MouthBank()
    for i in range(0, 90, 5):
        sample = sample_mouth(frames[i], faces[i].landmarks, faces[i].pose, i * 40.0)
        if sample is not None:
            bank.add(sample)
    return frames[:90], faces, frames[180][400:512, 0:110].copy(), bank


def covered(image: np.ndarray, landmarks: np.ndarray, kind: str, hand: np.ndarray) -> np.ndarray:
    """The frame with a hand (d12's own) or a dark microphone over the mouth."""
    out = image.copy()
    centre = landmarks[48:68].mean(axis=0).astype(int)
    w = int((landmarks[54, 0] - landmarks[48, 0]) * 0.9)
    if kind == "mic":
        cv2.ellipse(out, (int(centre[0]), int(centre[1] + w // 3)), (w // 2, w), 0, 0, 360, (40, 40, 45), -1)
    else:
        patch = cv2.resize(hand, (2 * w, 2 * w))
        y0, x0 = int(centre[1] - w // 2), int(centre[0] - w)
        h, ww = out[y0:y0 + 2 * w, x0:x0 + 2 * w].shape[:2]
        out[y0:y0 + h, x0:x0 + ww] = patch[:h, :ww]
    return out


def picture_likeness(image: np.ndarray, landmarks: np.ndarray, pictures: np.ndarray) -> float:
    pts = refine_outer_lips(image, landmarks)
    axes = FaceAxes.from_landmarks(pts)
    return likeness(mouth_picture(image, axes), picture_mask(axes.to_local(pts)), pictures)


def test_a_covered_mouth_looks_like_none_of_the_persons_own(d12):
    """Frames the bank did not take: the person's mouth looks like one of their bank mouths;
    a hand or a microphone over it, found with landmarks all the same, like none."""
    frames, faces, hand, bank = d12
    pictures = bank_pictures(bank)
    backend = DefaultFaceBackend()
    clean, hidden = [], []
    for i in range(2, 90, 6):
        clean.append(picture_likeness(frames[i], faces[i].landmarks, pictures))
        for kind in ("hand", "mic"):
            image = covered(frames[i], faces[i].landmarks, kind, hand)
            found = backend.detect(image, with_embedding=False)
            if found:  # the detector still finds the face, and dlib puts lips on the cover
                hidden.append(picture_likeness(image, found[0].landmarks, pictures))
    assert min(clean) > CLEAR_ABOVE, clean
    assert len(hidden) >= 20 and max(hidden) < COVERED_BELOW, hidden


def test_likeness_is_one_for_the_same_picture_and_ignores_light():
    rng = np.random.default_rng(0)
    picture = rng.uniform(0, 255, (60, 76)).astype(np.float32)
    mask = np.zeros((60, 76), bool)
    mask[10:50, 10:60] = True
    assert likeness(picture, mask, picture[None]) == pytest.approx(1.0, abs=1e-5)
    assert likeness(picture, mask, (0.5 * picture + 40)[None]) == pytest.approx(1.0, abs=1e-5)
    assert likeness(picture, mask, (255 - picture)[None]) == pytest.approx(-1.0, abs=1e-5)
    assert likeness(picture, mask, np.zeros((0, 60, 76), np.float32)) == 1.0  # no bank: nothing to say


@given(st.lists(st.floats(-1.0, 1.0), min_size=1, max_size=40))
def test_the_gate_hides_only_a_lasting_cover_and_fades_back_in(likes):
    gate = OcclusionGate()
    low = 0
    shown_before = 1.0
    for like in likes:
        shown = gate.step(like)
        low = low + 1 if like < COVERED_BELOW else 0
        assert 0.0 <= shown <= 1.0
        if low >= COVER_AFTER:
            assert shown == 0.0  # a lasting cover: nothing painted on it
        if low < COVER_AFTER and not gate.covered:
            assert shown == pytest.approx(min(1.0, shown_before + 1.0 / FADE_IN_FRAMES))
        if like > CLEAR_ABOVE:
            assert not gate.covered
        shown_before = shown


def test_the_engine_paints_no_mouth_on_a_hand(d12):
    """A hand over the mouth for frames 66-75: from its second frame no mouth is painted on
    it (the bank counts those frames as occluded), before it the mouth is synced, and after
    it the synced mouth fades back in over FADE_IN_FRAMES frames."""
    frames, faces, hand, bank = d12
    backend = DefaultFaceBackend()
    steps = np.arange(400)
    speech = MouthTrack(steps * 10.0, np.full(400, 0.6), np.zeros(400), np.zeros(400), np.zeros(400), np.ones(400))
    engine = ClassicalLipSync()
    alpha = {}
    for i in range(56, 82):
        image, face = frames[i], faces[i]
        if 66 <= i < 76:
            image = covered(frames[i], faces[i].landmarks, "hand", hand)
            face = backend.detect(image, with_embedding=False)[0]
        (patch,) = engine.render([MouthRequest(i, i * 40.0, image, face, "t", 1.0, bank)], speech)
        alpha[i] = float(patch.alpha.max())
    assert all(alpha[i] > 0.5 for i in range(56, 66)), alpha
    assert all(alpha[i] == 0.0 for i in range(66 + COVER_AFTER - 1, 76)), alpha
    assert bank.frames_occluded == 76 - (66 + COVER_AFTER - 1)
    after = [alpha[i] for i in range(76, 76 + FADE_IN_FRAMES)]
    assert after[0] < after[-1] and after[-1] > 0.5, after


def test_a_cover_in_the_bank_does_not_vouch_for_itself():
    """The bank pass samples a hand held over the mouth too: once the face has clearly seen
    frames of its own, bank mouths within APART_MS of the frame are left out, so the cover is
    still seen; the same picture from far away in the video does count (a person's real
    mouth, seen again). At a track's start every bank mouth counts."""
    from models.mouth_occlusion import APART_MS

    rng = np.random.default_rng(1)
    mouths = rng.uniform(0, 255, (4, 60, 76)).astype(np.float32)
    cover = rng.uniform(0, 255, (60, 76)).astype(np.float32)
    mask = np.zeros((60, 76), bool)
    mask[15:45, 15:60] = True
    bank = np.concatenate([mouths, cover[None]])
    for cover_time, hidden in ((2000.0, True), (2000.0 + 2 * APART_MS, False)):
        gate = OcclusionGate()
        times = np.array([0.0, 100.0, 200.0, 300.0, cover_time])
        assert gate.update(mouths[0], mask, bank, times, 1900.0) == 1.0  # the mouth, clearly seen
        shown = [gate.update(cover, mask, bank, times, 2000.0 + 40.0 * k) for k in range(COVER_AFTER + 1)]
        assert (shown[-1] == 0.0) == hidden, (cover_time, shown)
    fresh = OcclusionGate()  # a track's first frames: the near cover counts (nothing else to go by)
    assert [fresh.update(cover, mask, bank, np.array([0.0, 100.0, 200.0, 300.0, 2000.0]), 2000.0 + 40.0 * k)
            for k in range(COVER_AFTER + 1)][-1] == 1.0


def test_a_mouth_never_clearly_seen_in_its_track_is_never_hidden():
    """A shot whose mouths look like none of the bank's (another light, a pose the bank
    lacks) is synced as it was before the gate, not left unsynced whole: the gate hides a
    mouth only after it has clearly seen it in this track."""
    rng = np.random.default_rng(2)
    bank = rng.uniform(0, 255, (5, 60, 76)).astype(np.float32)
    times = np.arange(5) * 200.0
    mask = np.zeros((60, 76), bool)
    mask[15:45, 15:60] = True
    gate = OcclusionGate()
    strangers = rng.uniform(0, 255, (20, 60, 76)).astype(np.float32)
    assert [gate.update(p, mask, bank, times, 5000.0 + 40 * k) for k, p in enumerate(strangers)] == [1.0] * 20
    assert gate.update(bank[0], mask, bank, times, 6000.0) == 1.0  # now it has seen the mouth
    assert [gate.update(p, mask, bank, times, 6040.0 + 40 * k) for k, p in enumerate(strangers[:COVER_AFTER])][-1] == 0.0
