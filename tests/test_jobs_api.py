"""The jobs API over real HTTP: FIFO queue and 503s, cancel, SSE progress, webhooks, limits, shutdown.

Real uvicorn on 127.0.0.1, inputs from a real file server, uploads to a real PUT receiver,
short clips built from the sample media.
"""
import json
import math
import threading
from pathlib import Path

import httpx
import pytest

from jobs.config import Settings
from models.faces.default import DefaultFaceBackend
from server import create_app
from service.admission import Limits
from service.delivery import UploadPolicy
from service.fetch import FetchPolicy
from tests.http_servers import FileServer, PostReceiver, PutReceiver
from tests.job_media import FINAL, follow_events, wait_for, write_job_media
from tests.live_server import LiveServer
from tests.media import clip_frames, compose, read_frames


@pytest.fixture(scope="module")
def scene(tmp_path_factory, data_dir):
    folder = write_job_media(tmp_path_factory.mktemp("jobs"), data_dir, {"short.mp4": 1.0, "two_s.mp4": 2.0, "long.mp4": 20.0})
    face = clip_frames(data_dir / "video" / "d12.mp4", 320)
    compose(folder / "wide.mp4", [{"frames": face[:10], "x": 0, "y": 0}], 640, 320, 0.4)
    return folder


@pytest.fixture(scope="module")
def files(scene):
    with FileServer(scene) as server:
        yield server


def make_app(tmp_path_factory, limits: Limits):
    settings = Settings(models_dir=Path(tmp_path_factory.mktemp("weights")), workdir=tmp_path_factory.mktemp("work"))
    app = create_app(settings, FetchPolicy(allow_private_networks=True),
                     UploadPolicy(allow_private_networks=True, backoff_base_s=0.01), limits)
    return app, settings


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    app, settings = make_app(tmp_path_factory, Limits(concurrency=1, max_waiting=9))
    with LiveServer(app) as server:
        yield server, settings


def lipsync_body(files, receiver, video="two_s.mp4", **extra):
    return {"video_url": files.url(video), "audio_url": files.url("speech.wav"),
            "upload_url": receiver.url(f"out/{video}"), **extra}


def long_job(files, receiver) -> dict:
    """A lipsync of the 20 s clip with its face given (no auto detection first): a job to interrupt."""
    image = read_frames(files.root / "long.mp4")[0]
    face = DefaultFaceBackend().detect(image, with_embedding=False)[0]
    return lipsync_body(files, receiver, "long.mp4", faces=[
        {"character_id": "speaker", "bbox": face.xywh, "start_time_ms": 0, "end_time_ms": 20000}])


def stage_threads():
    return [t.name for t in threading.enumerate() if t.name.startswith(("stage-", "progress-"))]


def metric(server, name, **labels) -> float:
    text = httpx.get(server.url + "/metrics").text
    wanted = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return 0.0


def test_ten_jobs_run_in_order_and_a_full_queue_answers_503(api, files):
    server, settings = api
    before = metric(server, "lipsync_jobs_finished_total", kind="detect-faces", state="succeeded")
    with PutReceiver([200]) as receiver:
        first = httpx.post(server.url + "/jobs/lipsync", json=lipsync_body(files, receiver, auto=True))
        assert first.status_code == 202, first.text
        ids = [first.json()["job_id"]]
        wait_for(server, ids[0], lambda r: r["state"] == "running")
        rates = [1 + 0.25 * i for i in range(9)]
        for rate in rates:  # nine more while the first runs: the queue (9) fills up
            response = httpx.post(server.url + "/jobs/detect-faces",
                                  json={"video_url": files.url("short.mp4"), "sample_fps": rate})
            assert response.status_code == 202, response.text
            assert response.headers["location"] == f"/jobs/{response.json()['job_id']}"
            ids.append(response.json()["job_id"])
        busy = httpx.post(server.url + "/detect-faces", json={"video_url": files.url("short.mp4")}, timeout=60)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "30"
        assert busy.json()["success"] is False and "9 waiting" in busy.json()["error_message"]
        refused = httpx.post(server.url + "/jobs/detect-faces", json={"video_url": files.url("short.mp4")})
        assert refused.status_code == 503
        queued = httpx.get(f"{server.url}/jobs/{ids[5]}").json()
        assert queued["state"] == "queued" and queued["queue_position"] == 4
        records = [wait_for(server, job_id, lambda r: r["state"] in FINAL) for job_id in ids]
        assert len(receiver.puts) == 1
    assert [r["state"] for r in records] == ["succeeded"] * 10, [r["error"] for r in records]
    assert len(set(ids)) == 10
    starts = [r["started_at"] for r in records]
    ends = [r["finished_at"] for r in records]
    assert starts == sorted(starts) and ends == sorted(ends)
    for before_job, after_job in zip(records, records[1:]):  # one at a time: each starts after the previous ended
        assert after_job["started_at"] >= before_job["finished_at"]
    lipsync = records[0]["result"]
    assert lipsync["success"] is True and lipsync["faces"]["processed"] == 1
    assert lipsync["faces"]["results"][0]["character_id"] == "face_1"
    for record, rate in zip(records[1:], rates):  # each job got its own result
        assert record["result"]["sample_fps"] == rate
        assert record["progress"]["percent"] == 100
        stamps = [frame["timestamp_ms"] for frame in record["result"]["frames"]]
        assert len(stamps) == math.ceil(rate)  # one sample every 1/rate s of the 1 s clip
        assert all(abs(b - a - 1000 / rate) <= 40 for a, b in zip(stamps, stamps[1:]))
        assert all(len(frame["faces"]) == 1 for frame in record["result"]["frames"])
    after = metric(server, "lipsync_jobs_finished_total", kind="detect-faces", state="succeeded")
    assert after - before == 9
    assert metric(server, "lipsync_jobs_rejected_total", kind="detect-faces", reason="queue_full") >= 2
    assert list(Path(settings.workdir).glob("lipsync-*")) == []


