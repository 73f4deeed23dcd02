"""Shutdown over real HTTP: sync requests cut by uvicorn's graceful-shutdown timeout answer 503
with Retry-After, and every job the shutdown stops ends `cancelled` with error_status 503,
whether it was running or waiting. Jobs "run" by fetching from a slow local sender.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from jobs.config import Settings
from server import create_app
from service.admission import Limits
from service.delivery import UploadPolicy
from service.fetch import FetchPolicy
from tests.http_servers import SlowSender
from tests.live_server import LiveServer


def test_shutdown_answers_503_to_sync_requests_and_cancels_jobs_alike(tmp_path: Path):
    settings = Settings(models_dir=tmp_path / "weights", workdir=tmp_path / "work")
    settings.workdir.mkdir()
    app = create_app(settings, FetchPolicy(allow_private_networks=True, total_timeout_s=120.0),
                     UploadPolicy(allow_private_networks=True),
                     Limits(concurrency=2, max_waiting=2, shutdown_grace_s=0.5, retry_after_s=7))
    server = LiveServer(app)
    server.server.config.timeout_graceful_shutdown = 1  # uvicorn --timeout-graceful-shutdown 1
    sync_answer: dict = {}
    with SlowSender() as slow, server:
        body = {"video_url": slow.url("drip")}

        def sync_request() -> None:
            sync_answer["response"] = httpx.post(server.url + "/detect-faces", json=body, timeout=60)

        caller = threading.Thread(target=sync_request)
        caller.start()
        running = httpx.post(server.url + "/jobs/detect-faces", json=body).json()["job_id"]
        waiting = httpx.post(server.url + "/jobs/detect-faces", json=body).json()["job_id"]
        deadline = time.monotonic() + 20
        while app.state.jobs.admission.running < 2 or app.state.jobs.store.get(running).state != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        started = time.monotonic()
        server.server.should_exit = True  # what SIGTERM does
        caller.join(timeout=30)
        # before: the cut sync request got a plain 500
        response = sync_answer["response"]
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "7" and "shutting down" in response.json()["error_message"]
        server.thread.join(timeout=30)
        assert not server.thread.is_alive()
        assert time.monotonic() - started < 20  # 1 s for requests, 0.5 s grace, fetches stop at once
    store = app.state.jobs.store
    records = [store.get(job_id) for job_id in store.ids()]
    assert len(records) == 3 and response.headers["x-job-id"] in store.ids()
    for record in records:  # before: 499 for the running job, 503 for the waiting one
        assert record.state == "cancelled" and record.error_status == 503, record
        assert "server shutting down" in record.error and record.failure_reason == "shutdown"
    assert list(settings.workdir.iterdir()) == []
