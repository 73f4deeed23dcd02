"""The API's request bodies as dataclasses, parsed with errors that name the field.

Used by the server (JSON bodies) and the CLI (faces.json / characters.json files).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from stream.errors import InputError

SYNC_MODES = ("silence", "cut_off", "loop", "bounce")
MAX_ID_CHARS = 128
"""Longest character id accepted; ids are echoed in every result and log line."""
MAX_NUMBER = 1e12
"""Largest magnitude of a numeric field (ms, pixels, fps): bigger is always a mistake."""
_SHOWN_CHARS = 60


def shown(value: Any) -> str:
    """A value as an error message echoes it: repr, cut to a few dozen characters."""
    text = repr(value)
    if len(text) <= _SHOWN_CHARS:
        return text
    return f"{text[:_SHOWN_CHARS]}... ({len(text)} characters)"


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
class Voice:
    """A character's own dialogue stem, which drives only their mouth, and how wide it moves.

    audio_url: the stem (a URL in a request, a local path once fetched); None: the job's audio.
    offset_ms: where the stem starts on the video's timeline (ms; negative cuts its start).
    expressiveness: 0-1, how wide the mouth moves (0.5 the engine's own); None: the request's.
    """

    audio_url: str | None = None
    offset_ms: float = 0.0
    expressiveness: float | None = None


@dataclass
class FaceSpec:
    """A face to lip-sync: bbox [x, y, w, h] px near start_time_ms, and its time range (ms)."""

    character_id: str
    bbox: list[float]
    start_time_ms: float
    end_time_ms: float
    voice: Voice = field(default_factory=Voice)
    """This face's own stem and expressiveness (`faces[i].audio_url`...); empty: the job's audio."""


@dataclass
class LipsyncRequest:
    """faces None (omitted, or `auto: true`) means auto mode: who speaks, when."""

    video_url: str
    audio_url: str | None
    """The track muxed into the output (the final mix); None: every face's stem, mixed."""
    upload_url: str | None
    faces: list[FaceSpec] | None
    enhance_quality: bool = False
    fidelity_weight: float = 0.7
    sync_mode: str = "silence"
    auto: bool = False
    characters: list[CharacterSpec] = field(default_factory=list)
    """Reference people: auto mode picks them, and people not requested are named by them."""
    voices: dict[str, Voice] = field(default_factory=dict)
    """Auto mode's faces[] entries by character_id: each person's stem and expressiveness."""
    expressiveness: float = 0.5
    """How wide every mouth moves (0-1, 0.5 the engine's own), unless a face sets its own."""


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
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            finite = math.isfinite(value) and abs(value) <= MAX_NUMBER
        except OverflowError:  # an int too large for a float
            finite = False
        if not finite:
            raise InputError(f"field '{name}' must be a finite number of magnitude at most {MAX_NUMBER:g}")
    if isinstance(value, str) and not is_text(value):
        raise InputError(f"field '{name}' is not valid Unicode text (it holds a lone surrogate such as \\ud800)")
    return value


def is_text(value: str) -> bool:
    """True when `value` can be written as UTF-8 (JSON allows lone surrogates like "\\ud800"; UTF-8 does not)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


MAX_DEPTH = 32
"""Deepest nesting of arrays and objects a request body may have; ours need 4."""


def check_json(value: Any) -> None:
    """Refuse (InputError, 422) a parsed body nested deeper than MAX_DEPTH, or holding a string
    (key or value) that is not valid text; the message names where, e.g. "faces[0].character_id".
    Deep bodies would break every recursive walk after this one (deepcopy, asdict)."""
    stack: list[tuple[str, Any, int]] = [("body", value, 0)]
    while stack:
        path, item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InputError(f"request body nests arrays or objects more than {MAX_DEPTH} levels deep "
                             f"(at {shown(path)})")
        if isinstance(item, str):
            if not is_text(item):
                raise InputError(f"field '{path}' is not valid Unicode text (it holds a lone surrogate "
                                 "such as \\ud800)")
        elif isinstance(item, dict):
            for key, child in item.items():
                if not is_text(key):
                    raise InputError(f"a key in '{path}' is not valid Unicode text (it holds a lone surrogate)")
                stack.append((key if path == "body" else f"{path}.{key}", child, depth + 1))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", child, depth + 1) for i, child in enumerate(item))


def _id(body: dict, key: str, where: str) -> str:
    """A character id: a string or an integer, valid text, at most MAX_ID_CHARS characters."""
    value = str(_require(body, key, (str, int), where))
    if len(value) > MAX_ID_CHARS:
        raise InputError(f"field '{where}{key}' is {len(value)} characters long; ids may have at most "
                         f"{MAX_ID_CHARS}")
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
            id=_id(item, "id", prefix),
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
    check_detect_options(request.sample_fps, request.similarity_threshold)
    return request


def _field(name: str) -> str:
    return name if name.startswith("-") else f"field '{name}'"


def check_detect_options(sample_fps: float, similarity_threshold: float,
                         names: tuple[str, str] = ("sample_fps", "similarity_threshold")) -> None:
    """The detect options' ranges, one check for the API and the CLI (`names`: the fields or flags)."""
    if not 0 < sample_fps <= 60:
        raise InputError(f"{_field(names[0])} must be in (0, 60] frames per second, not {sample_fps:g}")
    if not -1 <= similarity_threshold <= 1:
        raise InputError(f"{_field(names[1])} must be in [-1, 1] (ArcFace cosine similarity), "
                         f"not {similarity_threshold:g}")


def check_lipsync_options(fidelity_weight: float, expressiveness: float, sync_mode: str,
                          names: tuple[str, str, str] = ("fidelity_weight", "expressiveness", "sync_mode")) -> None:
    """The lipsync options' ranges, one check for the API and the CLI (`names`: the fields or flags)."""
    if not 0 <= fidelity_weight <= 1:
        raise InputError(f"{_field(names[0])} must be in [0, 1], not {fidelity_weight:g}")
    _expressiveness(expressiveness, names[1])
    if sync_mode not in SYNC_MODES:
        raise InputError(f"{_field(names[2])} must be one of {', '.join(SYNC_MODES)}, not {shown(sync_mode)}")


def parse_faces(items: Any, where: str = "faces") -> list[FaceSpec]:
    if not isinstance(items, list) or not items:
        raise InputError(f"field '{where}' must be a non-empty list of faces to lip-sync")
    faces = []
    seen: dict[tuple, int] = {}  # a face's fields -> its index, to refuse repeats
    for i, item in enumerate(items):
        prefix = f"{where}[{i}]."
        item = _object(item, f"{where}[{i}]")
        bbox = _require(item, "bbox", list, prefix)
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
            raise InputError(f"field '{prefix}bbox' must be [x, y, w, h] in pixels")
        bbox = [_typed(v, (int, float), f"{prefix}bbox[{k}]") for k, v in enumerate(bbox)]
        if bbox[2] <= 0 or bbox[3] <= 0:
            raise InputError(f"field '{prefix}bbox' must have a positive width and height")
        start = float(_require(item, "start_time_ms", (int, float), prefix))
        end = float(_require(item, "end_time_ms", (int, float), prefix))
        if start < 0:
            raise InputError(f"field '{prefix}start_time_ms' must be >= 0")
        if end <= start:
            raise InputError(f"field '{prefix}end_time_ms' ({end:g}) must be after start_time_ms ({start:g})")
        face = FaceSpec(_id(item, "character_id", prefix), [float(v) for v in bbox], start, end,
                        parse_voice(item, prefix))
        key = (face.character_id, *face.bbox, start, end)
        if key in seen:
            raise InputError(f"field '{prefix[:-1]}' repeats faces[{seen[key]}]; give each face once")
        seen[key] = i
        faces.append(face)
    return faces


def _expressiveness(value: Any, name: str) -> float | None:
    if value is not None and not 0 <= value <= 1:
        raise InputError(f"{_field(name)} must be in [0, 1] (0.5 moves the mouth as the engine does)")
    return None if value is None else float(value)


def parse_voice(item: dict, prefix: str) -> Voice:
    """A faces[] entry's optional audio_url (its stem), audio_offset_ms and expressiveness."""
    voice = Voice(_optional(item, "audio_url", str, None, prefix),
                  float(_optional(item, "audio_offset_ms", (int, float), 0.0, prefix)),
                  _expressiveness(_optional(item, "expressiveness", (int, float), None, prefix),
                                  f"{prefix}expressiveness"))
    if voice.audio_url is None and voice.offset_ms != 0:
        raise InputError(f"field '{prefix}audio_offset_ms' places a stem: give '{prefix}audio_url' too")
    return voice


def parse_voices(items: Any, where: str = "faces") -> dict[str, Voice]:
    """Auto mode's faces[]: [{character_id, audio_url?, audio_offset_ms?, expressiveness?}]."""
    if not isinstance(items, list):
        raise InputError(f"field '{where}' must be a list")
    voices: dict[str, Voice] = {}
    for i, item in enumerate(items):
        prefix = f"{where}[{i}]."
        item = _object(item, f"{where}[{i}]")
        character_id = _id(item, "character_id", prefix)
        if character_id in voices:
            raise InputError(f"field '{where}[{i}]' repeats character_id {shown(character_id)}; in auto mode "
                             "give each person once")
        voices[character_id] = parse_voice(item, prefix)
    return voices


AUTO_NAME = re.compile(r"face_[0-9]+")
"""How auto mode names a person no reference recognised (detect-faces' `face_N`)."""


def check_auto_voices(voices: dict[str, Voice], character_ids: list[str], where: str = "faces") -> None:
    """Refuse (InputError) an auto-mode faces[] entry whose character_id auto mode can never
    find: not a characters[] id nor a `face_N` name. Checked before any stem is fetched."""
    known = set(character_ids)
    for i, character_id in enumerate(voices):
        if character_id not in known and not AUTO_NAME.fullmatch(character_id):
            choices = f"one of the characters[] ids ({', '.join(map(shown, character_ids))}) or " if known else ""
            raise InputError(f"field '{where}[{i}].character_id' {shown(character_id)} names no one auto mode can "
                             f"find: give {choices}a face_N name from detect-faces")


def parse_lipsync(body: Any, require_upload: bool = True) -> LipsyncRequest:
    body = _object(body)
    auto = bool(_optional(body, "auto", bool, False)) or body.get("faces") is None
    request = LipsyncRequest(
        video_url=_require(body, "video_url", str),
        audio_url=_optional(body, "audio_url", str, None),
        upload_url=_require(body, "upload_url", str) if require_upload else _optional(body, "upload_url", str, None),
        faces=None if auto else parse_faces(body.get("faces")),
        voices=parse_voices(body["faces"]) if auto and body.get("faces") is not None else {},
        expressiveness=_expressiveness(_optional(body, "expressiveness", (int, float), 0.5), "expressiveness"),
        auto=auto,
        enhance_quality=bool(_optional(body, "enhance_quality", bool, False)),
        fidelity_weight=float(_optional(body, "fidelity_weight", (int, float), 0.7)),
        sync_mode=_optional(body, "sync_mode", str, "silence"),
        characters=parse_characters(body.get("characters") or []),
    )
    check_lipsync_options(request.fidelity_weight, request.expressiveness, request.sync_mode)
    check_auto_voices(request.voices, [c.id for c in request.characters])
    if request.audio_url is None:
        voices = [f.voice for f in request.faces] if request.faces is not None else list(request.voices.values())
        if not voices or any(v.audio_url is None for v in voices):
            raise InputError("missing field 'audio_url' (it may be left out only when every entry of faces[] "
                             "has its own audio_url: the output track is then those stems mixed)")
    return request
