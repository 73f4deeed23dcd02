"""Active-speaker scoring in chunks: the same scores as whole tracks, bounded memory, errors
that reach the pass instead of hanging it."""
from __future__ import annotations

import threading
import time
from fractions import Fraction

import numpy as np
import pytest

pytest.importorskip("torch")

import torch  # noqa: E402

from models.asd_crop import ASD_FPS, ResampledTrack  # noqa: E402
from models.light_asd import NO_AUDIO_SCORE, ActiveSpeakerModel, LightASD, _windows, load_state_dict_strict  # noqa: E402
from stages.speakers import (  # noqa: E402
    CHUNK_FRAMES,
    GRID_MS,
    SpeakerCropStage,
    TrackSamples,
    TrackScorer,
    resample_tracks,
    speaker_scores,
)
from stream.frame import Frame  # noqa: E402
from stream.pipeline import Pipeline  # noqa: E402
from stream.stage import Source  # noqa: E402
from tests.conftest import SHARED_MODELS  # noqa: E402


def light_asd(durations_s: tuple[int, ...]) -> ActiveSpeakerModel:
    """Light-ASD with the real weights when they are here, else a seeded random network (the
    chunking argument holds for any weights)."""
    net = LightASD()
    weights = SHARED_MODELS / "light-asd" / "pretrain_AVA_CVPR.model"
    if weights.is_file():
        load_state_dict_strict(net, weights)
    else:
        torch.manual_seed(0)
        for module in net.modules():  # random running statistics, so batch norm is not the identity
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return ActiveSpeakerModel(net.eval(), torch.device("cpu"), durations_s=durations_s, visual_workers=1)


@pytest.mark.parametrize("durations_s", [(1, 2, 3, 4, 5, 6), (1, 2), (2, 3), (6,)])
def test_no_window_crosses_a_multiple_of_the_window_period(durations_s):
    """Windows tile a track from its first frame, so every window lies inside one period."""
    model = ActiveSpeakerModel(LightASD(), torch.device("cpu"), durations_s=durations_s, visual_workers=1)
    period = model.window_period_frames
    for n in (period - 1, period, 2 * period + 37):
        for d in durations_s:
            for start, end in _windows(n, d):
                assert start // period == (end - 1) // period
    if durations_s == (1, 2, 3, 4, 5, 6):
        assert period == 60 * ASD_FPS and CHUNK_FRAMES % period == 0


def test_a_chunk_size_that_would_cut_a_window_is_refused():
    model = ActiveSpeakerModel(LightASD(), torch.device("cpu"), durations_s=(1, 2), visual_workers=1)
    with pytest.raises(ValueError, match="multiple of the model's window period"):
        TrackScorer(model, np.zeros((0, 13), np.float32), chunk_frames=75)


@pytest.mark.parametrize("audio_frames", [None, 115])
def test_chunked_scores_equal_the_whole_tracks(audio_frames):
    """A 130-frame track from grid frame 7, scored in chunks of 50 frames (windows of 1 and
    2 s: a period of 50), gives the scores of the track scored whole: windows, the visual and
    audio encoders' edges and the MFCC offsets agree. With audio ending inside the third
    chunk, the frames past it score NO_AUDIO_SCORE in both."""
    model = light_asd((1, 2))
    rng = np.random.default_rng(5)
    first, n = 7, 130
    track = ResampledTrack(np.arange(first, first + n), np.zeros((n, 4), np.float32))
    crops = rng.integers(0, 256, (n, 112, 112), dtype=np.uint8)
    mfcc = rng.standard_normal((4 * (first + n), 13)).astype(np.float32)
    if audio_frames is not None:
        mfcc = mfcc[:4 * (first + audio_frames) + 2]
    whole = model.score_track(crops, mfcc[4 * first:4 * (first + n)])
    with TrackScorer(model, mfcc, workers=2, chunk_frames=50) as scorer:
        scorer.submit("t", track, crops)
        assert sorted(scorer._chunks["t"]) == [0, 50, 100]
        got = scorer.scores({"t": track})
    expected = speaker_scores({"t": track}, {"t": whole})
    np.testing.assert_allclose(got.scores["t"], expected.scores["t"], atol=1e-5)
    np.testing.assert_allclose(got.speaking["t"], expected.speaking["t"], atol=1e-5)
    if audio_frames is not None:
        assert np.all(whole[audio_frames:] == NO_AUDIO_SCORE) and np.all(whole[:audio_frames] != NO_AUDIO_SCORE)


