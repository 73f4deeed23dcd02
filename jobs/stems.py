"""One voice per character: per-face dialogue stems and expressiveness.

A dubbing delivery has a dialogue stem per character plus the final mix. A face with a stem
(`faces[i].audio_url`, placed at `audio_offset_ms` on the video's timeline) moves its mouth
to that stem alone; the final mix (`audio_url`) is what the output carries, or, when it is
left out, the stems mixed here. In auto mode a person with a stem is synced only while they
are present and their stem has speech (`speech_ranges`).

Expressiveness (0-1, 0.5 the engine's own amount) scales how wide the mouth moves; an engine
honours it when it has `with_expressiveness(features, amount)` (the classical engine does;
MuseTalk's whisper features cannot be scaled so, and the response says so).
"""
from __future__ import annotations

import os
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import av
import numpy as np

from jobs.schema import FaceSpec, Voice
from stages.audio import load_audio
from stages.decode import open_media
from stream.errors import InputError, MediaError

DEFAULT_EXPRESSIVENESS = 0.5
"""The engine's own amount of mouth motion."""
SPEECH_FRAME_MS = 20.0
"""Analysis window of `speech_ranges` (ms)."""
SPEECH_ABOVE_FLOOR_DB = 12.0
"""A window is speech when this much louder than the stem's noise floor (its 10th percentile)..."""
SPEECH_BELOW_PEAK_DB = 35.0
"""...and no more than this below the stem's loud windows (its 99th percentile)..."""
SPEECH_MIN_DBFS = -55.0
"""...and above this absolute level (a silent stem has no speech)."""
SPEECH_BRIDGE_MS = 300.0
"""Pauses shorter than this inside a line are bridged (the mouth rests, the face stays synced)."""
SPEECH_PAD_MS = 120.0
"""Each speech range is widened by this on both sides (the mouth opens before the sound)."""


def place_stem(samples: np.ndarray, rate: int, offset_ms: float, length: int | None = None) -> np.ndarray:
    """A stem's samples on the video's timeline: `offset_ms` > 0 delays it (silence before),
    < 0 cuts its start. `length` (samples) cuts the result there, before any silence is made,
    so a huge offset never allocates more than `length` samples."""
    shift = int(round(offset_ms / 1000 * rate))
    if shift < 0:
        placed = samples[min(-shift, len(samples)):]
        return placed if length is None else placed[:length]
    if length is not None:
        shift = min(shift, length)
        samples = samples[:length - shift]
    out = np.zeros(shift + len(samples), np.float32)
    out[shift:] = samples
    return out


def load_stem(path: str | os.PathLike, rate: int, offset_ms: float = 0.0, label: str | None = None,
              length: int | None = None) -> np.ndarray:
    """Decode a stem (mono float32 at `rate`) placed at `offset_ms` (cut at `length` samples);
    MediaError names `label`. InputError when the offset cuts the whole stem away."""
    try:
        samples = load_audio(path, rate)
    except MediaError as exc:
        raise MediaError(label or exc.path, exc.problem.replace("send a file", f"{label or 'a stem'} must be a file")) \
            from exc
    if len(samples) == 0:
        raise InputError(f"{label or path} has no samples; send an audio file with sound")
    stem_ms = len(samples) / rate * 1000
    if offset_ms <= -stem_ms:
        where = f"'{label.removesuffix('audio_url')}audio_offset_ms'" if label and label.endswith(".audio_url") \
            else f"the audio_offset_ms of {label or 'a stem'}"
        raise InputError(f"{where} ({offset_ms:g} ms) cuts the whole stem away (it is {stem_ms / 1000:.2f} s "
                         f"long); give an offset above {-stem_ms:.0f} ms")
    return place_stem(samples, rate, offset_ms, length)


def stem_entries(faces: Sequence[FaceSpec] | None, voices: dict[str, Voice] | None) -> list[tuple[str, Voice]]:
    """Each faces[] entry's voice with its field prefix ("faces[1]."), in the order given."""
    given = [f.voice for f in faces] if faces is not None else list((voices or {}).values())
    return [(f"faces[{i}].", voice) for i, voice in enumerate(given)]


def check_offsets(faces: Sequence[FaceSpec] | None, voices: dict[str, Voice] | None, end_ms: float,
                  what: str = "the video") -> None:
    """Refuse (InputError, 422) a stem placed at or after `end_ms` (its offset would start it
    after `what` ends): it could drive no mouth, and its silence would be made for nothing.
    Checked before any stem is decoded."""
    for prefix, voice in stem_entries(faces, voices):
        if voice.audio_url is not None and voice.offset_ms >= end_ms:
            raise InputError(f"field '{prefix}audio_offset_ms' ({voice.offset_ms:g} ms) starts the stem after "
                             f"{what} ends ({end_ms / 1000:.2f} s); give an offset below {end_ms:.0f} ms")


