"""MFCCs computed the way python_speech_features 0.6 does, with numpy/scipy only.

Light-ASD was trained on `python_speech_features.mfcc(audio, 16000, numcep=13,
winlen=0.025, winstep=0.010)` of 16-bit PCM read with scipy (sample values in the int16
range, not [-1, 1]). The scale matters: coefficient 0 is the log frame energy. So
`asd_mfcc` takes the usual float32 [-1, 1] audio and scales it back to int16 units.
Frames: 25 ms window, 10 ms hop, rectangular window, 100 frames per second, so 4 MFCC
frames per 25 fps video frame.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.fft import dct

ASD_SAMPLE_RATE = 16000
INT16_SCALE = 32768.0


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(n_filters: int, n_fft: int, sample_rate: int, low_hz: float = 0.0, high_hz: float | None = None) -> np.ndarray:
    """Triangular filters [n_filters, n_fft//2+1] on FFT bins floored as python_speech_features does."""
    high_hz = sample_rate / 2 if high_hz is None else high_hz
    if high_hz > sample_rate / 2:
        raise ValueError(f"high_hz {high_hz} is above the Nyquist frequency {sample_rate / 2}")
    mel_points = np.linspace(hz_to_mel(low_hz), hz_to_mel(high_hz), n_filters + 2)
    bins = np.floor((n_fft + 1) * mel_to_hz(mel_points) / sample_rate)
    bank = np.zeros((n_filters, n_fft // 2 + 1))
    k = np.arange(n_fft // 2 + 1, dtype=np.float64)
    for j in range(n_filters):
        lo, mid, hi = bins[j], bins[j + 1], bins[j + 2]
        rising = (k >= lo) & (k < mid)
        falling = (k >= mid) & (k < hi)
        bank[j, rising] = (k[rising] - lo) / (mid - lo)
        bank[j, falling] = (hi - k[falling]) / (hi - mid)
    bank.setflags(write=False)
    return bank


def _round_half_up(x: float) -> int:
    return int(np.floor(x + 0.5))


def frame_signal(signal: np.ndarray, frame_len: int, frame_step: int) -> np.ndarray:
    """Overlapping frames [n, frame_len]; the tail is zero-padded so every sample is covered."""
    n = len(signal)
    n_frames = 1 if n <= frame_len else 1 + int(np.ceil((n - frame_len) / frame_step))
    padded = np.zeros((n_frames - 1) * frame_step + frame_len)
    padded[:n] = signal
    starts = np.arange(n_frames) * frame_step
    return padded[starts[:, None] + np.arange(frame_len)[None, :]]


def mfcc(
    signal: np.ndarray,
    sample_rate: int = ASD_SAMPLE_RATE,
    win_s: float = 0.025,
    hop_s: float = 0.010,
    n_ceps: int = 13,
    n_filters: int = 26,
    n_fft: int = 512,
    preemph: float = 0.97,
    ceplifter: int = 22,
    append_energy: bool = True,
) -> np.ndarray:
    """MFCCs [n_frames, n_ceps] (float64) of a mono signal, python_speech_features.mfcc semantics.

    The signal is used at its own scale (no normalisation); frames have no window function.
    """
    x = np.asarray(signal, dtype=np.float64).reshape(-1)
    if x.size == 0:
        return np.zeros((0, n_ceps))
    x = np.concatenate([x[:1], x[1:] - preemph * x[:-1]])
    frames = frame_signal(x, _round_half_up(win_s * sample_rate), _round_half_up(hop_s * sample_rate))
    power = np.abs(np.fft.rfft(frames, n_fft)) ** 2 / n_fft
    eps = np.finfo(np.float64).eps
    energy = power.sum(axis=1)
    energy = np.where(energy == 0, eps, energy)
    bands = power @ mel_filterbank(n_filters, n_fft, sample_rate).T
    bands = np.where(bands == 0, eps, bands)
    ceps = dct(np.log(bands), type=2, axis=1, norm="ortho")[:, :n_ceps]
    if ceplifter > 0:
        ceps = ceps * (1.0 + (ceplifter / 2.0) * np.sin(np.pi * np.arange(n_ceps) / ceplifter))
    if append_energy:
        ceps[:, 0] = np.log(energy)
    return ceps


def asd_mfcc(audio: np.ndarray, sample_rate: int = ASD_SAMPLE_RATE) -> np.ndarray:
    """Light-ASD audio features [ceil(n / 160), 13] float32 at 100 frames/s from float audio in [-1, 1].

    The audio must already be 16 kHz mono (stages.audio.load_audio(path, 16000) gives that).
    Frame k covers 10*k .. 10*k + 25 ms. The audio gets 15 ms of trailing zeros so that
    every 10 ms hop that starts inside it has a frame: T video frames (T * 640 samples)
    then give exactly 4T MFCC frames, where python_speech_features gives 4T - 1 and the
    last video frame would go unscored. All other frames equal python_speech_features'.
    """
    if sample_rate != ASD_SAMPLE_RATE:
        raise ValueError(f"Light-ASD MFCCs need {ASD_SAMPLE_RATE} Hz audio, got {sample_rate} Hz; decode with load_audio(path, 16000)")
    pcm = np.round(np.clip(np.asarray(audio, dtype=np.float64).reshape(-1), -1.0, 32767.0 / INT16_SCALE) * INT16_SCALE)
    if pcm.size == 0:
        return np.zeros((0, 13), dtype=np.float32)
    win, hop = _round_half_up(0.025 * ASD_SAMPLE_RATE), _round_half_up(0.010 * ASD_SAMPLE_RATE)
    pcm = np.concatenate([pcm, np.zeros(win - hop)])
    return mfcc(pcm, ASD_SAMPLE_RATE).astype(np.float32)
