"""`python -m benchmarks.shots`: how well and how cheaply shot boundaries are found.

Builds a seeded set of edited videos from ../shared/data (the tests' builder,
`tests.shot_media`): 640x360 shots of one or two people at random places and sizes on one
set, joined by hard cuts between different layouts, jump cuts (same people, same places,
later in their clips) and fades through black; plus the uncut sample clips (steady, shaky
hand-held, portrait). Runs `stages.shots.ShotDetector` and, on the same decoded frames,
PySceneDetect's ContentDetector and AdaptiveDetector with their defaults (full frames, BGR),
and prints misses and false alarms per kind of boundary and the CPU cost per frame (ms).
A found boundary within 2 frames of a true one is a hit.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from benchmarks.inputs import DATA
from stages.shots import ShotDetector
from tests.media import clip_frames
from tests.shot_media import Person, Shot, edited_video

FPS = 25
CLIPS = ("d10", "d11", "d12", "d20")
TOLERANCE = 2


def _layout(rng: np.random.Generator, clips: dict, width: int, height: int) -> list[Person]:
    size = int(rng.choice([144, 200, 260]))
    names = rng.choice(CLIPS, size=int(rng.integers(1, 3)), replace=False)
    people = []
    for k, name in enumerate(names):
        lo, hi = (0, width - size) if len(names) == 1 else (k * width // 2, (k + 1) * width // 2 - size)
        people.append(Person(str(name), clips[(str(name), size)], int(rng.integers(lo, max(lo + 1, hi))),
                             int(rng.integers(0, height - size)), int(rng.integers(0, 100))))
    return people


def build_set(folder: Path, videos: int, seed: int = 15) -> list[tuple[Path, list[int], list[str]]]:
    """(path, true boundary frames, kind of each: cut | jump | fade) per edited video."""
    rng = np.random.default_rng(seed)
    clips = {(name, size): clip_frames(DATA / "video" / f"{name}.mp4", size)
             for name in CLIPS for size in (144, 200, 260)}
    built = []
    for number in range(videos):
        shots, kinds = [], []
        for index in range(int(rng.integers(4, 7))):
            kind = str(rng.choice(["cut", "jump", "fade"], p=[0.6, 0.2, 0.2])) if index else "cut"
            if kind == "jump" and shots:
                people = [Person(p.name, p.frames, p.x, p.y, p.offset + 60) for p in shots[-1].people]
            else:
                people = _layout(rng, clips, 640, 360)
            if index:
                kinds.append(kind)
                if kind == "fade":
                    shots[-1].fade_out_frames = 8
            shots.append(Shot(float(rng.uniform(0.8, 2.0)), people))
        path = folder / f"edited_{number}.mp4"
        built.append((path, edited_video(path, shots, 640, 360, FPS), kinds))
    return built


def _ours(path: Path) -> tuple[list[int], float, int]:
    detector = ShotDetector()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        entries = ((i, f.pts, stream.time_base, f) for i, f in enumerate(container.decode(stream)))
        for _ in detector.label(entries):
            pass
        rate = float(stream.average_rate)
    return [int(round(ms / 1000 * rate)) for ms in detector.boundaries_ms], detector.busy_s, detector.frames


def _pyscenedetect(path: Path, make) -> tuple[list[int], float, int]:
    from scenedetect import FrameTimecode

    detector, found, busy, frames = make(), [], 0.0, 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate)
        for index, frame in enumerate(container.decode(stream)):
            image = frame.to_ndarray(format="bgr24")
            started = time.thread_time()
            found += [int(tc.frame_num) for tc in detector.process_frame(FrameTimecode(index, fps=rate), image)]
            busy += time.thread_time() - started
            frames += 1
    return found, busy, frames


def _score(found: list[int], truth: list[int], kinds: list[str]) -> dict:
    hits = {k: 0 for k in ("cut", "jump", "fade")}
    totals = {k: kinds.count(k) for k in hits}
    used: set[int] = set()
    for frame, kind in zip(truth, kinds):
        match = next((f for f in found if abs(f - frame) <= TOLERANCE and f not in used), None)
        if match is not None:
            used.add(match)
            hits[kind] += 1
    return {"hits": hits, "totals": totals, "false_alarms": len([f for f in found if f not in used])}


def measure(videos: int) -> dict:
    from scenedetect.detectors import AdaptiveDetector, ContentDetector

    detectors = {"ours": _ours,
                 "content": lambda p: _pyscenedetect(p, ContentDetector),
                 "adaptive": lambda p: _pyscenedetect(p, AdaptiveDetector)}
    report = {name: {"hits": {"cut": 0, "jump": 0, "fade": 0}, "totals": {"cut": 0, "jump": 0, "fade": 0},
                     "false_alarms_edited": 0, "false_alarms_uncut": 0, "busy_s": 0.0, "frames": 0}
              for name in detectors}
    uncut_frames = 0
    with tempfile.TemporaryDirectory() as tmp:
        inputs = [(p, t, k, False) for p, t, k in build_set(Path(tmp), videos)]
        inputs += [(DATA / "video" / f"{name}.mp4", [], [], True) for name in (*CLIPS, "s29")]
        for path, truth, kinds, uncut in inputs:
            for name, run in detectors.items():
                found, busy, frames = run(path)
                score = _score(found, truth, kinds)
                row = report[name]
                for kind in row["hits"]:
                    row["hits"][kind] += score["hits"][kind]
                    row["totals"][kind] += score["totals"][kind]
                row["false_alarms_uncut" if uncut else "false_alarms_edited"] += score["false_alarms"]
                row["busy_s"] += busy
                row["frames"] += frames
            uncut_frames += frames if uncut else 0
    for row in report.values():
        row["ms_per_frame"] = round(1000 * row.pop("busy_s") / row["frames"], 3)
        row["uncut_minutes"] = round(uncut_frames / FPS / 60, 2)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=12, help="edited videos to build (default 12)")
    args = parser.parse_args(argv)
    report = measure(args.videos)
    print("| detector | cuts found | jump cuts found | fades found | false alarms (edited) | "
          "false alarms (uncut) | ms/frame |")
    print("|---|---|---|---|---|---|---|")
    for name, row in report.items():
        found = [f"{row['hits'][k]}/{row['totals'][k]}" for k in ("cut", "jump", "fade")]
        print(f"| {name} | {' | '.join(found)} | {row['false_alarms_edited']} | {row['false_alarms_uncut']} "
              f"in {row['uncut_minutes']} min | {row['ms_per_frame']} |")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