def test_cancel_queued_and_running_jobs_leaves_nothing_behind(api, files):
    server, settings = api
    with PutReceiver([200]) as receiver:
        running = httpx.post(server.url + "/jobs/lipsync", json=long_job(files, receiver))
        queued = httpx.post(server.url + "/jobs/detect-faces", json={"video_url": files.url("short.mp4")})
        running_id, queued_id = running.json()["job_id"], queued.json()["job_id"]
        cancelled = httpx.delete(f"{server.url}/jobs/{queued_id}", timeout=30)
        assert cancelled.status_code == 200
        assert cancelled.json()["state"] == "cancelled" and cancelled.json()["started_at"] is None
        wait_for(server, running_id, lambda r: r["progress"]["phase"] == "lipsync" and r["progress"]["frames_done"] > 0)
        assert stage_threads()  # the pipeline is really running
        response = httpx.delete(f"{server.url}/jobs/{running_id}", timeout=30)
        assert response.status_code == 200, response.text
        record = response.json()
        assert record["state"] == "cancelled" and "cancelled by the client" in record["error"]
        assert 0 < record["progress"]["frames_done"] < record["progress"]["frames_total"]
        assert stage_threads() == []
        assert list(Path(settings.workdir).glob("lipsync-*")) == []
        assert receiver.puts == []
        again = httpx.delete(f"{server.url}/jobs/{running_id}")
        assert again.status_code == 409 and "already cancelled" in again.json()["error_message"]
    assert httpx.get(f"{server.url}/jobs/nope").status_code == 404


def test_a_sync_client_that_goes_away_cancels_its_job(api, files):
    server, settings = api
    store = server.server.config.app.state.jobs.store
    known = set(store.ids())
    with PutReceiver([200]) as receiver:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(server.url + "/lipsync", json=long_job(files, receiver), timeout=3)
        (job_id,) = set(store.ids()) - known
        record = wait_for(server, job_id, lambda r: r["state"] in FINAL)
        assert receiver.puts == []
    assert record["state"] == "cancelled" and "client disconnected" in record["error"]
    assert stage_threads() == []
    assert list(Path(settings.workdir).glob("lipsync-*")) == []


def test_events_stream_monotone_progress_to_100_then_the_result(api, files):
    server, _ = api
    with PutReceiver([200]) as receiver:
        job_id = httpx.post(server.url + "/jobs/lipsync", json=lipsync_body(files, receiver)).json()["job_id"]
        events = follow_events(server, job_id)
    progress = [data for name, data in events if name == "progress"]
    percents = [p["percent"] for p in progress]
    assert len(progress) >= 4 and percents == sorted(percents)
    assert percents[-1] == 100 and all(p < 100 for p in percents[:-1])
    phases = list(dict.fromkeys(p["phase"] for p in progress))
    order = ["queued", "fetch", "detect", "bank", "lipsync", "upload", "done"]  # events sample it; short phases may be missed
    assert phases == sorted(phases, key=order.index) and {"detect", "lipsync", "done"} <= set(phases)
    lipsync = [p for p in progress if p["phase"] == "lipsync"]
    assert [p["frames_done"] for p in lipsync] == sorted(p["frames_done"] for p in lipsync)
    assert {p["frames_total"] for p in lipsync} == {50} and all(20 <= p["percent"] <= 95 for p in lipsync)
    name, final = events[-1]
    assert name == "state" and final["state"] == "succeeded"
    assert final["result"]["output"]["frame_count"] == 50 and final["result"]["upload"]["attempts"] == 1
    assert [name for name, _ in events].count("state") == 1


