"""service/fetch.py's rules in-process: fake DNS and an httpx MockTransport, messages exact.

Redirects and their limit, status and size errors, transport failures, cancel and deadline
between chunks, local inputs and the policy's env twins; no socket is opened, so a mutation
run (scripts/mutation.py service/fetch.py) takes seconds a mutant. tests/test_fetch.py runs
real slow servers on 127.0.0.1 (plain and TLS) against the deadline and the cancel flag.
"""
from __future__ import annotations

import logging
import socket
import time

import httpx
import pytest

from service import addresses
from service import fetch as fetch_module
from service.fetch import (
    FetchCancelled,
    FetchPolicy,
    fetch_to_temp,
    fetches_cancelled_by,
)
from service.watchdog import Watchdog
from stream.errors import FetchError

PUBLIC = "93.184.216.34"


@pytest.fixture
def made() -> dict[str, list]:
    """What the `web` fixture saw made: the clients' (timeout, ca_bundle), each send's (method,
    trace) and each download's watchdog."""
    return {"clients": [], "sends": [], "watchdogs": []}


@pytest.fixture
def web(monkeypatch, made):
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
        made["clients"].append((timeout, ca_bundle))
        return httpx.Client(transport=httpx.MockTransport(handler), timeout=timeout, follow_redirects=False)

    monkeypatch.setattr(addresses.socket, "getaddrinfo", getaddrinfo)
    real_send = fetch_module.send_pinned

    def send(client, method, dest, **kwargs):
        made["sends"].append((method, kwargs.get("trace")))
        return real_send(client, method, dest, **kwargs)

    class RecordedWatchdog(Watchdog):
        def __enter__(self):
            made["watchdogs"].append(self)
            return super().__enter__()

    monkeypatch.setattr(fetch_module, "pinned_client", client)
    monkeypatch.setattr(fetch_module, "send_pinned", send)
    monkeypatch.setattr(fetch_module, "Watchdog", RecordedWatchdog)
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


# --- mutation survivors (scripts/mutation.py service/fetch.py) ------------------------------------

def test_each_download_gets_its_timeouts_ca_bundle_and_watchdog(web, made, tmp_path):
    """read_timeout_s bounds every read, connect_timeout_s (or what is left of the total) the
    connect; the CA bundle reaches the client; every request is a GET traced by the watchdog,
    which shuts its sockets down at the deadline or on cancel."""
    web[1]["/f"] = lambda r: httpx.Response(200, content=b"x")
    fetch("http://h.example/f", tmp_path, read_timeout_s=7.0, connect_timeout_s=3.0, ca_bundle="/ca.pem")
    (timeout, ca_bundle), = made["clients"]
    assert (timeout.read, timeout.write, timeout.pool, timeout.connect, ca_bundle) == (7.0, 7.0, 7.0, 3.0, "/ca.pem")
    (watchdog,) = made["watchdogs"]
    assert made["sends"] == [("GET", watchdog.trace)]
    fetch("http://h.example/f", tmp_path, connect_timeout_s=10.0, total_timeout_s=2.0)
    assert 0 < made["clients"][1][0].connect <= 2.0  # the total's time left


def test_a_private_address_is_fetched_when_the_policy_allows_it(web, tmp_path):
    dns, routes, _ = web
    dns["inside.example"] = ["10.1.2.3"]
    routes["/in"] = lambda r: httpx.Response(200, content=b"inside")
    assert fetch("http://inside.example/in", tmp_path, allow_private_networks=True).read_bytes() == b"inside"
    assert "private address 10.1.2.3" in str(refused("http://inside.example/in", tmp_path))


def test_the_workdir_and_its_parents_are_made(web, tmp_path):
    web[1]["/f"] = lambda r: httpx.Response(200, content=b"x")
    path = fetch("http://h.example/f", tmp_path, workdir="jobs/j1/inputs")
    assert path.parent == tmp_path / "jobs" / "j1" / "inputs" and path.read_bytes() == b"x"


def test_the_size_limit_counts_every_chunk(web, tmp_path):
    class Chunks(httpx.SyncByteStream):
        def __iter__(self):
            yield from [b"0123456789"] * 10

    web[1]["/c"] = lambda r: httpx.Response(200, stream=Chunks())
    assert fetch("http://h.example/c", tmp_path, max_bytes=100).stat().st_size == 100
    assert "larger than the 99 bytes limit" in str(refused("http://h.example/c", tmp_path, max_bytes=99))


