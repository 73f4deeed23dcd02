"""`python -m benchmarks.run [--quick]`: scenarios side by side in one run.

Every scenario runs in a fresh subprocess on the same input, one after another, so their
numbers are comparable and each peak RSS is its own; ratios within one run are what count,
absolute fps vary by machine. Prints a markdown table and writes the rows as JSON
(benchmarks/results/latest.json unless --out says otherwise).

Full mode: 720p and 1080p, 1 and 2 faces, 10 s inputs, every scenario; plus lipsync on a
60 s 720p two-face input for the memory ratio (peak RSS 60 s / 10 s). `--quick` (the CI
guard, under 2 minutes): 720p, 2 faces, 4 s (neural_tiny on 1 face), with an 8 s lipsync
run for the memory ratio.
A scenario that fails fails the run (exit status 1); timings never do.
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil

from benchmarks.inputs import ASD_WEIGHTS, DATA, ROOT, build_input
from benchmarks.tiny_models import neural_available

log = logging.getLogger(__name__)

RESULTS = ROOT / "benchmarks" / "results"
AUDIO = DATA / "audio" / "sun.wav"
ALL_SCENARIOS = ("codec_floor", "passthrough", "decode_all", "detect_3fps", "lipsync_1face", "lipsync",
                 "lipsync_synth", "sequential", "naive", "neural_tiny", "active_speakers", "lipsync_auto")
QUICK_SKIPS = ("lipsync_auto",)
"""Scenarios left out of --quick (the CI guard): auto mode runs detect-faces, Light-ASD, the
mouth bank and the render, several times a lipsync row's time."""


@dataclass(frozen=True)
class Case:
    """One input video: width x height pixels, `faces` people side by side, seconds long."""

    width: int
    height: int
    faces: int
    seconds: float
    memory_only: bool = False  # a long input run with lipsync alone, for the memory ratio
    neural_faces: int | None = None  # faces for neural_tiny when fewer than `faces` (quick mode)

    @property
    def label(self) -> str:
        return f"{self.height}p {self.faces}f {self.seconds:g}s"


def default_cases(quick: bool) -> list[Case]:
    if quick:
        return [Case(1280, 720, 2, 4.0, neural_faces=1), Case(1280, 720, 2, 8.0, memory_only=True)]
    return [Case(1280, 720, 1, 10.0), Case(1280, 720, 2, 10.0), Case(1920, 1080, 1, 10.0),
            Case(1920, 1080, 2, 10.0), Case(1280, 720, 2, 60.0, memory_only=True)]


def scenario_plan(case: Case, wanted: tuple[str, ...]) -> list[tuple[str, str, int]]:
    """(row label, scenario name, faces) for one input; lipsync_1face only on multi-face inputs."""
    if case.memory_only:
        return [("lipsync", "lipsync", case.faces)] if "lipsync" in wanted else []
    plan = []
    for name in wanted:
        if name == "lipsync_1face":
            if case.faces > 1:
                plan.append(("lipsync 1 face", "lipsync", 1))
        elif name == "neural_tiny" and not neural_available():
            log.warning("torch/diffusers/transformers missing: the neural_tiny scenario is skipped")
        elif name == "active_speakers" and not (neural_available() and ASD_WEIGHTS.is_file()):
            log.warning("torch or %s missing: the active_speakers scenario is skipped", ASD_WEIGHTS)
        else:
            faces = (case.neural_faces or case.faces) if name == "neural_tiny" else case.faces
            label = f"{name} {faces}f" if name in ("lipsync", "lipsync_synth", "sequential", "naive",
                                                   "neural_tiny") else name
            if name == "lipsync_auto":
                label = "lipsync auto mode"
            plan.append((label, name, faces))
    return plan


