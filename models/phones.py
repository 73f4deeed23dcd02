"""Timed phones from speech audio, by PocketSphinx's phone recogniser (no weights to fetch).

The `pocketsphinx` 5.x wheel ships a US-English acoustic model and a phone language model
(`en-us-phone.lm.bin`); decoding in "allphone" mode gives the best phone sequence with a
10 ms frame grid, without needing the words. The settings follow Rhubarb Lip Sync's
phonetic recogniser (context-independent phones, a light language weight so that the
phones follow the sound rather than the English phone statistics, wide beams, batch
cepstral mean normalisation). Cost: about 0.05x real time in CPU on one core. The decoder
holds the GIL while it runs (about 1.5 s per 30 s chunk on an idle core), so it runs in a
child process (`models.sphinx_decode`): a job's other threads go on beside it.

Labels are ARPAbet without stress (AA, AE, ... ZH), plus "SIL" (silence or non-speech
noise) and "SPN" (speech the recogniser could not name as a phone).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from math import gcd

import numpy as np
from scipy.signal import resample_poly

from models.sphinx_decode import decode_in_child, decode_utterance, make_decoder

SPHINX_RATE = 16000
FRAME_MS = 10.0
"""PocketSphinx's analysis hop (100 frames per second)."""

ARPABET = frozenset(
    ["AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W", "Y", "Z", "ZH"]
)
SILENCE = "SIL"
UNKNOWN_SPEECH = "SPN"
LABELS = ARPABET | {SILENCE, UNKNOWN_SPEECH}

_FILLERS = {"SIL": SILENCE, "<sil>": SILENCE, "<s>": SILENCE, "</s>": SILENCE, "+NSN+": SILENCE,
            "+SPN+": UNKNOWN_SPEECH}


@dataclass(frozen=True)
class Phone:
    """One recognised phone: `label` (see LABELS) from `start_ms` to `end_ms` (ms from the audio start)."""

    label: str
    start_ms: float
    end_ms: float

    @property
    def duration_ms(self) -> float:
        return self.end_ms - self.start_ms

    @property
    def is_speech(self) -> bool:
        return self.label != SILENCE


@dataclass(frozen=True)
class RecogniserConfig:
    """Decoder settings (see the module docstring for why)."""

    language_weight: float = 0.8
    beam: float = 1e-20
    phone_beam: float = 1e-20
    max_chunk_s: float = 30.0
    """Longer audio is decoded in chunks of at most this, cut at the quietest 10 ms within
    the chunk's last `cut_search_s` (a pause, for speech), so memory stays bounded."""
    cut_search_s: float = 5.0


