"""`python -m stream.run`: run the product's jobs on local files.

    python -m stream.run passthrough --video IN.mp4 --out OUT.mp4 [--audio NEW.wav]
    python -m stream.run detect --video IN.mp4 [--refs characters.json] [--sample-fps 3]
    python -m stream.run lipsync --video IN.mp4 --audio NEW.wav --out OUT.mp4 \
        (--faces faces.json | --auto) [--refs characters.json]

characters.json is the /detect-faces `characters` list (reference_image_url may be a
local path, relative to the JSON file); faces.json is the /lipsync `faces` list. In lipsync,
--refs also names the people who are not requested (`unknown_faces` under their id).

Prints the job's JSON on stdout (as the HTTP API answers it; timing.total_ms is the whole
job, passes included). Progress goes to stderr: a redrawn bar on a terminal, else one line
as each phase starts and ends. Exit code 2 means bad input (the message says what to fix),
1 an internal failure, 130 cancelled.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TextIO

from jobs.config import Settings
from jobs.detect import detect_faces
from jobs.lipsync import lipsync
from jobs.passthrough import passthrough
from jobs.references import Character
from jobs.schema import (
    SYNC_MODES,
    FaceSpec,
    Voice,
    check_auto_voices,
    check_detect_options,
    check_lipsync_options,
    parse_characters,
    parse_faces,
    parse_voices,
)
from jobs.stems import fetched_stems, stem_inputs
from stream.context import JobContext, Progress
from stream.errors import InputError, LipSyncError
from stream.pipeline import PipelineCancelled

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

SETTINGS_USED = {
    "passthrough": ("device", "encoder", "preset", "crf", "queue_size"),
    "detect": ("models_dir", "face_backend", "device", "queue_size"),
    "lipsync": ("models_dir", "face_backend", "engine", "device", "encoder", "preset", "crf", "queue_size",
                "detect_interval", "mouth_bank", "lip_retargeting"),
}
"""The settings (jobs.config) each command reads, so its --help lists only those."""


class ProgressBar:
    """Progress on stderr: a bar redrawn in place on a terminal; elsewhere (a log, a pipe)
    one line when each phase starts and one when it ends, so a long pass is never silent."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.redraw = stream.isatty()
        self.last: Progress | None = None

    def __call__(self, progress: Progress) -> None:
        if self.last is not None and progress.phase != self.last.phase:
            self.close()
        if self.redraw:
            self._write("\r", progress, "")
        elif self.last is None:
            self._write("", progress, "\n")  # the phase starts
        self.last = progress

    def close(self) -> None:
        """End the current phase: keep the bar's last state, or write the phase's end line."""
        if self.last is None:
            return
        if self.redraw:
            self.stream.write("\n")
        else:
            self._write("", self.last, "\n")
        self.stream.flush()
        self.last = None

    def _write(self, start: str, progress: Progress, end: str) -> None:
        filled = int(progress.fraction * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"{start}{progress.phase:>12} [{bar}] {progress.fraction:4.0%} "
                          f"{progress.frames_done}/{progress.frames_total} frames{end}")
        self.stream.flush()


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
        image = local_file(spec.reference_image_url, base, f"characters.json: {spec.id}: reference image")
        characters.append(Character(spec.id, spec.name, image))
    return characters


def local_file(url: str, base: Path, what: str) -> Path:
    """A JSON file's local path (or file:// URL), relative to `base`; the CLI fetches nothing."""
    location = url.removeprefix("file://")
    if "://" in location:
        raise InputError(f"{what}: the CLI reads local files; download {url} first")
    path = (base / location) if not Path(location).is_absolute() else Path(location)
    if not path.is_file():
        raise InputError(f"{what} {path} not found")
    return path


def load_faces(path: str | None, voices_path: str | None) -> tuple[list[FaceSpec] | None, dict[str, Voice]]:
    """faces.json (or, for --auto, voices.json) with each stem's audio_url a local file,
    relative to its JSON file."""
    source = path or voices_path
    if source is None:
        return None, {}
    faces = parse_faces(read_json_file(path), "faces.json") if path else None
    voices = parse_voices(read_json_file(voices_path), "voices.json") if voices_path else {}
    base = Path(source).resolve().parent
    files = {label: local_file(url, base, f"{Path(source).name}: {label}")
             for url, _, label in stem_inputs(faces, voices)}
    return fetched_stems(faces, voices, files)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stream.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{passthrough,detect,lipsync}")
    add_passthrough(commands.add_parser("passthrough", help="decode and re-encode untouched, with new audio"))
    add_detect(commands.add_parser("detect", help="find, name and judge every face (prints /detect-faces JSON)"))
    add_lipsync(commands.add_parser("lipsync", help="re-animate faces to the new audio (prints /lipsync JSON)"))
    for name, sub in commands.choices.items():
        Settings.add_arguments(sub, SETTINGS_USED[name])
        sub.add_argument("--log-level", default="WARNING", choices=LOG_LEVELS,
                         help="lowest level of log lines on stderr (default %(default)s)")
    return parser


def add_passthrough(command: argparse.ArgumentParser) -> None:
    command.add_argument("--video", required=True, help="input video file (required)")
    command.add_argument("--out", required=True, help="output .mp4 path (required)")
    command.add_argument("--audio", help="new audio file, trimmed or padded to the video's length "
                                         "(default: the video's own audio, copied)")


