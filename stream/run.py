"""`python -m stream.run`: run the product's jobs on local files.

    python -m stream.run passthrough --video IN.mp4 --out OUT.mp4 [--audio NEW.wav]
    python -m stream.run detect --video IN.mp4 [--refs characters.json] [--sample-fps 3]
    python -m stream.run lipsync --video IN.mp4 --audio NEW.wav --out OUT.mp4 \
        (--faces faces.json | --auto) [--refs characters.json]

characters.json is the /detect-faces `characters` list (reference_image_url may be a
local path, relative to the JSON file); faces.json is the /lipsync `faces` list. In lipsync,
--refs also names the people who are not requested (`unknown_faces` under their id).

Prints a JSON summary on stdout; a progress bar goes to stderr when it is a terminal.
Exit code 2 means bad input (the message says what to fix), 1 an internal failure.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from pathlib import Path

from stream import jobs
from stream.config import Settings
from stream.context import JobContext, Progress
from stream.errors import InputError, LipSyncError
from stream.pipeline import PipelineCancelled
from stream.references import Character
from stream.schema import SYNC_MODES, parse_characters, parse_faces


class ProgressBar:
    """A one-line progress bar on stderr, drawn only on a terminal."""

    def __init__(self, stream=sys.stderr, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.enabled = stream.isatty()

    def __call__(self, progress: Progress) -> None:
        if not self.enabled:
            return
        filled = int(progress.fraction * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r{progress.phase:>12} [{bar}] {progress.fraction:4.0%} "
                          f"{progress.frames_done}/{progress.frames_total} frames")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")


def read_json_file(path: str) -> object:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read JSON ({exc})") from exc


def load_characters(path: str | None) -> list[Character]:
    """characters.json as Characters; local reference paths are relative to the file."""
    if not path:
        return []
    specs = parse_characters(read_json_file(path), "characters.json")
    base = Path(path).resolve().parent
    characters = []
    for spec in specs:
        location = spec.reference_image_url.removeprefix("file://")
        if "://" in location:
            raise InputError(f"characters.json: {spec.id}: the CLI reads local reference images; "
                             f"download {spec.reference_image_url} first")
        image = (base / location) if not Path(location).is_absolute() else Path(location)
        if not image.is_file():
            raise InputError(f"characters.json: {spec.id}: reference image {image} not found")
        characters.append(Character(spec.id, spec.name, image))
    return characters


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stream.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    passthrough = commands.add_parser("passthrough", help="decode and re-encode untouched, with new audio")
    passthrough.add_argument("--video", required=True)
    passthrough.add_argument("--out", required=True)
    passthrough.add_argument("--audio")
    detect = commands.add_parser("detect", help="find, name and judge every face (prints /detect-faces JSON)")
    detect.add_argument("--video", required=True)
    detect.add_argument("--refs", help="characters.json: [{id, name, reference_image_url}]")
    detect.add_argument("--sample-fps", type=float, default=3.0)
    detect.add_argument("--similarity-threshold", type=float, default=0.5)
    lipsync = commands.add_parser("lipsync", help="re-animate faces to the new audio (prints /lipsync JSON)")
    lipsync.add_argument("--video", required=True)
    lipsync.add_argument("--audio", required=True)
    lipsync.add_argument("--out", required=True)
    chosen = lipsync.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--faces", help="faces.json: [{character_id, bbox, start_time_ms, end_time_ms}]")
    chosen.add_argument("--auto", action="store_true", help="every syncable recognised person, whole video")
    lipsync.add_argument("--refs", help="characters.json: who --auto picks, and names for people not requested")
    lipsync.add_argument("--sync-mode", default="silence", choices=SYNC_MODES)
    lipsync.add_argument("--enhance", action="store_true", help="restore faces with CodeFormer")
    lipsync.add_argument("--fidelity-weight", type=float, default=0.7)
    for sub in commands.choices.values():
        Settings.add_arguments(sub)
        sub.add_argument("--log-level", default="WARNING")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_args(args)
    bar = ProgressBar()
    context = JobContext(on_progress=bar)
    try:
        if args.command == "passthrough":
            result = jobs.passthrough(args.video, args.out, args.audio, settings, context)
        elif args.command == "detect":
            result = jobs.detect_faces(args.video, load_characters(args.refs), args.sample_fps,
                                       args.similarity_threshold, settings, context)
        else:
            characters = load_characters(args.refs)
            if args.auto:
                faces, _ = jobs.auto_faces(args.video, settings, JobContext(), characters)
            else:
                faces = parse_faces(read_json_file(args.faces), "faces.json")
            result = jobs.lipsync(args.video, args.audio, faces, args.out, settings, context,
                                  args.enhance, args.fidelity_weight, args.sync_mode, characters=characters)
            result["output"]["path"] = str(Path(args.out).resolve())
    except LipSyncError as exc:
        bar.close()
        print(json.dumps({"success": False, "error_message": str(exc)}), flush=True)
        return 2
    except (PipelineCancelled, KeyboardInterrupt):
        bar.close()
        print(json.dumps({"success": False, "error_message": "cancelled"}), flush=True)
        return 130
    bar.close()
    print(json.dumps(result, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