def run_scenario(name: str, video: Path, faces: int, workdir: Path, repeat: int = 1) -> dict:
    """Run one scenario `repeat` times in fresh processes; keep the fastest run."""
    best = None
    for attempt in range(repeat):
        out = workdir / f"{name}_{faces}_{attempt}.mp4"
        done = subprocess.run([sys.executable, "-m", "benchmarks.scenarios", name, str(video), str(out),
                               str(AUDIO), str(faces)], cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"scenario {name} ({faces} faces) on {video.name} failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        out.unlink(missing_ok=True)
        if best is None or result["wall_s"] < best["wall_s"]:
            best = result
    return best


def add_ratios(rows: list[dict]) -> None:
    """x_floor and x_naive per row (fps over that input's codec floor / naive baseline;
    x_floor_job for a lipsync row's whole job, its mouth-bank pass included),
    CPU ms per frame, each stage's busy share of the wall time, and for detect-faces its
    wall time over the time to decode every frame (x_decode_all_time)."""
    for row in rows:
        same = {r["scenario"]: r for r in rows if r["input"] == row["input"]}
        floor, naive = same.get("codec_floor"), next((r for r in same.values() if r["name"] == "naive"), None)
        row["x_floor"] = round(row["fps"] / floor["fps"], 3) if floor else None
        if "job_fps" in row:  # the whole job, its mouth-bank pass and setup too
            row["x_floor_job"] = round(row["job_fps"] / floor["fps"], 3) if floor else None
        row["x_naive"] = round(row["fps"] / naive["fps"], 3) if naive else None
        row["cpu_ms_per_frame"] = round(1000 * row["cpu_s"] / row["frames"], 2) if row.get("cpu_s") else None
        decode = same.get("decode_all")
        if "ms_per_sampled_frame" in row and decode:
            row["x_decode_all_time"] = round(row["wall_s"] / decode["wall_s"], 3)
        for stage in row.get("stages", []):
            stage["busy_share"] = round(stage["busy_s"] / row["wall_s"], 3)
            if stage.get("cpu_s") is not None and row.get("frames"):
                stage["cpu_ms_per_frame"] = round(1000 * stage["cpu_s"] / row["frames"], 2)


def memory_ratios(rows: list[dict]) -> list[dict]:
    """Peak RSS of lipsync on each long input over the same lipsync on the short input."""
    ratios = []
    for long in (r for r in rows if r.get("memory_only")):
        short = next((r for r in rows if not r.get("memory_only") and r["name"] == "lipsync"
                      and r["faces"] == long["faces"] and r["size"] == long["size"]), None)
        if short is not None:
            ratios.append({"scenario": f"lipsync {long['faces']}f {long['size']}",
                           "long_s": long["seconds"], "short_s": short["seconds"],
                           "peak_rss_long_mb": round(long["peak_rss_mb"], 1),
                           "peak_rss_short_mb": round(short["peak_rss_mb"], 1),
                           "ratio": round(long["peak_rss_mb"] / short["peak_rss_mb"], 3)})
    return ratios


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _stage_cell(stage: dict) -> str:
    cpu = stage.get("cpu_ms_per_frame")
    return f"{stage['name']} {stage['fps']:.0f} ({stage['busy_share']:.0%}" + (f", {cpu:.1f} ms)" if cpu is not None
                                                                               else ")")


def _phases_cell(row: dict) -> str:
    """Where a whole job's time went, pass by pass: wall s (CPU ms per video frame), and
    what ran outside the passes (audio analysis, Light-ASD scoring, finding the faces)."""
    phases = row["phases"]
    frames = max(1, row["frames"])
    cells = [f"{name} {p['wall_s']:.1f} s ({1000 * p['cpu_s'] / frames:.0f} ms)" for name, p in phases.items()]
    outside_wall = row["wall_s"] - sum(p["wall_s"] for p in phases.values())
    outside_cpu = row["cpu_s"] - sum(p["cpu_s"] for p in phases.values())
    cells.append(f"outside the passes {outside_wall:.1f} s ({1000 * outside_cpu / frames:.0f} ms)")
    return "passes: wall (CPU ms per video frame): " + ", ".join(cells)


def _threads_cell(row: dict) -> str:
    """Every CPU ms of the row per frame, span by span (the render, the mouth-bank pass), by
    the threads that spent it (`benchmarks.threads`): the stage threads together, the codec's
    native threads, the libraries' pools, the main and other Python threads, what ended
    between two samples, and child processes (PocketSphinx's)."""
    frames = max(1, row["frames"])
    spans = []
    for label, groups in row["threads"].items():
        stages = sum(cpu for name, cpu in groups.items() if name.startswith("stage "))
        parts = [("stages", stages), ("codec", groups.get("codec", 0.0)), ("pools", groups.get("pools", 0.0)),
                 ("main", groups.get("main", 0.0) + groups.get("python", 0.0)),
                 ("unsampled", groups.get("unsampled", 0.0)), ("child processes", groups.get("child processes", 0.0))]
        total = sum(cpu for _, cpu in parts)
        spans.append(f"{label} {1000 * total / frames:.1f} = "
                     + " + ".join(f"{name} {1000 * cpu / frames:.1f}" for name, cpu in parts if cpu > 0))
    return "CPU ms/frame by thread: " + "; ".join(spans)


def format_table(rows: list[dict]) -> str:
    header = ("| input | scenario | fps | x floor | x naive | CPU ms/frame | peak RSS MB | "
              "per stage: fps (busy share of wall, CPU ms per frame of its own thread) |")
    lines = [header, "|---|---|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        stages = ", ".join(_stage_cell(s) for s in row.get("stages", []))
        if "ms_per_s_per_face" in row:
            stages = f"{row['ms_per_s_per_face']:.0f} ms per second of video per face ({row['faces_scored']} faces)"
        if "ms_per_sampled_frame" in row:
            stages = (f"{row['sampled_frames']} frames sampled, {row['ms_per_sampled_frame']:.0f} ms each; job time "
                      f"{_ratio(row.get('x_decode_all_time'))}x decoding every frame")
        if "render_wall_s" in row:
            stages += (f"; render {row['render_wall_s']:.1f} s of the job's {row['wall_s']:.1f} s, mouth-bank pass "
                       f"{row['mouth_bank_ms']:.0f} ms, {row['faces_synced']} faces synced, Light-ASD "
                       f"{'on' if row['active_speaker_model'] else 'absent'}")
            if row.get("phases"):
                stages += "; " + _phases_cell(row)
        if "engine_ms_per_face" in row:
            stages += (f"; engine {row['engine_ms_per_face']:.1f} ms per face-frame, mouth-bank pass "
                       f"{row['mouth_bank_ms']:.0f} ms (decode {row['decode_ms']:.0f} ms)")
        if "job_fps" in row:
            stages += (f"; whole job (setup and mouth-bank pass too) {row['job_fps']:.1f} fps, "
                       f"{_ratio(row.get('x_floor_job'))}x floor")
        if row.get("threads"):
            stages += ("; " if stages else "") + _threads_cell(row)
        cpu = "-" if row.get("cpu_ms_per_frame") is None else f"{row['cpu_ms_per_frame']:.1f}"
        lines.append(f"| {row['input']} | {row['scenario']} | {row['fps']:.1f} | {_ratio(row['x_floor'])} | "
                     f"{_ratio(row['x_naive'])} | {cpu} | {row['peak_rss_mb']:.0f} | {stages} |")
    return "\n".join(lines)


def targets(rows: list[dict], ratios: list[dict]) -> list[dict]:
    """The performance issue's targets, checked on the 720p rows of this run (reported, never enforced)."""
    short = [r for r in rows if r["size"] == "1280x720" and not r.get("memory_only")]
    two = {r["scenario"]: r for r in short if r["input_faces"] == 2}
    lip, seq = two.get("lipsync 2f"), two.get("sequential 2f")
    one = two.get("lipsync 1 face") or next((r for r in short if r["scenario"] == "lipsync 1f"), None)
    detect = two.get("detect_3fps")
    checks = []
    if lip:
        checks.append({"target": "lipsync 720p 2f >= 0.55x codec floor", "value": lip["x_floor"], "goal": 0.55})
        checks.append({"target": "lipsync 720p 2f <= 25 CPU ms per frame", "value": lip.get("cpu_ms_per_frame"),
                       "goal": 25.0, "at_most": True})
        if seq:
            checks.append({"target": "lipsync 720p 2f over sequential (reported; two cores allow ~1.55x)",
                           "value": round(lip["fps"] / seq["fps"], 3), "goal": None})
    if one:
        checks.append({"target": "lipsync 720p 1 face >= 0.7x codec floor", "value": one["x_floor"], "goal": 0.7})
    for row, label in ((one, "1 face"), (lip, "2f")):
        if row and row.get("x_floor_job") is not None:  # the render's fps leaves the bank pass's wall time out
            checks.append({"target": f"lipsync 720p {label}, whole job with its mouth-bank pass, x codec floor "
                                     "(reported)", "value": row["x_floor_job"], "goal": None})
    if detect:
        checks.append({"target": "detect-faces 720p >= 0.8x codec floor", "value": detect["x_floor"], "goal": 0.8})
    for ratio in ratios:
        checks.append({"target": f"peak RSS {ratio['long_s']:g} s / {ratio['short_s']:g} s <= 1.2",
                       "value": ratio["ratio"], "goal": 1.2, "at_most": True})
    for check in checks:
        value, goal = check["value"], check["goal"]
        if goal is None:
            check["met"] = None
            continue
        check["met"] = value is not None and (value <= goal if check.get("at_most") else value >= goal)
    return checks


def chosen_scenarios(names: str, quick: bool) -> tuple[str, ...]:
    """The comma-separated scenario names, less QUICK_SKIPS in --quick mode."""
    return tuple(s for s in names.split(",") if s and not (quick and s in QUICK_SKIPS))


def parse_size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one short 720p input (CI regression guard)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per scenario, the fastest is kept")
    parser.add_argument("--scenarios", default=",".join(ALL_SCENARIOS),
                        help=f"comma-separated subset of {','.join(ALL_SCENARIOS)}")
    parser.add_argument("--size", type=parse_size, help="custom input WxH instead of the default cases")
    parser.add_argument("--faces", type=int, default=2, help="faces in the custom input")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of the custom input")
    parser.add_argument("--inputs", type=Path, default=RESULTS / "inputs", help="where inputs are built and cached")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json", help="JSON output")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    wanted = chosen_scenarios(args.scenarios, args.quick)
    unknown = set(wanted) - set(ALL_SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    cases = [Case(*args.size, args.faces, args.seconds)] if args.size else default_cases(args.quick)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            video = build_input(case.width, case.height, case.faces, case.seconds, args.inputs)
            for label, name, faces in scenario_plan(case, wanted):
                log.info("%s: %s", case.label, label)
                result = run_scenario(name, video, faces, Path(tmp), args.repeat)
                rows.append({"input": case.label, "size": f"{case.width}x{case.height}", "seconds": case.seconds,
                             "input_faces": case.faces, "scenario": label, "name": name, "faces": faces,
                             "memory_only": case.memory_only, **result})
    add_ratios(rows)
    ratios = memory_ratios(rows)
    checks = targets(rows, ratios)
    machine = (f"{platform.machine()}, {psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
               f"Python {platform.python_version()}, load average {psutil.getloadavg()[0]:.1f}")
    print(f"machine: {machine}")
    print(format_table(rows))
    for ratio in ratios:
        print(f"memory: {ratio['scenario']} peak RSS {ratio['long_s']:g} s / {ratio['short_s']:g} s = "
              f"{ratio['peak_rss_long_mb']:.0f} / {ratio['peak_rss_short_mb']:.0f} MB = {ratio['ratio']:.2f}")
    for check in checks:
        verdict = "reported" if check["met"] is None else ("met" if check["met"] else "NOT met")
        print(f"target: {check['target']}: {check['value']} {verdict}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "quick": args.quick, "rows": rows,
                                    "memory": ratios, "targets": checks}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
