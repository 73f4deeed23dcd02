"""Real HTTP servers on 127.0.0.1 for tests: a file server for inputs, a PUT receiver for uploads.

Each runs `http.server.ThreadingHTTPServer` on a free port in a daemon thread and is a
context manager; pass `tls=self_signed_cert(dir)` to serve https instead of http:

    with FileServer(data_dir) as files, PutReceiver([500, 500, 200]) as sink:
        video_url = files.url("video/d20.mp4")
        upload_url = sink.url("out/result.mp4")
"""
from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>"
    b"<body><p>Please sign in to view this file.</p></body></html>\n"
)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        return

    def _record(self, body: bytes = b"") -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.server.owner._record(RecordedRequest(self.command, self.path, headers, body))  # type: ignore[attr-defined]

    def _send(
        self, status: int, body: bytes, content_type: str = "text/plain", extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))


class _Server:
    """Start/stop plumbing shared by the servers below."""

    handler: type[BaseHTTPRequestHandler]

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        self.tls = tls
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    def url(self, path: str = "", host: str = "127.0.0.1") -> str:
        """Absolute URL of `path` on this server (`host` may be 'localhost' to test name resolution)."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self.port}/{path.lstrip('/')}"

    def start(self) -> _Server:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self.handler)
        self._httpd.daemon_threads = True
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*map(str, self.tls))
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._httpd.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05}, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _FileHandler(_QuietHandler):
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        self._record()
        owner: FileServer = self.server.owner  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        route = unquote(parts.path).lstrip("/")
        if route == "html":
            self._send(200, HTML_PAGE, "text/html; charset=utf-8")
        elif route == "redirect":
            target = parse_qs(parts.query).get("to", ["/"])[0]
            self._send(302, b"", extra={"Location": target})
        elif route.startswith("status/") and route.removeprefix("status/").isdigit():
            self._send(int(route.removeprefix("status/")), b"status page\n")
        elif route == "redirect-loop":
            self._send(302, b"", extra={"Location": "/redirect-loop"})
        elif route.startswith("nolength/"):
            self._send_file(owner.resolve(route.removeprefix("nolength/")), with_length=False)
        else:
            self._send_file(owner.resolve(route), with_length=True)

    def _send_file(self, path: Path | None, *, with_length: bool) -> None:
        if path is None:
            self._send(404, b"not found\n")
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if with_length:
            self.send_header("Content-Length", str(len(data)))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class FileServer(_Server):
    """Serves files under `root_dir` by GET/HEAD, plus endpoints for failure cases.

    - `/<relative path>`: the file, with Content-Length; absent files answer 404
    - `/nolength/<relative path>`: the same file without Content-Length (ends on close)
    - `/html`: a 200 text/html sign-in page, as a misconfigured share link returns
    - `/redirect?to=<url>`: 302 to `<url>` (absolute or relative); see `redirect_url`
    - `/redirect-loop`: 302 to itself, forever
    - `/status/<code>`: answers HTTP <code> with a short text body
    - `/missing`: 404
    `add_file(name, path)` serves any other file at `/<name>`. `requests` records every request.
    """

    handler = _FileHandler

    def __init__(self, root_dir: Path | str, tls: tuple[Path, Path] | None = None) -> None:
        super().__init__(tls)
        self.root = Path(root_dir).resolve()
        self._extra: dict[str, Path] = {}

    def add_file(self, name: str, path: Path | str) -> str:
        """Serve `path` at `/<name>`; returns its URL."""
        self._extra[name.lstrip("/")] = Path(path)
        return self.url(name)

    def resolve(self, route: str) -> Path | None:
        if route in self._extra:
            return self._extra[route]
        candidate = (self.root / route).resolve()
        if candidate.is_file() and candidate.is_relative_to(self.root):
            return candidate
        return None

    def redirect_url(self, target: str) -> str:
        """A URL on this server that answers 302 to `target`."""
        return self.url("redirect?to=" + quote(target, safe=""))


class _PutHandler(_QuietHandler):
    def do_PUT(self) -> None:
        body = self._read_body()
        self._record(body)
        owner: PutReceiver = self.server.owner  # type: ignore[attr-defined]
        status = owner._next_status()
        if 200 <= status < 300:
            owner._store(urlsplit(self.path).path, body)
            self._send(status, b"", extra={"ETag": f'"{len(body):x}"'})
        else:
            self._send(status, owner.error_body(status), "application/xml")

    def do_GET(self) -> None:
        self._record()
        owner: PutReceiver = self.server.owner  # type: ignore[attr-defined]
        body = owner.stored.get(urlsplit(self.path).path)
        if body is None:
            self._send(404, b"not uploaded\n")
        else:
            self._send(200, body, "video/mp4")


class PutReceiver(_Server):
    """Accepts PUT uploads and answers with `statuses` in turn (the last one repeats).

    `PutReceiver([500, 500, 200])` fails twice then accepts; `PutReceiver([403])` always
    refuses, with an S3-style XML error body. Every request is in `requests` with its full
    body; accepted bodies are in `stored` by path and can be read back by GET.
    """

    handler = _PutHandler

    def __init__(self, statuses: Sequence[int] = (200,), tls: tuple[Path, Path] | None = None) -> None:
        super().__init__(tls)
        if not statuses:
            raise ValueError("statuses must name at least one HTTP status")
        self.statuses = list(statuses)
        self.stored: dict[str, bytes] = {}
        self._answered = 0

    def _next_status(self) -> int:
        with self._lock:
            status = self.statuses[min(self._answered, len(self.statuses) - 1)]
            self._answered += 1
            return status

    def _store(self, path: str, body: bytes) -> None:
        with self._lock:
            self.stored[path] = body

    @staticmethod
    def error_body(status: int) -> bytes:
        code = {403: "AccessDenied", 404: "NoSuchBucket"}.get(status, "InternalError")
        return f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>test</Message></Error>".encode()

    @property
    def puts(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "PUT"]


def closed_port_url(path: str = "upload.mp4") -> str:
    """A URL on 127.0.0.1 at a port nothing listens on (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{path.lstrip('/')}"


def self_signed_cert(directory: Path, hostname: str = "localhost") -> tuple[Path, Path]:
    """Write a self-signed certificate for `hostname` (also its own CA) and key; needs the openssl CLI."""
    if shutil.which("openssl") is None:
        raise RuntimeError("the openssl command is needed to make a test certificate")
    cert, key = Path(directory) / f"{hostname}.crt", Path(directory) / f"{hostname}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", f"/CN={hostname}", "-addext", f"subjectAltName=DNS:{hostname}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


class _PostHandler(_PutHandler):
    def do_POST(self) -> None:
        self.do_PUT()


class PostReceiver(PutReceiver):
    """A webhook receiver: answers POSTs with `statuses` in turn, records their bodies."""

    handler = _PostHandler

    @property
    def posts(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST"]


class _SlowHandler(_QuietHandler):
    def do_PUT(self) -> None:  # an upload target that never reads the body nor answers
        self.do_GET()

    def do_GET(self) -> None:
        owner: SlowSender = self.server.owner  # type: ignore[attr-defined]
        if self.path == "/mute":
            owner.stop.wait(30)
            return
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(owner.declared))
        self.end_headers()
        self.wfile.flush()
        if self.path == "/silent":
            owner.stop.wait(30)
            return
        for _ in range(owner.declared):
            if owner.stop.wait(owner.interval_s):
                return
            try:
                self.wfile.write(b"x")
                self.wfile.flush()
            except OSError:
                return


class SlowSender:
    """A server that sends as slowly as an attacker would, to test deadlines and cancellation.

    - `/drip`: Content-Length `declared`, then one byte every `interval_s`
    - `/silent`: the headers, then nothing
    - `/mute`: accepts the connection and never answers
    PUT (an upload) is answered as GET: `/mute` never reads the body.
    """

    def __init__(self, interval_s: float = 0.1, declared: int = 1000, tls: tuple[Path, Path] | None = None) -> None:
        self.interval_s = interval_s
        self.declared = declared
        self.stop = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.tls = tls
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*map(str, tls))
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)

    def url(self, route: str, host: str = "127.0.0.1") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self.httpd.server_address[1]}/{route}"

    def __enter__(self) -> SlowSender:
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
