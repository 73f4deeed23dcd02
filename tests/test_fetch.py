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


# --- issue 27: the fetch rules in-process (fake DNS, httpx MockTransport), messages exact -----
import socket  # noqa: E402

from service import addresses, fetch as fetch_module  # noqa: E402
from service.fetch import fetches_cancelled_by  # noqa: E402

PUBLIC = "93.184.216.34"


@pytest.fixture
def web(monkeypatch):
    """Every host resolves to PUBLIC (or `dns[host]`); requests go to `routes[path]`, a function
    of the request returning a response. Records (host header, pinned host, path, headers)."""
    dns: dict[str, list[str]] = {}
    routes: dict = {}
    seen: list[tuple] = []

    def getaddrinfo(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in dns.get(host, [PUBLIC])]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.headers["host"], request.url.host, request.url.path, dict(request.headers)))
        return routes[request.url.path](request)

    def client(timeout, ca_bundle):
        return httpx.Client(transport=httpx.MockTransport(handler), timeout=timeout, follow_redirects=False)

    monkeypatch.setattr(addresses.socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(fetch_module, "pinned_client", client)
    return dns, routes, seen


def fetch(url, tmp_path, workdir="work", **policy):
    return fetch_to_temp(url, workdir=tmp_path / workdir, policy=FetchPolicy(**policy), kind="video")


def refused(url, tmp_path, **policy) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetch(url, tmp_path, workdir="refused", **policy)
    assert list((tmp_path / "refused").glob("*")) == []  # the temp file is gone
    return caught.value


def test_download_lands_in_a_temp_file_with_the_url_suffix(web, tmp_path):
    dns, routes, seen = web
    routes["/a/clip.MP4"] = lambda r: httpx.Response(200, content=b"movie")
    path = fetch("https://cdn.example:8443/a/clip.MP4?sig=1", tmp_path)
    assert path.parent == tmp_path / "work" and path.name.startswith("video-") and path.suffix == ".mp4"
    assert path.read_bytes() == b"movie"
    host, pinned, _, headers = seen[0]
    assert (host, pinned, headers["accept-encoding"]) == ("cdn.example:8443", PUBLIC, "identity")


@pytest.mark.parametrize("path,suffix", [("/v.webm", ".webm"), ("/v.toolong", ""), ("/v", ""), ("/v.a-b", "")])
def test_only_a_short_plain_suffix_is_kept(web, tmp_path, path, suffix):
    web[1][path] = lambda r: httpx.Response(200, content=b"x")
    assert fetch(f"http://h.example{path}", tmp_path).suffix == suffix


def test_redirects_are_followed_and_each_hop_is_checked(web, tmp_path):
    dns, routes, seen = web
    routes["/start"] = lambda r: httpx.Response(302, headers={"location": "/next"})
    routes["/next"] = lambda r: httpx.Response(307, headers={"location": "https://other.example/final.mp4"})
    routes["/final.mp4"] = lambda r: httpx.Response(200, content=b"end")
    assert fetch("http://h.example/start", tmp_path).read_bytes() == b"end"
    assert [(h, p) for h, _, p, _ in seen] == [("h.example", "/start"), ("h.example", "/next"),
                                               ("other.example", "/final.mp4")]
    dns["inside.example"] = ["10.1.2.3"]
    routes["/in"] = lambda r: httpx.Response(301, headers={"location": "http://inside.example/secret"})
    error = refused("http://h.example/in", tmp_path)
    assert "video_url http://inside.example/secret resolves to a private address 10.1.2.3" in str(error)


def test_redirect_limit(web, tmp_path):
    routes = web[1]
    for i in range(7):
        routes[f"/r{i}"] = (lambda n: lambda r: httpx.Response(302, headers={"location": f"/r{n + 1}"}))(i)
    routes["/r7"] = lambda r: httpx.Response(200, content=b"x")
    assert fetch("http://h.example/r5", tmp_path, max_redirects=2).read_bytes() == b"x"  # r5 -> r6 -> r7
    assert str(refused("http://h.example/r4", tmp_path, max_redirects=2)) == \
        "video_url http://h.example/r4 redirected more than 2 times; give the final URL"
    assert "redirected more than 0 times" in str(refused("http://h.example/r6", tmp_path, max_redirects=0))


def test_redirect_without_location(web, tmp_path):
    web[1]["/gone"] = lambda r: httpx.Response(303)
    assert str(refused("http://h.example/gone", tmp_path)) == \
        "video_url http://h.example/gone answered a redirect (HTTP 303) with no Location"


@pytest.mark.parametrize("code,message,status", [
    (401, "video_url http://h.example/f answered HTTP 401 (access denied); the URL must be public or presigned, "
          "and presigned URLs expire: request a new one", 422),
    (403, "video_url http://h.example/f answered HTTP 403 (access denied); the URL must be public or presigned, "
          "and presigned URLs expire: request a new one", 422),
    (404, "video_url http://h.example/f answered HTTP 404; check the URL is public or presigned and not expired", 422),
    (410, "video_url http://h.example/f answered HTTP 410; check the URL is public or presigned and not expired", 422),
    (500, "video_url http://h.example/f answered HTTP 500: the server holding the file failed; try again later", 502),
    (503, "video_url http://h.example/f answered HTTP 503: the server holding the file failed; try again later", 502),
    (204, "video_url http://h.example/f answered HTTP 204, not 200 with the file; check the URL", 422),
    (499, "video_url http://h.example/f answered HTTP 499, not 200 with the file; check the URL", 422),
])
def test_status_errors(web, tmp_path, code, message, status):
    web[1]["/f"] = lambda r: httpx.Response(code, content=b"nope")
    error = refused("http://h.example/f", tmp_path)
    assert (str(error), error.status_code) == (message, status)


def test_size_limit_by_header_and_by_bytes(web, tmp_path):
    routes = web[1]
    routes["/exact"] = lambda r: httpx.Response(200, content=b"x" * 100)
    assert fetch("http://h.example/exact", tmp_path, max_bytes=100).stat().st_size == 100
    assert str(refused("http://h.example/exact", tmp_path, max_bytes=99)) == \
        "video_url http://h.example/exact is 100 bytes, over the 99 bytes limit; send a shorter or more compressed file"

    def undeclared(request):
        return httpx.Response(200, stream=httpx.ByteStream(b"y" * 100), headers={"content-length": "abc"})

    routes["/stream"] = undeclared
    assert str(refused("http://h.example/stream", tmp_path, max_bytes=99)) == \
        "video_url http://h.example/stream is larger than the 99 bytes limit; send a shorter or more compressed file"


def test_connect_failure_is_502_and_names_the_host(web, tmp_path):
    def fail(request):
        raise httpx.ConnectError("[Errno 111] Connection refused")

    web[1]["/x"] = fail
    error = refused("http://h.example/x", tmp_path)
    assert error.status_code == 502
    assert str(error) == ("video_url http://h.example/x: could not connect to h.example:80: connection refused "
                          "(nothing is listening there); check the URL is reachable from the server")


def test_a_broken_body_is_502_and_says_how_far_it_got(web, tmp_path):
    class Broken(httpx.SyncByteStream):
        def __iter__(self):
            yield b"12345"
            raise httpx.ReadError("reset by peer")

    web[1]["/b"] = lambda r: httpx.Response(200, stream=Broken())
    error = refused("http://h.example/b", tmp_path)
    assert (str(error), error.status_code) == (
        "video_url http://h.example/b: download failed after 5 bytes: the connection to the server failed "
        "(reset by peer)", 502)


def test_cancel_stops_a_download_between_chunks(web, tmp_path):
    class Slow(httpx.SyncByteStream):
        def __iter__(self):
            for _ in range(200):
                time.sleep(0.02)
                yield b"x"

    web[1]["/slow"] = lambda r: httpx.Response(200, stream=Slow())
    with fetches_cancelled_by(lambda: True):
        with pytest.raises(FetchCancelled) as caught:
            fetch("http://h.example/slow", tmp_path)
    assert str(caught.value) == "fetching video_url stopped: the job was cancelled"
    assert list((tmp_path / "work").glob("*")) == []
    web[1]["/fast"] = lambda r: httpx.Response(200, content=b"ok")
    assert fetch("http://h.example/fast", tmp_path).read_bytes() == b"ok"  # outside the block: not cancelled


def test_deadline_stops_a_download_between_chunks(web, tmp_path):
    class Slow(httpx.SyncByteStream):
        def __iter__(self):
            for _ in range(200):
                time.sleep(0.02)
                yield b"x"

    web[1]["/slow"] = lambda r: httpx.Response(200, stream=Slow())
    error = refused("http://h.example/slow", tmp_path, total_timeout_s=0.3)
    assert (str(error), error.status_code) == (
        "video_url http://h.example/slow took longer than 0.3 s to download (LIPSYNC_FETCH_TOTAL_TIMEOUT_S); "
        "use a faster host or a smaller file", 502)


def test_kind_label_and_scheme(tmp_path):
    with pytest.raises(ValueError) as caught:
        fetch_to_temp("http://h/x", workdir=tmp_path, policy=FetchPolicy(), kind="movie")
    assert str(caught.value) == "kind must be one of ('video', 'audio', 'image'), not 'movie'"
    with pytest.raises(FetchError) as caught:
        fetch_to_temp("ftp://h/x?k=1", workdir=tmp_path, policy=FetchPolicy(), kind="audio")
    assert str(caught.value) == "audio_url ftp://h/x?... uses the scheme 'ftp'; only http and https URLs are accepted"
    with pytest.raises(FetchError) as caught:
        fetch_to_temp("FTP://h/x", workdir=tmp_path, policy=FetchPolicy(), kind="image", label="characters[0].reference_image_url")
    assert str(caught.value).startswith("characters[0].reference_image_url ftp://h/x uses the scheme 'ftp'")


def test_local_inputs_only_when_allowed(tmp_path):
    local = tmp_path / "in put.mp4"
    local.write_bytes(b"x")
    allowed = FetchPolicy(allow_local_files=True)
    with pytest.raises(FetchError) as caught:
        fetch_to_temp(str(local), workdir=tmp_path, policy=FetchPolicy(), kind="video")
    assert str(caught.value) == f"video_url {str(local)!r} is not an http or https URL; local paths are accepted only by the CLI"
    assert fetch_to_temp(str(local), workdir=tmp_path, policy=allowed, kind="video") == local.resolve()
    assert fetch_to_temp(f"file://{str(local).replace(' ', '%20')}", workdir=tmp_path, policy=allowed, kind="video") == local
    assert fetch_to_temp(f"FILE://localhost{local}", workdir=tmp_path, policy=allowed, kind="video") == local
    with pytest.raises(FetchError) as caught:
        fetch_to_temp(f"file://nas{local}", workdir=tmp_path, policy=allowed, kind="video")
    assert str(caught.value) == (f"video_url {'file://nas' + str(local)!r} names a remote host; a file:// URL must be "
                                 "file:///absolute/path")
    with pytest.raises(FetchError) as caught:
        fetch_to_temp(str(tmp_path), workdir=tmp_path, policy=allowed, kind="video")
    assert str(caught.value) == f"video_url {str(tmp_path)!r} does not exist or is not a file"


def test_policy_bounds_and_env():
    for fields in ({"max_bytes": 0}, {"max_redirects": -1}):
        with pytest.raises(ValueError) as caught:
            FetchPolicy(**fields)
        assert str(caught.value) == "FetchPolicy: max_bytes must be > 0 and max_redirects >= 0"
    FetchPolicy(max_bytes=1, max_redirects=0)
    with pytest.raises(ValueError):
        FetchPolicy(allowed_networks=("intranet",))
    assert FetchPolicy.from_env({}) == FetchPolicy()
    assert FetchPolicy.from_env({
        "LIPSYNC_ALLOW_PRIVATE_URLS": "1", "LIPSYNC_ALLOWED_NETWORKS": "10.0.0.0/8", "LIPSYNC_ALLOW_LOCAL_FILES": "yes",
        "LIPSYNC_FETCH_MAX_BYTES": "1", "LIPSYNC_FETCH_MAX_REDIRECTS": "0", "LIPSYNC_FETCH_CONNECT_TIMEOUT_S": "0.001",
        "LIPSYNC_FETCH_READ_TIMEOUT_S": "2", "LIPSYNC_FETCH_TOTAL_TIMEOUT_S": "3", "LIPSYNC_CA_BUNDLE": " /ca.pem ",
    }) == FetchPolicy(True, ("10.0.0.0/8",), True, 1, 0, 0.001, 2.0, 3.0, "/ca.pem")
    for name, raw in (("LIPSYNC_FETCH_MAX_BYTES", "0"), ("LIPSYNC_FETCH_MAX_REDIRECTS", "-1"),
                      ("LIPSYNC_FETCH_CONNECT_TIMEOUT_S", "0"), ("LIPSYNC_FETCH_READ_TIMEOUT_S", "0"),
                      ("LIPSYNC_FETCH_TOTAL_TIMEOUT_S", "0")):
        with pytest.raises(ValueError, match=f"{name}='{raw}' must be at least"):
            FetchPolicy.from_env({name: raw})
    assert FetchPolicy.from_env({"LIPSYNC_CA_BUNDLE": "  "}).ca_bundle is None
