"""Auto mode: build the lipsync `faces[]` from a detect-faces result.

One entry per run of sampled frames where a person is present and syncable (runs split
where the person is missing or unsyncable for more than one sample), with the bbox of the
first frame of the run. With references, only recognised characters are used; without,
every `face_N`.
"""
from __future__ import annotations

from stream.schema import FaceSpec


def faces_from_detection(result: dict, recognised_only: bool) -> list[FaceSpec]:
    step_ms = 1000.0 / result["sample_fps"]
    runs: dict[str, list[list]] = {}
    for frame in result["frames"]:
        for face in frame["faces"]:
            person = face["character_id"]
            if recognised_only and person.startswith("face_") and person not in result["characters_detected"]:
                continue
            if not face["syncable"]:
                continue
            person_runs = runs.setdefault(person, [])
            t = frame["timestamp_ms"]
            if person_runs and t - person_runs[-1][1] <= 1.5 * step_ms:
                person_runs[-1][1] = t
            else:
                person_runs.append([t, t, face["bbox"]])
    specs = []
    for person, person_runs in runs.items():
        for start, end, bbox in person_runs:
            specs.append(FaceSpec(person, [float(v) for v in bbox], float(start),
                                  min(end + step_ms, float(result["video_duration_ms"]))))
    return sorted(specs, key=lambda s: (s.start_time_ms, s.character_id))


def faces_from_speakers(result: dict) -> list[FaceSpec]:
    """One entry per range where a person is the active speaker in the original audio,
    with their bbox from the sampled frame nearest the range's start."""
    specs = []
    for speaker in result.get("speakers", []):
        person = speaker["character_id"]
        sightings = [(frame["timestamp_ms"], face["bbox"]) for frame in result["frames"]
                     for face in frame["faces"] if face["character_id"] == person]
        if not sightings:
            continue
        for segment in speaker["segments"]:
            _, bbox = min(sightings, key=lambda s: abs(s[0] - segment["start_ms"]))
            specs.append(FaceSpec(person, [float(v) for v in bbox], float(segment["start_ms"]),
                                  float(segment["end_ms"])))
    return sorted(specs, key=lambda s: (s.start_time_ms, s.character_id))
