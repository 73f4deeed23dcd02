"""MFCCs against python_speech_features' numbers (fixture) and their defining properties."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile
from scipy.signal import resample_poly

from models.mfcc import asd_mfcc, frame_signal, mel_filterbank, mfcc

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "light_asd_reference.json"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(FIXTURE.read_text())["mfcc"]


@pytest.fixture(scope="module")
def yongen_pcm16k() -> np.ndarray:
    """The fixture's input, rebuilt the same way: int16-valued 16 kHz mono speech."""
    path = DATA / "audio" / "yongen.wav"
    if not path.exists():
        pytest.skip(f"sample audio missing: {path}")
    _, x = wavfile.read(path)
    mono = x.astype(np.float64).mean(axis=1)
    return np.clip(np.round(resample_poly(mono, 1, 3)), -32768, 32767).astype(np.int16)


def test_matches_python_speech_features_on_real_speech(reference: dict, yongen_pcm16k: np.ndarray) -> None:
    assert len(yongen_pcm16k) == reference["n_samples"]
    ours = mfcc(yongen_pcm16k, 16000)
    assert ours.shape == (reference["n_frames"], 13)
    expected = np.array(reference["coefficients"])
    np.testing.assert_allclose(ours[reference["frames"]], expected, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(ours.mean(axis=0), reference["mean_over_frames"], rtol=1e-6, atol=1e-5)
    # The sample has speech in it, not only the silent lead-in.
    assert np.ptp(expected[:, 1:]) > 20


def test_asd_mfcc_works_on_float_audio_in_int16_units(yongen_pcm16k: np.ndarray) -> None:
    from_float = asd_mfcc(yongen_pcm16k.astype(np.float32) / 32768.0, 16000)
    assert from_float.dtype == np.float32
    reference = mfcc(yongen_pcm16k)
    assert len(from_float) == len(yongen_pcm16k) // 160 == len(reference) + 1
    np.testing.assert_allclose(from_float[:-1], reference, rtol=1e-5, atol=1e-4)
    # Coefficient 0 is log energy: halving the audio takes log(4) off (away from the
    # quiet frames, where int16 rounding dominates).
    speech = from_float[:, 0] > 15
    assert speech.sum() > 300
    quieter = asd_mfcc(yongen_pcm16k.astype(np.float32) / 65536.0)
    np.testing.assert_allclose(from_float[speech, 0] - quieter[speech, 0], np.log(4.0), atol=0.01)


def test_frame_count_and_rate() -> None:
    one_second = np.random.default_rng(1).normal(0, 1000, 16000)
    assert mfcc(one_second).shape == (1 + int(np.ceil((16000 - 400) / 160)), 13) == (99, 13)
    assert mfcc(np.ones(100)).shape == (1, 13)
    assert mfcc(np.zeros(0)).shape == (0, 13)
    for n_video_frames in (1, 7, 25):  # one 40 ms video frame = 640 samples = 4 MFCC frames
        assert asd_mfcc(np.zeros(640 * n_video_frames, np.float32)).shape == (4 * n_video_frames, 13)
    assert asd_mfcc(np.zeros(0, np.float32)).shape == (0, 13)
    frames = frame_signal(np.arange(10.0), 4, 3)
    np.testing.assert_array_equal(frames, [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]])


def test_tone_lands_in_the_filter_around_its_frequency() -> None:
    bank = mel_filterbank(26, 512, 16000)
    assert bank.shape == (26, 257)
    assert np.all(bank.max(axis=1) == pytest.approx(1.0))
    t = np.arange(16000) / 16000
    tone = 10000 * np.sin(2 * np.pi * 1000 * t)
    power = np.abs(np.fft.rfft(frame_signal(tone, 400, 160)[10], 512)) ** 2
    strongest_filter = int(np.argmax(bank @ power))
    assert bank[strongest_filter, round(1000 * 512 / 16000)] > 0.5


def test_wrong_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="16000 Hz"):
        asd_mfcc(np.zeros(48000, np.float32), 48000)
