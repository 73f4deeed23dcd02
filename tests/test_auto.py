"""Auto mode's faces[] from a detect-faces result: ranges never cross a shot cut."""
from __future__ import annotations

from jobs.auto import faces_from_detection, faces_from_speakers


def _result() -> dict:
    """3 fps over 4 s; a cut at 2000 ms; `ravi` on the right, then on the left."""
    frames = []
    for k in range(12):
        t = round(k * 1000 / 3)
        shot = int(t >= 2000)
        bbox = [400, 50, 120, 120] if shot == 0 else [20, 50, 120, 120]
        frames.append({"timestamp_ms": t, "shot": shot,
                       "faces": [{"character_id": "ravi", "bbox": bbox, "syncable": True}]})
    return {"frames": frames, "sample_fps": 3.0, "video_duration_ms": 4000, "characters_detected": ["ravi"],
            "shots": [{"start_ms": 0, "end_ms": 2000}, {"start_ms": 2000, "end_ms": 4000}],
            "speakers": [{"character_id": "ravi", "segments": [{"start_ms": 1000, "end_ms": 3500}]}]}


def test_presence_ranges_split_at_the_cut_with_each_shots_bbox():
    specs = faces_from_detection(_result(), recognised_only=True)
    assert [(s.start_time_ms, s.end_time_ms, s.bbox[0]) for s in specs] == [(0, 2000, 400), (2000, 4000, 20)]


def test_speaker_ranges_split_at_the_cut_with_each_shots_bbox():
    specs = faces_from_speakers(_result())
    assert [(s.start_time_ms, s.end_time_ms, s.bbox[0]) for s in specs] == [(1000, 2000, 400), (2000, 3500, 20)]
