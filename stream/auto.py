"""Auto mode: build the lipsync `faces[]` from a detect-faces result.

One entry per run of sampled frames where a person is present and syncable (runs split
where the person is missing or unsyncable for more than one sample, and at every shot cut),
with the bbox of the first frame of the run. With references, only recognised characters
are used; without, every `face_N`. The names are detect-faces' shot-aware identities, so a
range never follows one person's box into another shot: each shot has its own ranges.
"""
from __future__ import annotations

from stream.schema import FaceSpec


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
