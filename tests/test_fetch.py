"""stream/fetch.py: a download ends at its wall-clock deadline or on cancel, whatever the sender does.

Real servers on 127.0.0.1 that send slowly: a byte at a time under a large Content-Length,
headers then silence, or nothing at all after accepting the connection.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from jobs.config import Settings
from server import create_app
from service.admission import Limits
from service.delivery import UploadCancelled, UploadPolicy, upload_file
from service.fetch import FetchCancelled, FetchPolicy, fetch_to_temp
from stream.errors import FetchError, UploadError
from tests.http_servers import SlowSender, self_signed_cert
from tests.live_server import LiveServer


@pytest.fixture
def slow():
    with SlowSender() as server:
        yield server


def _fetch(url: str, workdir: Path, policy: FetchPolicy, cancelled=None) -> tuple[BaseException, float]:
    started = time.monotonic()
    with pytest.raises((FetchError, FetchCancelled)) as caught:
        fetch_to_temp(url, workdir=workdir, policy=policy, kind="video", cancelled=cancelled)
    return caught.value, time.monotonic() - started


@pytest.mark.parametrize("route", ["drip", "silent", "mute"])
def test_total_deadline_holds_whatever_the_sender_does(slow, tmp_path, route):
    # before: a byte every 0.1 s restarted the 30 s read timeout and the total was checked
    # only per 1 MiB chunk, so /drip ran until the sender stopped; /silent and /mute took 30 s
    policy = FetchPolicy(allow_private_networks=True, total_timeout_s=1.0, read_timeout_s=30.0)
    error, elapsed = _fetch(slow.url(route), tmp_path, policy)
    assert isinstance(error, FetchError) and error.status_code == 502
    assert "took longer than 1 s" in str(error) and "LIPSYNC_FETCH_TOTAL_TIMEOUT_S" in str(error)
    assert elapsed < 6.0  # the deadline is 1 s; a loaded machine gets a wide margin
    assert list(tmp_path.iterdir()) == []  # the partial file is gone


def test_deadline_and_cancel_hold_over_tls(tmp_path):
    """The watchdog shuts the TLS socket down too (the TCP socket is detached by the TLS wrap)."""
    try:
        cert = self_signed_cert(tmp_path, "localhost")
    except RuntimeError as exc:
        pytest.skip(str(exc))
    with SlowSender(tls=cert) as slow:
        url = slow.url("drip", host="localhost")
        policy = FetchPolicy(allow_private_networks=True, total_timeout_s=1.0, ca_bundle=str(cert[0]))
        error, elapsed = _fetch(url, tmp_path / "a", policy)
        assert isinstance(error, FetchError) and "took longer than 1 s" in str(error) and elapsed < 6.0
        flag = threading.Event()
        threading.Timer(0.5, flag.set).start()
        policy = FetchPolicy(allow_private_networks=True, total_timeout_s=60.0, ca_bundle=str(cert[0]))
        error, elapsed = _fetch(url, tmp_path / "b", policy, cancelled=flag.is_set)
        assert isinstance(error, FetchCancelled) and elapsed < 5.0


def test_cancel_stops_a_download_within_a_second(slow, tmp_path):
    policy = FetchPolicy(allow_private_networks=True, total_timeout_s=60.0)
    flag = threading.Event()
    threading.Timer(0.5, flag.set).start()
    error, elapsed = _fetch(slow.url("drip"), tmp_path, policy, cancelled=flag.is_set)
    assert isinstance(error, FetchCancelled) and "cancelled" in str(error)
    assert elapsed < 5.0  # cancelled at 0.5 s; stops within about watchdog.POLL_S after
    assert list(tmp_path.iterdir()) == []


def test_a_job_deleted_while_fetching_ends_cancelled_at_once(slow, tmp_path, data_dir):
    """DELETE during a stalled download: the job is cancelled (not failed) and the worker is free."""
    settings = Settings(models_dir=tmp_path / "weights", workdir=tmp_path / "work")
    settings.workdir.mkdir()
    app = create_app(settings, FetchPolicy(allow_private_networks=True, total_timeout_s=120.0),
                     UploadPolicy(allow_private_networks=True), Limits(concurrency=1, max_waiting=2))
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        job = client.post("/jobs/detect-faces", json={"video_url": slow.url("drip")}).json()
        deadline = time.monotonic() + 20
        while client.get(f"/jobs/{job['job_id']}").json()["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        started = time.monotonic()
        answer = client.delete(f"/jobs/{job['job_id']}")
        # before: DELETE answered 202 after 10 s and the job ended failed 43 s later
        assert answer.status_code == 200, answer.text
        assert time.monotonic() - started < 5.0
        record = answer.json()
        assert record["state"] == "cancelled" and record["error_status"] == 499
        assert "cancelled by the client" in record["error"]
        assert list(settings.workdir.iterdir()) == []  # the job's temp dir and partial file are gone


# ---------------------------------------------------------------- uploads hold a deadline too


def test_upload_deadline_holds_against_a_server_that_never_answers(slow, tmp_path):
    """/mute never reads the body nor answers: the send blocks once the socket buffers are full."""
    output = tmp_path / "output.mp4"
    output.write_bytes(b"\0" * (8 << 20))  # more than the socket buffers take, so the send blocks
    policy = UploadPolicy(allow_private_networks=True, total_timeout_s=1.0, io_timeout_s=30.0, attempts=3,
                          backoff_base_s=0.1)
    started = time.monotonic()
    with pytest.raises(UploadError) as caught:
        upload_file(output, slow.url("mute"), policy=policy)
    assert caught.value.status_code == 502 and "LIPSYNC_UPLOAD_TOTAL_TIMEOUT_S" in str(caught.value)
    assert time.monotonic() - started < 6.0  # deadline 1 s; before: 3 attempts x 30 s


def test_cancel_stops_an_upload(slow, tmp_path):
    output = tmp_path / "output.mp4"
    output.write_bytes(b"\0" * (8 << 20))
    flag = threading.Event()
    threading.Timer(0.5, flag.set).start()
    started = time.monotonic()
    with pytest.raises(UploadCancelled):
        upload_file(output, slow.url("mute"), policy=UploadPolicy(allow_private_networks=True), cancelled=flag.is_set)
    assert time.monotonic() - started < 5.0
