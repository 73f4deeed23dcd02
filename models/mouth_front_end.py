"""Audio -> the classical engine's mouth targets: phonetic where the phones can be trusted,
acoustic otherwise.

The phonetic front end (`models.phones`: PocketSphinx's timed phones; `models.visemes`:
phones -> per-frame shapes with Rhubarb-style coarticulation) knows that p/b/m close the
lips, f/v bring the lower lip to the teeth, o/u/w round and i/e spread; the acoustic one
(`models.mouth_params`) only sees loudness and formant regions. `choose_front_end` decides
per audio whether the phones fit the speech (pauses, speech/silence agreement, a plausible
phone rate, openings that follow the level); when they do not (music, noise, a language
the recogniser does not follow), the acoustic features run, and the track says which ran
and why.

Either way the result is a `MouthTrack` on the 100 Hz grid, so the engine samples both the
same way; a phonetic track also carries the phone per grid step, which the sample planner
uses (a phone boundary is where a new mouth may begin).
"""
from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from models.mouth_params import MouthParamConfig, MouthTrack, mouth_track_from_audio
from models.phones import recognise_phones
from models.visemes import VisemeTrack, choose_front_end, viseme_track

log = logging.getLogger(__name__)


def track_from_visemes(visemes: VisemeTrack, acoustic: MouthTrack) -> MouthTrack:
    """The viseme targets on `acoustic`'s 100 Hz grid (each grid step takes the frame it
    falls in), their openings bounded by the voice's loudness (see below). Width -1..+1 splits
    into MouthShape's spread (width) and rounding; f/v
    (labiodental) is a nearly closed mouth with the lower lip tucked, drawn as a small
    opening."""
    times = acoustic.times_ms
    if visemes.n_frames == 0 or len(times) == 0:
        return replace(acoustic, front_end="acoustic", front_end_reason="no frames to target")
    frame = np.clip(np.floor(times * visemes.fps / 1000.0 + 1e-6).astype(int), 0, visemes.n_frames - 1)
    opening = np.clip(np.asarray(visemes.opening, dtype=np.float64)[frame], 0.0, 1.0)
    width = np.asarray(visemes.width, dtype=np.float64)[frame]
    closed = np.asarray(visemes.closed, dtype=bool)[frame]
    labiodental = np.asarray(visemes.labiodental, dtype=bool)[frame]
    # A phone's shape says how the lips go, the voice how far: a stressed, loud vowel opens
    # wider than the same vowel mumbled. The opening follows the acoustic one (the voice's
    # rhythm, which viewers and Light-ASD read), reaching the phone's shape only where the
    # phone asks for more than a quiet voice gives; closures and f/v come from the phones.
    loudness = np.clip(np.asarray(acoustic.openness, dtype=np.float64), 0.0, 1.0)
    opening = np.maximum(loudness, np.minimum(opening, 2.0 * loudness))
    opening = np.where(closed, 0.0, np.where(labiodental, np.minimum(opening, 0.12), opening))
    phones = np.asarray(visemes.phone, dtype=object)[frame]
    return replace(acoustic, openness=opening, width=np.clip(-width, 0.0, 1.0), rounding=np.clip(width, 0.0, 1.0),
                   closed=closed.astype(np.float64), phones=phones, front_end="phones",
                   front_end_reason=visemes.reason)


def mouth_track(audio: np.ndarray, sample_rate: int, fps: float, config: MouthParamConfig | None = None,
                use_phones: bool = True) -> MouthTrack:
    """The job's mouth targets (see the module docstring) for mono float32 audio in [-1, 1]."""
    acoustic = mouth_track_from_audio(audio, sample_rate, fps, config)
    if not use_phones:
        return replace(acoustic, front_end="acoustic", front_end_reason="phonetic front end turned off")
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    phones = recognise_phones(x, int(sample_rate))
    usable, reason = choose_front_end(phones, x, int(sample_rate))
    if not usable:
        log.info("mouth targets: acoustic (%s)", reason)
        return replace(acoustic, front_end="acoustic", front_end_reason=reason)
    n_frames = int(np.ceil(acoustic.duration_ms * fps / 1000.0)) + 1
    log.info("mouth targets: phones (%s)", reason)
    return track_from_visemes(viseme_track(phones, fps, n_frames, reason=reason), acoustic)

