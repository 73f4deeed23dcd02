"""Queue mode end to end: a real redis-server, two `python -m service.worker` processes, the
server under uvicorn with LIPSYNC_QUEUE, inputs from a real file server, uploads to a real
PUT receiver. Jobs complete on both workers, a cancel reaches a worker, a SIGKILLed
worker's job is redelivered to the other one, /health counts workers and queue depth.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import av
import httpx
import pytest

pytest.importorskip("celery", reason="queue mode needs celery and redis (pip install celery[redis])")

from jobs.config import Settings  # noqa: E402
from models.faces.default import DefaultFaceBackend  # noqa: E402
from server import create_app  # noqa: E402
from service.admission import Limits  # noqa: E402
from service.delivery import UploadPolicy  # noqa: E402
from service.fetch import FetchPolicy
from service.workdir import JOB_DIR_NAME  # noqa: E402
from tests.http_servers import FileServer, PostReceiver, PutReceiver  # noqa: E402
from tests.job_media import FINAL, follow_events, wait_for, write_job_media  # noqa: E402
from tests.live_server import LiveServer  # noqa: E402
from tests.media import read_frames  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VISIBILITY_S = 6  # seconds without a lease renewal before a dead worker's job goes to another worker


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server); queue tests need it")
    folder = tmp_path_factory.mktemp("redis")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    import redis

    client = redis.Redis(port=port)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def scene(tmp_path_factory, data_dir):
    folder = write_job_media(tmp_path_factory.mktemp("queue-media"), data_dir, {"short.mp4": 1.0, "two_s.mp4": 2.0, "four_s.mp4": 4.0, "long.mp4": 20.0})
    return folder


@pytest.fixture(scope="module")
def files(scene):
    with FileServer(scene) as server:
        yield server


class Worker:
    """`python -m service.worker` as a real subprocess, its log in a file."""

    def __init__(self, redis_url: str, folder: Path, name: str, workdir: Path | None = None) -> None:
        self.log = folder / f"{name}.log"
        self.workdir = workdir or folder / f"{name}-work"
        self.workdir.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIPSYNC_")}
        env.update(LIPSYNC_ALLOW_PRIVATE_URLS="1", LIPSYNC_UPLOAD_BACKOFF_S="0.01", PYTHONPATH=str(ROOT))
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "service.worker", "--queue", redis_url, "--visibility-timeout-s",
                 str(VISIBILITY_S), "--heartbeat-s", "1", "--models-dir", str(folder / "weights"),
                 "--workdir", str(self.workdir)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    @property
    def ident(self) -> str:
        return f"{socket.gethostname()}-{self.proc.pid}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, redis_url):
    """Two workers and the server in queue mode (at most 2 waiting jobs per live worker)."""
    folder = tmp_path_factory.mktemp("workers")
    shared = folder / "shared-work"  # as deployed: the server and its workers share LIPSYNC_WORKDIR
    workers = [Worker(redis_url, folder, name, shared) for name in ("worker-a", "worker-b")]
    settings = Settings(models_dir=folder / "weights", workdir=shared)
    app = create_app(settings, FetchPolicy(allow_private_networks=True),
                     UploadPolicy(allow_private_networks=True, backoff_base_s=0.01), Limits(max_waiting=2),
                     queue_url=redis_url)
    try:
        with LiveServer(app) as server:
            deadline = time.monotonic() + 90
            while httpx.get(server.url + "/health", timeout=60).json()["jobs"]["workers"] != 2:
                dead = [w.log.read_text() for w in workers if w.proc.poll() is not None]
                assert not dead and time.monotonic() < deadline, f"workers did not come up: {dead}"
                time.sleep(0.2)
            yield server, workers
    finally:
        for worker in workers:
            worker.stop()


def submit(server, kind: str, body: dict) -> str:
    """POST /jobs/{kind} as a client would: a 503 (queue full) is retried shortly after."""
    deadline = time.monotonic() + 60
    while True:
        response = httpx.post(f"{server.url}/jobs/{kind}", json=body)
        if response.status_code != 503 or time.monotonic() > deadline:
            assert response.status_code == 202, response.text
            return response.json()["job_id"]
        time.sleep(0.2)


def lipsync_body(files, receiver, video: str, path: str, **extra) -> dict:
    return {"video_url": files.url(video), "audio_url": files.url("speech.wav"),
            "upload_url": receiver.url(path), **extra}


def with_face(files, receiver, video: str, path: str, seconds: float) -> dict:
    """A lipsync with its face given (no auto detection first)."""
    image = read_frames(files.root / video)[0]
    face = DefaultFaceBackend().detect(image, with_embedding=False)[0]
    return lipsync_body(files, receiver, video, path, faces=[
        {"character_id": "speaker", "bbox": face.xywh, "start_time_ms": 0, "end_time_ms": int(seconds * 1000)}])


def frame_count(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as container:
        return sum(1 for _ in container.decode(video=0))


def health(server) -> dict:
    return httpx.get(server.url + "/health", timeout=60).json()["jobs"]


def test_jobs_run_on_both_workers_and_upload(cluster, files):
    server, workers = cluster
    report = health(server)
    assert report["mode"] == "redis" and report["workers"] == 2 and report["waiting"] == 0
    assert {w["id"] for w in report["worker_list"]} == {w.ident for w in workers}
    rates = [1, 2, 3, 4, 5, 6]
    with PutReceiver([200]) as receiver, PostReceiver([200]) as hook:
        first = submit(server, "lipsync", lipsync_body(files, receiver, "two_s.mp4", "out/0.mp4", auto=True))
        detect_ids = [submit(server, "detect-faces", {"video_url": files.url("short.mp4"), "sample_fps": rate,
                                                      "webhook_url": hook.url(f"hooks/{rate}")}) for rate in rates]
        lipsync_ids = [first, submit(server, "lipsync", lipsync_body(files, receiver, "two_s.mp4", "out/1.mp4",
                                                                     auto=True))]
        events = follow_events(server, lipsync_ids[1], timeout=90)  # the last job, from the queue to the end
        sync = httpx.post(server.url + "/detect-faces", json={"video_url": files.url("short.mp4"), "sample_fps": 2},
                          timeout=90)
        records = [wait_for(server, job_id, lambda r: r["state"] in FINAL) for job_id in lipsync_ids + detect_ids]
        wait_for(server, detect_ids[-1], lambda r: r.get("webhook") is not None)
        stored = dict(receiver.stored)
        posts = [json.loads(p.body) for p in hook.posts]
    assert [r["state"] for r in records] == ["succeeded"] * 8, [r["error"] for r in records]
    assert {r["worker"] for r in records} == {w.ident for w in workers}  # both workers took jobs
    assert all(r["attempts"] == 1 for r in records)  # leases renewed: no job outlived its visibility timeout
    assert sorted(stored) == ["/out/0.mp4", "/out/1.mp4"]
    assert [frame_count(data) for data in stored.values()] == [50, 50]
    for record in records[:2]:
        assert record["result"]["output"]["frame_count"] == 50 and record["result"]["upload"]["status_code"] == 200
    for record, rate in zip(records[2:], rates):
        assert record["result"]["sample_fps"] == rate and len(record["result"]["frames"]) == rate
        assert record["progress"]["percent"] == 100
    assert sorted(p["job_id"] for p in posts) == sorted(detect_ids)
    assert all(p["state"] == "succeeded" for p in posts)
    progress = [data["percent"] for name, data in events if name == "progress"]
    assert len(progress) >= 3 and progress == sorted(progress) and progress[-1] == 100
    assert events[-1][0] == "state" and events[-1][1]["result"]["output"]["frame_count"] == 50
    assert sync.status_code == 200 and len(sync.json()["frames"]) == 2 and sync.headers["x-job-id"]
    assert all(list(w.workdir.glob("lipsync-*")) == [] for w in workers)


def test_cancel_reaches_the_worker_and_a_full_queue_answers_503(cluster, files):
    server, workers = cluster
    with PutReceiver([200]) as receiver:
        # Bodies first: finding the face takes seconds on a loaded machine, and the first long
        # job must still be running when the second one starts.
        bodies = [with_face(files, receiver, "long.mp4", f"out/long{i}.mp4", 20) for i in range(2)]
        running = [httpx.post(server.url + "/jobs/lipsync", json=body).json()["job_id"] for body in bodies]
        for job_id in running:
            wait_for(server, job_id, lambda r: r["progress"]["phase"] == "lipsync" and r["progress"]["frames_done"] > 0)
        queued = []
        for _ in range(4):  # 2 waiting per live worker
            response = httpx.post(server.url + "/jobs/detect-faces", json={"video_url": files.url("short.mp4")})
            assert response.status_code == 202, response.text
            queued.append(response.json()["job_id"])
        full = httpx.post(server.url + "/jobs/detect-faces", json={"video_url": files.url("short.mp4")})
        assert full.status_code == 503 and full.headers["retry-after"] == "30", (health(server), [httpx.get(f"{server.url}/jobs/{j}").json()["state"] for j in running + queued])
        assert "4 job(s) waiting for 2 worker(s)" in full.json()["error_message"]
        report = health(server)
        assert report["waiting"] == 4 and report["running"] == 2 and report["max_waiting"] == 4
        assert [httpx.get(f"{server.url}/jobs/{job_id}").json()["queue_position"] for job_id in queued] == [0, 1, 2, 3]
        withdrawn = httpx.delete(f"{server.url}/jobs/{queued[1]}", timeout=30)
        assert withdrawn.status_code == 200
        assert withdrawn.json()["state"] == "cancelled" and withdrawn.json()["started_at"] is None
        # the cancelled job leaves the broker's queue: it no longer counts as waiting (issue 22
        # item 8; before, it did until a worker drained it, and this submission was a 503)
        assert health(server)["waiting"] == 3
        refill = httpx.post(server.url + "/jobs/detect-faces", json={"video_url": files.url("short.mp4")})
        assert refill.status_code == 202, refill.text
        queued.append(refill.json()["job_id"])
        stopped = [httpx.delete(f"{server.url}/jobs/{job_id}", timeout=30) for job_id in running]
        assert [r.status_code for r in stopped] == [200, 200], [r.text for r in stopped]
        for response in stopped:
            record = response.json()
            assert record["state"] == "cancelled" and "cancelled by the client" in record["error"]
            assert 0 < record["progress"]["frames_done"] < record["progress"]["frames_total"]
        rest = [wait_for(server, job_id, lambda r: r["state"] in FINAL) for job_id in queued]
        assert receiver.puts == []
    assert [r["state"] for r in rest] == ["succeeded", "cancelled", "succeeded", "succeeded", "succeeded"]
    assert {record["worker"] for record in (r.json() for r in stopped)} == {w.ident for w in workers}
    assert all(list(w.workdir.glob("lipsync-*")) == [] for w in workers)
    again = httpx.delete(f"{server.url}/jobs/{running[0]}")
    assert again.status_code == 409


def test_a_killed_workers_job_is_redelivered_and_completed(cluster, files):
    server, workers = cluster
    by_ident = {w.ident: w for w in workers}
    with PutReceiver([200]) as receiver:
        job_id = httpx.post(server.url + "/jobs/lipsync", json=with_face(files, receiver, "four_s.mp4",
                                                                         "out/four.mp4", 4)).json()["job_id"]
        record = wait_for(server, job_id, lambda r: r["progress"]["phase"] == "lipsync"
                          and r["progress"]["frames_done"] > 0)
        victim = by_ident[record["worker"]]
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(timeout=10)
        behind = httpx.post(server.url + "/jobs/detect-faces", json={"video_url": files.url("short.mp4")})
        final = wait_for(server, job_id, lambda r: r["state"] in FINAL, timeout=VISIBILITY_S + 60)
        other = wait_for(server, behind.json()["job_id"], lambda r: r["state"] in FINAL)
        stored = dict(receiver.stored)
    survivor = next(w for w in workers if w is not victim)
    assert final["state"] == "succeeded", final["error"]
    assert final["attempts"] == 2 and final["worker"] == survivor.ident
    assert final["result"]["output"]["frame_count"] == 100 and final["progress"]["percent"] == 100
    assert list(stored) == ["/out/four.mp4"] and frame_count(stored["/out/four.mp4"]) == 100
    assert other["state"] == "succeeded" and other["worker"] == survivor.ident
    # the victim's job dir (inputs hard-linked) went with the survivor's next job (issue 22 item 7)
    assert [p.name for p in survivor.workdir.iterdir() if JOB_DIR_NAME.fullmatch(p.name)] == []
    deadline = time.monotonic() + 10  # the dead worker's heartbeat expires (3 heartbeats)
    while health(server)["workers"] != 1:
        assert time.monotonic() < deadline, health(server)
        time.sleep(0.2)
    assert [w["id"] for w in health(server)["worker_list"]] == [survivor.ident]
