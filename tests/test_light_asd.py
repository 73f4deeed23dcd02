"""Light-ASD: loader, forward pass against the official code's numbers, face crops, real media."""
from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from models.asd_crop import (
    CropWindow,
    crop_face,
    crop_track,
    frames_shown_at,
    resample_track,
    smooth_windows,
)
from models.light_asd import (
    NO_AUDIO_SCORE,
    VISUAL_REACH,
    ActiveSpeakerModel,
    LightASD,
    load_state_dict_strict,
    smooth_scores,
    speaking_probability,
)
from models.mfcc import asd_mfcc
from stages.audio import load_audio

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "light_asd_reference.json"
WEIGHTS = ROOT.parent / "shared" / "models" / "light-asd"
DATA = ROOT.parent / "shared" / "data"
CHECKPOINTS = ("pretrain_AVA_CVPR", "finetuning_TalkSet")


def weights(name: str) -> Path:
    path = WEIGHTS / f"{name}.model"
    if not path.exists():
        pytest.skip(f"Light-ASD weights missing: {path}")
    return path


@pytest.fixture(scope="module")
def models() -> dict[str, ActiveSpeakerModel]:
    torch.set_num_threads(2)
    return {name: ActiveSpeakerModel.load(weights(name), "cpu") for name in CHECKPOINTS}


# ---- loader -----------------------------------------------------------------------------

def official_layout_state(net: LightASD) -> dict[str, torch.Tensor]:
    state = dict(net.state_dict())
    state["lossV.FC.weight"] = torch.zeros(2, 128)
    state["lossV.FC.bias"] = torch.zeros(2)
    return state


def test_official_files_have_the_layout_we_load() -> None:
    state = torch.load(weights("finetuning_TalkSet"), map_location="cpu", weights_only=True)
    ours = LightASD().state_dict()
    assert set(state) - set(ours) == {"lossV.FC.weight", "lossV.FC.bias"}
    assert set(ours) <= set(state)
    assert sum(v.numel() for k, v in state.items() if k.startswith("model.")) == 1025630


def test_loader_round_trips_a_random_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = LightASD()
    path = tmp_path / "random.model"
    torch.save(official_layout_state(source), path)
    loaded = ActiveSpeakerModel.load(path, "cpu")
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[key], value), key


@pytest.mark.parametrize("damage, message", [
    (lambda s: s.pop("model.GRU.gru_forward.weight_ih_l0"), "missing"),
    (lambda s: s.__setitem__("model.extra.weight", torch.zeros(1)), "unexpected"),
    (lambda s: s.__setitem__("lossAV.FC.weight", torch.zeros(3, 128)), "wrong shapes"),
])
def test_loader_rejects_damaged_checkpoints(tmp_path: Path, damage, message: str) -> None:
    state = official_layout_state(LightASD())
    damage(state)
    path = tmp_path / "damaged.model"
    torch.save(state, path)
    with pytest.raises(ValueError, match=message) as err:
        load_state_dict_strict(LightASD(), path)
    assert str(path) in str(err.value)


def test_loader_names_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing.model"):
        ActiveSpeakerModel.load(tmp_path / "nothing.model")
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.model"):
        ActiveSpeakerModel.load(junk)
    other = tmp_path / "other.model"
    torch.save({"net": {"a": torch.zeros(1)}}, other)
    with pytest.raises(ValueError, match="plain state_dict"):
        ActiveSpeakerModel.load(other)


# ---- forward pass and scoring -----------------------------------------------------------

def seeded_inputs(seed: int, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 256, size=(n_frames, 112, 112), dtype=np.uint8)
    mfcc = (rng.standard_normal((4 * n_frames, 13)) * 8.0).astype(np.float32)
    return video, mfcc


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_scores_match_the_official_code(models: dict[str, ActiveSpeakerModel], name: str) -> None:
    ref = json.loads(FIXTURE.read_text())["forward"]
    video, mfcc = seeded_inputs(ref["seed"], ref["n_frames"])
    expected = ref["checkpoints"][name]
    model = models[name]
    assert model.durations_s == tuple(ref["durations_s"])
    np.testing.assert_allclose(model.score_track(video, mfcc), expected["multi_duration_scores"], atol=1e-4)
    one_window = ActiveSpeakerModel(model.net, model.device, durations_s=(6,))
    np.testing.assert_allclose(one_window.score_track(video, mfcc), expected["single_pass_scores"], atol=1e-4)


