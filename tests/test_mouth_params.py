"""Audio -> mouth parameters on real speech and on synthetic vowels with known formants."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import uniform_filter1d
from scipy.signal import lfilter

from models.mouth_params import MouthParamConfig, mouth_track_from_audio
from stages.audio import load_audio

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SR = 16000
FPS = 25.0


def _speech(name: str) -> np.ndarray:
    path = DATA / "audio" / name
    if not path.exists():
        pytest.skip(f"sample media missing: {path} (see ../shared/data/README.md)")
    return load_audio(path, SR)


def _frame_times(n_samples: int) -> np.ndarray:
    return np.arange(0, n_samples / SR * 1000 - 1, 1000 / FPS)


def _envelope_db(x: np.ndarray, times_ms: np.ndarray) -> np.ndarray:
    """Speech envelope: 40 ms RMS in dB, clipped 35 dB below the loud level."""
    power = uniform_filter1d(x.astype(np.float64) ** 2, int(0.04 * SR))
    db = 10 * np.log10(power + 1e-12)
    idx = np.clip((times_ms / 1000 * SR).astype(int), 0, len(x) - 1)
    env = db[idx]
    return np.maximum(env, np.percentile(env, 97) - 35)


def _vowel(f1: float, f2: float, seconds: float, f0: float = 140.0) -> np.ndarray:
    """Source-filter vowel: glottal pulse train through two formant resonators."""
    n = int(seconds * SR)
    src = np.zeros(n)
    src[:: int(SR / f0)] = 1.0
    y = src
    for f, bw in ((f1, 90.0), (f2, 120.0), (2900.0, 200.0)):
        r = np.exp(-np.pi * bw / SR)
        y = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * f / SR), r * r], y)
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


def test_openness_follows_speech_envelope_and_is_zero_in_silence():
    speech = _speech("yongen.wav")
    gap = np.zeros(SR, dtype=np.float32) + np.random.default_rng(0).normal(0, 1e-4, SR).astype(np.float32)
    part = 3 * SR
    audio = np.concatenate([gap, speech[:part], gap, speech[part:], gap])
    track = mouth_track_from_audio(audio, SR, FPS)
    times = _frame_times(len(audio))
    opening = track.openness_at(times)

    # Inside the inserted silences (away from their edges by 200 ms): closed mouth.
    bounds = [(0, SR), (SR + part, 2 * SR + part), (len(audio) - SR, len(audio))]
    for a, b in bounds:
        sel = (times > a / SR * 1000 + 200) & (times < b / SR * 1000 - 200)
        assert sel.sum() > 10
        assert opening[sel].max() < 0.03
        assert min(track.at(t).closed for t in times[sel]) > 0.9

    speaking = opening > 0.05
    assert 0.3 < speaking.mean() < 0.9
    r = np.corrcoef(opening, _envelope_db(audio, times))[0, 1]
    assert r >= 0.6, r


def test_openness_correlates_with_envelope_on_long_speech():
    audio = _speech("sun.wav")
    track = mouth_track_from_audio(audio, SR, FPS)
    times = _frame_times(len(audio))
    r = np.corrcoef(track.openness_at(times), _envelope_db(audio, times))[0, 1]
    assert r >= 0.6, r
    assert 0.2 < track.openness.mean() < 0.6


def test_loudness_is_normalised_per_job():
    audio = _speech("sun.wav")[: 8 * SR]
    times = _frame_times(len(audio))
    base = mouth_track_from_audio(audio, SR, FPS).openness_at(times)
    quiet = mouth_track_from_audio(audio * 0.03, SR, FPS).openness_at(times)
    loud = mouth_track_from_audio(np.clip(audio * 4, -1, 1), SR, FPS).openness_at(times)
    for other in (quiet, loud):
        assert np.corrcoef(base, other)[0, 1] > 0.9
        assert abs(other.mean() - base.mean()) < 0.25 * base.mean()


def test_open_vowel_opens_more_and_close_front_vowel_spreads():
    a = _vowel(750, 1200, 1.0)
    i = _vowel(290, 2300, 1.0)
    u = _vowel(320, 800, 1.0)
    pad = np.zeros(SR // 2, dtype=np.float32)
    audio = np.concatenate([pad, a, pad, i, pad, u, pad])
    track = mouth_track_from_audio(audio, SR, FPS)

    def mid(start_s: float) -> np.ndarray:
        return np.arange(start_s + 0.3, start_s + 0.7, 0.04) * 1000

    ta, ti, tu = mid(0.5), mid(2.0), mid(3.5)
    op = lambda ts: np.mean([track.at(t).openness for t in ts])  # noqa: E731
    wd = lambda ts: np.mean([track.at(t).width for t in ts])  # noqa: E731
    rd = lambda ts: np.mean([track.at(t).rounding for t in ts])  # noqa: E731
    assert op(ta) > op(ti) + 0.15
    assert op(ta) > op(tu) + 0.15
    assert wd(ti) > wd(ta) + 0.3
    assert rd(tu) > rd(ti) + 0.3
    assert rd(tu) > rd(ta) + 0.3


def test_short_dip_closes_the_mouth_and_mouth_leads_the_sound():
    pad = np.zeros(SR // 2, dtype=np.float32)
    v1, v2 = _vowel(700, 1300, 0.4), _vowel(700, 1300, 0.4)
    dip = np.zeros(int(0.08 * SR), dtype=np.float32)  # a "p" closure between two vowels
    audio = np.concatenate([pad, v1, dip, v2, pad])
    track = mouth_track_from_audio(audio, SR, FPS, MouthParamConfig())
    dip_ms = (0.5 + 0.4 + 0.04) * 1000
    vowel_ms = (0.5 + 0.2) * 1000
    assert track.at(dip_ms - 50).closed > 0.5  # the lead moves the closure earlier
    assert track.at(dip_ms - 50).openness < 0.5 * track.at(vowel_ms).openness
    onset_ms = 500.0
    assert track.at(onset_ms).openness > 0.2  # already opening at the sound onset
    assert track.at(onset_ms - 150).openness < 0.02


def test_outside_the_audio_the_mouth_is_closed():
    track = mouth_track_from_audio(_vowel(700, 1200, 0.5), SR, FPS)
    for t in (-40.0, track.duration_ms + 40.0):
        shape = track.at(t)
        assert shape.openness == 0.0 and shape.closed == 1.0
    empty = mouth_track_from_audio(np.zeros(10, np.float32), SR, FPS)
    assert empty.at(0.0).openness == 0.0


@settings(max_examples=60, deadline=None)
@given(first_closed=st.booleans(), lengths=st.lists(st.integers(1, 60), min_size=1, max_size=12))
def test_a_pause_is_a_closure_that_lasts(first_closed, lengths):
    """Without phones, `pause_at` is true exactly on runs of closed steps lasting PAUSE_MS
    or more (silence) or touching the audio's start or end, false on shorter closures
    (p/b/m) and on open steps; outside the audio is a pause. `pause_number_at` numbers them."""
    from models.mouth_params import HOP_MS, PAUSE_MS, MouthTrack

    runs = [((k % 2 == 0) == first_closed, n) for k, n in enumerate(lengths)]  # alternating
    closed = np.concatenate([np.full(n, 1.0 if c else 0.0) for c, n in runs])
    edge = [k in (0, len(runs) - 1) for k in range(len(runs))]
    want = np.concatenate([np.full(n, c and (n * HOP_MS >= PAUSE_MS or e)) for (c, n), e in zip(runs, edge)])
    times = np.arange(len(closed)) * HOP_MS
    zeros = np.zeros_like(closed)
    track = MouthTrack(times, 1 - closed, zeros, zeros, closed, zeros)
    assert track.pause_at(times).tolist() == want.tolist()
    assert track.pause_at(np.array([-40.0, times[-1] + 40.0])).tolist() == [True, True]
    # `pause_number_at`: -1 in speech; pauses numbered in order from 0 (the silence before
    # the audio, which a pause at its start continues), one number per run of pause steps.
    numbers = track.pause_number_at(times)
    assert ((numbers >= 0) == want).all()
    starts = want & ~np.concatenate([[True], want[:-1]])  # a pause at the start continues pause 0
    assert numbers[want].tolist() == np.cumsum(starts)[want].tolist()
    before, after = track.pause_number_at(np.array([-40.0, times[-1] + 40.0]))
    assert before == 0
    assert after == (numbers[-1] if want[-1] else numbers.max(initial=0) + 1)


def test_with_phones_a_short_closure_is_a_pause_unless_p_b_or_m_sounds():
    from models.mouth_params import MouthTrack

    closed = np.array([0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0], float)
    phones = np.array(["AA", "AA", "M", "M", "AA", "AA", "T", "SIL", "SIL", "SIL", "AA", "AA"])
    times = np.arange(len(closed)) * 10.0
    zeros = np.zeros_like(closed)
    track = MouthTrack(times, 1 - closed, zeros, zeros, closed, zeros, phones=phones)
    assert track.pause_at(times).tolist() == [False] * 7 + [True] * 3 + [False] * 2
