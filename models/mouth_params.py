"""Audio -> mouth parameters, by signal processing only (no weights).

The classical engine needs, for any video frame time, how open the mouth is, how spread
(wide) and how rounded the lips are, and whether the lips are closed (silence, or the
short closure of p/b/m). This module computes those once per job on a fixed 100 Hz
analysis grid and samples them at frame times.

Features, per 32 ms window every 10 ms at 16 kHz:
  * speech-band level (80-4000 Hz) in dB, normalised per job against an adaptive noise
    floor (rolling minimum) and an adaptive reference level (rolling maximum, bounded by the
    job's loud level), so that quiet speech and loud music-like audio both span 0..1;
  * F1-region centroid (200-1100 Hz): open vowels (a) have a high F1, close vowels (i, u)
    a low one, so it scales the opening;
  * F2-region centroid (900-3000 Hz): high F2 spreads the lips (i, e), low F2 with a low
    F1 rounds them (o, u);
  * high-band ratio (> 3 kHz): fricatives (s, f, sh) keep the teeth nearly together;
  * low-band ratio (< 400 Hz) with little else: a nasal murmur (m, n) or a voiced closure
    (b), i.e. closed lips; an abrupt dip of level between louder neighbours also closes.

Co-articulation: the lips move before the sound, so the mouth at time t follows the audio
at t + `lead_ms`, through an attack/release filter (opening faster than closing), then a
box filter one video frame long so that sampling at the frame rate does not alias.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.ndimage import maximum_filter1d, minimum_filter1d, uniform_filter1d
from scipy.signal import resample_poly

log = logging.getLogger(__name__)

ANALYSIS_RATE = 16000
HOP_MS = 10.0
PAUSE_MS = 250.0
"""Least time (ms) the lips stay closed for a pause (silence), not a p/b/m closure."""
BILABIALS = frozenset({"P", "B", "M"})
"""Phones that close the lips."""
SILENCE_DB = -60.0
"""Speech-band level (dB of the summed 512-point power spectrum; normal speech peaks near
+20, speech 60 dB quieter near -40, digital zeros at -100) under which the mouth is closed
whatever the job's adaptive floor says."""


@dataclass(frozen=True)
class MouthShape:
    """Mouth parameters for one instant, each in [0, 1].

    openness: lip separation (0 closed, 1 widest "a"); width: lip spread beyond neutral
    ("ee"); rounding: lip rounding/protrusion ("oo"); closed: 1 when the lips must touch
    (silence, p/b/m). openness is already 0 where closed is 1.
    """

    openness: float
    width: float
    rounding: float
    closed: float


@dataclass
class MouthParamConfig:
    """Tunables of the audio analysis (times in ms, levels in dB)."""

    lead_ms: float = 50.0
    attack_ms: float = 22.0
    release_ms: float = 45.0
    floor_window_ms: float = 3000.0
    ref_window_ms: float = 1200.0
    silence_margin_db: float = 8.0
    dynamic_range_db: float = 30.0
    dip_db: float = 9.0


