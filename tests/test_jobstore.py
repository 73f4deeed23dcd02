"""JobStore progress: a succeeded job's final progress counts its frames, not its last phase's unit."""
from service.jobstore import SUCCEEDED, JobRecord, JobStore


def finished_progress(kind: str, result: dict) -> dict:
    store = JobStore()
    store.add(JobRecord("job", kind, {}))
    store.start("job")
    store.progress("job", "lipsync", 183, 183, 95.0)
    store.progress("job", "upload", 1, 1, 100.0)  # the upload phase counts files
    return store.finish("job", SUCCEEDED, result).public_json()["progress"]


def test_a_lipsync_job_ends_at_its_output_frames():
    progress = finished_progress("lipsync", {"output": {"frame_count": 183}})
    assert progress == {"phase": "done", "frames_done": 183, "frames_total": 183, "percent": 100.0}


def test_a_detect_job_ends_at_its_sampled_frames():
    progress = finished_progress("detect-faces", {"frames": [{"timestamp_ms": 0, "faces": []}] * 22})
    assert (progress["frames_done"], progress["frames_total"]) == (22, 22)
