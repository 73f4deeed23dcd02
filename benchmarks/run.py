"""`python -m benchmarks.run [--quick]`: scenarios side by side in one run.

Every scenario runs in a fresh subprocess on the same input, one after another, so their
numbers are comparable; ratios within one run are what count, absolute fps vary by machine.
Writes the table to stdout and JSON to benchmarks/results/latest.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

from benchmarks.inputs import DATA, ROOT, build_input

RESULTS = ROOT / "benchmarks" / "results"


def run_scenario(name: str, video: Path, audio: Path | None, workdir: Path) -> dict:
    out = workdir / f"{name}.mp4"
    done = subprocess.run([sys.executable, "-m", "benchmarks.scenarios", name, str(video), str(out),
                           str(audio or "")], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"scenario {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def format_table(rows: list[dict]) -> str:
    header = f"| {'input':<22} | {'scenario':<14} | {'fps':>7} | {'x floor':>7} | {'peak RSS MB':>11} | per-stage fps (busy share) |"
    lines = [header, "|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|"]
    for row in rows:
        stages = ", ".join(f"{s['name']} {s['fps']:.0f} ({s['busy_s'] / row['wall_s']:.0%})"
                           for s in row.get("stages", []))
        lines.append(f"| {row['input']:<22} | {row['scenario']:<14} | {row['fps']:7.1f} | "
                     f"{row['x_floor']:7.2f} | {row['peak_rss_mb']:11.0f} | {stages} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short inputs only (CI regression guard)")
    args = parser.parse_args(argv)
    cases = [(1280, 720, 2, 4.0)] if args.quick else [(1280, 720, 2, 10.0), (1920, 1080, 2, 10.0)]
    scenarios = ["codec_floor", "passthrough", "decode_all", "detect_3fps", "lipsync_1face", "lipsync_2faces",
                 "sequential_2faces", "naive_2faces"]
    audio = DATA / "audio" / "sun.wav"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for width, height, faces, seconds in cases:
            video = build_input(width, height, faces, seconds, RESULTS / "inputs")
            floor = None
            for name in scenarios:
                result = run_scenario(name, video, audio, Path(tmp))
                floor = floor or result["fps"]
                rows.append({"input": f"{height}p {faces}f {seconds:g}s", "scenario": name,
                             "x_floor": result["fps"] / floor, **result})
    table = format_table(rows)
    print(f"machine: {platform.processor() or platform.machine()}, {psutil.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