def test_a_broken_body_counts_the_bytes_of_every_chunk(web, tmp_path):
    class Broken(httpx.SyncByteStream):
        def __iter__(self):
            yield b"12"
            yield b"345"
            raise httpx.ReadError("reset by peer")

    web[1]["/b"] = lambda r: httpx.Response(200, stream=Broken())
    assert "download failed after 5 bytes" in str(refused("http://h.example/b", tmp_path))


def test_a_connect_timeout_names_the_policy_timeout(web, tmp_path):
    def slow(request):
        raise httpx.ConnectTimeout("timed out")

    web[1]["/t"] = slow
    error = refused("http://h.example/t", tmp_path, connect_timeout_s=2.5)
    assert (str(error), error.status_code) == (
        "video_url http://h.example/t: timed out after 2.5 s connecting to h.example:80; check the URL is "
        "reachable from the server", 502)


def _stopped_stream(made, why: str, after_first=lambda: None):
    """A body that sends 5 bytes, calls `after_first`, then breaks (as a socket the watchdog shut
    down does) once the download's watchdog says it stopped for `why`."""
    class Stopped(httpx.SyncByteStream):
        def __iter__(self):
            yield b"12345"
            after_first()
            deadline = time.monotonic() + 10
            while made["watchdogs"][-1].why_stopped() != why and time.monotonic() < deadline:
                time.sleep(0.01)
            raise httpx.ReadError("shut down")

    return Stopped()


def test_a_connection_broken_by_a_cancel_is_reported_as_cancelled(web, made, tmp_path):
    flag: list[bool] = []  # set once the first bytes are written
    web[1]["/s"] = lambda r: httpx.Response(200, stream=_stopped_stream(made, "cancelled", lambda: flag.append(True)))
    with fetches_cancelled_by(lambda: bool(flag)), pytest.raises(FetchCancelled) as caught:
        fetch("http://h.example/s", tmp_path)
    assert str(caught.value) == "fetching video_url stopped: the job was cancelled"


def test_a_connection_broken_by_the_deadline_is_reported_as_the_deadline(web, made, tmp_path):
    web[1]["/s"] = lambda r: httpx.Response(200, stream=_stopped_stream(made, "deadline"))
    error = refused("http://h.example/s", tmp_path, total_timeout_s=0.2)
    assert (str(error), error.status_code) == (
        "video_url http://h.example/s took longer than 0.2 s to download (LIPSYNC_FETCH_TOTAL_TIMEOUT_S); "
        "use a faster host or a smaller file", 502)


def test_the_log_names_the_download_with_its_url_redacted(web, tmp_path, monkeypatch, caplog):
    """INFO: what was fetched from where (no query string: it may hold a signature), how big,
    how long (a stand-in clock: 2 s); DEBUG: each redirect, redacted too."""
    readings = iter([10.0, 12.0])
    monkeypatch.setattr(fetch_module, "time", type("Clock", (), {"monotonic": staticmethod(lambda: next(readings))}))
    routes = web[1]
    routes["/start"] = lambda r: httpx.Response(302, headers={"location": "/clip.mp4?token=secret"})
    routes["/clip.mp4"] = lambda r: httpx.Response(200, content=b"movie")
    caplog.set_level(logging.DEBUG, logger="service.fetch")
    path = fetch("https://cdn.example/start?sig=abc", tmp_path)
    assert [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "service.fetch"] == [
        (logging.DEBUG, "https://cdn.example/start?... redirected to https://cdn.example/clip.mp4?..."),
        (logging.INFO, f"fetched video https://cdn.example/clip.mp4?... -> {path.name}: 5 bytes in 2000 ms"),
    ]


def test_suffix_of_keeps_only_a_short_plain_extension():
    assert [fetch_module._suffix_of(f"http://h/v{tail}") for tail in (".MKV", ".toolong", "", ".a-b", ".mp4?x=1")] == \
        [".mkv", "", "", "", ".mp4"]


def test_allowed_networks_may_have_host_bits_set():
    assert FetchPolicy(allowed_networks=("10.1.2.3/8",)).allowed_networks == ("10.1.2.3/8",)


def test_policy_from_the_process_environment_and_the_smallest_timeouts(monkeypatch):
    monkeypatch.setenv("LIPSYNC_FETCH_MAX_BYTES", "5")
    assert FetchPolicy.from_env().max_bytes == 5
    smallest = FetchPolicy.from_env({"LIPSYNC_FETCH_READ_TIMEOUT_S": "0.001", "LIPSYNC_FETCH_TOTAL_TIMEOUT_S": "0.001"})
    assert (smallest.read_timeout_s, smallest.total_timeout_s) == (0.001, 0.001)
