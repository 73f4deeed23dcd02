"""`python -m benchmarks.interval`: what detecting every k frames costs in accuracy.

The track stage runs the full detector every `detect_interval` frames and follows faces
with the cheap landmark path in between (DeepStream's `interval`). This runs the track
stage alone on one benchmark input for several intervals and compares each with detection
on every frame (k = 1): mean and 95th-percentile distance of the 20 mouth landmarks
(in inter-ocular distances, IOD), frames where a followed face was lost, and the stage's
CPU ms per frame. Prints a table and writes JSON next to the benchmark results.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from benchmarks.inputs import build_input
from benchmarks.run import RESULTS, parse_size
from jobs.registry import shared_registry
from jobs.targets import resolve_targets
from stages.decode import DecodeStage, probe_video
from stages.follow import TrackStage

MOUTH = slice(48, 68)


def follow(video: str, specs: list, interval: int, settings) -> tuple[list[dict], float]:
    """Per frame {target index: 68x2 landmarks or None}, and the track stage's CPU ms/frame."""
    backend = shared_registry(settings).face_backend()
    targets = resolve_targets(video, specs, backend, probe_video(video).duration_ms)
    stage = TrackStage(backend, targets, interval)
    frames, cpu = [], 0.0
    for frame in DecodeStage(video).items():
        start = time.process_time()
        stage.process(frame)
        cpu += time.process_time() - start
        frames.append({i: (o.face.landmarks.copy() if o.face is not None and o.face.landmarks is not None else None)
                       for i, o in frame.notes["targets"].items()})
    return frames, 1000 * cpu / max(1, len(frames))


def compare(reference: list[dict], other: list[dict]) -> dict:
    """Mouth-landmark error of `other` against `reference`, in IOD, and lost-face frames."""
    errors, lost = [], 0
    for ref, got in zip(reference, other):
        for index, ref_pts in ref.items():
            pts = got.get(index)
            if ref_pts is None:
                continue
            if pts is None:
                lost += 1
                continue
            iod = float(np.linalg.norm(ref_pts[42:48].mean(0) - ref_pts[36:42].mean(0)))
            errors.extend(np.linalg.norm(pts[MOUTH] - ref_pts[MOUTH], axis=1) / iod)
    errors = np.asarray(errors) if errors else np.zeros(1)
    return {"mouth_error_mean_iod": round(float(errors.mean()), 4),
            "mouth_error_p95_iod": round(float(np.percentile(errors, 95)), 4), "lost_face_frames": lost}


def main(argv: list[str] | None = None) -> int:
    from benchmarks.scenarios import SETTINGS, _face_specs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=parse_size, default=(1280, 720))
    parser.add_argument("--faces", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--intervals", default="1,3,5,10,15")
    parser.add_argument("--out", default=str(RESULTS / "interval.json"))
    args = parser.parse_args(argv)
    video = str(build_input(*args.size, args.faces, args.seconds, RESULTS / "inputs"))
    specs = _face_specs(video, args.faces, SETTINGS)
    intervals = [int(v) for v in args.intervals.split(",")]
    runs = {k: follow(video, specs, k, SETTINGS) for k in sorted(set([1, *intervals]))}
    reference = runs[1][0]
    rows = [{"interval": k, "track_cpu_ms_per_frame": round(runs[k][1], 2), **compare(reference, runs[k][0])}
            for k in intervals]
    print(f"input: {video}")
    print("| detect every k frames | track CPU ms/frame | mouth error mean (IOD) | p95 (IOD) | lost-face frames |")
    print("|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['interval']} | {row['track_cpu_ms_per_frame']:.1f} | {row['mouth_error_mean_iod']:.4f} | "
              f"{row['mouth_error_p95_iod']:.4f} | {row['lost_face_frames']} |")
    with open(args.out, "w") as handle:
        json.dump({"input": video, "rows": rows}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