def test_shared_track_encoding_equals_scoring_each_window_alone(models: dict[str, ActiveSpeakerModel]) -> None:
    """The definition: every window scored by the plain network on its own, then averaged."""
    net = models["pretrain_AVA_CVPR"].net
    video, mfcc = seeded_inputs(7, 60)  # 1 s windows: 25, 25, 10 frames; 2 s: 50, 10
    expected = np.zeros(60)
    for duration in (1, 2):
        step = 25 * duration
        for s in range(0, 60, step):
            e = min(s + step, 60)
            with torch.inference_mode():
                v = torch.from_numpy(video[s:e]).float()[None]
                a = torch.from_numpy(mfcc[4 * s:4 * e])[None]
                expected[s:e] += net(a, v)[0].numpy() / 2
    got = ActiveSpeakerModel(net, torch.device("cpu"), durations_s=(1, 2)).score_track(video, mfcc)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_shared_audio_and_visual_encoding_across_pieces_equals_each_window_alone(
        models: dict[str, ActiveSpeakerModel]) -> None:
    """A track longer than one encoder batch (MAX_BATCH_FRAMES): both encoders run on it in
    pieces with a halo, then on clips at the 1..6 s window edges; every window's scores still
    equal the plain network's on that window alone."""
    from models.light_asd import MAX_BATCH_FRAMES

    net = models["pretrain_AVA_CVPR"].net
    n = MAX_BATCH_FRAMES + 37
    video, mfcc = seeded_inputs(11, n)
    durations = (1, 2, 6)
    expected = np.zeros(n)
    for duration in durations:
        step = 25 * duration
        for s in range(0, n, step):
            e = min(s + step, n)
            with torch.inference_mode():
                v = torch.from_numpy(video[s:e]).float()[None]
                a = torch.from_numpy(mfcc[4 * s:4 * e])[None]
                expected[s:e] += net(a, v)[0].numpy() / len(durations)
    got = ActiveSpeakerModel(net, torch.device("cpu"), durations_s=durations).score_track(video, mfcc)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_scoring_runs_on_its_own_threads_and_tracks_score_side_by_side(models: dict[str, ActiveSpeakerModel]) -> None:
    """score_track sets torch's intra-op threads for its call only (SCORE_THREADS on the CPU)
    and gives the same scores when two threads score two tracks at once, and with its visual
    batches run in the caller's thread (one visual worker) instead of side by side."""
    from concurrent.futures import ThreadPoolExecutor

    from models.light_asd import SCORE_THREADS, VISUAL_WORKERS, _cores

    model = models["pretrain_AVA_CVPR"]
    assert model.threads == SCORE_THREADS == 1 and model.visual_workers == min(VISUAL_WORKERS, _cores())
    tracks = [seeded_inputs(seed, n) for seed, n in ((1, 40), (2, 170))]  # 170: two pieces and 12 edge clips
    before = torch.get_num_threads()
    alone = [model.score_track(*track) for track in tracks]
    assert torch.get_num_threads() == before
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda track: model.score_track(*track), tracks))
    serial = ActiveSpeakerModel(model.net, model.device, visual_workers=1)
    assert serial._visual_pool() is None
    for track, a, b in zip(tracks, alone, together):
        np.testing.assert_allclose(a, b, atol=1e-6)
        np.testing.assert_allclose(serial.score_track(*track), a, atol=1e-6)


def test_score_track_shapes_and_missing_audio(models: dict[str, ActiveSpeakerModel]) -> None:
    model = models["pretrain_AVA_CVPR"]
    video, mfcc = seeded_inputs(3, 30)
    full = model.score_track(video, mfcc)
    assert full.shape == (30,) and full.dtype == np.float32
    short = model.score_track(video, mfcc[:4 * 20 + 3])
    assert np.all(short[20:] == NO_AUDIO_SCORE)
    assert np.all(short[:20] != NO_AUDIO_SCORE)
    assert np.all(model.score_track(video, mfcc[:3]) == NO_AUDIO_SCORE)
    with pytest.raises(ValueError, match="112"):
        model.score_track(video[:, :100], mfcc)
    with pytest.raises(ValueError, match="13"):
        model.score_track(video, mfcc[:, :12])


def test_probability_and_smoothing() -> None:
    p = speaking_probability(np.array([-20.0, -1.0, 0.0, 1.0, 20.0]))
    assert p[2] == pytest.approx(0.5)
    assert np.all(np.diff(p) > 0) and p[0] >= 0 and p[-1] <= 1
    np.testing.assert_allclose(smooth_scores(np.array([0, 0, 5, 0, 0, 0.0]), radius=1), [0, 5 / 3, 5 / 3, 5 / 3, 0, 0], atol=1e-6)
    assert smooth_scores(np.zeros(0)).shape == (0,)


# ---- crops and tracks --------------------------------------------------------------------

