"""JobContext progress: totals that match what decode yields, and phases that end at done/done."""
import pytest

from jobs.detect import detect_faces
from stages.decode import DecodeStage, expected_frames, probe_video
from stream.context import JobContext, Progress
from stream.pipeline import Pipeline
from stream.stage import FunctionStage


@pytest.mark.parametrize("name, sample_fps, max_duration_ms, count", [
    ("d10.mp4", 3.0, None, 45),  # 14.93 s: int(duration * 3) said 44
    ("d12.mp4", 3.0, None, 22),  # 7.32 s: int(duration * 3) said 21, the detect pass ran 22
    ("d12.mp4", 30.0, None, 183),  # faster than the video's 25 fps: each frame once
    ("d12.mp4", None, 2001.0, 51),  # the speakers pass stops at max_duration_ms
])
def test_expected_frames_is_what_decode_yields(data_dir, name, sample_fps, max_duration_ms, count):
    path = data_dir / "video" / name
    stage = DecodeStage(path, sample_fps=sample_fps, max_duration_ms=max_duration_ms)
    assert expected_frames(probe_video(path), sample_fps, max_duration_ms) == count == sum(1 for _ in stage.items())


def test_a_phase_never_counts_past_its_total_and_ends_at_its_real_count(data_dir):
    seen: list[Progress] = []
    context = JobContext(on_progress=seen.append, progress_interval_s=0.01)
    pipeline = Pipeline(DecodeStage(data_dir / "video" / "d20.mp4"), [FunctionStage("pass", lambda frame: frame)])
    context.run("decode", pipeline, frames_total=100)  # too low an estimate: the video has 175 frames
    assert all(p.frames_done <= p.frames_total for p in seen)
    assert (seen[-1].frames_done, seen[-1].frames_total) == (175, 175)


def test_detect_progress_ends_at_the_sampled_frame_count(data_dir):
    seen: list[Progress] = []
    result = detect_faces(data_dir / "video" / "d12.mp4", sample_fps=3.0, context=JobContext(seen.append))
    detect = [p for p in seen if p.phase == "detect"]
    assert len(result["frames"]) == 22
    assert {p.frames_total for p in detect} == {22} and detect[-1].frames_done == 22
