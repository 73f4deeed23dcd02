"""Active speaker detection in detect-faces (Light-ASD on the original audio)."""
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from jobs.config import Settings  # noqa: E402
from jobs.detect import detect_faces
from jobs.lipsync import lipsync  # noqa: E402
from stages.audio import load_audio  # noqa: E402
from stages.speakers import GRID_MS, SpeakerScores, speaker_ranges, tracks_from_frames  # noqa: E402
from tests.conftest import SHARED_MODELS  # noqa: E402
from tests.media import clip_frames, compose  # noqa: E402

SECONDS = 6.0


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    weights = SHARED_MODELS / "light-asd" / "pretrain_AVA_CVPR.model"
    if not weights.is_file():
        pytest.skip(f"Light-ASD weights {weights} are missing")
    root = tmp_path_factory.mktemp("models")
    (root / "light-asd").mkdir()
    os.symlink(weights, root / "light-asd" / weights.name)  # read in place, never copied
    return root


@pytest.fixture(scope="module")
def two_talkers(tmp_path_factory, data_dir):
    """d12 (left, its own audio absent) and d20 (right) with d20's real soundtrack."""
    left, right = clip_frames(data_dir / "video" / "d12.mp4", 300), clip_frames(data_dir / "video" / "d20.mp4", 300)
    audio = load_audio(data_dir / "video" / "d20.mp4", 16000)[:int(SECONDS * 16000)]
    path = compose(tmp_path_factory.mktemp("asd") / "two.mp4",
                   [{"frames": left, "x": 0, "y": 50}, {"frames": right, "x": 340, "y": 50}], 660, 400, SECONDS,
                   audio=audio)
    return path, audio


@pytest.fixture(scope="module")
def detected(two_talkers, models_dir):
    return detect_faces(two_talkers[0], sample_fps=3, settings=Settings(models_dir=models_dir))


def side(face: dict) -> str:
    return "left" if face["bbox"][0] + face["bbox"][2] / 2 < 330 else "right"


def test_the_face_whose_audio_plays_is_the_speaker(detected, two_talkers):
    audio = two_talkers[1]
    envelope = np.array([np.sqrt(np.mean(audio[int(t * 16):int(t * 16) + 640] ** 2))
                         for t in (f["timestamp_ms"] for f in detected["frames"])])
    speech = envelope > 0.1 * envelope.max()
    speaking = {"left": [], "right": []}
    for frame, is_speech in zip(detected["frames"], speech):
        for face in frame["faces"]:
            assert 0 <= face["speaking"] <= 1
            if is_speech:
                speaking[side(face)].append(face["speaking"])
    assert np.mean(np.array(speaking["right"]) > 0.5) >= 0.6
    assert np.mean(np.array(speaking["left"]) < 0.5) >= 0.8
    right_id = next(f["character_id"] for f in detected["frames"][3]["faces"] if side(f) == "right")
    spoken = {s["character_id"]: sum(seg["end_ms"] - seg["start_ms"] for seg in s["segments"])
              for s in detected["speakers"]}
    assert max(spoken, key=spoken.get) == right_id
    assert spoken[right_id] >= 0.5 * SECONDS * 1000


def test_auto_lipsync_follows_the_speakers(tmp_path, two_talkers, models_dir, data_dir):
    result = lipsync(two_talkers[0], data_dir / "audio" / "yongen.wav", None, tmp_path / "o.mp4",
                          Settings(models_dir=models_dir))
    assert any("active speaker" in w for w in result["warnings"])
    synced = {r["character_id"]: r["summary"]["synced_ms"] for r in result["faces"]["results"]}
    assert max(synced, key=synced.get) == "face_2"  # the right face: second to appear left-to-right


