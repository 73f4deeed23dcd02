"""Phones -> per-frame mouth targets: each coarticulation rule on a synthetic phone list, closures
on real speech, and the front-end choice falling back on noise and music-like audio."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.io import wavfile
from scipy.signal import chirp

from models.phones import Phone, recognise_phones
from models.visemes import (
    PHONE_SHAPES,
    SHAPES,
    VisemeConfig,
    choose_front_end,
    viseme_track,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FPS = 25.0  # frame i covers [40 i, 40 i + 40) ms, centre 40 i + 20 ms; lead 20 ms samples 40 (i + 1) ms


def track(*spec: tuple[str, float, float], n: int = 50, **cfg):
    return viseme_track([Phone(label, a, b) for label, a, b in spec], FPS, n, VisemeConfig(**cfg) if cfg else None)


def test_anticipation_and_easing() -> None:
    t = track(("SIL", 0, 200), ("AA", 200, 600), ("UW", 600, 1000), ("SIL", 1000, 2000))
    # frame 4 (160-200 ms) already shows the vowel that starts at 200 ms; frame 3 is still closed
    assert t.closed[3] and not t.closed[4]
    assert t.opening[4] == pytest.approx(SHAPES["D"].opening)
    # UW starts at 600 ms: frame 14 (560-600) is rounded, frame 13 is half way there, frame 12 is "aa"
    assert (t.opening[14], t.width[14]) == pytest.approx((0.3, 1.0))
    assert (t.opening[13], t.width[13]) == pytest.approx((0.65, 0.5))
    assert (t.opening[12], t.width[12]) == pytest.approx((1.0, 0.0))
    # the phone label is the one sounding at the frame centre, without the lead
    assert t.phone[4] == "SIL" and t.phone[5] == "AA" and t.phone[14] == "AA" and t.phone[15] == "UW"


def test_a_one_frame_vowel_reaches_its_opening() -> None:
    t = track(("SIL", 0, 200), ("K", 200, 400), ("AA", 400, 440), ("T", 440, 600), ("SIL", 600, 2000))
    assert t.shape[9] == "D" and t.opening[9] == pytest.approx(1.0)
    assert t.opening[8] == pytest.approx(0.6)  # the consonant before it starts opening (0.2 -> 1.0, half way)


def test_closure_is_held_for_two_frames() -> None:
    t = track(("SIL", 0, 200), ("AA", 200, 600), ("M", 600, 630), ("AA", 630, 1000), ("SIL", 1000, 2000))
    assert t.closed[13] and t.closed[14]  # 30 ms of "m" held 80 ms, extended earlier
    assert not t.closed[12] and not t.closed[15]
    assert t.opening[13] == 0.0 and t.opening[14] == 0.0
    assert t.opening[12] == pytest.approx(0.5)  # the lips start closing a frame before


def test_a_closure_between_frame_centres_is_not_lost() -> None:
    t = track(("SIL", 0, 200), ("AA", 200, 605), ("P", 605, 625), ("AA", 625, 1000), ("SIL", 1000, 2000))
    assert int(t.closed[4:24].sum()) == 2  # 20 ms that no frame samples still closes two frames
    assert t.closed[13] and t.closed[14]


def test_labiodental_rounded_spread() -> None:
    t = track(("SIL", 0, 200), ("F", 200, 280), ("IY", 280, 600), ("V", 600, 680), ("UW", 680, 1000),
              ("SIL", 1000, 2000))
    assert list(np.flatnonzero(t.labiodental)) == [4, 5, 14, 15]
    assert t.opening[4] == pytest.approx(0.1) and not t.closed[4]
    assert t.width[8] == pytest.approx(-1.0)  # IY spread
    assert t.width[20] == pytest.approx(1.0)  # UW rounded
    assert t.opening[20] < t.opening[8] + 0.01  # and narrow


def test_tongue_consonants_take_the_lip_width_of_the_next_vowel() -> None:
    t = track(("SIL", 0, 200), ("S", 200, 280), ("T", 280, 360), ("UW", 360, 700), ("K", 700, 780),
              ("IY", 780, 1000), ("SIL", 1000, 2000))
    assert t.shape[4:8] == ["B"] * 4 and t.shape[8] == "F"
    assert list(t.width[4:8]) == pytest.approx([1.0] * 4)  # "st-" already rounded for "oo"
    assert t.opening[5] == pytest.approx(0.2)  # but the teeth stay nearly together
    assert t.shape[17:19] == ["B", "B"] and list(t.width[17:19]) == pytest.approx([-1.0, -1.0])  # "k" before "ee"


def test_breath_takes_the_shape_of_its_vowel() -> None:
    t = track(("SIL", 0, 200), ("HH", 200, 300), ("AA", 300, 600), ("SIL", 600, 2000))
    assert t.shape[4:14] == ["D"] * 10


def test_silence_relaxed_closed_and_short_pauses_stay_open() -> None:
    t = track(("SIL", 0, 400), ("AA", 400, 600), ("SIL", 600, 680), ("AA", 680, 900),
              ("SIL", 900, 1400), ("AA", 1400, 1600), ("SIL", 1600, 4000), n=60)
    assert t.closed[:9].all() and (t.opening[:9] == 0).all()
    assert not t.closed[14] and t.shape[14] == "B"  # an 80 ms pause keeps the lips apart
    assert t.closed[23:34].all()  # a 500 ms pause closes the mouth
    assert t.closed[40:].all() and t.phone[-1] == "SIL"


def test_diphthong_moves_between_its_shapes() -> None:
    t = track(("SIL", 0, 400), ("AY", 400, 800), ("SIL", 800, 2000))
    assert t.shape[9:15] == ["D"] * 6 and t.shape[15:19] == ["I"] * 4  # 60 % "aa", then "ee"


def test_frames_beyond_the_phones_are_silence() -> None:
    t = track(("AA", 0, 200), n=10)
    assert t.closed[5:].all() and t.phone[5:] == ["SIL"] * 5
    assert track(n=3).closed.all()


def test_bad_phone_lists_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        track(("AA", 0, 200), ("M", 100, 300))
    with pytest.raises(ValueError, match="fps"):
        viseme_track([], 0.0, 5)
    with pytest.raises(ValueError, match="n_frames"):
        viseme_track([], 25.0, -1)


def _wav(name: str) -> tuple[np.ndarray, int]:
    path = DATA / "audio" / name
    if not path.exists():
        pytest.skip(f"sample audio missing: {path}")
    rate, x = wavfile.read(path)
    x = x.astype(np.float32) / 32768.0
    return (x.mean(axis=1) if x.ndim == 2 else x), rate


@pytest.fixture(scope="module")
def yongen() -> tuple[np.ndarray, int, list[Phone]]:
    x, rate = _wav("yongen.wav")
    return x, rate, recognise_phones(x, rate)


def test_real_speech_bilabials_close_the_lips(yongen) -> None:
    x, rate, phones = yongen
    n = int(len(x) / rate * FPS)
    t = viseme_track(phones, FPS, n)
    bilabials = [p for p in phones if p.label in ("P", "B", "M")]
    assert bilabials
    for p in bilabials:
        frames = range(max(0, int(p.start_ms / 40) - 1), min(n, int(p.end_ms / 40) + 1))
        assert any(t.closed[i] for i in frames), p
    # every closure inside speech lasts at least two frames
    closed_a = np.array([s == "A" for s in t.shape])
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, closed_a.astype(int), 0])))[::2]
    assert (runs >= 2).all()
    assert 0.2 < t.opening[~t.closed].mean() < 0.8
    assert (t.width < 0).any() and (t.width > 0).any()


def test_front_end_trusts_real_speech(yongen) -> None:
    x, rate, phones = yongen
    ok, why = choose_front_end(phones, x, rate)
    assert ok, why
    assert "phones fit" in why


def _noise() -> np.ndarray:
    return (0.1 * np.random.default_rng(1).standard_normal(16000 * 4)).astype(np.float32)


def _sweep() -> np.ndarray:
    t = np.arange(16000 * 4) / 16000
    return (0.3 * chirp(t, 100, 4, 4000)).astype(np.float32)


def _melody() -> np.ndarray:
    """Notes of 250 ms with a 4 Hz tremolo: rhythm, but no vowels and consonants."""
    rng = np.random.default_rng(2)
    f = np.repeat(rng.choice([220, 247, 262, 294, 330, 349, 392], 16), 4000)
    t = np.arange(len(f)) / 16000
    ph = 2 * np.pi * np.cumsum(f) / 16000
    return (0.2 * (np.sin(ph) + 0.3 * np.sin(2 * ph)) * (0.6 + 0.4 * np.cos(2 * np.pi * 4 * t))).astype(np.float32)


def _pulsed_tone() -> np.ndarray:
    """A harmonic tone switched on and off four times a second: pauses, but not speech."""
    t = np.arange(16000 * 4) / 16000
    env = np.clip(np.sin(2 * np.pi * 4 * t), 0, None)
    return (0.2 * env * (np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 440 * t))).astype(np.float32)


@pytest.mark.parametrize("make", [_noise, _sweep, _melody, _pulsed_tone])
def test_front_end_falls_back_on_noise_and_music(make) -> None:
    x = make()
    ok, why = choose_front_end(recognise_phones(x, 16000), x, 16000)
    assert not ok, why
    assert why


def test_front_end_refuses_silence_and_tiny_clips() -> None:
    ok, why = choose_front_end([], np.zeros(16000, dtype=np.float32), 16000)
    assert not ok and "silent" in why
    ok, why = choose_front_end([], np.zeros(1600, dtype=np.float32), 16000)
    assert not ok and "short" in why


def test_front_end_refuses_bad_audio() -> None:
    with pytest.raises(ValueError, match="mono"):
        choose_front_end([], np.zeros((1600, 2), dtype=np.float32), 16000)


@st.composite
def phone_lists(draw) -> list[Phone]:
    labels = st.sampled_from(sorted(PHONE_SHAPES))
    n = draw(st.integers(0, 40))
    t, phones = 0.0, []
    for _ in range(n):
        d = draw(st.floats(5.0, 400.0))
        phones.append(Phone(draw(labels), t, t + d))
        t += d
    return phones


@settings(max_examples=150, deadline=None)
@given(phones=phone_lists(), fps=st.sampled_from([24.0, 25.0, 29.97, 30.0, 50.0, 60.0]))
def test_targets_stay_in_range_and_closures_are_seen(phones: list[Phone], fps: float) -> None:
    n = int(sum(p.duration_ms for p in phones) * fps / 1000.0) + 3
    t = viseme_track(phones, fps, n)
    assert t.n_frames == n and len(t.phone) == n and len(t.shape) == n
    assert ((t.opening >= 0) & (t.opening <= 1)).all() and ((t.width >= -1) & (t.width <= 1)).all()
    assert (t.opening[t.closed] == 0).all()
    assert not (t.closed & t.labiodental).any()
    frame_ms = 1000.0 / fps
    for p in phones:
        if p.label in ("P", "B", "M"):  # every bilabial closes at least one frame near it
            lo = max(0, int((p.start_ms - 2 * frame_ms) / frame_ms))
            hi = min(n, int(p.end_ms / frame_ms) + 2)
            assert t.closed[lo:hi].any(), p