def native_rate(path: str | os.PathLike) -> int:
    """The sample rate (Hz) of a file's first audio stream."""
    with open_media(path) as container:
        if not container.streams.audio:
            raise MediaError(str(path), "has no audio stream; send a file with an audio track")
        return int(container.streams.audio[0].rate)


def stems_of(faces: Sequence[FaceSpec] | None, voices: dict[str, Voice] | None) -> list[tuple[str, Voice]]:
    """Each distinct stem (path and offset) of a request with the label of the first faces[]
    entry that gives it ("faces[1].audio_url"), in the order first given."""
    seen: dict[tuple, tuple[str, Voice]] = {}
    for prefix, voice in stem_entries(faces, voices):
        if voice.audio_url is not None:
            seen.setdefault((voice.audio_url, voice.offset_ms), (f"{prefix}audio_url", voice))
    return list(seen.values())


def mix_stems(stems: Sequence[Voice | tuple[str, Voice]], out: str | os.PathLike, trim_ms: float | None = None,
              max_ms: float | None = None) -> tuple[Path, list[str]]:
    """Write the stems summed (each at its offset) as a float WAV at their highest sample rate:
    the output track when a request gives stems but no `audio_url`. A sum that would clip is
    scaled down as a whole (and a warning says by how much). `trim_ms` cuts the mix there (the
    output is no longer: each stem is cut before its silence is made); a mix longer than
    `max_ms` (the longest output allowed) is refused with InputError. Returns the file and warnings."""
    labelled = [item if isinstance(item, tuple) else (None, item) for item in stems]
    if not labelled:
        raise InputError("no audio: give audio_url, or an audio_url for every entry of faces[]")
    rate = max(native_rate(v.audio_url) for _, v in labelled)
    length = None if trim_ms is None else round(trim_ms / 1000 * rate)
    placed = [load_stem(v.audio_url, rate, v.offset_ms, label, length) for label, v in labelled]
    mix_ms = max(len(p) for p in placed) / rate * 1000
    if max_ms is not None and mix_ms > max_ms + 1:
        raise InputError(f"the stems mixed, each at its audio_offset_ms, run {mix_ms / 1000:.2f} s, and the output "
                         f"(extended to the audio by sync_mode) may be at most {max_ms / 1000:g} s "
                         "(LIPSYNC_MAX_DURATION_S); use smaller offsets, shorter stems or sync_mode=silence")
    mix = np.zeros(max(len(p) for p in placed), np.float32)
    for samples in placed:
        mix[:len(samples)] += samples
    warnings = [f"no audio_url: the output track is the {len(labelled)} stem(s) mixed, each at its audio_offset_ms"]
    peak = float(np.max(np.abs(mix))) if len(mix) else 0.0
    if peak > 1.0:
        mix *= np.float32(0.999 / peak)
        warnings.append(f"the stems mixed peak at {20 * np.log10(peak):+.1f} dBFS: the mix was scaled down by "
                        f"{20 * np.log10(peak / 0.999):.1f} dB so that it does not clip")
    write_wav(out, mix, rate)
    return Path(out), warnings


def write_wav(path: str | os.PathLike, samples: np.ndarray, rate: int) -> None:
    """Mono float32 samples as a 32-bit float WAV (lossless, so the mix is muxed as summed)."""
    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_f32le", rate=rate, layout="mono")
        step = 4096
        for start in range(0, len(samples), step):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[None, start:start + step]),
                                               format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def speech_ranges(samples: np.ndarray, rate: int) -> list[tuple[float, float]]:
    """Where a stem has speech: (start_ms, end_ms) ranges on the samples' timeline.

    Energy in SPEECH_FRAME_MS windows against the stem's own floor and peak (a stem is one
    voice over silence or room tone), pauses under SPEECH_BRIDGE_MS bridged, each range padded
    by SPEECH_PAD_MS."""
    hop = max(1, int(rate * SPEECH_FRAME_MS / 1000))
    count = len(samples) // hop
    if count == 0:
        return []
    windows = samples[:count * hop].reshape(count, hop).astype(np.float64)
    level = 10 * np.log10(np.mean(windows ** 2, axis=1) + 1e-12)
    floor, loud = np.percentile(level, 10), np.percentile(level, 99)
    threshold = max(floor + SPEECH_ABOVE_FLOOR_DB, loud - SPEECH_BELOW_PEAK_DB, SPEECH_MIN_DBFS)
    active = level > threshold
    ranges: list[list[float]] = []
    for i in np.flatnonzero(active):
        start, end = i * SPEECH_FRAME_MS, (i + 1) * SPEECH_FRAME_MS
        if ranges and start - ranges[-1][1] < SPEECH_BRIDGE_MS:
            ranges[-1][1] = end
        else:
            ranges.append([start, end])
    total_ms = count * SPEECH_FRAME_MS
    return [(max(0.0, s - SPEECH_PAD_MS), min(total_ms, e + SPEECH_PAD_MS)) for s, e in ranges]