def test_resample_track_interpolates_onto_the_25fps_grid() -> None:
    times = np.arange(10) * 1000 / 30  # 30 fps detections, 0 .. 300 ms
    boxes = np.stack([times, times, times + 100, times + 120], axis=1)  # box moves 1 px per ms
    track = resample_track(times, boxes)
    np.testing.assert_array_equal(track.frame_indices, [0, 1, 2, 3, 4, 5, 6, 7])
    np.testing.assert_allclose(track.boxes[:, 0], track.times_ms, atol=1e-3)
    np.testing.assert_allclose(track.boxes[:, 3] - track.boxes[:, 1], 120, atol=1e-3)
    later = resample_track([1210.0, 1000.0, 1390.0], [[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 20, 20]])
    np.testing.assert_array_equal(later.frame_indices, [25, 26, 27, 28, 29, 30, 31, 32, 33, 34])
    assert len(resample_track([], np.zeros((0, 4)))) == 0


def test_frames_shown_at_samples_a_30fps_video_at_25fps() -> None:
    frame_times = np.round(np.arange(30) * 1000 / 30, 3)  # 1 s of 30 fps, rounded like pts
    picked = frames_shown_at(frame_times, np.arange(25) * 40.0)
    assert picked[:7].tolist() == [0, 1, 2, 3, 4, 6, 7]  # 200 ms falls on frame 6: frame 5 is skipped
    assert len(set(picked.tolist())) == 25 and picked[-1] == 28
    assert frames_shown_at(frame_times, [-5.0, 5000.0]).tolist() == [0, 29]


def official_style_crop(image_rgb: np.ndarray, win: CropWindow, cs: float = 0.40) -> np.ndarray:
    """The official recipe, literally: pad the whole frame with 110, slice, resize, centre."""
    s = win.half_size
    pad = int(s * (1 + 2 * cs))
    grey = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
    padded = np.pad(grey, ((pad, pad), (pad, pad)), "constant", constant_values=110)
    my, mx = win.cy + pad, win.cx + pad
    face = padded[int(my - s):int(my + s * (1 + 2 * cs)), int(mx - s * (1 + cs)):int(mx + s * (1 + cs))]
    return cv2.resize(face, (224, 224))[56:168, 56:168]


@pytest.mark.parametrize("win", [CropWindow(200, 180, 60), CropWindow(20, 30, 50), CropWindow(250, 240, 45.7)])
def test_crop_face_matches_the_official_recipe(win: CropWindow) -> None:
    image = np.random.default_rng(5).integers(0, 256, (256, 270, 3), dtype=np.uint8)
    ours = crop_face(image, win)
    assert ours.shape == (112, 112) and ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, official_style_crop(image, win))


def test_crop_outside_the_frame_is_grey_110_and_mouth_is_below_centre() -> None:
    image = np.zeros((200, 200, 3), dtype=np.uint8)
    image[160:, :] = 255  # bright lower part of the frame
    crop = crop_face(image, CropWindow(cx=100, cy=150, half_size=60))
    # The crop spans cy-0.3s .. cy+1.1s vertically (y 132..216, 0.75 px per row): dark
    # above y=160, bright below, the frame ends at y=200 and padding follows.
    assert crop[5, 56] == 0
    assert crop[60, 56] == 255
    assert crop[-3, 56] == 110
    assert crop[5, 0] == 0 and crop[5, -1] == 0  # x spans cx-0.7s .. cx+0.7s, inside the frame


def test_smoothing_ignores_a_one_frame_jump() -> None:
    boxes = np.tile([100.0, 100.0, 200.0, 220.0], (20, 1))
    boxes[10] += 80
    windows = smooth_windows(boxes)
    assert all(w.cx == 150 and w.cy == 160 and w.half_size == 60 for w in windows)
    assert crop_track([np.zeros((300, 300, 3), np.uint8)] * 20, boxes).shape == (20, 112, 112)


# ---- real media -------------------------------------------------------------------------

def clip_path(name: str) -> Path:
    path = DATA / "video" / f"{name}.mp4"
    if not path.exists():
        pytest.skip(f"sample video missing: {path}")
    return path


