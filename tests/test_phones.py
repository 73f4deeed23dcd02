"""Phone recognition (PocketSphinx allphone) on real speech: timings tile the audio, silences sit
where the energy is low, speech is covered, bad input is refused, and calls are thread-safe."""
from __future__ import annotations

import itertools
import threading
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from models.phones import (
    HOP,
    LABELS,
    SILENCE,
    Phone,
    RecogniserConfig,
    _tidy,
    chunk_bounds,
    recognise_phones,
    to_16k,
)
from models.visemes import speech_band_level

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


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


def _check_tiling(phones: list[Phone], duration_ms: float) -> None:
    assert phones[0].start_ms == 0.0
    assert phones[-1].end_ms == pytest.approx(duration_ms, abs=1e-6)
    for a, b in itertools.pairwise(phones):
        assert a.end_ms == b.start_ms, (a, b)
    assert all(p.end_ms > p.start_ms for p in phones)
    assert all(p.label in LABELS for p in phones)


def test_real_speech_phones_tile_the_audio_at_a_speech_rate(yongen) -> None:
    x, rate, phones = yongen
    _check_tiling(phones, 1000.0 * len(x) / rate)
    speech = [p for p in phones if p.is_speech]
    speech_s = sum(p.duration_ms for p in speech) / 1000.0
    assert 3.0 < speech_s < 7.5  # 8 s of audio with a long pause in the middle
    assert 5.0 < len(speech) / speech_s < 20.0  # phones per second of speech
    assert phones[0].label == SILENCE  # the clip starts with a breath of silence
    vowels = {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}
    assert sum(p.label in vowels for p in speech) >= 10
    assert any(p.label in ("P", "B", "M") for p in speech)


def test_silences_are_quiet_and_speech_is_covered(yongen) -> None:
    x, rate, phones = yongen
    level = speech_band_level(x, rate)
    t = (np.arange(len(level)) + 0.5) * 10.0

    def mean_level(pred) -> float:
        mask = np.zeros(len(level), dtype=bool)
        for p in phones:
            if pred(p):
                mask |= (t >= p.start_ms) & (t < p.end_ms)
        return float(np.median(level[mask]))

    long_silence = mean_level(lambda p: p.label == SILENCE and p.duration_ms >= 200)
    vowel = mean_level(lambda p: p.label in ("AA", "AE", "AH", "AO", "EH", "EY", "AY", "AW", "OW", "IY", "UW"))
    assert vowel - long_silence > 20.0  # dB
    loud = level > np.percentile(level, 95) - 15.0
    speech_mask = np.zeros(len(level), dtype=bool)
    for p in phones:
        if p.is_speech:
            speech_mask |= (t >= p.start_ms) & (t < p.end_ms)
    assert speech_mask[loud].mean() > 0.9  # the loud parts are recognised as speech


def test_rate_is_handled_by_resampling(yongen) -> None:
    x, rate, phones = yongen
    assert rate == 48000
    again = recognise_phones(to_16k(x, rate), 16000)
    assert [p.label for p in again] == [p.label for p in phones]
    assert [p.start_ms for p in again] == [p.start_ms for p in phones]


def test_thread_safe_concurrent_calls_match_serial(yongen) -> None:
    x, rate, _phones = yongen
    clip = x[: rate * 3]
    expected = recognise_phones(clip, rate)
    results: list[list[Phone]] = [[] for _ in range(3)]

    def work(k: int) -> None:
        results[k] = recognise_phones(clip, rate)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert all(r == expected for r in results)


def test_silence_and_empty_audio() -> None:
    assert recognise_phones(np.zeros(0, dtype=np.float32), 16000) == []
    quiet = recognise_phones(np.zeros(16000, dtype=np.float32), 16000)
    assert not any(p.is_speech for p in quiet)
    _check_tiling(quiet, 1000.0)
    tiny = recognise_phones(np.zeros(100, dtype=np.float32), 16000)
    assert tiny == [Phone(SILENCE, 0.0, 6.25)]


@pytest.mark.parametrize("samples, rate, words", [
    (np.zeros((100, 2), dtype=np.float32), 16000, "mono"),
    (np.zeros(100, dtype=np.int16), 16000, "float"),
    (np.array([0.0, np.nan], dtype=np.float32), 16000, "NaN"),
    (np.zeros(100, dtype=np.float32), 0, "rate"),
    (np.zeros(100, dtype=np.float32), 16000.5, "rate"),
])
def test_bad_input_is_refused_with_what_to_fix(samples, rate, words) -> None:
    with pytest.raises(ValueError, match=words):
        recognise_phones(samples, rate)


