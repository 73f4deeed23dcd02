"""Before/after strips (PNG) of a real lip-sync run over the whole clip, for the README.

    python scripts/frame_strip.py --video V.mp4 --audio A.wav --out strip.png [--frames 12]

Runs the product's own lipsync job (auto mode, the settings from the environment, so the
embedded default engine unless weights are present), then picks `--frames` frames evenly
from the first to the very last one, so the hardest moments are shown with the rest, plus
any `--extra` frame indices. Each column is the face's lower half in the input (top) and
the output (bottom), cropped around the mouth the project's landmarks find in the input,
labelled with the frame index; the columns wrap into rows of `--per-row`.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.lipsync import lipsync  # noqa: E402
from models.faces.default import DefaultFaceBackend  # noqa: E402
from stages.colour import read_rgb_frames as read_frames  # noqa: E402

log = logging.getLogger("frame_strip")


def mouth_crop(image: np.ndarray, landmarks: np.ndarray) -> tuple[slice, slice]:
    """A square around the lower face: from the eyes to below the chin."""
    centre = landmarks[48:68].mean(axis=0)
    half = 0.62 * (landmarks[16, 0] - landmarks[0, 0])
    cy = centre[1] - 0.1 * half
    h, w = image.shape[:2]
    y0, y1 = int(max(0, cy - half)), int(min(h, cy + half))
    x0, x1 = int(max(0, centre[0] - half)), int(min(w, centre[0] + half))
    return slice(y0, y1), slice(x0, x1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", required=True, help="input video")
    ap.add_argument("--audio", required=True, help="the new audio track")
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--frames", type=int, default=12, help="frames spread evenly over the whole clip (default 12)")
    ap.add_argument("--extra", type=int, nargs="*", default=[], help="more frame indices to show")
    ap.add_argument("--height", type=int, default=150, help="height of each tile in pixels (default 150)")
    ap.add_argument("--per-row", type=int, default=8, help="columns per row of the picture (default 8)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "out.mp4"
        lipsync(args.video, args.audio, None, output)
        before, after = read_frames(args.video), read_frames(output)
    count = min(len(before), len(after))
    chosen = sorted(set(np.linspace(0, count - 1, args.frames).round().astype(int)) | {i for i in args.extra if i < count})
    backend = DefaultFaceBackend()
    columns = []
    for index in chosen:
        faces = backend.detect(before[index], with_embedding=False)
        if not faces:
            log.warning("no face in frame %d, skipped", index)
            continue
        box = mouth_crop(before[index], faces[0].landmarks)
        tiles = [cv2.resize(np.ascontiguousarray(img[box]), (args.height, args.height), interpolation=cv2.INTER_AREA)
                 for img in (before[index], after[index])]
        cv2.putText(tiles[0], f"#{index}", (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        columns.append(np.concatenate(tiles, axis=0))
    if not columns:
        log.error("no face found in the chosen frames")
        return 1
    rows = [np.concatenate(columns[k:k + args.per_row], axis=1) for k in range(0, len(columns), args.per_row)]
    width = rows[0].shape[1]
    rows = [np.pad(r, ((0, 6), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    cv2.imwrite(args.out, cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
    log.info("wrote %s (%d frames: %s)", args.out, len(columns), ", ".join(str(i) for i in chosen))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
