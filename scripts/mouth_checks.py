"""Issue 23's measurable checks of the default engine on real clips, in one place.

    python scripts/mouth_checks.py self --video V.mp4 [--video W.mp4]       # self-reenactment
    python scripts/mouth_checks.py sync --video V.mp4 --audio A.wav [--out O.mp4]  # Light-ASD, closures
    python scripts/mouth_checks.py cost --video V.mp4 --audio A.wav               # engine ms/face-frame

`self`: each clip lip-synced to its own audio; mouth-box PSNR (dB) and SSIM against the
original on every third frame (landmarks of the original).
`sync`: the clip lip-synced to AUDIO (or an existing OUT), then with the Light-ASD weights
in MODELS_DIR: the mean P(speaking) of the synced face (logistic of the smoothed score)
over the whole clip and over the frames where AUDIO has speech (a clip longer than its new
speech, or with pauses, is rightly "not speaking" there), the latter for the audio shifted
by -10..+10 frames (the peak must be at 0), and, on frames
whose phone (PocketSphinx on AUDIO) is p/b/m, the share where the lips are closed
(inner-lip gap under 0.05 inter-ocular distances by this project's landmarks).
`cost`: the classical engine's CPU time per face-frame with the face scaled to 720p.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.config import Settings
from jobs.lipsync import lipsync
from jobs.schema import FaceSpec
from models.faces.default import DefaultFaceBackend
from models.mouth_metrics import mouth_opening, psnr, ssim
from stages.audio import load_audio
from stages.colour import read_rgb_frames as read_frames

EVERY = 3
CLOSED = 0.05
"""Inner-lip gap (inter-ocular distances, `models.mouth_metrics.mouth_opening`) under which lips count as closed."""
CLOSURE_PHONES = {"P", "B", "M"}


def video_fps(path) -> float:
    import av

    with av.open(str(path)) as container:
        return float(container.streams.video[0].average_rate or 25)


def sync_whole_clip(video, audio, out) -> dict:
    frames = read_frames(video)
    face = DefaultFaceBackend().detect(frames[0], with_embedding=False)[0]
    spec = FaceSpec("person", face.xywh, 0.0, 1e9)
    return lipsync(video, audio, [spec], out, settings=Settings.from_env())


def mouth_box(landmarks: np.ndarray, margin: int = 6) -> tuple[slice, slice]:
    lo = np.floor(landmarks[48:68].min(axis=0)).astype(int) - margin
    hi = np.ceil(landmarks[48:68].max(axis=0)).astype(int) + margin
    return slice(max(lo[1], 0), hi[1]), slice(max(lo[0], 0), hi[0])


def self_reenactment(video) -> dict:
    backend = DefaultFaceBackend()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "self.mp4"
        sync_whole_clip(video, video, out)
        source, output = read_frames(video), read_frames(out)
    p, s = [], []
    for i in range(0, min(len(source), len(output)), EVERY):
        faces = backend.detect(source[i], with_embedding=False)
        if not faces:
            continue
        box = mouth_box(faces[0].landmarks)
        p.append(psnr(source[i][box], output[i][box]))
        s.append(ssim(source[i][box], output[i][box]))
    return {"video": str(video), "frames": len(p), "psnr_db": round(float(np.mean(p)), 2),
            "ssim": round(float(np.mean(s)), 3)}


def speaking_sweep(frames: list[np.ndarray], boxes: np.ndarray, audio16k: np.ndarray, max_shift: int = 10) -> dict:
    from jobs.registry import shared_registry
    from models.asd_crop import crop_track
    from models.light_asd import MFCC_PER_FRAME, smooth_scores
    from models.mfcc import asd_mfcc

    model = shared_registry(Settings.from_env()).active_speaker()
    if model is None:
        return {"error": "Light-ASD weights not found in MODELS_DIR/light-asd"}
    crops = crop_track(frames, boxes)
    n = len(crops)
    out = {}
    for shift in range(-max_shift, max_shift + 1):
        samples = 640 * shift  # one 25 fps frame of 16 kHz audio
        shifted = np.roll(audio16k, samples)
        if samples > 0:
            shifted[:samples] = 0
        elif samples < 0:
            shifted[samples:] = 0
        mfcc = asd_mfcc(shifted)
        if len(mfcc) < MFCC_PER_FRAME * n:
            mfcc = np.pad(mfcc, ((0, MFCC_PER_FRAME * n - len(mfcc)), (0, 0)))
        scores = smooth_scores(model.score_track(crops, mfcc[:MFCC_PER_FRAME * n]))
        out[shift] = 1 / (1 + np.exp(-scores))
    return out


def sync_checks(video, audio, out=None) -> dict:
    from models.phones import recognise_phones

    with tempfile.TemporaryDirectory() as tmp:
        result = None
        if out is None:
            out = Path(tmp) / "sync.mp4"
            result = sync_whole_clip(video, audio, out)
        frames = read_frames(out)
        fps = video_fps(out)
    backend = DefaultFaceBackend()
    faces = [backend.detect(f, with_embedding=False) for f in frames]
    audio16k = load_audio(audio, 16000)
    phones = recognise_phones(audio16k, 16000)

    def label_at(t_ms: float) -> str:
        return next((p.label for p in phones if p.start_ms <= t_ms < p.end_ms), "SIL")

    # Light-ASD reads 25 fps tracks: the frame shown at each 40 ms tick (a 30 fps clip fed
    # frame by frame would drift a fifth of its length against the audio).
    ticks = np.arange(int(len(frames) / fps * 25.0))
    shown = np.minimum(np.floor((ticks + 0.5) * fps / 25.0).astype(int), len(frames) - 1)
    sweep = {}
    if all(faces[i] for i in shown):
        boxes = np.array([faces[i][0].bbox for i in shown])
        sweep = speaking_sweep([frames[i] for i in shown], boxes, audio16k)
    speech = np.array([label_at((k + 0.5) * 40.0) != "SIL" for k in ticks], dtype=bool)
    closures, closed = 0, 0
    for i, found in enumerate(faces):
        if found and label_at((i + 0.5) * 1000.0 / fps) in CLOSURE_PHONES:
            closures += 1
            closed += mouth_opening(found[0].landmarks) < CLOSED
    report = {"video": str(video), "audio": str(audio), "frames": len(frames),
              "closure_frames": closures, "closed_share": round(closed / max(closures, 1), 3)}
    if "error" in sweep:
        report["light_asd"] = sweep["error"]
    elif sweep:
        means = {k: float(np.mean(v)) for k, v in sweep.items()}
        speech_means = {k: float(np.mean(v[speech])) if speech.any() else float("nan") for k, v in sweep.items()}
        best = max(speech_means, key=speech_means.get)
        report.update(p_speaking=round(means[0], 3), p_speaking_in_speech=round(speech_means[0], 3),
                      speech_frames=int(speech.sum()), sweep_peak_frames=best,
                      sweep={k: round(v, 3) for k, v in speech_means.items()})
    if result is not None:
        report["mouth_targets"] = result.get("mouth_targets")
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("self", help="self-reenactment PSNR/SSIM in the mouth box")
    s.add_argument("--video", action="append", required=True)
    y = sub.add_parser("sync", help="Light-ASD speaking score, offset sweep, closures on p/b/m")
    y.add_argument("--video", required=True)
    y.add_argument("--audio", required=True)
    y.add_argument("--out", default=None, help="an existing lip-synced output to measure instead of rendering")
    c = sub.add_parser("cost", help="the engine's CPU ms per face-frame at 720p")
    c.add_argument("--video", required=True)
    c.add_argument("--audio", required=True)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    if args.command == "self":
        for video in args.video:
            print(json.dumps(self_reenactment(video)))
    elif args.command == "cost":
        print(json.dumps(engine_cost(args.video, args.audio)))
    else:
        print(json.dumps(sync_checks(args.video, args.audio, args.out)))
    return 0



def engine_cost(video, audio, frames_timed: int = 100) -> dict:
    """The classical engine's own cost per face-frame at 720p (ms): the clip's frames scaled
    to 720 px high on a 1280x720 canvas, with a bank of the clip's mouths and the audio's
    planned targets; landmarks are found before the clock starts."""
    import time

    import cv2

    from models.classical_lipsync import ClassicalLipSync
    from models.engine import MouthRequest
    from models.mouth_bank import MouthBank, sample_mouth
    from stream.native import one_opencv_thread

    backend = DefaultFaceBackend()
    canvas = []
    for image in read_frames(video)[:frames_timed]:
        big = cv2.resize(image, (720, 720), interpolation=cv2.INTER_LINEAR)
        frame = np.zeros((720, 1280, 3), np.uint8)
        frame[:, 280:1000] = big
        canvas.append(frame)
    faces = [backend.detect(f, with_embedding=False)[0] for f in canvas]
    bank = MouthBank()
    for k in range(0, len(canvas), 3):
        sample = sample_mouth(canvas[k], faces[k].landmarks, faces[k].pose, k * 40.0)
        if sample is not None:
            bank.add(sample)
    engine = ClassicalLipSync()
    features = engine.prepare_audio(load_audio(audio, 16000), 16000, 25.0)
    with one_opencv_thread():  # as in the pipeline (`stream.native`): no spinning pool counted
        start = time.process_time()
        for k, (frame, face) in enumerate(zip(canvas, faces)):
            engine.render([MouthRequest(k, k * 40.0, frame, face, "cost", 1.0, bank)], features)
        cpu = time.process_time() - start
    return {"frames": len(canvas), "face_px": int(faces[0].width), "bank_samples": len(bank.samples),
            "engine_cpu_ms_per_face_frame": round(1000 * cpu / len(canvas), 2)}


if __name__ == "__main__":
    raise SystemExit(main())