def with_voices(faces: Sequence[FaceSpec], voices: dict[str, Voice] | None) -> list[FaceSpec]:
    """Auto mode's faces, each given its person's stem and expressiveness (faces[] by character_id)."""
    if not voices:
        return list(faces)
    return [replace(f, voice=voices[f.character_id]) if f.character_id in voices else f for f in faces]


def stem_features(engine: Any, targets: Sequence, voices: Sequence[Voice], main_features: Any, fit: Any, fps: float,
                  expressiveness: float = DEFAULT_EXPRESSIVENESS,
                  rate: int = 16000) -> tuple[dict[str, Any], bool, list[str]]:
    """The audio features each target renders with (voices[i] is targets[i]'s): its own stem's (analysed once per stem,
    fitted to the output like the job's audio by `fit(samples) -> samples`), else the job's,
    scaled by its expressiveness where the engine can (`with_expressiveness`).

    Returns (features by target key, whether expressiveness was applied, warnings)."""
    scale = getattr(engine, "with_expressiveness", None)
    by_stem: dict[tuple, Any] = {}
    scaled: dict[tuple, Any] = {}
    features: dict[str, Any] = {}
    asked = set()
    for target, voice in zip(targets, voices, strict=True):
        amount = voice.expressiveness if voice.expressiveness is not None else expressiveness
        stem = (voice.audio_url, voice.offset_ms) if voice.audio_url is not None else None
        if stem is not None and stem not in by_stem:
            label = f"faces[{target.index}].audio_url"
            by_stem[stem] = engine.prepare_audio(fit(load_stem(voice.audio_url, rate, voice.offset_ms, label)),
                                                 rate, fps)
        base = by_stem[stem] if stem is not None else main_features
        if scale is not None and abs(amount - DEFAULT_EXPRESSIVENESS) > 1e-9:
            if (stem, amount) not in scaled:
                scaled[(stem, amount)] = scale(base, amount)
            base = scaled[(stem, amount)]
        elif abs(amount - DEFAULT_EXPRESSIVENESS) > 1e-9:
            asked.add(amount)
        features[target.key] = base
    warnings = []
    if asked:
        warnings.append(f"expressiveness {', '.join(f'{a:g}' for a in sorted(asked))} was not applied: the "
                        f"{engine.name} engine cannot scale its mouth motion (it renders at its own amount, 0.5)")
    return features, scale is not None, warnings


def stem_inputs(faces: Sequence[FaceSpec] | None, voices: dict[str, Voice]) -> list[tuple[str, str, str]]:
    """A request's stems to fetch as (url, "audio", label), each URL once, labelled by the first
    faces[] entry that gives it ("faces[1].audio_url"), so a bad stem's 422 names it."""
    given = [f.voice for f in faces] if faces is not None else list(voices.values())
    labels: dict[str, str] = {}
    for i, voice in enumerate(given):
        if voice.audio_url is not None:
            labels.setdefault(voice.audio_url, f"faces[{i}].audio_url")
    return [(url, "audio", label) for url, label in labels.items()]


def fetched_stems(faces: Sequence[FaceSpec] | None, voices: dict[str, Voice],
                  paths: dict[str, Path]) -> tuple[list[FaceSpec] | None, dict[str, Voice]]:
    """The faces and voices with each stem URL replaced by its fetched file (`paths` by label)."""
    local = {url: str(paths[label]) for url, _, label in stem_inputs(faces, voices)}

    def fetched(voice: Voice) -> Voice:
        return voice if voice.audio_url is None else replace(voice, audio_url=local[voice.audio_url])

    return ([replace(f, voice=fetched(f.voice)) for f in faces] if faces is not None else None,
            {cid: fetched(v) for cid, v in voices.items()})
