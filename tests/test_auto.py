"""Auto mode's faces[] from a detect-faces result (ranges never cross a shot cut) and its results[]
(one entry per person)."""
from __future__ import annotations

import jobs.auto
import jobs.detect
import jobs.lipsync
from jobs.auto import faces_from_detection, faces_from_speakers, results_per_person
from jobs.config import Settings
from jobs.lipsync import lipsync
from tests.media import clip_frames
from tests.shot_media import Person, Shot, edited_video


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


def test_results_per_person_merge_ranges_in_time_order():
    results = [{"character_id": "a", "success": True, "summary": {"total_ms": 1000, "synced_ms": 800, "skipped_ms": 200},
                "segments": [{"start_ms": 2000, "end_ms": 3000, "synced": True}]},
               {"character_id": "b", "success": False, "summary": {"total_ms": 500, "synced_ms": 0, "skipped_ms": 500},
                "segments": [{"start_ms": 0, "end_ms": 500, "synced": False}]},
               {"character_id": "a", "success": False, "summary": {"total_ms": 400, "synced_ms": 0, "skipped_ms": 400},
                "segments": [{"start_ms": 0, "end_ms": 400, "synced": False}]}]
    merged = results_per_person(results)
    assert [r["character_id"] for r in merged] == ["a", "b"]
    assert [s["start_ms"] for s in merged[0]["segments"]] == [0, 2000]
    assert merged[0]["summary"] == {"total_ms": 1400, "synced_ms": 800, "skipped_ms": 600} and merged[0]["success"]
    assert not merged[1]["success"]


def test_auto_lipsync_gives_one_result_per_person_across_a_cut(tmp_path, data_dir, monkeypatch):
    """d12 on the right, then (after a cut) on the left: two auto ranges, one result. The
    job probes its input once (detection, the no-speaker reason and the render share it)."""
    person = clip_frames(data_dir / "video" / "d12.mp4", 200)
    shots = [Shot(1.2, [Person("R", person, 420, 80)]), Shot(1.2, [Person("R", person, 20, 80, 40)])]
    video = tmp_path / "cut.mp4"
    edited_video(video, shots, 640, 360)
    (tmp_path / "models").mkdir()  # no Light-ASD weights: the presence rule, one range per shot
    probed = []
    real_probe = jobs.lipsync.probe_video

    def counting_probe(path):
        probed.append(str(path))
        return real_probe(path)

    for module in (jobs.lipsync, jobs.auto, jobs.detect):
        monkeypatch.setattr(module, "probe_video", counting_probe)
    result = lipsync(video, data_dir / "audio" / "yongen.wav", None, tmp_path / "out.mp4",
                     Settings(models_dir=tmp_path / "models"))
    assert len(result["shots"]) == 2
    assert "(2 range(s))" in " ".join(result["warnings"])
    results = result["faces"]["results"]
    assert [r["character_id"] for r in results] == ["face_1"]
    segments = results[0]["segments"]
    assert segments[0]["start_ms"] == 0 and segments[-1]["end_ms"] >= 2300
    assert any(s["start_ms"] >= 1200 and s["synced"] for s in segments)
    assert results[0]["summary"]["synced_ms"] >= 1800
    assert probed.count(str(video)) == 1