class FrameModel:
    """Scores each frame by its crop's mean grey plus its own 4 MFCC frames' mean (so a chunk
    scores as it would within the whole track), once `gate` (when given) opens."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.calls = 0

    def score_track(self, crops, mfcc):
        if self.gate is not None:
            assert self.gate.wait(20), "the test never opened the gate"
        self.calls += 1
        return (crops.mean(axis=(1, 2)) / 255 + mfcc.reshape(len(crops), 4, 13).mean(axis=(1, 2))).astype(np.float32)


def one_track(n: int) -> tuple[dict, list[np.ndarray], np.ndarray]:
    """A still face track of n grid frames, random frames to cut it from, and its MFCCs."""
    samples = TrackSamples(1, [0.0, (n - 1) * GRID_MS], [[20, 40, 80, 100], [30, 40, 90, 100]], ["a", "a"])
    tracks = resample_tracks({"1:a": samples})
    rng = np.random.default_rng(n)
    images = [rng.integers(0, 256, (160, 200, 3), dtype=np.uint8) for _ in range(n)]
    return tracks, images, rng.standard_normal((4 * n, 13)).astype(np.float32)


def feed(cropper: SpeakerCropStage, images: list[np.ndarray]) -> None:
    for index, image in enumerate(images):
        cropper.process(Frame(index, index, Fraction(1, 25), image))
    cropper.flush()


@pytest.mark.parametrize("n", [60, 240])
def test_crops_held_are_bounded_by_chunk_and_queue_not_by_track_length(n):
    """While scoring is held back, the pass waits once max_pending chunks are pending; the
    crops held (cut but unscored, in the stage or the scorer) never pass one chunk being cut
    plus max_pending chunks, for a track of 6 chunks as of 24. The chunks' scores are the
    whole track's."""
    tracks, images, mfcc = one_track(n)
    model = FrameModel(threading.Event())
    with TrackScorer(model, mfcc, workers=1, max_pending=2, chunk_frames=10) as scorer:
        cropper = SpeakerCropStage(tracks, chunk_frames=10, on_chunk=lambda tid, start, crops: scorer.submit_chunk(
            tid, cropper.tracks[tid], start, crops))
        feeder = threading.Thread(target=feed, args=(cropper, images), daemon=True)
        feeder.start()
        deadline = time.monotonic() + 20  # until the pass holds a third full chunk, 2 pending
        while not (scorer.pending_frames == 20 and cropper.buffered_frames == 10) and time.monotonic() < deadline:
            time.sleep(0.01)
        feeder.join(0.3)
        assert feeder.is_alive(), "the pass ran on while 2 chunks waited for the scorer"
        assert scorer.pending_frames == 20 and cropper.buffered_frames == 10 and len(scorer._chunks["1:a"]) == 2
        model.gate.set()
        feeder.join(20)
        assert not feeder.is_alive()
        got = scorer.scores(cropper.tracks)
    assert scorer.peak_pending_frames == 20 and cropper.peak_buffered_frames == 10
    assert model.calls == n // 10 and scorer.pending_frames == 0 and cropper.buffered_frames == 0
    whole = SpeakerCropStage(tracks)
    feed(whole, images)
    expected = speaker_scores(whole.tracks, {"1:a": FrameModel().score_track(whole.crops["1:a"], mfcc)})
    np.testing.assert_allclose(got.scores["1:a"], expected.scores["1:a"], atol=1e-6)


class Frames(Source):
    name = "frames"

    def __init__(self, images: list[np.ndarray]) -> None:
        self.images = images

    def items(self):
        for index, image in enumerate(self.images):
            yield Frame(index, index, Fraction(1, 25), image)


class Failing(FrameModel):
    def score_track(self, crops, mfcc):
        raise ValueError("light-asd broke")


@pytest.mark.parametrize("max_pending", [1, 3])
def test_a_failing_scorer_stops_the_pass_with_its_error(max_pending):
    """The scorer's error reaches the pass (the crop stage, waiting for a free slot or not)
    and the job; nothing hangs: the whole run ends in a thread joined with a deadline."""
    tracks, images, mfcc = one_track(120)
    outcome: list[BaseException] = []

    def job() -> None:
        try:
            with TrackScorer(Failing(), mfcc, workers=1, max_pending=max_pending, chunk_frames=10) as scorer:
                cropper = SpeakerCropStage(tracks, chunk_frames=10, on_chunk=lambda tid, start, crops: scorer.submit_chunk(
                    tid, cropper.tracks[tid], start, crops, stop=cropper.stop_event))
                Pipeline(Frames(images), [cropper], queue_size=2).run()
                scorer.scores(cropper.tracks)
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            outcome.append(exc)

    runner = threading.Thread(target=job, daemon=True)
    runner.start()
    runner.join(60)
    assert not runner.is_alive(), "the job hung on a failed scorer"
    assert len(outcome) == 1 and isinstance(outcome[0], ValueError) and "light-asd broke" in str(outcome[0])


def test_a_pass_waiting_for_the_scorer_leaves_when_stopped():
    tracks, _, mfcc = one_track(20)
    model = FrameModel(threading.Event())
    stop = threading.Event()
    crops = np.zeros((10, 112, 112), np.uint8)
    try:
        with TrackScorer(model, mfcc, workers=1, max_pending=1, chunk_frames=10) as scorer:
            scorer.submit_chunk("1:a", tracks["1:a"], 0, crops)
            stop.set()
            with pytest.raises(RuntimeError, match="stopped"):
                scorer.submit_chunk("1:a", tracks["1:a"], 10, crops, stop=stop)
            with pytest.raises(ValueError, match="multiple of 10"):
                scorer.submit_chunk("1:a", tracks["1:a"], 5, crops)
            model.gate.set()
            with pytest.raises(ValueError, match="cover 10 of its 20"):
                scorer.scores(tracks)
    finally:
        model.gate.set()