def test_tidy_maps_fillers_fills_gaps_and_clips() -> None:
    segs = [("SIL", 0, 9), ("+NSN+", 10, 14), ("AH", 15, 24), ("+SPN+", 30, 34), ("K", 33, 40), ("XX", 41, 45)]
    phones = _tidy(segs, 430.0)
    assert [(p.label, p.start_ms, p.end_ms) for p in phones] == [
        ("SIL", 0.0, 150.0),   # SIL and noise merged
        ("AH", 150.0, 250.0),
        ("SIL", 250.0, 300.0),  # the gap
        ("SPN", 300.0, 350.0),
        ("K", 350.0, 410.0),    # its overlap with SPN clipped
        ("SPN", 410.0, 430.0),  # an unknown label is unnamed speech, clipped to the audio
    ]


def test_benchmark_compares_both_front_ends_on_real_speech(yongen) -> None:
    from benchmarks.phones import compare

    x, rate, phones = yongen
    row = compare(x, rate, phones)
    for key in ("phones_envelope_corr", "acoustic_envelope_corr", "phones_vs_acoustic_corr"):
        assert -1.0 <= row[key] <= 1.0
    assert row["phones_envelope_corr"] > 0.3  # vowels loud, consonants and closures quiet
    assert row["phones_vs_acoustic_corr"] > 0.3  # both front ends open and close together
    assert row["phones_closures_per_s"] > 0 and 0 < row["phones_closed_in_speech"] < 0.5


def test_long_audio_is_decoded_in_chunks_cut_at_pauses(yongen) -> None:
    x, rate, phones = yongen
    y = to_16k(x, rate)
    bounds = chunk_bounds(y, 3.0, 1.0)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(y)
    assert all(a == b for (_, a), (b, _) in itertools.pairwise(bounds))
    assert all(0 < e - s <= 3 * 16000 and s % HOP == 0 for s, e in bounds)
    level = [float(np.sum(y[s: s + HOP] ** 2)) for s, _ in bounds[1:]]
    assert max(level) < 0.01 * float(np.mean(y ** 2)) * HOP  # every cut is in a quiet hop
    chunked = recognise_phones(x, rate, RecogniserConfig(max_chunk_s=3.0, cut_search_s=1.0))
    _check_tiling(chunked, 1000.0 * len(x) / rate)
    speech = [sum(p.duration_ms for p in ps if p.is_speech) for ps in (phones, chunked)]
    assert abs(speech[0] - speech[1]) < 0.1 * speech[0]


def test_child_process_and_in_process_decodes_agree(yongen, monkeypatch) -> None:
    """PocketSphinx runs in a child process (it holds the GIL all through a decode, which would
    stop a job's other threads); where no child can be started it runs here. Both give the
    same phones, chunked or not."""
    import models.sphinx_decode as sphinx
    from models import phones as module

    x, rate, phones = yongen
    chunked = RecogniserConfig(max_chunk_s=3.0, cut_search_s=1.0)
    assert len(chunk_bounds(to_16k(x, rate), 3.0, 1.0)) > 1
    children = []
    real_run = sphinx.subprocess.run

    def counted(*args, **kwargs):
        children.append(args[0])
        return real_run(*args, **kwargs)

    monkeypatch.setattr(sphinx.subprocess, "run", counted)
    monkeypatch.setattr(module, "_RECOGNISERS", {})
    assert recognise_phones(x, rate) == phones
    in_child = recognise_phones(x, rate, chunked)
    assert len(children) == 2  # one child per call, all its chunks in it

    def no_child(*args, **kwargs):
        raise OSError("no processes here")

    monkeypatch.setattr(sphinx.subprocess, "run", no_child)
    monkeypatch.setattr(module, "_RECOGNISERS", {})
    assert recognise_phones(x, rate) == phones
    assert recognise_phones(x, rate, chunked) == in_child


def test_a_failing_child_says_why() -> None:
    from models.sphinx_decode import decode_in_child

    with pytest.raises(RuntimeError, match="PocketSphinx child process failed"):
        decode_in_child(b"\x00\x00" * 1600, [(0, 3200)], lw=0.8, beam=1e-20, pbeam="not a number")