@dataclass
class MouthTrack:
    """Per-job mouth parameters on a 100 Hz grid (times_ms[i] = i * 10 ms).

    Sample with `at(time_ms)`; outside the audio the mouth is closed (silence padding).
    """

    times_ms: np.ndarray
    openness: np.ndarray
    width: np.ndarray
    rounding: np.ndarray
    closed: np.ndarray
    level: np.ndarray
    fps: float = 25.0
    """The video frame rate the track was made for (the engine plans per frame)."""
    phones: np.ndarray | None = None
    """The phone sounding at each step (labels), when the phonetic front end made the track."""
    front_end: str = "acoustic"
    """Which analysis made the targets: "phones" or "acoustic" (`models.mouth_front_end`)."""
    front_end_reason: str = ""
    """Why that one ran (the phones' fit to the speech, or why they were not trusted)."""

    @property
    def duration_ms(self) -> float:
        return float(self.times_ms[-1]) if len(self.times_ms) else 0.0

    def at(self, time_ms: float) -> MouthShape:
        """Linearly interpolated parameters at `time_ms` (ms from the audio start)."""
        if len(self.times_ms) == 0 or time_ms < 0 or time_ms > self.duration_ms:
            return MouthShape(0.0, 0.0, 0.0, 1.0)
        f = time_ms / HOP_MS
        i = int(np.floor(f))
        j = min(i + 1, len(self.times_ms) - 1)
        w = f - i

        def lerp(a: np.ndarray) -> float:
            return float((1 - w) * a[i] + w * a[j])

        return MouthShape(lerp(self.openness), lerp(self.width), lerp(self.rounding), lerp(self.closed))

    def phones_at(self, times_ms: np.ndarray) -> np.ndarray | None:
        """The phone label at each time (ms), or None for an acoustic track."""
        if self.phones is None or len(self.phones) == 0:
            return None
        k = np.clip(np.round(np.asarray(times_ms, dtype=np.float64) / HOP_MS).astype(int), 0, len(self.phones) - 1)
        return self.phones[k]

    def openness_at(self, times_ms: np.ndarray) -> np.ndarray:
        """Openness at many times (ms), 0 outside the audio."""
        return np.interp(np.asarray(times_ms, dtype=np.float64), self.times_ms, self.openness, left=0.0, right=0.0)

    @cached_property
    def _pause(self) -> np.ndarray:
        closed = self.closed >= 0.5
        pause = np.zeros_like(closed)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], closed.astype(np.int8), [0]])))
        for start, stop in zip(edges[::2], edges[1::2]):
            lasts = (stop - start) * HOP_MS >= PAUSE_MS
            at_edge = start == 0 or stop == len(closed)  # before the first word, after the last
            unspoken = self.phones is not None and not np.isin(self.phones[start:stop], list(BILABIALS)).any()
            pause[start:stop] = lasts or at_edge or unspoken
        return pause

    @cached_property
    def _padded_pause(self) -> np.ndarray:
        """`_pause` with a pause step before and after the audio (outside it is a pause)."""
        return np.concatenate([[True], self._pause, [True]])

    @cached_property
    def _pause_numbers(self) -> np.ndarray:
        """Per step of `_padded_pause`, which pause it is in (from 0) or -1 in speech."""
        padded = self._padded_pause
        number = np.cumsum(padded & ~np.concatenate([[False], padded[:-1]])) - 1
        return np.where(padded, number, -1)

    def _padded_step(self, t: np.ndarray) -> np.ndarray:
        """Index into `_padded_pause` of each time (ms): 0 before the audio, the last after it."""
        inside = 1 + np.clip(np.round(t / HOP_MS).astype(int), 0, max(len(self._pause) - 1, 0))
        return np.where(t < 0, 0, np.where(t > self.duration_ms, len(self._pause) + 1, inside))

    def pause_at(self, times_ms: np.ndarray) -> np.ndarray:
        """Whether each time (ms) is in a pause, not a p/b/m closure: lips closed for at
        least PAUSE_MS (a closure lasts ~100 ms), or before the first word or after the last,
        or (with phones) where no p, b or m sounds. Outside the audio is a pause."""
        return self._padded_pause[self._padded_step(np.asarray(times_ms, dtype=np.float64))]

    def pause_number_at(self, times_ms: np.ndarray) -> np.ndarray:
        """Which pause each time (ms) is in, counted from the audio's start (0 = the
        silence before it, where there is one), or -1 in speech: a pause keeps its number
        however the frames around it are planned."""
        return self._pause_numbers[self._padded_step(np.asarray(times_ms, dtype=np.float64))]


