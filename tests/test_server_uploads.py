"""Uploads under load and reuse (issue 22 items 2, 3, 5) on a real uvicorn server:
one upload named twice in a request, concurrent uploads against the total quota, upload ids
checked at submit and held for the life of the jobs that name them."""
from __future__ import annotations

import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from jobs.config import Settings
from server import create_app
from service.admission import Limits
from service.fetch import FetchPolicy
from service.uploads import FileStore, StoreLimits, fetch_upload, upload_quota
from tests.live_server import LiveServer
from tests.media import clip_frames, compose


def make_app(workdir, stores: StoreLimits, **limits):
    """The real app; `stores` through its env vars, as a deployment sets them."""
    env = {"LIPSYNC_UPLOAD_TOTAL_BYTES": str(stores.upload_total_bytes), "LIPSYNC_UPLOAD_TTL_S": str(stores.upload_ttl_s)}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        return create_app(Settings(workdir=workdir, models_dir=workdir / "no-weights"),
                          FetchPolicy(allow_private_networks=True), limits=Limits(**limits))


def upload(url: str, data, kind: str, name: str, content_type: str = "application/octet-stream") -> httpx.Response:
    return httpx.post(f"{url}/uploads", params={"kind": kind, "name": name}, content=data,
                      headers={"Content-Type": content_type}, timeout=120)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, data_dir):
    """A 1 s talking head with its own sound: the video and, re-synced, its own audio."""
    import numpy as np

    from stages.audio import load_audio

    path = tmp_path_factory.mktemp("clip") / "one.mp4"
    sound = load_audio(data_dir / "video" / "d20.mp4", 16000)[:16000]
    compose(path, [{"frames": clip_frames(data_dir / "video" / "d20.mp4", 240)[:25], "x": 0, "y": 0}], 240, 240,
            1.0, audio=(np.clip(sound, -1, 1) * 32767).astype(np.int16), audio_rate=16000)
    return path


def test_the_same_upload_twice_links_once(tmp_path):
    store = FileStore(tmp_path / "uploads", ttl_s=60)
    file_id, path = store.new_path(".mp4", tag="video")
    path.write_bytes(b"clip")
    first = fetch_upload(f"upload://{file_id}", store, tmp_path / "job", "video_url")
    again = fetch_upload(f"upload://{file_id}", store, tmp_path / "job", "audio_url")  # was SameFileError
    assert first == again and again.read_bytes() == b"clip"


def test_one_upload_as_video_and_audio_and_stem_syncs(tmp_path, clip):
    """Before: 500 SameFileError with a server path in the message."""
    app = make_app(tmp_path / "work", StoreLimits())
    with LiveServer(app) as server:
        answer = upload(server.url, clip.read_bytes(), "video", "one.mp4", "video/mp4")
        assert answer.status_code == 201, answer.text
        url = answer.json()["url"]
        faces = httpx.post(server.url + "/detect-faces", json={"video_url": url, "sample_fps": 2}, timeout=120)
        assert faces.status_code == 200, faces.text
        bbox = faces.json()["frames"][0]["faces"][0]["bbox"]
        body = {"video_url": url, "audio_url": url,
                "faces": [{"character_id": "a", "bbox": bbox, "start_time_ms": 0, "end_time_ms": 1000,
                           "audio_url": url}]}
        response = httpx.post(server.url + "/lipsync", json=body, timeout=300)
    assert response.status_code == 200, response.text
    assert response.json()["faces"]["results"][0]["summary"]["synced_ms"] > 0


def test_a_lease_holds_an_expired_upload_for_its_job_only(tmp_path):
    store = FileStore(tmp_path / "uploads", ttl_s=60)
    file_id, path = store.new_path(".mp4", tag="video")
    path.write_bytes(b"clip")
    assert store.lease(file_id, "job-a") is not None
    then = time.time() - 120
    os.utime(path, (then, then))  # expired while job-a waits
    assert store.get(file_id) is not None and store.sweep() == 0  # job-a still reads it
    assert store.lease(file_id, "job-b") is None  # a new job may not revive an expired upload
    assert store.release("job-a") == 1 and store.get(file_id) is None and store.sweep() == 1


