"""`python -m benchmarks.phones`: what phone recognition costs, and what it gives against the acoustic features.

For each sample voice (../shared/data/audio, and the sound of the sample videos), at its
own sample rate:
  * cost: `models.phones.recognise_phones` wall and CPU seconds per second of audio (the
    real-time factor; the best of `--repeats` warm runs, plus the first call with the model
    load), resampling included;
  * the front-end choice (`models.visemes.choose_front_end`) and its evidence;
  * both front ends at 25 fps, the phones' `viseme_track` and the acoustic
    `mouth_track_from_audio` the classical engine runs today: how their openings correlate
    with the speech-band level over the voiced frames (the audio envelope), how often the
    lips close inside speech (closures per second), and how their openings correlate with
    each other.
The acoustic opening is computed from the level itself, so its envelope correlation is high
by construction; the phones' is the check that recognised vowels and consonants follow the
voice's rhythm.
`--truth` adds, for the sample videos (people speaking their own audio), both front ends'
openings against the person's real inner-lip opening (68 landmarks, `models.mouth_metrics`):
the correlation at lag 0 and at the best lag within +-3 frames, and how well closed
frames match (balanced accuracy of "closed" against a real opening under 0.05).
Prints markdown tables, then the rows as JSON.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.io import wavfile

from benchmarks.inputs import DATA
from benchmarks.threads import process_cpu_s
from models.mouth_params import mouth_track_from_audio
from models.phones import recognise_phones
from models.visemes import (
    choose_front_end,
    front_end_evidence,
    speech_band_level,
    viseme_track,
)

FPS = 25.0
SOURCES = ("audio/yongen.wav", "audio/sun.wav", "video/d11.mp4", "video/d12.mp4", "video/d20.mp4", "video/d10.mp4")


def load(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples in -1..1 at the file's own rate (a video's sound at 44.1 kHz)."""
    if path.suffix == ".wav":
        rate, x = wavfile.read(path)
        x = x.astype(np.float32) / (32768.0 if x.dtype == np.int16 else 1.0)
        return (x.mean(axis=1) if x.ndim == 2 else x), int(rate)
    from stages.audio import load_audio

    return load_audio(path, 44100), 44100


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1]) if len(a) > 2 and np.std(a) > 1e-9 and np.std(b) > 1e-9 else 0.0


def _runs(mask: np.ndarray) -> int:
    return int(np.sum(np.diff(np.r_[0, mask.astype(int)]) == 1))


def compare(samples: np.ndarray, rate: int, phones: list) -> dict:
    """Both front ends at 25 fps against the speech-band level (see the module docstring)."""
    level = speech_band_level(samples, rate)  # dB per 10 ms
    n = int(len(samples) / rate * FPS)
    per = 1000.0 / FPS / 10.0
    frame_level = np.array([level[int(i * per): max(int(i * per) + 1, int((i + 1) * per))].mean() for i in range(n)])
    lo, hi = np.percentile(frame_level, [10, 95])
    voiced = frame_level > lo + 0.35 * (hi - lo)
    speech_s = voiced.sum() / FPS
    visemes = viseme_track(phones, FPS, n)
    acoustic = mouth_track_from_audio(samples, rate, FPS)
    times = (np.arange(n) + 0.5) * 1000.0 / FPS
    a_open = np.interp(times, acoustic.times_ms, acoustic.openness)
    a_closed = np.interp(times, acoustic.times_ms, acoustic.closed) > 0.5
    return {
        "phones_envelope_corr": round(_corr(visemes.opening[voiced], frame_level[voiced]), 3),
        "acoustic_envelope_corr": round(_corr(a_open[voiced], frame_level[voiced]), 3),
        "phones_vs_acoustic_corr": round(_corr(visemes.opening, a_open), 3),
        "phones_closures_per_s": round(_runs(visemes.closed & voiced) / max(speech_s, 1e-9), 2),
        "acoustic_closures_per_s": round(_runs(a_closed & voiced) / max(speech_s, 1e-9), 2),
        "phones_closed_in_speech": round(float((visemes.closed & voiced).sum() / max(voiced.sum(), 1)), 3),
        "acoustic_closed_in_speech": round(float((a_closed & voiced).sum() / max(voiced.sum(), 1)), 3),
    }


def _lagged_corr(real: np.ndarray, pred: np.ndarray, lag: int) -> float:
    """Correlation of real[i + lag] with pred[i] (lag > 0: the real mouth moves after the prediction)."""
    if lag > 0:
        return _corr(real[lag:], pred[:-lag])
    if lag < 0:
        return _corr(real[:lag], pred[-lag:])
    return _corr(real, pred)


def _balanced(pred: np.ndarray, truth: np.ndarray) -> float:
    if truth.all() or not truth.any():
        return float("nan")
    return 0.5 * float((pred & truth).sum() / truth.sum() + (~pred & ~truth).sum() / (~truth).sum())


