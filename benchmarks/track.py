"""`python -m benchmarks.track [--faces N] [--stage bank]`: where the lipsync job's track stage
(or its mouth-bank pass's stage) spends its CPU.

Runs the lipsync job (classical engine, the benchmark's 720p two-face input, 10 s) with a clock
around each call the track stage makes into its parts: dlib's landmark fit, RetinaFace, dlib's
verification, the face embedding, the PnP pose, the optical-flow check, the flow patches,
the thumbnails. The clock is the calling thread's CPU time, counted only on the track stage's
thread and exclusive (a part's time leaves out the parts it calls), so the parts and "the rest"
(the stage's own Python) add up to the stage's own counter. Prints CPU ms per face-frame and
calls per part. Numbers move with what the other core does: compare alternating runs.

`--stage bank` clocks the mouth-bank stage's thread instead (the same models, plus its own
parts: the mouth samples, the identity-check crops, the end-of-pass checks), per video frame
and per sampled frame; its "rest" is the stage's own Python in `process` and `flush`.
"""
from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

TRACK_THREAD = "stage-track"
"""The name `stream.pipeline` gives the track stage's thread."""
BANK_THREAD = "stage-bank"
"""...and the mouth-bank stage's."""
BANK_REST = "the rest (the stage's Python)"


class PartClock:
    """Exclusive thread-CPU time and calls per named part, on the threads `counts` accepts."""

    def __init__(self, counts: Callable[[], bool] = lambda: threading.current_thread().name == TRACK_THREAD) -> None:
        self.counts = counts
        self.cpu_s: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stacks = threading.local()

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """`fn`, with its CPU time (less that of the wrapped parts it calls) counted as `name`."""
        def timed(*args, **kwargs):
            if not self.counts():
                return fn(*args, **kwargs)
            stack = self._stacks.__dict__.setdefault("stack", [])
            stack.append(0.0)
            start = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.thread_time() - start
                inner = stack.pop()
                self.cpu_s[name] += spent - inner
                self.calls[name] += 1
                if stack:
                    stack[-1] += spent
        return timed


def instrument(clock: PartClock, backend) -> None:
    """Wrap the track stage's parts: the default backend's models (where it has them) and the
    track stage's helpers in `stages.follow`. For this process only (a benchmark)."""
    import models.faces.default as default
    import stages.follow as follow
    import stages.tracking as tracking

    for attribute, name in (("predictor", "dlib fit"), ("_verified", "dlib verification")):
        if hasattr(backend, attribute):
            setattr(backend, attribute, clock.wrap(name, getattr(backend, attribute)))
    if hasattr(backend, "detector"):
        backend.detector.detect = clock.wrap("RetinaFace", backend.detector.detect)
    if hasattr(backend, "descriptor"):
        descriptor = backend.descriptor
        backend.descriptor = type(descriptor)(descriptor.source, clock.wrap("embedding", descriptor.compute))
    default.head_pose_from_landmarks = clock.wrap("pose", default.head_pose_from_landmarks)
    tracking.flow_points = clock.wrap("flow check", tracking.flow_points)
    follow.flow_points = clock.wrap("flow check", follow.flow_points)
    follow.flow_offset = clock.wrap("flow offset", follow.flow_offset)
    follow.flow_patch = clock.wrap("flow patch", follow.flow_patch)
    follow.face_thumbnail = clock.wrap("thumbnails", follow.face_thumbnail)


def instrument_bank(clock: PartClock) -> None:
    """Wrap the mouth-bank stage's own parts (`stages.mouth_bank`), and its `process` and
    `flush` as the rest (exclusive: less the parts they call). For this process only."""
    import stages.mouth_bank as bank

    bank.face_thumbnail = clock.wrap("thumbnails", bank.face_thumbnail)
    bank.sample_mouth = clock.wrap("mouth samples", bank.sample_mouth)
    bank._face_crop = clock.wrap("identity-check crops", bank._face_crop)
    stage = bank.MouthBankStage
    stage._check_identities = clock.wrap("end-of-pass identity checks", stage._check_identities)
    stage.process = clock.wrap(BANK_REST, stage.process)
    stage.flush = clock.wrap(BANK_REST, stage.flush)


def main(argv: list[str] | None = None) -> None:
    from benchmarks.inputs import ROOT, build_input
    from benchmarks.run import AUDIO, RESULTS
    from benchmarks.scenarios import SETTINGS, _face_specs
    from jobs import lipsync as lipsync_job
    from jobs.registry import shared_registry

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=2, help="faces to sync (1 or 2)")
    parser.add_argument("--stage", choices=("track", "bank"), default="track",
                        help="the render's track stage, or the mouth-bank pass's stage")
    args = parser.parse_args(argv)
    video = str(build_input(1280, 720, 2, 10.0, RESULTS / "inputs"))
    specs = _face_specs(video, args.faces, SETTINGS)
    registry = shared_registry(SETTINGS)
    registry.lipsync_engine()
    thread = TRACK_THREAD if args.stage == "track" else BANK_THREAD
    clock = PartClock(lambda: threading.current_thread().name == thread)
    instrument(clock, registry.face_backend())
    if args.stage == "bank":
        instrument_bank(clock)
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
        result = lipsync_job.lipsync(video, str(AUDIO), specs, f"{tmp}/out.mp4", SETTINGS)
    if args.stage == "bank":
        print_bank(clock, result["output"]["frame_count"], result["mouth_bank"][0]["frames_sampled"])
        return
    face_frames = result["output"]["frame_count"] * args.faces
    stage = next(s for s in result["metrics"]["stages"] if s["name"] == "track")
    parts = sorted(clock.cpu_s.items(), key=lambda item: -item[1])
    rest = stage["cpu_s"] - sum(clock.cpu_s.values())
    print(f"track stage: {1000 * stage['cpu_s'] / face_frames:.2f} CPU ms a face-frame "
          f"({face_frames} face-frames)")
    for name, cpu in [*parts, ("the rest (the stage's Python)", rest)]:
        calls = f"{clock.calls[name]:6d} calls" if name in clock.calls else ""
        print(f"  {name:30s} {1000 * cpu / face_frames:6.3f} {calls}")


def print_bank(clock: PartClock, frames: int, sampled: int) -> None:
    """The bank stage's CPU by part, ms per video frame and per sampled frame."""
    total = sum(clock.cpu_s.values())
    print(f"mouth-bank stage: {1000 * total / frames:.2f} CPU ms a video frame, "
          f"{1000 * total / max(1, sampled):.1f} a sampled frame ({frames} frames, {sampled} sampled)")
    for name, cpu in sorted(clock.cpu_s.items(), key=lambda item: (item[0] == BANK_REST, -item[1])):
        print(f"  {name:30s} {1000 * cpu / frames:6.3f} {1000 * cpu / max(1, sampled):7.2f} "
              f"{clock.calls[name]:6d} calls")


if __name__ == "__main__":
    main()