def test_webhook_gets_the_result_after_a_retry(api, files):
    server, _ = api
    with PostReceiver([500, 200]) as hook:
        response = httpx.post(server.url + "/jobs/detect-faces", json={
            "video_url": files.url("short.mp4"), "sample_fps": 2, "webhook_url": hook.url("hooks/done")})
        job_id = response.json()["job_id"]
        record = wait_for(server, job_id, lambda r: r.get("webhook") is not None)
        assert [json.loads(p.body)["job_id"] for p in hook.posts] == [job_id, job_id]
        delivered = json.loads(hook.posts[-1].body)
        assert hook.posts[-1].headers["content-type"] == "application/json"
    assert delivered["state"] == "succeeded" and len(delivered["result"]["frames"]) == 2
    assert record["webhook"] == {"delivered": True, "attempts": 2, "status_code": 200, "error": None}


def test_failed_job_reports_the_error_and_webhook_url_is_checked(api, files):
    server, _ = api
    response = httpx.post(server.url + "/jobs/detect-faces", json={"video_url": files.url("speech.wav")})
    record = wait_for(server, response.json()["job_id"], lambda r: r["state"] in FINAL)
    assert record["state"] == "failed" and record["error_status"] == 422
    assert "video_url" in record["error"] and record["result"] is None
    bad = httpx.post(server.url + "/jobs/detect-faces", json={"video_url": files.url("short.mp4"),
                                                               "webhook_url": "ftp://example.com/hook"})
    assert bad.status_code == 422 and "webhook_url" in bad.json()["error_message"]
    bad = httpx.post(server.url + "/jobs/lipsync", json={"video_url": files.url("short.mp4"), "audio_url": "x",
                                                          "upload_url": "ftp://example.com/out.mp4"})
    assert bad.status_code == 422 and "upload_url" in bad.json()["error_message"]


def test_limits_413_and_422(tmp_path_factory, files):
    app, settings = make_app(tmp_path_factory, Limits(max_body_bytes=2048, max_duration_s=3.0,
                                                      max_pixels=320 * 320))
    with LiveServer(app) as server:
        huge = {"video_url": files.url("short.mp4"), "padding": "x" * 3000}
        response = httpx.post(server.url + "/detect-faces", json=huge)
        assert response.status_code == 413 and "LIPSYNC_MAX_BODY_BYTES" in response.json()["error_message"]
        response = httpx.post(server.url + "/jobs/detect-faces", json=huge)
        assert response.status_code == 413
        long = httpx.post(server.url + "/detect-faces", json={"video_url": files.url("long.mp4")}, timeout=60)
        assert long.status_code == 422
        assert "video_url" in long.json()["error_message"] and "LIPSYNC_MAX_DURATION_S" in long.json()["error_message"]
        wide = httpx.post(server.url + "/detect-faces", json={"video_url": files.url("wide.mp4")}, timeout=60)
        assert wide.status_code == 422 and "640x320" in wide.json()["error_message"]
        ok = httpx.post(server.url + "/detect-faces", json={"video_url": files.url("short.mp4"), "sample_fps": 1},
                        timeout=60)
        assert ok.status_code == 200 and ok.headers["x-job-id"]
        assert list(Path(settings.workdir).glob("lipsync-*")) == []


def test_shutdown_finishes_short_jobs_cancels_the_rest(tmp_path_factory, files):
    app, settings = make_app(tmp_path_factory, Limits(concurrency=2, max_waiting=4, shutdown_grace_s=2.0))
    server = LiveServer(app).__enter__()
    with PutReceiver([200]) as receiver:
        body = long_job(files, receiver)  # built before the clock: it runs a face detector
        long_id = httpx.post(server.url + "/jobs/lipsync", json=body).json()["job_id"]
        wait_for(server, long_id, lambda r: r["progress"]["phase"] == "lipsync")
        short_id = httpx.post(server.url + "/jobs/detect-faces", json={
            "video_url": files.url("short.mp4"), "sample_fps": 3}).json()["job_id"]
        # a second long job: it waits behind the short one, or has just started when the
        # shutdown comes; either way it cannot finish within the grace period
        waiting_id = httpx.post(server.url + "/jobs/lipsync", json=body).json()["job_id"]
        server.__exit__(None, None, None)  # uvicorn stops, then the lifespan shuts the jobs down
        assert not server.thread.is_alive()
        assert receiver.puts == []
    store = app.state.jobs.store
    short, waiting, long = store.get(short_id), store.get(waiting_id), store.get(long_id)
    assert short.state == "succeeded" and len(short.result["frames"]) == 3  # finished within the grace
    assert waiting.state == "cancelled" and "shutting down" in waiting.error
    assert long.state == "cancelled" and "shutting down" in long.error
    assert 0 < long.progress.frames_done < long.progress.frames_total
    assert stage_threads() == []
    assert list(Path(settings.workdir).glob("lipsync-*")) == []