def add_detect(command: argparse.ArgumentParser) -> None:
    command.add_argument("--video", required=True, help="input video file (required)")
    command.add_argument("--refs", help="characters.json: [{id, name, reference_image_url}] to name faces "
                                        "(default: none, people are face_1, face_2, ...)")
    command.add_argument("--sample-fps", type=float, default=3.0,
                         help="frames analysed per second of video, > 0 to 60 (default %(default)s)")
    command.add_argument("--similarity-threshold", type=float, default=0.5,
                         help="ArcFace cosine similarity, -1 to 1, from which a face is a reference's "
                              "person (default %(default)s)")


def add_lipsync(command: argparse.ArgumentParser) -> None:
    command.add_argument("--video", required=True, help="input video file (required)")
    command.add_argument("--audio", help="new audio file: the final mix muxed into the output (default: the "
                                         "faces' own audio_url stems, mixed; required when a face has none)")
    command.add_argument("--out", required=True, help="output .mp4 path (required)")
    chosen = command.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--faces", help="faces.json: [{character_id, bbox, start_time_ms, end_time_ms, "
                                        "audio_url?, audio_offset_ms?, expressiveness?}]; audio_url is that "
                                        "face's own stem, a local path (this or --auto is required)")
    chosen.add_argument("--auto", action="store_true",
                        help="pick faces and ranges from a detection pass: the active speakers, else every "
                             "syncable (recognised, with --refs) person where present (this or --faces is required)")
    command.add_argument("--refs", help="characters.json: who --auto picks, and names for people not requested "
                                        "(default: none)")
    command.add_argument("--voices", help="with --auto, voices.json: [{character_id, audio_url, audio_offset_ms?, "
                                          "expressiveness?}]: a person with a stem is synced to it, only while "
                                          "it has speech (default: none)")
    command.add_argument("--expressiveness", type=float, default=0.5,
                         help="how wide the mouths move, 0 to 1; 0.5 is the engine's own amount, a face's "
                              "expressiveness overrides it (default %(default)s)")
    command.add_argument("--sync-mode", default="silence", choices=SYNC_MODES,
                         help="when audio and video lengths differ: silence keeps the video's length, cut_off "
                              "the shorter, loop or bounce extend the video (default %(default)s)")
    command.add_argument("--enhance", action="store_true",
                         help="restore the synced faces with CodeFormer when its weights are present (default off)")
    command.add_argument("--fidelity-weight", type=float, default=0.7,
                         help="CodeFormer with --enhance: 0 (most restored) to 1 (most faithful) "
                              "(default %(default)s)")


OUTPUT_SUFFIX = ".mp4"
"""What every command writes: MP4 (H.264 video, AAC audio)."""


def check_output(out: str) -> None:
    """Refuse (InputError, exit 2) an --out the job could not write, before any work: another
    extension than .mp4, a folder that does not exist or cannot be written, a folder as the file."""
    path = Path(out)
    if path.suffix.lower() != OUTPUT_SUFFIX:
        raise InputError(f"--out {out}: this tool writes MP4 (H.264 + AAC); give a path ending in .mp4"
                         + (f", not {path.suffix}" if path.suffix else ""))
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"--out {out}: the folder {folder} does not exist; create it first or choose another")
    if path.is_dir():
        raise InputError(f"--out {out} is a folder; give a file path ending in .mp4")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: the folder {folder} is not writable; choose another")


def run_job(args: argparse.Namespace, settings: Settings, context: JobContext) -> dict:
    """The command's job, as the API's: lipsync --auto runs its detection pass in the job.
    Options and --out are checked first (the API's ranges, `jobs.schema`), before any work."""
    if getattr(args, "out", None) is not None:
        check_output(args.out)
    if args.command == "passthrough":
        return passthrough(args.video, args.out, args.audio, settings, context)
    if args.command == "detect":
        check_detect_options(args.sample_fps, args.similarity_threshold, ("--sample-fps", "--similarity-threshold"))
        return detect_faces(args.video, load_characters(args.refs), args.sample_fps,
                                 args.similarity_threshold, settings, context)
    if args.voices and not args.auto:
        raise InputError("--voices is for --auto; with --faces, give each face its audio_url in faces.json")
    check_lipsync_options(args.fidelity_weight, args.expressiveness, args.sync_mode,
                          ("--fidelity-weight", "--expressiveness", "--sync-mode"))
    characters = load_characters(args.refs)
    if args.voices:
        check_auto_voices(parse_voices(read_json_file(args.voices), "voices.json"), [c.id for c in characters],
                          "voices.json")
    faces, voices = load_faces(args.faces, args.voices)
    given = [f.voice for f in faces] if faces is not None else list(voices.values())
    if args.audio is None and (not given or any(v.audio_url is None for v in given)):
        raise InputError("--audio is required unless every face has its own audio_url (the stems are then mixed)")
    return lipsync(args.video, args.audio, faces, args.out, settings, context, args.enhance,
                        args.fidelity_weight, args.sync_mode, characters=characters,
                        voices=voices, expressiveness=args.expressiveness)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bar = ProgressBar()
    started = time.perf_counter()
    try:
        result = run_job(args, Settings.from_args(args), JobContext(on_progress=bar))
    except LipSyncError as exc:
        bar.close()
        print(json.dumps({"success": False, "error_message": str(exc)}), flush=True)
        return 2
    except (PipelineCancelled, KeyboardInterrupt):
        bar.close()
        print(json.dumps({"success": False, "error_message": "cancelled"}), flush=True)
        return 130
    bar.close()
    result["timing"]["total_ms"] = round((time.perf_counter() - started) * 1000, 1)
    if "output" in result:
        result["output"]["path"] = str(Path(args.out).resolve())
    print(json.dumps(result, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