def test_concurrent_uploads_never_hold_more_than_the_total(tmp_path, data_dir):
    """8 uploads at once, each 462 KB sent in chunks with no Content-Length, against a 1.3 MB total:
    before, all 8 were stored (4.78 MB in the red team's run); now at most 2 fit."""
    total = 1_300_000
    app = make_app(tmp_path / "work", StoreLimits(upload_total_bytes=total))
    video = (data_dir / "video" / "d20.mp4").read_bytes()
    statuses: list[int] = []

    def chunks():
        for start in range(0, len(video), 32768):
            yield video[start:start + 32768]
            time.sleep(0.01)  # the uploads interleave

    with LiveServer(app) as server:
        threads = [threading.Thread(target=lambda: statuses.append(
            upload(server.url, chunks(), "video", "d20.mp4", "video/mp4").status_code)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stored = [p for p in (tmp_path / "work" / "lipsync-uploads").iterdir() if p.is_file()]
        held = sum(p.stat().st_size for p in stored)
        print(f"statuses {sorted(statuses)}, stored {held} bytes in {len(stored)} files (total {total})")
        assert held <= total and sorted(set(statuses)) <= [201, 507] and statuses.count(201) == len(stored) >= 1
        quota = upload_quota(FileStore(tmp_path / "work" / "lipsync-uploads", 3600), total)
        assert quota._used() == held  # failed uploads gave their reservations back


def test_a_made_up_upload_id_is_refused_at_submit(tmp_path):
    """Before: 202, and the job failed later."""
    app = make_app(tmp_path / "work", StoreLimits())
    with LiveServer(app) as server:
        for path, body in (("/jobs/detect-faces", {"video_url": "upload://" + "0" * 32}),
                           ("/jobs/lipsync", {"video_url": "https://example.com/v.mp4", "audio_url": "upload://abc",
                                              "faces": [{"character_id": "a", "bbox": [0, 0, 9, 9],
                                                         "start_time_ms": 0, "end_time_ms": 9}]})):
            response = httpx.post(server.url + path, json=body, timeout=30)
            assert response.status_code == 422, response.text
            assert "is not a known upload or it expired" in response.json()["error_message"]


class Hold(BaseHTTPRequestHandler):
    """A video URL that answers only once the test lets it: keeps the one worker busy."""

    gate = threading.Event()

    def do_GET(self):
        self.gate.wait(60)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        return


def test_an_upload_outlives_its_ttl_while_a_job_that_names_it_waits(tmp_path, clip):
    """TTL 2 s, one worker kept busy: the queued job's upload expires before its turn. Before:
    the job failed 422 ("not a known upload or it expired"); now it is held until the job ends."""
    app = make_app(tmp_path / "work", StoreLimits(upload_ttl_s=2), concurrency=1)
    holder = ThreadingHTTPServer(("127.0.0.1", 0), Hold)
    threading.Thread(target=holder.serve_forever, daemon=True).start()
    try:
        with LiveServer(app) as server:
            answer = upload(server.url, clip.read_bytes(), "video", "one.mp4", "video/mp4")
            assert answer.status_code == 201, answer.text
            busy = httpx.post(server.url + "/jobs/detect-faces",
                              json={"video_url": f"http://127.0.0.1:{holder.server_port}/slow.mp4"}, timeout=30)
            queued = httpx.post(server.url + "/jobs/detect-faces", json={"video_url": answer.json()["url"],
                                                                          "sample_fps": 1}, timeout=30)
            assert busy.status_code == 202 and queued.status_code == 202, queued.text
            stored = next(p for p in (tmp_path / "work" / "lipsync-uploads").iterdir() if p.is_file())
            then = time.time() - 10
            os.utime(stored, (then, then))  # past its TTL while the job waits
            assert httpx.get(server.url + queued.headers["location"]).json()["state"] == "queued"
            Hold.gate.set()
            job_url = server.url + queued.headers["location"]
            for _ in range(600):
                record = httpx.get(job_url).json()
                if record["state"] in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(0.2)
            assert record["state"] == "succeeded", record
            # the job ended: its lease went, and the expired upload is now refused and swept
            assert not list((tmp_path / "work" / "lipsync-uploads" / ".leases").iterdir())
            again = httpx.post(server.url + "/jobs/detect-faces", json={"video_url": answer.json()["url"]}, timeout=30)
            assert again.status_code == 422
    finally:
        Hold.gate.set()
        holder.shutdown()
