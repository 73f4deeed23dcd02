"""Configuration in one place: every setting has an env var and a CLI flag twin.

| setting            | env var                  | flag             | default     |
|--------------------|--------------------------|------------------|-------------|
| models_dir         | MODELS_DIR               | --models-dir     | ./weights   |
| face_backend       | LIPSYNC_FACE_BACKEND     | --face-backend   | auto        |
| engine             | LIPSYNC_ENGINE           | --engine         | auto        |
| device             | LIPSYNC_DEVICE           | --device         | auto        |
| encoder            | LIPSYNC_ENCODER          | --encoder        | auto        |
| queue_size         | LIPSYNC_QUEUE_SIZE       | --queue-size     | 8           |
| preset             | LIPSYNC_X264_PRESET      | --preset         | veryfast    |
| crf                | LIPSYNC_X264_CRF         | --crf            | 16          |
| detect_interval    | LIPSYNC_DETECT_INTERVAL  | --detect-interval| 5           |
| workdir            | LIPSYNC_WORKDIR          | --workdir        | system temp |
| keep_failed_s      | LIPSYNC_KEEP_FAILED_S    | --keep-failed-s  | 3600        |
| mouth_bank         | LIPSYNC_MOUTH_BANK       | --mouth-bank     | 48          |
| lip_retargeting    | LIPSYNC_LIP_RETARGETING  | --lip-retargeting| off         |

face_backend: auto | insightface | default. engine: auto | classical | musetalk.
device: auto (cuda when torch sees a GPU, else cpu) | cpu | cuda | cuda:N.
encoder: auto (h264_nvenc on a cuda device whose GPU has an encoder, else libx264) |
libx264 | h264_nvenc (falls back to libx264 with a warning where NVENC cannot open);
see `stream/device.py`.
detect_interval: in lipsync, run the full detector every N frames and follow faces with
the cheap landmark path in between (DeepStream's `interval`).
keep_failed_s: how long an output whose upload failed is kept on disk for retrieval.
mouth_bank: real mouth samples kept per person by the classical engine's mouth bank
(`stages/mouth_bank.py`); 0 turns the bank off (synthesised mouths only).
lip_retargeting: on drives LivePortrait's lips by the official lip retargeting MLP from
the lip-open ratio (`flag_lip_retargeting`, off by default as in the official code).

Other settings live with the code they configure, each documented there: the address
policy in `stream/addresses.py`, fetching in `stream/fetch.py`, uploads and webhooks in
`stream/delivery.py`, browser uploads and kept results in `stream/uploads.py`, the server's admission and limits in `stream/admission.py`, the
Redis queue (LIPSYNC_QUEUE, LIPSYNC_QUEUE_NAME, LIPSYNC_QUEUE_VISIBILITY_S,
LIPSYNC_QUEUE_TIME_LIMIT_S, LIPSYNC_WORKER_HEARTBEAT_S) in `stream/queue.py`.
"""
from __future__ import annotations

import argparse
import os
import re
import tempfile
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Iterable

from stream.device import ENCODERS

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")

_ENV = {
    "models_dir": "MODELS_DIR",
    "face_backend": "LIPSYNC_FACE_BACKEND",
    "engine": "LIPSYNC_ENGINE",
    "device": "LIPSYNC_DEVICE",
    "encoder": "LIPSYNC_ENCODER",
    "queue_size": "LIPSYNC_QUEUE_SIZE",
    "preset": "LIPSYNC_X264_PRESET",
    "crf": "LIPSYNC_X264_CRF",
    "detect_interval": "LIPSYNC_DETECT_INTERVAL",
    "workdir": "LIPSYNC_WORKDIR",
    "keep_failed_s": "LIPSYNC_KEEP_FAILED_S",
    "mouth_bank": "LIPSYNC_MOUTH_BANK",
    "lip_retargeting": "LIPSYNC_LIP_RETARGETING",
}


@dataclass
class Settings:
    models_dir: Path = Path("weights")
    face_backend: str = "auto"
    engine: str = "auto"
    device: str = "auto"
    encoder: str = "auto"
    queue_size: int = 8
    preset: str = "veryfast"
    crf: int = 16
    detect_interval: int = 5
    workdir: Path = Path(tempfile.gettempdir())
    keep_failed_s: float = 3600.0
    mouth_bank: int = 48
    """Real mouth samples kept per person for the classical engine (0: synthesised mouths only)."""
    lip_retargeting: str = "off"
    """on: LivePortrait's lips follow the lip-open ratio through R_lip (the official flag_lip_retargeting)."""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        environ = os.environ if environ is None else environ
        values = {}
        for field in fields(cls):
            raw = environ.get(_ENV[field.name])
            if raw not in (None, ""):
                values[field.name] = _convert(field.name, raw)
        return cls(**values)

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser, names: Iterable[str] | None = None) -> None:
        """Add the CLI twins of `names` (default: every setting), so a command shows only the
        settings it uses; their defaults come from the environment."""
        defaults = Settings.from_env()
        for name in names or [field.name for field in fields(Settings)]:
            description, choices = _FLAGS[name]
            parser.add_argument("--" + name.replace("_", "-"), dest=name, default=getattr(defaults, name),
                                type=lambda raw, name=name: _convert(name, raw), choices=choices,
                                metavar="{auto,cpu,cuda,cuda:N}" if name == "device" else None,
                                help=f"{description} (env {_ENV[name]}; default %(default)s)")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Settings":
        """The settings a command's flags give; those it has no flag for come from the environment."""
        return replace(cls.from_env(), **{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})


_FLAGS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "models_dir": ("folder of downloaded weights (scripts/download_models.py)", None),
    "face_backend": ("face detector and identity embedder; auto: InsightFace buffalo_l when its weights "
                     "are in the models folder, else the embedded default", ("auto", "insightface", "default")),
    "engine": ("lip-sync engine; auto: MuseTalk when its weights are in the models folder, else classical",
               ("auto", "classical", "musetalk")),
    "device": ("torch device; auto: cuda when torch sees a GPU, else cpu", None),
    "encoder": ("video encoder; auto: h264_nvenc on a cuda device whose GPU has one, else libx264",
                ENCODERS),
    "queue_size": ("frames each queue between stages holds (bounds memory)", None),
    "preset": ("libx264 speed preset (slower: smaller file)", X264_PRESETS),
    "crf": ("video quality 0-51, lower is better (18 is visually lossless)", None),
    "detect_interval": ("run the full face detector every N frames, follow faces by landmarks between", None),
    "workdir": ("folder for each job's temp files", None),
    "keep_failed_s": ("seconds an output whose upload failed is kept on disk", None),
    "mouth_bank": ("real mouth samples kept per person for the classical engine (0: synthesised only)", None),
    "lip_retargeting": ("LivePortrait's lips from the lip-open ratio via the official lip retargeting MLP",
                        ("off", "on")),
}
"""Each setting's flag help and allowed values (None: any value of its type)."""


def _convert(name: str, raw: str):
    if name == "device" and not re.fullmatch(r"auto|cpu|cuda(:\d+)?", raw):
        raise argparse.ArgumentTypeError(f"device must be auto, cpu, cuda or cuda:N, not {raw!r}")
    kind = {f.name: f.type for f in fields(Settings)}[name]
    if kind in ("Path", Path):
        return Path(raw)
    if kind in ("int", int):
        return int(raw)
    if kind in ("float", float):
        return float(raw)
    return str(raw)