def real_openings(path: Path) -> tuple[np.ndarray, float]:
    """The largest face's inner-lip opening per frame (models.mouth_metrics units) and the fps."""
    import av

    from models.faces.default import DefaultFaceBackend
    from models.mouth_metrics import mouth_opening

    backend = DefaultFaceBackend()
    box, out = None, []
    with av.open(str(path)) as container:
        fps = float(container.streams.video[0].average_rate)
        for frame in container.decode(video=0):
            image = frame.to_ndarray(format="rgb24")
            if box is None:
                faces = backend.detect(image, with_embedding=False)
                if not faces:
                    out.append(np.nan)
                    continue
                box = faces[0].bbox
            face = backend.landmarks(image, [box])[0]
            box = face.bbox
            out.append(mouth_opening(face.landmarks))
    return np.array(out), fps


def truth(name: str) -> dict:
    """Both front ends against the real mouth of a sample video on its own audio."""
    path = DATA / name
    real, fps = real_openings(path)
    x, rate = load(path)
    n = len(real)
    visemes = viseme_track(recognise_phones(x, rate), fps, n)
    acoustic = mouth_track_from_audio(x, rate, fps)
    times = (np.arange(n) + 0.5) * 1000.0 / fps
    fronts = {"phones": (visemes.opening, visemes.closed),
              "acoustic": (np.interp(times, acoustic.times_ms, acoustic.openness),
                           np.interp(times, acoustic.times_ms, acoustic.closed) > 0.5)}
    ok = np.isfinite(real)
    row: dict = {"video": name, "frames": n, "real_closed_frames": int((real[ok] < 0.05).sum())}
    for key, (opening, closed) in fronts.items():
        lags = {lag: _lagged_corr(real[ok], opening[ok], lag) for lag in range(-3, 4)}
        best = max(lags, key=lags.get)
        row[f"{key}_corr_lag0"] = round(lags[0], 3)
        row[f"{key}_corr_best"] = round(lags[best], 3)
        row[f"{key}_best_lag"] = best
        row[f"{key}_closed_balanced"] = round(_balanced(closed[ok], real[ok] < 0.05), 3)
    return row


def measure(sources: tuple[str, ...], repeats: int) -> list[dict]:
    rows = []
    for name in sources:
        path = DATA / name
        if not path.exists():
            print(f"skipped, missing: {path}")
            continue
        x, rate = load(path)
        seconds = len(x) / rate
        started, cpu = time.perf_counter(), process_cpu_s()
        phones = recognise_phones(x, rate)
        first_wall = time.perf_counter() - started
        walls, cpus = [], []
        for _ in range(repeats):
            started, cpu = time.perf_counter(), process_cpu_s()
            again = recognise_phones(x, rate)
            walls.append(time.perf_counter() - started)
            cpus.append(process_cpu_s() - cpu)
            assert again == phones, "recognition is not repeatable"
        use, reason = choose_front_end(phones, x, rate)
        ev = front_end_evidence(phones, x, rate)
        speech = [p for p in phones if p.is_speech]
        rows.append({
            "audio": name, "seconds": round(seconds, 2), "rate_hz": rate,
            "rtf_wall": round(min(walls) / seconds, 3), "rtf_cpu": round(min(cpus) / seconds, 3),
            "first_call_s": round(first_wall, 3), "phones": len(speech),
            "phones_per_s": round(ev.phone_rate, 1), "front_end": "phones" if use else "acoustic",
            "reason": reason, **compare(x, rate, phones),
        })
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="warm runs per input (best one counts)")
    parser.add_argument("--quick", action="store_true", help="the two sample voices only")
    parser.add_argument("--truth", action="store_true", help="also compare with the real mouths of the sample videos")
    args = parser.parse_args(argv)
    rows = measure(SOURCES[:2] if args.quick else SOURCES, args.repeats)
    print("| audio | s | RTF wall | RTF CPU | phones/s | front end | opening~envelope phones / acoustic | "
          "closures/s phones / acoustic | phones~acoustic |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['audio']} | {r['seconds']} | {r['rtf_wall']}x | {r['rtf_cpu']}x | {r['phones_per_s']} | "
              f"{r['front_end']} | {r['phones_envelope_corr']} / {r['acoustic_envelope_corr']} | "
              f"{r['phones_closures_per_s']} / {r['acoustic_closures_per_s']} | {r['phones_vs_acoustic_corr']} |")
    if args.truth:
        truths = [truth(name) for name in SOURCES if name.startswith("video/") and (DATA / name).exists()]
        print("\n| video | real closed frames | opening~real mouth, lag 0 (best lag) phones / acoustic | "
              "closed frames balanced accuracy phones / acoustic |")
        print("|---|---|---|---|")
        for r in truths:
            print(f"| {r['video']} | {r['real_closed_frames']}/{r['frames']} | "
                  f"{r['phones_corr_lag0']} ({r['phones_corr_best']} at {r['phones_best_lag']:+d}) / "
                  f"{r['acoustic_corr_lag0']} ({r['acoustic_corr_best']} at {r['acoustic_best_lag']:+d}) | "
                  f"{r['phones_closed_balanced']} / {r['acoustic_closed_balanced']} |")
        rows += truths
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