def _frames_power(x: np.ndarray, win: int, hop: int) -> np.ndarray:
    """Power spectra (n_frames x win/2+1) of Hann windows centred on t = k*hop."""
    pad = np.pad(x, (win // 2, win // 2 + hop))
    n = 1 + (len(pad) - win) // hop
    idx = np.arange(win)[None, :] + hop * np.arange(n)[:, None]
    frames = pad[idx] * np.hanning(win).astype(np.float32)
    return (np.abs(np.fft.rfft(frames, axis=1)) ** 2).astype(np.float64)


def _band(power: np.ndarray, freqs: np.ndarray, lo: float, hi: float) -> np.ndarray:
    m = (freqs >= lo) & (freqs < hi)
    return power[:, m].sum(axis=1)


def _centroid(power: np.ndarray, freqs: np.ndarray, lo: float, hi: float) -> np.ndarray:
    m = (freqs >= lo) & (freqs < hi)
    p = power[:, m]
    return (p * freqs[m]).sum(axis=1) / (p.sum(axis=1) + 1e-12)


def _ramp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def _attack_release(x: np.ndarray, attack_ms: float, release_ms: float) -> np.ndarray:
    """One-pole follower: rises with time constant attack_ms, falls with release_ms."""
    a_up = np.exp(-HOP_MS / attack_ms)
    a_dn = np.exp(-HOP_MS / release_ms)
    y = np.empty_like(x)
    state = x[0] if len(x) else 0.0
    for k, v in enumerate(x):
        a = a_up if v > state else a_dn
        state = a * state + (1 - a) * v
        y[k] = state
    return y


def _window(ms: float) -> int:
    return max(1, int(round(ms / HOP_MS)))


def mouth_track_from_audio(
    audio: np.ndarray, sample_rate: int, fps: float = 25.0, config: MouthParamConfig | None = None
) -> MouthTrack:
    """Analyse mono float32 audio (samples in [-1, 1]) into a 100 Hz MouthTrack.

    fps is the video frame rate: parameters are averaged over one frame period so that
    sampling them at frame times does not alias fast closures away.
    """
    cfg = config or MouthParamConfig()
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    if sample_rate != ANALYSIS_RATE and len(x):
        g = np.gcd(int(sample_rate), ANALYSIS_RATE)
        x = resample_poly(x, ANALYSIS_RATE // g, int(sample_rate) // g).astype(np.float32)
    hop = int(ANALYSIS_RATE * HOP_MS / 1000)
    n_out = int(len(x) // hop) + 1
    if len(x) < 4 * hop:
        z = np.zeros(n_out)
        return MouthTrack(np.arange(n_out) * HOP_MS, z, z.copy(), z.copy(), np.ones(n_out), z.copy(), float(fps))

    x = x - float(np.mean(x))
    emph = np.append(x[0], x[1:] - 0.95 * x[:-1]).astype(np.float32)
    win = 512
    freqs = np.fft.rfftfreq(win, 1.0 / ANALYSIS_RATE)
    # Pre-emphasised spectra for level and the nasal test (flatter, so the voice's low
    # harmonics do not dominate); plain spectra for formant regions and frication (a
    # pre-emphasised hiss would look like an "s").
    power_e = _frames_power(emph, win, hop)[:n_out]
    power = _frames_power(x, win, hop)[:n_out]

    eps = 1e-10
    speech_e = _band(power_e, freqs, 80, 4000)
    level = 10 * np.log10(speech_e + eps)
    level_s = uniform_filter1d(level, 3, mode="nearest")

    # Adaptive noise floor and reference level (dB), per job.
    floor = minimum_filter1d(uniform_filter1d(level_s, _window(200), mode="nearest"), _window(cfg.floor_window_ms), mode="nearest")
    loud_job = float(np.percentile(level_s, 97))
    floor = np.minimum(floor, loud_job - 20.0)
    floor = np.maximum(floor, loud_job - 60.0)  # digital silence must not stretch the range
    ref = maximum_filter1d(level_s, _window(cfg.ref_window_ms), mode="nearest")
    ref = np.maximum(ref, loud_job - 15.0)
    ref = uniform_filter1d(ref, _window(300), mode="nearest")
    # Digital silence (or a hiss far below any voice) is silence whatever the job's range:
    # an all-zero track has no "loud" part to normalise against.
    gate = np.maximum(floor + cfg.silence_margin_db, SILENCE_DB)
    rng = np.clip(ref - gate, 6.0, cfg.dynamic_range_db)
    loud = np.clip((level_s - ref + rng) / rng, 0.0, 1.0)
    loud = np.where(level_s > gate, loud, 0.0)

    # Spectral shape.
    f1 = _centroid(power, freqs, 200, 1100)
    f2 = _centroid(power, freqs, 900, 3000)
    high_ratio = _band(power, freqs, 3000, 8000) / (_band(power, freqs, 80, 8000) + eps)
    low_ratio = _band(power_e, freqs, 80, 400) / (speech_e + eps)
    vowel_open = 0.5 + 0.5 * _ramp(f1, 330, 650)
    fricative = _ramp(high_ratio, 0.3, 0.7)
    nasal = _ramp(low_ratio, 0.75, 0.95) * (1 - fricative)

    # Abrupt dips: a frame well below both neighbours ~60 ms away is a closure (p, b, t).
    k = _window(60)
    left = np.concatenate([np.full(k, level_s[0]), level_s[:-k]])
    right = np.concatenate([level_s[k:], np.full(k, level_s[-1])])
    dip = _ramp(np.minimum(left, right) - level_s, cfg.dip_db * 0.5, cfg.dip_db)

    silence = 1.0 - _ramp(level_s - gate, 0.0, 4.0)
    closed = np.clip(np.maximum.reduce([silence, nasal * 0.9, dip]), 0.0, 1.0)
    voiced = np.clip(loud * 2.0, 0.0, 1.0)
    openness = np.clip(1.15 * loud ** 0.7 * vowel_open, 0.0, 1.0) * (1.0 - 0.65 * fricative)
    width = _ramp(f2, 1500, 2200) * (1 - _ramp(f1, 550, 750)) * voiced
    width = np.maximum(width, 0.5 * fricative * voiced)
    rounding = _ramp(1500 - f2, 0, 400) * (1 - _ramp(f1, 450, 650)) * voiced * (1 - fricative)

    def shape(v: np.ndarray) -> np.ndarray:
        lead = _window(cfg.lead_ms)
        v = np.concatenate([v[lead:], np.full(lead, v[-1])])
        v = _attack_release(v, cfg.attack_ms, cfg.release_ms)
        return uniform_filter1d(v, _window(1000.0 / max(fps, 1.0)), mode="nearest")

    closed_s = shape(closed)
    openness_s = shape(openness) * (1.0 - closed_s)
    out = MouthTrack(
        times_ms=np.arange(n_out) * HOP_MS,
        openness=np.clip(openness_s, 0, 1),
        width=np.clip(shape(width), 0, 1),
        rounding=np.clip(shape(rounding), 0, 1),
        closed=np.clip(closed_s, 0, 1),
        level=loud,
        fps=float(fps),
    )
    log.debug("mouth track: %d steps, mean openness %.3f, closed %.0f%%", n_out, out.openness.mean(), 100 * (out.closed > 0.5).mean())
    return out
