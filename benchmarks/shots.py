"""`python -m benchmarks.shots`: how well and how cheaply shot boundaries are found.

Builds a seeded set of edited videos from ../shared/data (the tests' builder,
`tests.shot_media`): 640x360 shots of one or two people at random places and sizes on one
set, joined by hard cuts between different layouts, jump cuts (same people, same places,
later in their clips), fades through black and dissolves of 8-25 frames (0.3-1.0 s);
plus uncut clips: the sample clips (steady, shaky hand-held, portrait) and 720p
three-person clips encoded with many keyframes (periodic every 50 frames, or x264's
scene-adaptive choice within 100) at crf 23, 32 and 40, nearly still (each clip frame
held 4 frames) so that a keyframe's quality pulse stands out.
Runs `stages.shots.ShotDetector` with its dissolve fit alone and with TransNetV2's second
opinion on what the fit finds, TransNetV2 alone on every frame (48x27, its threshold 0.5,
one boundary per run of frames above it), and PySceneDetect's ContentDetector and
AdaptiveDetector with their defaults (full frames, BGR); prints found boundaries per kind,
false alarms and the CPU cost per frame (ms; the network's on all its threads).
A found boundary within 2 frames of a true one is a hit (a dissolve: within half its
length plus 2).
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
from models.transnet import INPUT_HEIGHT, INPUT_WIDTH, load_transnet
from stages.dissolves import network_check
from stages.shots import ShotDetector
from tests.media import clip_frames
from tests.shot_media import Keyframes, Person, Shot, edited_video, uncut_video

FPS = 25
CLIPS = ("d10", "d11", "d12", "d20")
TOLERANCE = 2
KINDS = ("cut", "jump", "fade", "dissolve")


def _layout(rng: np.random.Generator, clips: dict, width: int, height: int) -> list[Person]:
    size = int(rng.choice([144, 200, 260]))
    names = rng.choice(CLIPS, size=int(rng.integers(1, 3)), replace=False)
    people = []
    for k, name in enumerate(names):
        lo, hi = (0, width - size) if len(names) == 1 else (k * width // 2, (k + 1) * width // 2 - size)
        people.append(Person(str(name), clips[(str(name), size)], int(rng.integers(lo, max(lo + 1, hi))),
                             int(rng.integers(0, height - size)), int(rng.integers(0, 100))))
    return people


def build_set(folder: Path, videos: int, seed: int = 15) -> list[tuple[Path, list[int], list[str], list[int]]]:
    """(path, true boundary frames, kind of each: cut | jump | fade | dissolve, frames of
    each transition: 1 or the dissolve's length) per edited video."""
    rng = np.random.default_rng(seed)
    clips = {(name, size): clip_frames(DATA / "video" / f"{name}.mp4", size)
             for name in CLIPS for size in (144, 200, 260)}
    built = []
    for number in range(videos):
        shots, kinds, spans = [], [], []
        for index in range(int(rng.integers(4, 7))):
            kind = str(rng.choice(KINDS, p=[0.45, 0.15, 0.15, 0.25])) if index else "cut"
            if kind == "jump" and shots:
                people = [Person(p.name, p.frames, p.x, p.y, p.offset + 60) for p in shots[-1].people]
            else:
                people = _layout(rng, clips, 640, 360)
            shot = Shot(float(rng.uniform(1.2, 2.4)), people)
            if index:
                kinds.append(kind)
                if kind == "fade":
                    shots[-1].fade_out_frames = 8
                if kind == "dissolve":
                    shot.dissolve_frames = int(rng.choice([8, 13, 19, 25]))
                spans.append(max(1, shot.dissolve_frames))
            shots.append(shot)
        path = folder / f"edited_{number}.mp4"
        built.append((path, edited_video(path, shots, 640, 360, FPS), kinds, spans))
    return built


def keyframe_clips(folder: Path) -> list[Path]:
    """Uncut 720p clips of three people with many keyframes (periodic and scene-adaptive, crf 23-40)."""
    people = [Person(name, clip_frames(DATA / "video" / f"{name}.mp4", 200), 140 + 400 * k, 260, 30 * k)
              for k, name in enumerate(("d10", "d12", "d20"))]
    paths = []
    for crf in (23, 32, 40):
        for keyframes in (Keyframes(50, crf=crf), Keyframes(100, scene_adaptive=True, crf=crf)):
            path = folder / f"uncut_{crf}_{'adaptive' if keyframes.scene_adaptive else 'periodic'}.mp4"
            uncut_video(path, people, 1280, 720, 150, keyframes, hold=4)
            paths.append(path)
    return paths


def _decoded(path: Path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate)
        for index, frame in enumerate(container.decode(stream)):
            yield index, frame, stream.time_base, rate


def _ours(path: Path, network=None) -> tuple[list[int], float, int]:
    """Frames of the boundaries found, CPU seconds (the detector's thread plus the network's
    process time on its checks), frames."""
    check_s = [0.0]
    check = None
    if network is not None:
        ask = network_check(network)

        def check(thumbs, middle):
            started = time.process_time()
            answer = ask(thumbs, middle)
            check_s[0] += time.process_time() - started
            return answer
    detector = ShotDetector(check=check)
    rate = FPS
    entries = []
    for index, frame, time_base, rate in _decoded(path):
        entries.append((index, frame.pts, time_base, frame))
    for _ in detector.label(iter(entries)):
        pass
    return [int(round(ms / 1000 * rate)) for ms in detector.boundaries_ms], detector.busy_s + check_s[0], detector.frames


def _transnet(path: Path, network) -> tuple[list[int], float, int]:
    """TransNetV2 alone: one boundary at the middle of every run of frames above 0.5."""
    frames = np.stack([f.reformat(width=INPUT_WIDTH, height=INPUT_HEIGHT, format="rgb24").to_ndarray()
                       for _, f, _, _ in _decoded(path)])
    started = time.process_time()
    above = network.transition_probabilities(frames) > 0.5
    busy = time.process_time() - started
    found, run = [], []
    for index, flag in enumerate([*above, False]):
        if flag:
            run.append(index)
        elif run:
            found.append(run[len(run) // 2] + 1)  # the network marks the old shot's last frame
            run = []
    return found, busy, len(frames)


def _pyscenedetect(path: Path, make) -> tuple[list[int], float, int]:
    from scenedetect import FrameTimecode

    detector, found, busy, frames = make(), [], 0.0, 0
    for index, frame, _, rate in _decoded(path):
        image = frame.to_ndarray(format="bgr24")
        started = time.thread_time()
        found += [int(tc.frame_num) for tc in detector.process_frame(FrameTimecode(index, fps=rate), image)]
        busy += time.thread_time() - started
        frames += 1
    return found, busy, frames


def _score(found: list[int], truth: list[int], kinds: list[str], spans: list[int]) -> dict:
    hits = {k: 0 for k in KINDS}
    totals = {k: kinds.count(k) for k in hits}
    used: set[int] = set()
    for frame, kind, span in zip(truth, kinds, spans):
        reach = TOLERANCE + (span // 2 if kind == "dissolve" else 0)
        match = next((f for f in found if abs(f - frame) <= reach and f not in used), None)
        if match is not None:
            used.add(match)
            hits[kind] += 1
    return {"hits": hits, "totals": totals, "false_alarms": len([f for f in found if f not in used])}


def measure(videos: int, with_network: bool = True) -> dict:
    from scenedetect.detectors import AdaptiveDetector, ContentDetector

    network = load_transnet() if with_network else None
    detectors = {"ours (fit alone)": _ours}
    if network is not None:
        detectors["ours + TransNetV2 check"] = lambda p: _ours(p, network)
        detectors["TransNetV2 alone"] = lambda p: _transnet(p, network)
    detectors["content"] = lambda p: _pyscenedetect(p, ContentDetector)
    detectors["adaptive"] = lambda p: _pyscenedetect(p, AdaptiveDetector)
    report = {name: {"hits": {k: 0 for k in KINDS}, "totals": {k: 0 for k in KINDS}, "false_alarms_edited": 0,
                     "false_alarms_uncut": 0, "false_alarms_keyframes": 0, "busy_s": 0.0, "frames": 0}
              for name in detectors}
    uncut_frames = {"uncut": 0, "keyframes": 0}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = [(p, t, k, s, "edited") for p, t, k, s in build_set(Path(tmp), videos)]
        inputs += [(DATA / "video" / f"{name}.mp4", [], [], [], "uncut") for name in (*CLIPS, "s29")]
        inputs += [(path, [], [], [], "keyframes") for path in keyframe_clips(Path(tmp))]
        for path, truth, kinds, spans, group in inputs:
            for name, run in detectors.items():
                found, busy, frames = run(path)
                score = _score(found, truth, kinds, spans)
                row = report[name]
                for kind in KINDS:
                    row["hits"][kind] += score["hits"][kind]
                    row["totals"][kind] += score["totals"][kind]
                row[f"false_alarms_{group}"] += score["false_alarms"]
                row["busy_s"] += busy
                row["frames"] += frames
            if group in uncut_frames:
                uncut_frames[group] += frames
    for row in report.values():
        row["ms_per_frame"] = round(1000 * row.pop("busy_s") / row["frames"], 3)
        row["uncut_minutes"] = round(uncut_frames["uncut"] / FPS / 60, 2)
        row["keyframe_minutes"] = round(uncut_frames["keyframes"] / FPS / 60, 2)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=12, help="edited videos to build (default 12)")
    parser.add_argument("--no-network", action="store_true", help="leave TransNetV2 out (it costs ~50 ms a frame)")
    args = parser.parse_args(argv)
    report = measure(args.videos, not args.no_network)
    print("| detector | cuts found | jump cuts found | fades found | dissolves found | false alarms (edited) | "
          "false alarms (uncut) | false alarms (keyframe-heavy uncut) | ms/frame |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, row in report.items():
        found = [f"{row['hits'][k]}/{row['totals'][k]}" for k in KINDS]
        print(f"| {name} | {' | '.join(found)} | {row['false_alarms_edited']} | {row['false_alarms_uncut']} "
              f"in {row['uncut_minutes']} min | {row['false_alarms_keyframes']} in {row['keyframe_minutes']} min "
              f"| {row['ms_per_frame']} |")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
