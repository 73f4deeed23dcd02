"""service/fetch.py's rules in-process: fake DNS and an httpx MockTransport, messages exact.

Redirects and their limit, status and size errors, transport failures, cancel and deadline
between chunks, local inputs and the policy's env twins; no socket is opened, so a mutation
run (scripts/mutation.py service/fetch.py) takes seconds a mutant. tests/test_fetch.py runs
real slow servers on 127.0.0.1 (plain and TLS) against the deadline and the cancel flag.
"""
from __future__ import annotations

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
from stream.errors import FetchError

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
