"""Render a before/after frame strip (PNG) of the classical lip-sync engine, for the README.

    python scripts/frame_strip.py --video V.mp4 --audio A.wav --out strip.png [--frames 6]

The largest face of each chosen frame is found with dlib (68 landmarks); the engine
renders it driven by the audio at the frame's time. Top row: the input frames; bottom
row: the lip-synced frames, labelled with the time and the target openness.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import av
import cv2
import dlib
import face_recognition_models
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.classical_lipsync import ClassicalLipSync  # noqa: E402
from models.engine import MouthPatch, MouthRequest  # noqa: E402
from stages.audio import load_audio  # noqa: E402
from stream.frame import Face  # noqa: E402

log = logging.getLogger("frame_strip")


def blend(image: np.ndarray, patch: MouthPatch) -> np.ndarray:
    """out = alpha*pixels + (1-alpha)*frame inside the patch box."""
    out = image.copy()
    h, w = patch.alpha.shape
    region = out[patch.y : patch.y + h, patch.x : patch.x + w].astype(np.float32)
    a = patch.alpha[..., None]
    out[patch.y : patch.y + h, patch.x : patch.x + w] = np.clip(a * patch.pixels + (1 - a) * region + 0.5, 0, 255).astype(np.uint8)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", required=True)
    ap.add_argument("--audio", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--frames", type=int, default=6, help="number of frames in the strip")
    ap.add_argument("--start-ms", type=float, default=0.0, help="time of the first frame")
    ap.add_argument("--step-ms", type=float, default=200.0, help="time between strip frames")
    ap.add_argument("--height", type=int, default=256, help="height of each tile in pixels")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
    engine = ClassicalLipSync()
    with av.open(args.video) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 25)
        audio = load_audio(args.audio, 16000)
        track = engine.prepare_audio(audio, 16000, fps)
        wanted = [args.start_ms + k * args.step_ms for k in range(args.frames)]
        before, after = [], []
        for index, frame in enumerate(container.decode(stream)):
            t_ms = float(frame.time * 1000) if frame.time is not None else index * 1000 / fps
            if not wanted or t_ms + 500 / fps < wanted[0]:
                if not wanted:
                    break
                continue
            wanted.pop(0)
            img = frame.to_ndarray(format="rgb24")
            found = detector(img, 1)
            if not found:
                log.warning("no face at %.0f ms, skipped", t_ms)
                continue
            rect = max(found, key=lambda r: r.area())
            lm = np.array([[p.x, p.y] for p in predictor(img, rect).parts()], dtype=np.float32)
            face = Face(bbox=[rect.left(), rect.top(), rect.right(), rect.bottom()], score=1.0, kps=np.zeros((5, 2)), landmarks=lm)
            shape = track.at(t_ms)
            (patch,) = engine.render([MouthRequest(index, t_ms, img, face, track_key="strip")], track)
            out = blend(img, patch)
            cx, cy = lm[:, 0].mean(), lm[:, 1].mean()
            half = 0.75 * (lm[:, 0].max() - lm[:, 0].min())
            x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
            x1, y1 = int(min(img.shape[1], cx + half)), int(min(img.shape[0], cy + half))
            for row, im in ((before, img), (after, out)):
                tile = cv2.resize(np.ascontiguousarray(im[y0:y1, x0:x1]), (args.height, args.height), interpolation=cv2.INTER_AREA)
                row.append(tile)
            label = f"{t_ms / 1000:.2f}s open {shape.openness:.2f}"
            cv2.putText(after[-1], label, (6, args.height - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    if not before:
        log.error("no face found in the chosen frames")
        return 1
    strip = np.concatenate([np.concatenate(before, axis=1), np.concatenate(after, axis=1)], axis=0)
    cv2.imwrite(args.out, cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    log.info("wrote %s (%d frames)", args.out, len(before))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
