"""Auto mode: build the lipsync `faces[]` from a detect-faces result.

One entry per run of sampled frames where a person is present and syncable (runs split
where the person is missing or unsyncable for more than one sample, and at every shot cut),
with the bbox of the first frame of the run. With references, only recognised characters
are used; without, every `face_N`. The names are detect-faces' shot-aware identities, so a
range never follows one person's box into another shot: each shot has its own ranges.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from jobs.config import Settings
from jobs.detect import ANALYSIS_RATE, detect_faces
from jobs.references import Character
from jobs.schema import FaceSpec, Voice
from jobs.stems import SPEECH_FRAME_MS, load_stem, speech_ranges, with_voices
from stages.decode import VideoInfo, probe_video
from stream.context import JobContext
from stream.errors import InputError


def _shot_end_ms(result: dict, shot: int) -> float:
    shots = result.get("shots") or []
    return float(shots[shot]["end_ms"]) if shot < len(shots) else float(result["video_duration_ms"])


def faces_from_detection(result: dict, recognised_only: bool) -> list[FaceSpec]:
    step_ms = 1000.0 / result["sample_fps"]
    runs: dict[str, list[list]] = {}
    for frame in result["frames"]:
        shot = frame.get("shot", 0)
        for face in frame["faces"]:
            person = face["character_id"]
            if recognised_only and person.startswith("face_") and person not in result["characters_detected"]:
                continue
            if not face["syncable"]:
                continue
            person_runs = runs.setdefault(person, [])
            t = frame["timestamp_ms"]
            if person_runs and t - person_runs[-1][1] <= 1.5 * step_ms and person_runs[-1][3] == shot:
                person_runs[-1][1] = t
            else:
                person_runs.append([t, t, face["bbox"], shot])
    specs = []
    for person, person_runs in runs.items():
        for start, end, bbox, shot in person_runs:
            specs.append(FaceSpec(person, [float(v) for v in bbox], float(start),
                                  min(end + step_ms, _shot_end_ms(result, shot))))
    return sorted(specs, key=lambda s: (s.start_time_ms, s.character_id))


def faces_from_speakers(result: dict) -> list[FaceSpec]:
    """One entry per range where a person is the active speaker in the original audio, split
    at shot cuts, with their bbox from the sampled frame of that shot nearest the range's start
    (a piece where the person is not seen in that shot is left out)."""
    shots = result.get("shots") or [{"start_ms": 0, "end_ms": result["video_duration_ms"]}]
    specs = []
    for speaker in result.get("speakers", []):
        person = speaker["character_id"]
        sightings = [(frame["timestamp_ms"], frame.get("shot", 0), face["bbox"]) for frame in result["frames"]
                     for face in frame["faces"] if face["character_id"] == person]
        for segment in speaker["segments"]:
            for shot, bounds in enumerate(shots):
                start = max(segment["start_ms"], bounds["start_ms"])
                end = min(segment["end_ms"], bounds["end_ms"])
                seen = [s for s in sightings if s[1] == shot]
                if end <= start or not seen:
                    continue
                _, _, bbox = min(seen, key=lambda s: abs(s[0] - start))
                specs.append(FaceSpec(person, [float(v) for v in bbox], float(start), float(end)))
    return sorted(specs, key=lambda s: (s.start_time_ms, s.character_id))


def while_speaking(faces: Iterable[FaceSpec],
                   speech: Sequence[tuple[float, float]]) -> list[tuple[FaceSpec, float, float]]:
    """Each face's range cut to where its stem has speech: (face, start_ms, end_ms) pieces."""
    pieces = []
    for face in faces:
        for start, end in speech:
            lo, hi = max(face.start_time_ms, start), min(face.end_time_ms, end)
            if hi - lo >= SPEECH_FRAME_MS:
                pieces.append((face, lo, hi))
    return pieces


def stem_speakers(detected: dict, presence: Sequence[FaceSpec], voices: dict[str, Voice],
                  rate: int = 16000) -> list[dict]:
    """Auto mode with stems: a detect-faces `speakers` list (character_id, segments) of the
    people with a stem, each while present and syncable (`presence`, from `faces_from_detection`)
    and their stem has speech; `jobs.auto.faces_from_speakers` turns it into faces."""
    speakers = []
    for character_id, voice in voices.items():
        if voice.audio_url is None:
            continue
        label = f"the audio_url of {character_id}"
        speech = speech_ranges(load_stem(voice.audio_url, rate, voice.offset_ms, label), rate)
        mine = [f for f in presence if f.character_id == character_id]
        segments = [{"start_ms": lo, "end_ms": hi} for _, lo, hi in while_speaking(mine, speech)]
        if segments:
            speakers.append({"character_id": character_id, "segments": segments})
    return speakers