def test_speaker_ranges_bridge_short_gaps_and_drop_blips():
    frames = {1: np.arange(0, 50), 2: np.arange(0, 50)}
    first = np.full(50, -1.0)
    first[5:20] = 2.0
    first[22:30] = 2.0  # a 2-frame gap: bridged
    second = np.full(50, -1.0)
    second[40:43] = 1.0  # 3 frames: a blip, dropped
    ranges = speaker_ranges(SpeakerScores(frames, {1: first, 2: second}, {}), {1: "alice", 2: "bob"})
    assert ranges == [{"character_id": "alice", "segments": [{"start_ms": int(5 * GRID_MS), "end_ms": int(30 * GRID_MS)}]}]


def test_tracks_group_detections_by_track_id():
    frames = [{"timestamp_ms": 0, "faces": [{"bbox": [0, 0, 10, 10], "track_id": 1, "character_id": "a"}]},
              {"timestamp_ms": 333, "faces": [{"bbox": [2, 0, 10, 10], "track_id": 1, "character_id": "a"},
                                              {"bbox": [50, 0, 10, 10], "track_id": 2, "character_id": "face_1"}]}]
    tracks = tracks_from_frames(frames)
    assert tracks["1:a"].times_ms == [0, 333] and tracks["1:a"].boxes[1] == [2, 0, 12, 10]
    assert tracks["2:face_1"].name == "face_1"


def test_a_track_named_as_someone_else_is_split_by_name():
    """A face track that crossed a dissolve the shot detector missed: its samples named as
    B never feed A's speaker track."""
    faces = [("a", 0), ("a", 333), ("b", 667), ("b", 1000)]
    frames = [{"timestamp_ms": t, "faces": [{"bbox": [0, 0, 10, 10], "track_id": 7, "character_id": who}]}
              for who, t in faces]
    tracks = tracks_from_frames(frames)
    assert set(tracks) == {"7:a", "7:b"}
    assert tracks["7:a"].times_ms == [0, 333] and tracks["7:b"].times_ms == [667, 1000]


def test_speaker_crops_follow_the_face_at_25_fps_whatever_the_sample_rate(tmp_path, data_dir):
    """d20 sways left and right (40 px, a 1 s period) and is sampled at 3 fps: a straight
    line between samples a third of a second apart misses it by up to 18 px; the boxes
    fitted again on every 25 fps grid frame stay on it."""
    from models.faces.default import DefaultFaceBackend
    from stages.decode import DecodeStage
    from stages.speakers import SpeakerCropStage, TrackSamples, resample_tracks
    from stream.pipeline import Pipeline
    from tests.media import read_frames, write_video

    face = clip_frames(data_dir / "video" / "d20.mp4", 200)
    frames = []
    for k in range(50):
        canvas = np.full((300, 480, 3), 90, np.uint8)
        x = int(140 + 40 * np.sin(2 * np.pi * k / 25))
        canvas[50:250, x:x + 200] = face[k]
        frames.append(canvas)
    video = write_video(tmp_path / "sway.mp4", frames)
    decoded = read_frames(video)
    backend = DefaultFaceBackend()
    samples = TrackSamples(1, [], [], [])
    for k in range(0, 50, 8):  # 3 fps of a 25 fps video
        samples.times_ms.append(k * GRID_MS)
        samples.boxes.append(list(backend.detect(decoded[k], with_embedding=False)[0].bbox))
        samples.names.append("face_1")
    tracks = resample_tracks({"1:face_1": samples})
    cropper = SpeakerCropStage(tracks, refine=lambda image, boxes: [f.bbox for f in backend.landmarks(image, boxes)])
    Pipeline(DecodeStage(video), [cropper]).run_inline()
    truth = np.array([backend.detect(decoded[k], with_embedding=False)[0].center[0] for k in range(49)])
    line = (tracks["1:face_1"].boxes[:, 0] + tracks["1:face_1"].boxes[:, 2]) / 2
    fitted = (cropper.boxes["1:face_1"][:, 0] + cropper.boxes["1:face_1"][:, 2]) / 2
    assert cropper.refined >= 45
    assert np.max(np.abs(line - truth)) > 15
    assert np.max(np.abs(fitted - truth)) < 0.5 * np.max(np.abs(line - truth))
    assert np.mean(np.abs(fitted - truth)) < 0.3 * np.mean(np.abs(line - truth))
    assert cropper.crops["1:face_1"].shape == (49, 112, 112) and cropper.crops["1:face_1"].std(axis=(1, 2)).min() > 10