def face_track_crops(name: str) -> np.ndarray:
    """Crops at 25 fps of the largest dlib face (detected at half size) in each frame of a clip."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    images, frame_times, det_times, boxes = [], [], [], []
    with av.open(str(clip_path(name))) as container:
        for frame in container.decode(video=0):
            image = frame.to_ndarray(format="rgb24")
            images.append(image)
            frame_times.append(float(frame.pts * frame.time_base) * 1000)
            found = detector(cv2.resize(image, None, fx=0.5, fy=0.5), 0)
            if found:
                r = max(found, key=lambda r: r.area())
                det_times.append(frame_times[-1])
                boxes.append([2 * r.left(), 2 * r.top(), 2 * r.right(), 2 * r.bottom()])
    track = resample_track(det_times, boxes)
    assert track.frame_indices[0] == 0 and len(track) > 150  # the face is there from the start
    return crop_track([images[i] for i in frames_shown_at(frame_times, track.times_ms)], track.boxes)


@pytest.fixture(scope="module")
def talk() -> dict[str, np.ndarray]:
    """d20 (a young man speaking with pauses) and d12 (another man, mouth moving a lot)."""
    d20 = load_audio(clip_path("d20"), 16000)
    frames = len(d20) // 640
    rms_db = 20 * np.log10(np.sqrt(np.mean(d20[:frames * 640].reshape(frames, 640) ** 2, axis=1)) + 1e-6)
    return {
        "d20_face": face_track_crops("d20"),
        "d12_face": face_track_crops("d12"),
        "d20_mfcc": asd_mfcc(d20),
        "d12_mfcc": asd_mfcc(load_audio(clip_path("d12"), 16000)),
        "d20_speech": rms_db > -30,  # per 40 ms video frame
    }


@pytest.fixture(scope="module")
def heard_d20(models, talk) -> dict[str, np.ndarray]:
    """Scores of d20's face with d20's own soundtrack, per checkpoint (shared by the tests below)."""
    return {name: models[name].score_track(talk["d20_face"], talk["d20_mfcc"]) for name in CHECKPOINTS}


def test_speaker_with_own_audio_speaks_and_not_in_pauses_or_with_other_audio(models, talk, heard_d20) -> None:
    model = models["pretrain_AVA_CVPR"]
    face = talk["d20_face"]
    n = len(face)
    speech = talk["d20_speech"][:n]
    assert 0.4 < speech.mean() < 0.8  # the clip really alternates speech and pauses
    own = heard_d20["pretrain_AVA_CVPR"]
    assert np.mean(own[speech] > 0) > 0.75  # measured 0.88
    assert np.mean(own[~speech]) < np.mean(own[speech]) - 1.0
    other = model.score_track(face, talk["d12_mfcc"])  # another clip's soundtrack
    assert np.mean(other > 0) < np.mean(own > 0) - 0.3  # measured 0.10 vs 0.64
    silent = model.score_track(face, asd_mfcc(np.zeros(n * 640, np.float32)))
    assert np.mean(silent < 0) > 0.95
    assert speaking_probability(own)[speech].mean() > speaking_probability(silent).mean() + 0.3


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_face_whose_audio_plays_outscores_another_talking_face(models, talk, heard_d20, name: str) -> None:
    """The two-face case: d20's soundtrack plays; d12's man also moves his lips but is not heard."""
    n = min(len(talk["d20_face"]), len(talk["d12_face"]))
    speech = talk["d20_speech"][:n]
    heard = heard_d20[name][:n]
    unheard = models[name].score_track(talk["d12_face"][:n], talk["d20_mfcc"])
    wins = smooth_scores(heard)[speech] > smooth_scores(unheard)[speech]
    assert wins.mean() > 0.75  # measured 0.84 (AVA) and 0.99 (TalkSet) without smoothing


def test_the_frozen_visual_encoder_gives_the_modules_embeddings(models: dict[str, ActiveSpeakerModel]) -> None:
    """On the CPU the visual encoder runs frozen (TorchScript, batch norm folded): the same
    embeddings as the module itself, whatever the batch size and clip length."""
    model = next(iter(models.values()))
    assert model._visual is not None
    rng = np.random.default_rng(5)
    with torch.inference_mode():
        for batch, frames in ((1, 13), (3, 7), (1, 40)):
            faces = torch.from_numpy(rng.integers(0, 256, (batch, frames, 112, 112)).astype(np.float32))
            eager = model.net.model.encode_visual(faces)
            assert torch.allclose(model._encode_visual(faces), eager, atol=1e-5), (batch, frames)


def test_an_edge_clip_runs_each_block_only_on_the_frames_still_needed(models: dict[str, ActiveSpeakerModel]) -> None:
    """An edge clip's wanted frames (those that do not see its other end) come out as when
    the whole clip is encoded, frozen or not, though each block ran on fewer frames."""
    model = next(iter(models.values()))
    rng = np.random.default_rng(9)
    faces = torch.from_numpy(rng.integers(0, 256, (2, 2 * VISUAL_REACH, 112, 112)).astype(np.float32))
    frozen = model._visual
    try:
        for steps in (frozen, None):  # the frozen encoder, then the module itself
            model._visual = steps
            with torch.inference_mode():
                whole = model._encode_visual(faces)
                head, tail = model._encode_visual(faces, "head"), model._encode_visual(faces, "tail")
            assert head.shape == tail.shape == (2, VISUAL_REACH, 128)
            assert torch.allclose(head, whole[:, :VISUAL_REACH], atol=1e-6)
            assert torch.allclose(tail, whole[:, -VISUAL_REACH:], atol=1e-6)
            assert not torch.allclose(head, whole[:, -VISUAL_REACH:], atol=1e-3)
    finally:
        model._visual = frozen
