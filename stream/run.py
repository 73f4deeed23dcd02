"""`python -m stream.run`: run the product's jobs on local files.

    python -m stream.run passthrough --video IN.mp4 --out OUT.mp4 [--audio NEW.wav]

Prints a JSON summary on stdout; a progress bar goes to stderr when it is a terminal.
Exit code 2 means bad input (the message says what to fix), 1 an internal failure.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from stream import jobs
from stream.config import Settings
from stream.context import JobContext, Progress
from stream.errors import LipSyncError
from stream.pipeline import PipelineCancelled


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stream.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    passthrough = commands.add_parser("passthrough", help="decode and re-encode untouched, with new audio")
    passthrough.add_argument("--video", required=True)
    passthrough.add_argument("--out", required=True)
    passthrough.add_argument("--audio")
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
        else:  # pragma: no cover - argparse rejects unknown commands
            raise SystemExit(2)
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
