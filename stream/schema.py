"""The API's request bodies as dataclasses, parsed with errors that name the field.

Used by the server (JSON bodies) and the CLI (faces.json / characters.json files).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from stream.errors import InputError

SYNC_MODES = ("silence", "cut_off", "loop", "bounce")


@dataclass
class CharacterSpec:
    id: str
    name: str | None
    reference_image_url: str


@dataclass
class DetectRequest:
    video_url: str
    sample_fps: float = 3.0
    characters: list[CharacterSpec] = field(default_factory=list)
    similarity_threshold: float = 0.5


@dataclass
class FaceSpec:
    """A face to lip-sync: bbox [x, y, w, h] px near start_time_ms, and its time range (ms)."""

    character_id: str
    bbox: list[float]
    start_time_ms: float
    end_time_ms: float


@dataclass
class LipsyncRequest:
    """faces None (omitted, or `auto: true`) means auto mode: who speaks, when."""

    video_url: str
    audio_url: str
    upload_url: str | None
    faces: list[FaceSpec] | None
    enhance_quality: bool = False
    fidelity_weight: float = 0.7
    sync_mode: str = "silence"
    auto: bool = False


def _require(body: dict, key: str, kind: type | tuple, where: str = "") -> Any:
    name = f"{where}{key}"
    if key not in body or body[key] is None:
        raise InputError(f"missing field '{name}'")
    return _typed(body[key], kind, name)


def _typed(value: Any, kind: type | tuple, name: str) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise InputError(f"field '{name}' must be {' or '.join(k.__name__ for k in kinds)}, got a boolean")
    if not isinstance(value, kinds):
        raise InputError(f"field '{name}' must be {' or '.join(k.__name__ for k in kinds)}, "
                         f"got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"field '{name}' must be a finite number")
    return value


def _optional(body: dict, key: str, kind: type | tuple, default: Any, where: str = "") -> Any:
    return default if body.get(key) is None else _typed(body[key], kind, f"{where}{key}")


def _object(body: Any, name: str = "body") -> dict:
    if not isinstance(body, dict):
        raise InputError(f"{name} must be a JSON object")
    return body


def parse_characters(items: Any, where: str = "characters") -> list[CharacterSpec]:
    if not isinstance(items, list):
        raise InputError(f"field '{where}' must be a list")
    characters = []
    for i, item in enumerate(items):
        prefix = f"{where}[{i}]."
        item = _object(item, f"{where}[{i}]")
        characters.append(CharacterSpec(
            id=str(_require(item, "id", (str, int), prefix)),
            name=_optional(item, "name", str, None, prefix),
            reference_image_url=_require(item, "reference_image_url", str, prefix),
        ))
    ids = [c.id for c in characters]
    if len(set(ids)) != len(ids):
        raise InputError(f"field '{where}' has duplicate ids; each character needs its own id")
    return characters


def parse_detect(body: Any) -> DetectRequest:
    body = _object(body)
    request = DetectRequest(
        video_url=_require(body, "video_url", str),
        sample_fps=float(_optional(body, "sample_fps", (int, float), 3.0)),
        characters=parse_characters(body.get("characters") or []),
        similarity_threshold=float(_optional(body, "similarity_threshold", (int, float), 0.5)),
    )
    if not 0 < request.sample_fps <= 60:
        raise InputError("field 'sample_fps' must be in (0, 60]")
    if not -1 <= request.similarity_threshold <= 1:
        raise InputError("field 'similarity_threshold' must be in [-1, 1] (ArcFace cosine similarity)")
    return request


def parse_faces(items: Any, where: str = "faces") -> list[FaceSpec]:
    if not isinstance(items, list) or not items:
        raise InputError(f"field '{where}' must be a non-empty list of faces to lip-sync")
    faces = []
    for i, item in enumerate(items):
        prefix = f"{where}[{i}]."
        item = _object(item, f"{where}[{i}]")
        bbox = _require(item, "bbox", list, prefix)
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
            raise InputError(f"field '{prefix}bbox' must be [x, y, w, h] in pixels")
        if bbox[2] <= 0 or bbox[3] <= 0:
            raise InputError(f"field '{prefix}bbox' must have a positive width and height")
        start = float(_require(item, "start_time_ms", (int, float), prefix))
        end = float(_require(item, "end_time_ms", (int, float), prefix))
        if start < 0:
            raise InputError(f"field '{prefix}start_time_ms' must be >= 0")
        if end <= start:
            raise InputError(f"field '{prefix}end_time_ms' ({end:g}) must be after start_time_ms ({start:g})")
        faces.append(FaceSpec(str(_require(item, "character_id", (str, int), prefix)),
                              [float(v) for v in bbox], start, end))
    return faces


def parse_lipsync(body: Any, require_upload: bool = True) -> LipsyncRequest:
    body = _object(body)
    auto = bool(_optional(body, "auto", bool, False)) or body.get("faces") is None
    request = LipsyncRequest(
        video_url=_require(body, "video_url", str),
        audio_url=_require(body, "audio_url", str),
        upload_url=_require(body, "upload_url", str) if require_upload else _optional(body, "upload_url", str, None),
        faces=None if auto else parse_faces(body.get("faces")),
        auto=auto,
        enhance_quality=bool(_optional(body, "enhance_quality", bool, False)),
        fidelity_weight=float(_optional(body, "fidelity_weight", (int, float), 0.7)),
        sync_mode=_optional(body, "sync_mode", str, "silence"),
    )
    if not 0 <= request.fidelity_weight <= 1:
        raise InputError("field 'fidelity_weight' must be in [0, 1]")
    if request.sync_mode not in SYNC_MODES:
        raise InputError(f"field 'sync_mode' must be one of {', '.join(SYNC_MODES)}")
    return request