class _Recogniser:
    """Decodes in a child process (`models.sphinx_decode`: the decoder holds the GIL all
    through a decode, a child holds none of ours); where no child can be started, in this
    process through one decoder created on first use and shared behind a lock (a decoder is
    not thread-safe)."""

    def __init__(self, config: RecogniserConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._decoder = None
        self.in_child = True

    def decode(self, pcm16: bytes, chunks: list[tuple[int, int]]) -> list[list[tuple[str, int, int]]]:
        """Per chunk (byte range of `pcm16`, decoded as one utterance), (label, first frame,
        last frame inclusive) of each segment, in order."""
        settings = (self.config.language_weight, self.config.beam, self.config.phone_beam)
        if self.in_child:
            try:
                return decode_in_child(pcm16, chunks, *settings)
            except OSError:
                self.in_child = False
        with self._lock:
            if self._decoder is None:
                self._decoder = make_decoder(*settings)
            return [decode_utterance(self._decoder, pcm16[first:end]) for first, end in chunks]


_RECOGNISERS: dict[RecogniserConfig, _Recogniser] = {}
_RECOGNISERS_LOCK = threading.Lock()


def _recogniser(config: RecogniserConfig) -> _Recogniser:
    with _RECOGNISERS_LOCK:
        if config not in _RECOGNISERS:
            _RECOGNISERS[config] = _Recogniser(config)
        return _RECOGNISERS[config]


def to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """`samples` (float mono) resampled to 16 kHz by a polyphase filter, as float32."""
    x = np.asarray(samples, dtype=np.float32)
    if rate == SPHINX_RATE:
        return x
    g = gcd(SPHINX_RATE, int(rate))
    return resample_poly(x, SPHINX_RATE // g, int(rate) // g).astype(np.float32)


def check_audio(samples: np.ndarray, rate: int) -> np.ndarray:
    """`samples` as an array if they are float mono audio at a sensible integer `rate`, else ValueError saying what to fix."""
    x = np.asarray(samples)
    if x.ndim != 1:
        raise ValueError(f"samples must be mono (1-D), got shape {x.shape}; mix the channels down first")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"samples must be float in -1..1, got {x.dtype}; divide integer PCM by its full scale")
    if not isinstance(rate, (int, np.integer)) or rate < 4000:
        raise ValueError(f"rate must be an integer sample rate in Hz (>= 4000), got {rate!r}")
    if len(x) and not np.all(np.isfinite(x)):
        raise ValueError("samples contain NaN or infinity; clean the audio first")
    return x


def _pcm16(x: np.ndarray) -> bytes:
    """16-bit PCM with a deterministic ±1 LSB dither, so that digital silence does not break the features."""
    dither = np.random.default_rng(0).integers(-1, 2, size=len(x))
    return (np.clip(np.round(np.clip(x, -1.0, 1.0) * 32767.0) + dither, -32768, 32767)).astype(np.int16).tobytes()


def recognise_phones(samples: np.ndarray, rate: int, config: RecogniserConfig | None = None) -> list[Phone]:
    """Timed phones of `samples` (float32 mono, -1..1) at `rate` Hz.

    The phones are sorted, do not overlap and tile the audio from 0 to its duration (ms);
    neighbouring silences are merged. Empty audio gives [].
    """
    x = check_audio(samples, rate)
    duration_ms = 1000.0 * len(x) / float(rate)
    if len(x) == 0:
        return []
    y = to_16k(x, int(rate))
    if len(y) < SPHINX_RATE * 0.05:  # shorter than the analysis window: nothing to recognise
        return [Phone(SILENCE, 0.0, duration_ms)]
    cfg = config or RecogniserConfig()
    recogniser = _recogniser(cfg)
    pcm = _pcm16(y)
    bounds = chunk_bounds(y, cfg.max_chunk_s, cfg.cut_search_s)
    decoded = recogniser.decode(pcm, [(2 * first, 2 * last) for first, last in bounds])
    segments = [(w, a + first // HOP, b + first // HOP) for (first, _), chunk in zip(bounds, decoded)
                for w, a, b in chunk]
    return _tidy(segments, duration_ms)


HOP = int(SPHINX_RATE * FRAME_MS / 1000)


def chunk_bounds(y: np.ndarray, max_chunk_s: float, cut_search_s: float) -> list[tuple[int, int]]:
    """(first, end) sample ranges of 16 kHz `y`, each at most `max_chunk_s` long, cut on 10 ms
    hop boundaries at the quietest hop within the last `cut_search_s` of each chunk."""
    limit = max(HOP, int(max_chunk_s * SPHINX_RATE) // HOP * HOP)
    search = max(HOP, min(limit // 2, int(cut_search_s * SPHINX_RATE) // HOP * HOP))
    bounds, first = [], 0
    while len(y) - first > limit:
        lo, hi = first + limit - search, first + limit
        hops = y[lo:hi].reshape(-1, HOP).astype(np.float64)
        cut = lo + HOP * int(np.argmin((hops ** 2).sum(axis=1)))
        bounds.append((first, cut))
        first = cut
    bounds.append((first, len(y)))
    return bounds


def _tidy(segments: list[tuple[str, int, int]], duration_ms: float) -> list[Phone]:
    """Segments -> phones: labels normalised, gaps filled as silence, clipped to the audio, same labels merged."""
    phones: list[Phone] = []

    def add(label: str, start: float, end: float) -> None:
        start, end = max(0.0, start), min(duration_ms, end)
        if end <= start:
            return
        if phones and phones[-1].end_ms > start:
            start = phones[-1].end_ms
            if end <= start:
                return
        if phones and phones[-1].end_ms < start:
            add_gap(phones[-1].end_ms, start)
        if phones and phones[-1].label == label == SILENCE:
            phones[-1] = Phone(label, phones[-1].start_ms, end)
        else:
            phones.append(Phone(label, start, end))

    def add_gap(start: float, end: float) -> None:
        if phones and phones[-1].label == SILENCE:
            phones[-1] = Phone(SILENCE, phones[-1].start_ms, end)
        else:
            phones.append(Phone(SILENCE, start, end))

    for word, first, last in sorted(segments, key=lambda s: s[1]):
        label = _FILLERS.get(word, word.upper().rstrip("012"))
        if label not in LABELS:
            label = UNKNOWN_SPEECH
        add(label, first * FRAME_MS, (last + 1) * FRAME_MS)
    if not phones:
        return [Phone(SILENCE, 0.0, duration_ms)]
    if phones[0].start_ms > 0:
        phones.insert(0, Phone(SILENCE, 0.0, phones[0].start_ms))
        if len(phones) > 1 and phones[1].label == SILENCE:
            phones[0:2] = [Phone(SILENCE, 0.0, phones[1].end_ms)]
    if phones[-1].end_ms < duration_ms:
        add_gap(phones[-1].end_ms, duration_ms)
    return phones
