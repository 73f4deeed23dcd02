"""jobs end to end on local files: sync modes, the neural engine with tiny models, auto mode."""
import pytest

from jobs.auto import faces_from_detection
from jobs.config import Settings
from jobs.detect import detect_faces
from jobs.lipsync import lipsync
from jobs.schema import FaceSpec
from stages.decode import probe_video
from tests.media import read_pts


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory, data_dir):
    """The first 2 s of d20 (480x480, 25 fps)."""
    from tests.media import read_frames, write_video
    frames = read_frames(data_dir / "video" / "d20.mp4")[:50]
    return write_video(tmp_path_factory.mktemp("clip") / "short.mp4", frames)


def first_face_bbox(video) -> list[int]:
    result = detect_faces(video, sample_fps=1)
    return result["frames"][0]["faces"][0]["bbox"]


@pytest.mark.parametrize("mode,duration_ms", [("silence", 2000), ("cut_off", 2000), ("loop", 8000), ("bounce", 8000)])
def test_sync_modes_set_the_output_length(tmp_path, short_clip, data_dir, mode, duration_ms):
    speech = data_dir / "audio" / "yongen.wav"  # 8 s, longer than the 2 s clip
    faces = [FaceSpec("a", first_face_bbox(short_clip), 0, 10_000)]
    out = tmp_path / "out.mp4"
    result = lipsync(short_clip, speech, faces, out, Settings(models_dir=tmp_path), sync_mode=mode)
    assert result["output"]["duration_ms"] == pytest.approx(duration_ms, abs=60)
    assert result["output"]["frame_count"] == probe_video(out).frame_count == round(duration_ms / 40)
    pts = read_pts(out)
    assert pts == sorted(set(pts))  # strictly increasing, also across loops
    assert any(mode in w for w in result["warnings"])
    summary = result["faces"]["results"][0]["summary"]
    assert summary["total_ms"] == pytest.approx(duration_ms, abs=60)
    # the classical engine stays on host numpy: no upload or download stage, libx264
    assert [s["name"] for s in result["metrics"]["stages"]] == ["decode", "track", "plan", "lipsync", "composite",
                                                                "encode"]
    assert result["device"] == "cpu" and result["encoder"] == "libx264"


def test_the_classical_engine_renders_on_the_host_whatever_the_device_setting(tmp_path, short_clip, data_dir):
    """device=cuda only moves decoding/encoding to the GPU where it can; the report says where
    the mouths were rendered (the host), not the setting."""
    faces = [FaceSpec("a", first_face_bbox(short_clip), 0, 2000)]
    result = lipsync(short_clip, data_dir / "audio" / "yongen.wav", faces, tmp_path / "out.mp4",
                          Settings(models_dir=tmp_path, engine="classical", device="cuda"), sync_mode="cut_off")
    assert result["success"] and result["engine"] == "classical" and result["device"] == "cpu"
    assert result["output"]["frame_count"] == 50


def test_neural_engine_runs_end_to_end_with_tiny_models(tmp_path, short_clip, data_dir):
    pytest.importorskip("diffusers")
    from benchmarks.tiny_models import write_tiny_musetalk

    models = write_tiny_musetalk(tmp_path / "models")
    out = tmp_path / "neural.mp4"
    faces = [FaceSpec("a", first_face_bbox(short_clip), 400, 1600)]
    result = lipsync(short_clip, data_dir / "audio" / "yongen.wav", faces, out, Settings(models_dir=models))
    assert result["engine"] == "musetalk"
    assert read_pts(out) == read_pts(short_clip)
    segments = result["faces"]["results"][0]["segments"]
    assert segments[0]["start_ms"] == 400 and segments[-1]["end_ms"] == 1600
    assert result["faces"]["results"][0]["summary"]["synced_ms"] >= 1000
    assert result["timing"]["lipsync_ms"] > 0 and result["timing"]["total_ms"] > 0


def test_auto_mode_builds_faces_from_detection(short_clip):
    detected = detect_faces(short_clip, sample_fps=3)
    faces = faces_from_detection(detected, recognised_only=False)
    assert [f.character_id for f in faces] == ["face_1"]
    assert faces[0].start_time_ms == 0 and faces[0].end_time_ms == pytest.approx(2000, abs=1)


def test_lipsync_without_faces_is_auto_mode(tmp_path, short_clip, data_dir):
    result = lipsync(short_clip, data_dir / "audio" / "yongen.wav", None, tmp_path / "auto.mp4")
    assert result["faces"]["results"][0]["character_id"] == "face_1"
    assert result["faces"]["results"][0]["summary"]["synced_ms"] >= 1500
    assert any("auto mode" in w for w in result["warnings"])
