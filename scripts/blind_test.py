"""A blind test of lip-sync output: can a viewer tell the edited frame from the real one?

    python scripts/blind_test.py make --source IN.mp4 --output OUT.mp4 --dir DIR [--pairs 16] [--seed 0]
    python scripts/blind_test.py score --dir DIR --answers ANSWERS.txt

`make` picks `--pairs` frames spread over the whole edited range (every frame where the
output differs from the source around the mouth, first to last; one drawn from each equal
stretch by `--seed`: give two outputs of one source different seeds, or a judge who sees
both tests finds the real frames as the ones they share), crops the same lower
face from the source and the output, and writes each pair as DIR/pair_NN.png with the two
crops side by side in a shuffled order (labelled A and B). The key (which side is the
edited one) goes to DIR/key.json, a separate file: look at the pairs first, write one
line per pair, "NN A" or "NN B" for the side you think is edited, and only then `score`.
`score` prints how many pairs were picked right; chance is 50%, and issue 23's bar for a
held-out viewer is at most 60%.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.faces.default import DefaultFaceBackend
from stages.colour import read_rgb_frames as read_frames

TILE = 256
"""Side of each crop in the pair pictures (pixels)."""
CHANGED_LEVELS = 1.5
"""Mean absolute difference (0-255) around the mouth above which a frame counts as edited."""


def lower_face_box(landmarks: np.ndarray, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """A square from just under the eyes to below the chin, centred on the mouth."""
    centre = landmarks[48:68].mean(axis=0)
    half = 0.55 * (landmarks[16, 0] - landmarks[0, 0])
    cy = centre[1] + 0.1 * half
    h, w = shape[:2]
    y0, y1 = int(max(0, cy - half)), int(min(h, cy + half))
    x0, x1 = int(max(0, centre[0] - half)), int(min(w, centre[0] + half))
    return slice(y0, y1), slice(x0, x1)


def edited_frames(source: list[np.ndarray], output: list[np.ndarray], backend) -> dict[int, tuple[slice, slice]]:
    """Per frame whose mouth region the output changed: the crop box (from the source's face)."""
    boxes = {}
    for index in range(min(len(source), len(output))):
        faces = backend.detect(source[index], with_embedding=False)
        for face in faces:
            box = lower_face_box(face.landmarks, source[index].shape)
            diff = np.abs(source[index][box].astype(np.float32) - output[index][box].astype(np.float32)).mean()
            if diff >= CHANGED_LEVELS:
                boxes[index] = box
                break
    return boxes


def spread_picks(edited: list[int], pairs: int, rng: np.random.Generator) -> list[int]:
    """One frame drawn from each of `pairs` equal stretches of `edited` (frame indices,
    sorted), so the picks cover the whole range. The draw follows the seed: tests of two
    outputs of one source with different seeds show different moments, and a judge who sees
    both cannot find the real frame as the one the two tests share."""
    bounds = np.linspace(0, len(edited), min(pairs, len(edited)) + 1).round().astype(int)
    return [edited[int(rng.integers(lo, hi))] for lo, hi in zip(bounds[:-1], bounds[1:])]


def make(args: argparse.Namespace) -> int:
    source, output = read_frames(args.source), read_frames(args.output)
    backend = DefaultFaceBackend()
    boxes = edited_frames(source, output, backend)
    if not boxes:
        print("no edited frame found: is OUTPUT a lip-sync of SOURCE?", file=sys.stderr)
        return 2
    edited = sorted(boxes)
    rng = np.random.default_rng(args.seed)
    picks = spread_picks(edited, args.pairs, rng)
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    key = {}
    order = rng.permutation(len(picks))
    for number, k in enumerate(order):
        index = picks[k]
        box = boxes[index]
        crops = [cv2.resize(np.ascontiguousarray(img[index][box]), (TILE, TILE), interpolation=cv2.INTER_AREA)
                 for img in (source, output)]
        edited_side = "A" if rng.random() < 0.5 else "B"
        left, right = (crops[1], crops[0]) if edited_side == "A" else (crops[0], crops[1])
        for tile, label in ((left, "A"), (right, "B")):
            cv2.putText(tile, label, (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 0), 2, cv2.LINE_AA)
        picture = np.concatenate([left, np.full((TILE, 8, 3), 255, np.uint8), right], axis=1)
        name = f"{number:02d}"
        cv2.imwrite(str(folder / f"pair_{name}.png"), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        key[name] = {"edited": edited_side, "frame": int(index)}
    (folder / "key.json").write_text(json.dumps(key, indent=1))
    print(f"wrote {len(picks)} pairs to {folder} (frames {picks[0]}-{picks[-1]} of {len(edited)} edited); "
          f"the key is {folder / 'key.json'}: answer before reading it")
    return 0


def score(args: argparse.Namespace) -> int:
    key = json.loads((Path(args.dir) / "key.json").read_text())
    answers = {}
    for line in Path(args.answers).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            answers[parts[0].zfill(2)] = parts[1].upper()
    missing = sorted(set(key) - set(answers))
    if missing:
        print(f"no answer for pair(s) {', '.join(missing)}", file=sys.stderr)
        return 2
    right = [name for name in key if answers[name] == key[name]["edited"]]
    print(f"picked the edited frame in {len(right)} of {len(key)} pairs ({100 * len(right) / len(key):.0f}%; "
          "chance 50%)")
    for name in sorted(key):
        mark = "right" if name in right else "wrong"
        print(f"  pair {name}: frame {key[name]['frame']}, edited {key[name]['edited']}, answered {answers[name]} ({mark})")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    mk = sub.add_parser("make", help="write shuffled source/output pairs and a separate key")
    mk.add_argument("--source", required=True, help="the input video")
    mk.add_argument("--output", required=True, help="the lip-synced video")
    mk.add_argument("--dir", required=True, help="folder for the pairs and key.json")
    mk.add_argument("--pairs", type=int, default=16, help="pairs spread over the whole edited range (default 16)")
    mk.add_argument("--seed", type=int, default=0,
                    help="draws the frames and the sides; give each output of one source its own (default 0)")
    sc = sub.add_parser("score", help="score answers against the key")
    sc.add_argument("--dir", required=True, help="the folder `make` wrote")
    sc.add_argument("--answers", required=True, help='one line per pair: "NN A" or "NN B" (the side you think is edited)')
    args = ap.parse_args(argv)
    return make(args) if args.command == "make" else score(args)


if __name__ == "__main__":
    raise SystemExit(main())