def auto_faces_with_stems(faces: Sequence[FaceSpec], detected: dict, voices: dict[str, Voice] | None,
                          rate: int = 16000) -> tuple[list[FaceSpec], str]:
    """Auto mode's faces (from its rule) with the people who have a stem replaced by their
    pieces present, syncable and speaking in it, each face given its voice. Returns the faces
    and a sentence for the rule's warning ("" without stems)."""
    stems = {cid: v for cid, v in (voices or {}).items() if v.audio_url is not None}
    if not stems:
        return with_voices(faces, voices), ""
    presence = faces_from_detection(detected, recognised_only=False)
    present = {f.character_id for f in presence}
    used = {cid: v for cid, v in stems.items() if cid in present}  # a stem of no one seen is not even read
    speaking = faces_from_speakers({**detected, "speakers": stem_speakers(detected, presence, used, rate)})
    kept = [f for f in faces if f.character_id not in stems] + speaking
    rule = f"; {', '.join(used)}: while present and their own stem has speech" if used else ""
    unseen = [cid for cid in stems if cid not in used]
    if unseen:
        rule += f"; {', '.join(unseen)}: not seen (syncable) in the video, so their stem was not used"
    return with_voices(sorted(kept, key=lambda f: (f.start_time_ms, f.character_id)), voices), rule


def auto_faces(video: str, settings: Settings, context: JobContext,
               characters: Sequence[Character] = (), voices: dict[str, Voice] | None = None,
               info: VideoInfo | None = None) -> tuple[list[FaceSpec], str]:
    """Auto mode, from a detect-faces pass at 3 fps: who speaks when in the original audio
    (Light-ASD) when it can tell; otherwise every syncable person (recognised ones when
    references are given) where they are present. The new audio is assumed to be a dub
    aligned with the original. A person with their own stem (voices, by character_id) is
    synced only while present and their stem has speech (`jobs.stems`).
    info: the video's `probe_video` result, probed here when not given.
    Returns the faces and a sentence saying which rule ran."""
    info = info or probe_video(video)
    detected = detect_faces(video, characters, 3.0, 0.5, settings, context, info=info)
    faces = faces_from_speakers(detected)
    if characters:
        faces = [f for f in faces if f.character_id in detected["characters_detected"]]
    if faces:
        faces, stems_rule = auto_faces_with_stems(faces, detected, voices, ANALYSIS_RATE)
        return faces, ("auto mode: lip-synced each person while they are the active speaker in the original audio"
                       + stems_rule)
    faces = faces_from_detection(detected, recognised_only=bool(characters))
    if not faces:
        raise InputError("auto mode found no syncable face in the video; pass faces[] explicitly")
    faces, stems_rule = auto_faces_with_stems(faces, detected, voices, ANALYSIS_RATE)
    return faces, ("auto mode: lip-synced every syncable face where it is present, not the active speakers: "
                   + _why_no_speakers(info, detected, settings) + stems_rule)


def _why_no_speakers(info: VideoInfo, detected: dict, settings: Settings) -> str:
    """Why the active-speaker rule gave no faces: no model, no audio, or nobody it could use."""
    if "speakers" in detected:
        return ("Light-ASD found no active speaker in the original audio" if not detected["speakers"] else
                "the active speakers Light-ASD found are not syncable (or not recognised) where they speak")
    if not info.has_audio:
        return "the video has no audio track to find the active speaker in"
    if not (Path(settings.models_dir) / "light-asd" / "pretrain_AVA_CVPR.model").is_file():
        return "Light-ASD weights not found (MODELS_DIR/light-asd/pretrain_AVA_CVPR.model)"
    return "Light-ASD needs torch, which is not installed"


def results_per_person(results: list[dict]) -> list[dict]:
    """Auto mode's `faces.results[]`: one entry per person (first appearance order) with the
    segments of all their ranges in time order and the summed summary, so a client that
    indexes results by `character_id` sees everything. Gaps between the ranges (the person
    is not requested there: not speaking, or absent) carry no segment."""
    people: dict[str, dict] = {}
    for result in results:
        person = people.setdefault(result["character_id"], {
            "character_id": result["character_id"], "success": False, "segments": [],
            "summary": {"total_ms": 0, "synced_ms": 0, "skipped_ms": 0}})
        person["segments"].extend(result["segments"])
        for key in person["summary"]:
            person["summary"][key] += result["summary"][key]
    for person in people.values():
        person["segments"].sort(key=lambda s: s["start_ms"])
        person["success"] = person["summary"]["synced_ms"] > 0
    return list(people.values())