def test_the_only_face_on_screen_needs_only_a_soft_speaking_score():
    """Alone on screen, a face whose Light-ASD score stays a little under 0 (d12 talking
    all through: -0.7..+0.4) is the speaker; beside another face the same score is not
    enough, and alone a clearly silent score (voice-over, a laugh: -1 to -3) is not either."""
    n = 20
    soft, silent = np.full(n, -0.5, np.float32), np.full(n, -2.0, np.float32)
    grid = np.arange(n)

    def ranges(scores: dict[int, np.ndarray]) -> list[dict]:
        frames = {tid: grid for tid in scores}
        return speaker_ranges(SpeakerScores(frames, scores, dict(scores)), {1: "a", 2: "b"})

    assert ranges({1: soft}) == [{"character_id": "a", "segments": [{"start_ms": 0, "end_ms": int(n * GRID_MS)}]}]
    assert ranges({1: soft, 2: silent}) == []
    assert ranges({1: silent}) == []


def test_a_track_is_scored_once_its_last_crop_is_cut_while_the_pass_goes_on():
    """Two tracks, one ending at grid frame 9 and one at 29 (crops without refits): the first
    goes to the scorer while frames are still coming, the second at the end; the scores are
    score_tracks' (every track at once, after the pass)."""
    import threading
    from fractions import Fraction

    from stages.speakers import (
        SpeakerCropStage,
        TrackSamples,
        TrackScorer,
        resample_tracks,
        score_tracks,
    )
    from stream.frame import Frame

    class Model:
        """Scores a track by its crops' mean grey and its audio's mean, recording the thread."""

        def __init__(self) -> None:
            self.threads: list[str] = []

        def score_track(self, crops, mfcc):
            self.threads.append(threading.current_thread().name)
            return crops.mean(axis=(1, 2)) / 255 + float(mfcc.mean())

    def samples(tid, last_ms, x):
        return TrackSamples(tid, [0.0, last_ms], [[x, 40, x + 60, 100], [x, 40, x + 60, 100]], ["a", "a"])

    tracks = resample_tracks({"1:a": samples(1, 9 * GRID_MS, 20), "2:b": samples(2, 29 * GRID_MS, 120)})
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (160, 200, 3), dtype=np.uint8) for _ in range(30)]
    mfcc = rng.standard_normal((4 * 30, 13)).astype(np.float32)
    done_at: dict[str, int] = {}
    model = Model()
    with TrackScorer(model, mfcc, workers=1) as scorer:
        def on_done(tid):
            done_at[tid] = fed
            scorer.submit(tid, cropper.tracks[tid], cropper.crops[tid])

        cropper = SpeakerCropStage(tracks, on_done=on_done)
        for fed, image in enumerate(images):
            cropper.process(Frame(fed, fed, Fraction(1, 25), image))
        fed = len(images)
        cropper.flush()
        got = scorer.scores(cropper.tracks, cropper.crops)
    assert done_at == {"1:a": 16, "2:b": 30}  # crop 9 is cut once grid 15 is fitted (6 behind), at frame 16
    assert all(name.startswith("light-asd") for name in model.threads) and len(model.threads) == 2
    expected = score_tracks(Model(), cropper.tracks, cropper.crops, mfcc)
    for tid in ("1:a", "2:b"):
        np.testing.assert_allclose(got.scores[tid], expected.scores[tid])
        np.testing.assert_allclose(got.speaking[tid], expected.speaking[tid])
