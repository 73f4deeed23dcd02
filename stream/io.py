"""Fetch inputs from URLs to temp files, check them, and upload results (httpx).

The service fetches URLs that its callers name, from inside its own network, so every
destination is resolved and checked before a socket is opened (the SSRF guard): loopback,
private, link-local, multicast, reserved and unspecified addresses are refused unless
the policy allows them, on the first request and on every redirect hop. The request is
then sent to the very address that was checked (the Host header and TLS SNI keep the
original name), so a second DNS answer cannot swap in an internal address.

Env vars (read by `FetchPolicy.from_env` and `UploadPolicy.from_env`):

  LIPSYNC_ALLOW_PRIVATE_URLS     1 allows loopback/private/link-local destinations (tests, local dev); default 0
  LIPSYNC_ALLOWED_NETWORKS       comma-separated CIDRs allowed even though non-public, e.g. "10.20.0.0/16"; default none
  LIPSYNC_ALLOW_LOCAL_FILES      1 accepts local paths and file:// URLs as inputs (CLI, local dev); default 0
  LIPSYNC_FETCH_MAX_BYTES        largest input accepted, bytes; default 2147483648 (2 GiB)
  LIPSYNC_FETCH_MAX_REDIRECTS    redirects followed per input; default 5
  LIPSYNC_FETCH_CONNECT_TIMEOUT_S  seconds to open a connection; default 10
  LIPSYNC_FETCH_READ_TIMEOUT_S   seconds the server may stay silent mid-download; default 30
  LIPSYNC_FETCH_TOTAL_TIMEOUT_S  seconds for a whole download, redirects included; default 600
  LIPSYNC_UPLOAD_CONTENT_TYPE    Content-Type of the PUT (must match what a presigned URL signed); default video/mp4
  LIPSYNC_UPLOAD_ATTEMPTS        tries per upload, first one included; default 4
  LIPSYNC_UPLOAD_BACKOFF_S       delay before the first retry, doubled for each next one, seconds; default 0.5
  LIPSYNC_UPLOAD_BACKOFF_MAX_S   cap on one retry delay, seconds; default 8
  LIPSYNC_UPLOAD_CONNECT_TIMEOUT_S seconds to open a connection to the upload URL; default 10
  LIPSYNC_UPLOAD_TIMEOUT_S       seconds the upload server may stall while sending or answering; default 120
  LIPSYNC_CA_BUNDLE              PEM file of CAs trusted for https instead of certifi's (internal storage); default unset
"""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import socket
import ssl
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from urllib.parse import unquote, urlsplit

import av
import httpx
from PIL import Image, UnidentifiedImageError

from stream.errors import FetchError, InputError, LipSyncError, MediaError, UploadError

log = logging.getLogger(__name__)

KINDS = ("video", "audio", "image")
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_RETRYABLE_UPLOAD_CODES = frozenset({408, 429})
_CHUNK_BYTES = 1 << 20
_HEAD_BYTES = 4096
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


# ---------------------------------------------------------------- configuration


def _env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={raw!r} is not a boolean; use 1 or 0")


def _env_number(env: Mapping[str, str], name: str, default: float, cast: type, minimum: float) -> float:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = cast(raw.strip())
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a valid {cast.__name__}") from None
    if value < minimum:
        raise ValueError(f"{name}={raw!r} must be at least {minimum}")
    return value


def _env_networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name, "")
    networks = tuple(part.strip() for part in raw.split(",") if part.strip())
    for cidr in networks:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ValueError(f"{name}: {cidr!r} is not an IP network like 10.0.0.0/8") from None
    return networks


@dataclass(frozen=True)
class FetchPolicy:
    """How inputs are fetched; each field has an env var twin (see the module docstring)."""

    allow_private_networks: bool = False  # LIPSYNC_ALLOW_PRIVATE_URLS
    allowed_networks: tuple[str, ...] = ()  # LIPSYNC_ALLOWED_NETWORKS (CIDRs)
    allow_local_files: bool = False  # LIPSYNC_ALLOW_LOCAL_FILES
    max_bytes: int = 2 * 1024**3  # LIPSYNC_FETCH_MAX_BYTES, bytes
    max_redirects: int = 5  # LIPSYNC_FETCH_MAX_REDIRECTS
    connect_timeout_s: float = 10.0  # LIPSYNC_FETCH_CONNECT_TIMEOUT_S
    read_timeout_s: float = 30.0  # LIPSYNC_FETCH_READ_TIMEOUT_S
    total_timeout_s: float = 600.0  # LIPSYNC_FETCH_TOTAL_TIMEOUT_S
    ca_bundle: str | None = None  # LIPSYNC_CA_BUNDLE: PEM file of trusted CAs instead of certifi's

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_redirects < 0:
            raise ValueError("FetchPolicy: max_bytes must be > 0 and max_redirects >= 0")
        for cidr in self.allowed_networks:
            ipaddress.ip_network(cidr, strict=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FetchPolicy:
        """Build a policy from LIPSYNC_* env vars (or `environ`), defaults for unset ones."""
        env = os.environ if environ is None else environ
        d = cls()
        return cls(
            allow_private_networks=_env_bool(env, "LIPSYNC_ALLOW_PRIVATE_URLS", d.allow_private_networks),
            allowed_networks=_env_networks(env, "LIPSYNC_ALLOWED_NETWORKS"),
            allow_local_files=_env_bool(env, "LIPSYNC_ALLOW_LOCAL_FILES", d.allow_local_files),
            max_bytes=int(_env_number(env, "LIPSYNC_FETCH_MAX_BYTES", d.max_bytes, int, 1)),
            max_redirects=int(_env_number(env, "LIPSYNC_FETCH_MAX_REDIRECTS", d.max_redirects, int, 0)),
            connect_timeout_s=_env_number(env, "LIPSYNC_FETCH_CONNECT_TIMEOUT_S", d.connect_timeout_s, float, 0.001),
            read_timeout_s=_env_number(env, "LIPSYNC_FETCH_READ_TIMEOUT_S", d.read_timeout_s, float, 0.001),
            total_timeout_s=_env_number(env, "LIPSYNC_FETCH_TOTAL_TIMEOUT_S", d.total_timeout_s, float, 0.001),
            ca_bundle=env.get("LIPSYNC_CA_BUNDLE", "").strip() or None,
        )


@dataclass(frozen=True)
class UploadPolicy:
    """How results are uploaded; each field has an env var twin (see the module docstring)."""

    allow_private_networks: bool = False  # LIPSYNC_ALLOW_PRIVATE_URLS
    allowed_networks: tuple[str, ...] = ()  # LIPSYNC_ALLOWED_NETWORKS (CIDRs)
    content_type: str = "video/mp4"  # LIPSYNC_UPLOAD_CONTENT_TYPE
    attempts: int = 4  # LIPSYNC_UPLOAD_ATTEMPTS
    backoff_base_s: float = 0.5  # LIPSYNC_UPLOAD_BACKOFF_S
    backoff_max_s: float = 8.0  # LIPSYNC_UPLOAD_BACKOFF_MAX_S
    connect_timeout_s: float = 10.0  # LIPSYNC_UPLOAD_CONNECT_TIMEOUT_S
    io_timeout_s: float = 120.0  # LIPSYNC_UPLOAD_TIMEOUT_S
    ca_bundle: str | None = None  # LIPSYNC_CA_BUNDLE: PEM file of trusted CAs instead of certifi's

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.backoff_base_s < 0 or self.backoff_max_s < 0:
            raise ValueError("UploadPolicy: attempts must be >= 1 and backoff delays >= 0")
        for cidr in self.allowed_networks:
            ipaddress.ip_network(cidr, strict=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> UploadPolicy:
        """Build a policy from LIPSYNC_* env vars (or `environ`), defaults for unset ones."""
        env = os.environ if environ is None else environ
        d = cls()
        return cls(
            allow_private_networks=_env_bool(env, "LIPSYNC_ALLOW_PRIVATE_URLS", d.allow_private_networks),
            allowed_networks=_env_networks(env, "LIPSYNC_ALLOWED_NETWORKS"),
            content_type=env.get("LIPSYNC_UPLOAD_CONTENT_TYPE", "").strip() or d.content_type,
            attempts=int(_env_number(env, "LIPSYNC_UPLOAD_ATTEMPTS", d.attempts, int, 1)),
            backoff_base_s=_env_number(env, "LIPSYNC_UPLOAD_BACKOFF_S", d.backoff_base_s, float, 0.0),
            backoff_max_s=_env_number(env, "LIPSYNC_UPLOAD_BACKOFF_MAX_S", d.backoff_max_s, float, 0.0),
            connect_timeout_s=_env_number(env, "LIPSYNC_UPLOAD_CONNECT_TIMEOUT_S", d.connect_timeout_s, float, 0.001),
            io_timeout_s=_env_number(env, "LIPSYNC_UPLOAD_TIMEOUT_S", d.io_timeout_s, float, 0.001),
            ca_bundle=env.get("LIPSYNC_CA_BUNDLE", "").strip() or None,
        )


# ---------------------------------------------------------------- the SSRF guard


def redact_url(url: str | httpx.URL) -> str:
    """The URL without credentials or query string, safe for logs and error messages.

    Presigned URLs carry their signature in the query, so it never leaves this module.
    """
    try:
        parsed = httpx.URL(str(url))
    except (httpx.InvalidURL, TypeError):
        return "<unparseable URL>"
    netloc = parsed.netloc.decode("ascii", "replace")
    text = f"{parsed.scheme}://{netloc}{parsed.path}" if parsed.scheme else parsed.path
    return text + ("?..." if parsed.query else "")


def non_public_reason(address: str) -> str | None:
    """Why an IP address is not a public destination ('loopback', 'private', ...), or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for attribute, label in (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
    ):
        if getattr(ip, attribute):
            return label
    if not ip.is_global:
        return "special-purpose (non-public)"
    return None


@dataclass(frozen=True)
class _Destination:
    """A checked http(s) URL and the addresses it may be reached at, in connect order."""

    url: httpx.URL
    host: str
    port: int
    addresses: tuple[str, ...]

    @property
    def host_header(self) -> str:
        return self.url.netloc.decode("ascii")

    @property
    def extensions(self) -> dict[str, str]:
        """TLS must verify the certificate against the name, not the pinned IP."""
        if self.url.scheme == "https" and not _is_ip_literal(self.host):
            return {"sni_hostname": self.host}
        return {}

    def pinned_url(self, address: str) -> httpx.URL:
        return self.url.copy_with(host=address)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _resolve_destination(
    url: str,
    *,
    role: str,
    allow_private: bool,
    allowed_networks: tuple[str, ...],
    error: Callable[[str], LipSyncError],
) -> _Destination:
    """Parse an http(s) URL, resolve its host, and refuse it if any address is non-public."""
    shown = redact_url(url)
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise error(f"{role} {shown} is not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        scheme = parsed.scheme or "none"
        raise error(f"{role} {shown} uses the scheme {scheme!r}; only http and https URLs are accepted")
    if not parsed.raw_host:
        raise error(f"{role} {shown} has no host name")
    host = parsed.raw_host.decode("ascii")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise error(f"{role} {shown}: the host {host!r} does not resolve ({exc.strerror}); check the URL") from None
    addresses = tuple(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise error(f"{role} {shown}: the host {host!r} has no addresses; check the URL")
    if not allow_private:
        networks = [ipaddress.ip_network(cidr, strict=False) for cidr in allowed_networks]
        for address in addresses:
            reason = non_public_reason(address)
            if reason and not any(ipaddress.ip_address(address.split("%", 1)[0]) in net for net in networks):
                raise error(
                    f"{role} {shown} resolves to a {reason} address {address}; "
                    "private and loopback URLs are refused, use a publicly reachable URL"
                )
    return _Destination(url=parsed, host=host, port=port, addresses=addresses)


def _send_pinned(
    client: httpx.Client,
    method: str,
    dest: _Destination,
    *,
    headers: Mapping[str, str],
    content: Callable[[], Iterator[bytes]] | None = None,
) -> httpx.Response:
    """Send to each checked address in turn until one accepts the connection (streamed response)."""
    last: httpx.TransportError | None = None
    for address in dest.addresses:
        request = client.build_request(
            method,
            dest.pinned_url(address),
            headers={**headers, "Host": dest.host_header},
            content=content() if content is not None else None,
            extensions=dest.extensions,
        )
        try:
            return client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            log.debug("connect to %s (%s) failed: %s", dest.host, address, exc)
            last = exc
    assert last is not None
    raise last


def _client(timeout: httpx.Timeout, ca_bundle: str | None) -> httpx.Client:
    """A client that ignores proxy env vars (a proxy would defeat address pinning) and follows no redirects."""
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
    return httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False, verify=verify)


def _describe_transport_error(exc: httpx.TransportError, dest_text: str, policy_timeout_s: float) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectTimeout):
        return f"timed out after {policy_timeout_s:g} s connecting to {dest_text}"
    if isinstance(exc, httpx.ConnectError):
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate" in text.lower():
            return f"the TLS certificate of {dest_text} is not valid ({text})"
        if "refused" in text.lower():
            return f"could not connect to {dest_text}: connection refused (nothing is listening there)"
        return f"could not connect to {dest_text} ({text})"
    if isinstance(exc, httpx.TimeoutException):
        return f"{dest_text} stopped responding ({type(exc).__name__})"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"{dest_text} closed the connection early ({text})"
    return f"the connection to {dest_text} failed ({text})"


# ---------------------------------------------------------------- fetching


def fetch_to_temp(url: str, *, workdir: Path, policy: FetchPolicy, kind: str, label: str | None = None) -> Path:
    """Download `url` into a new temp file in `workdir` and return its path.

    `kind` is 'video', 'audio' or 'image'; error messages name the input as `label`
    (the request field, e.g. "characters[0].reference_image_url"), by default
    f"{kind}_url". Local paths and file:// URLs are returned as they are (not
    copied, so never delete the returned path unless it is inside `workdir`), and only
    when `policy.allow_local_files`. On any failure the temp file is removed and a
    FetchError says what to fix.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    role = label or f"{kind}_url"
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        return _download(url, workdir=Path(workdir), policy=policy, kind=kind, role=role)
    if scheme in ("", "file"):
        return _local_input(url, policy=policy, role=role)
    raise FetchError(f"{role} {redact_url(url)} uses the scheme {scheme!r}; only http and https URLs are accepted")


def _local_input(url: str, *, policy: FetchPolicy, role: str) -> Path:
    if not policy.allow_local_files:
        raise FetchError(f"{role} {url!r} is not an http or https URL; local paths are accepted only by the CLI")
    if url.lower().startswith("file:"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise FetchError(f"{role} {url!r} names a remote host; a file:// URL must be file:///absolute/path")
        path = Path(unquote(parts.path))
    else:
        path = Path(url).expanduser()
    if not path.is_file():
        raise FetchError(f"{role} {str(path)!r} does not exist or is not a file")
    return path.resolve()


def _download(url: str, *, workdir: Path, policy: FetchPolicy, kind: str, role: str) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{kind}-", suffix=_suffix_of(url), dir=workdir)
    path = Path(name)
    started = time.monotonic()
    timeout = httpx.Timeout(policy.read_timeout_s, connect=policy.connect_timeout_s)
    try:
        with os.fdopen(fd, "wb") as out, _client(timeout, policy.ca_bundle) as client:
            response, final_url = _open_following_redirects(client, url, policy=policy, role=role)
            try:
                size = _copy_body(response, out, policy=policy, role=role, shown=redact_url(url), started=started)
            finally:
                response.close()
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    log.info(
        "fetched %s %s -> %s: %d bytes in %.0f ms",
        kind,
        redact_url(final_url),
        path.name,
        size,
        (time.monotonic() - started) * 1000,
    )
    return path


def _suffix_of(url: str) -> str:
    """Keep a short extension from the URL path; it helps format probing of raw streams."""
    suffix = Path(urlsplit(url).path).suffix
    return suffix.lower() if re.fullmatch(r"\.[A-Za-z0-9]{1,5}", suffix) else ""


def _open_following_redirects(
    client: httpx.Client, url: str, *, policy: FetchPolicy, role: str
) -> tuple[httpx.Response, str]:
    """GET with redirects followed by hand, so each hop passes the SSRF guard."""
    current = url
    for _hop in range(policy.max_redirects + 1):
        dest = _resolve_destination(
            current,
            role=role,
            allow_private=policy.allow_private_networks,
            allowed_networks=policy.allowed_networks,
            error=FetchError,
        )
        shown = redact_url(current)
        try:
            response = _send_pinned(client, "GET", dest, headers={"Accept-Encoding": "identity"})
        except httpx.TransportError as exc:
            raise _fetch_error(
                f"{role} {shown}: "
                + _describe_transport_error(exc, f"{dest.host}:{dest.port}", policy.connect_timeout_s)
                + "; check the URL is reachable from the server",
                status=502,
            ) from None
        code = response.status_code
        if code in _REDIRECT_CODES:
            location = response.headers.get("location")
            response.close()
            if not location:
                raise FetchError(f"{role} {shown} answered a redirect (HTTP {code}) with no Location")
            current = str(dest.url.join(location))
            log.debug("%s redirected to %s", shown, redact_url(current))
            continue
        if code != 200:
            response.close()
            raise _status_error(role, shown, code)
        return response, current
    raise FetchError(
        f"{role} {redact_url(url)} redirected more than {policy.max_redirects} times; give the final URL"
    )


def _fetch_error(message: str, *, status: int) -> FetchError:
    err = FetchError(message)
    err.status_code = status
    return err


def _status_error(role: str, shown: str, code: int) -> FetchError:
    if code in (401, 403):
        return FetchError(
            f"{role} {shown} answered HTTP {code} (access denied); the URL must be public or presigned, "
            "and presigned URLs expire: request a new one"
        )
    if code in (404, 410):
        return FetchError(
            f"{role} {shown} answered HTTP {code}; check the URL is public or presigned and not expired"
        )
    if code >= 500:
        return _fetch_error(
            f"{role} {shown} answered HTTP {code}: the server holding the file failed; try again later",
            status=502,
        )
    return FetchError(f"{role} {shown} answered HTTP {code}, not 200 with the file; check the URL")


def _copy_body(
    response: httpx.Response, out, *, policy: FetchPolicy, role: str, shown: str, started: float
) -> int:
    """Stream the body to `out`, enforcing the size limit and the total time; returns bytes."""
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > policy.max_bytes:
        raise FetchError(
            f"{role} {shown} is {_human_bytes(int(declared))}, over the {_human_bytes(policy.max_bytes)} limit; "
            "send a shorter or more compressed file"
        )
    written = 0
    try:
        for chunk in response.iter_bytes(_CHUNK_BYTES):
            written += len(chunk)
            if written > policy.max_bytes:
                raise FetchError(
                    f"{role} {shown} is larger than the {_human_bytes(policy.max_bytes)} limit; "
                    "send a shorter or more compressed file"
                )
            if time.monotonic() - started > policy.total_timeout_s:
                raise _fetch_error(
                    f"{role} {shown} took longer than {policy.total_timeout_s:g} s to download; "
                    "use a faster host or a smaller file",
                    status=502,
                )
            out.write(chunk)
    except httpx.TransportError as exc:
        raise _fetch_error(
            f"{role} {shown}: download failed after {written} bytes: "
            + _describe_transport_error(exc, "the server", policy.connect_timeout_s),
            status=502,
        ) from None
    return written


def _human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- probing


@dataclass(frozen=True)
class MediaInfo:
    """What an input file holds. Times in seconds, sizes in pixels; None where not applicable."""

    path: Path
    kind: str
    container: str  # demuxer or image format name, e.g. "mov,mp4,m4a,3gp,3g2,mj2", "wav", "JPEG"
    size_bytes: int
    has_video: bool
    has_audio: bool
    duration_s: float | None = None
    width: int | None = None  # coded size; stages.decode.probe_video gives the upright (rotated) size
    height: int | None = None
    fps: float | None = None  # average frame rate of the video stream, frames per second
    frame_count: int | None = None  # as declared by the container; None when it does not say
    video_codec: str | None = None
    audio_codec: str | None = None
    sample_rate: int | None = None  # Hz
    channels: int | None = None


def probe_media(path: Path, kind: str) -> MediaInfo:
    """Open `path` as a `kind` ('video', 'audio', 'image') and describe it, or raise MediaError.

    Catches what users actually send by mistake: an HTML or XML error page, text, an
    empty or truncated download, an audio file as the video, a silent video as the audio.
    For video and audio every packet of the needed stream is demuxed (not decoded) so a
    truncated file is caught here, not halfway through a job.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    path = Path(path)
    if not path.is_file():
        raise MediaError(path, f"the {kind} file does not exist")
    size = path.stat().st_size
    if size == 0:
        raise MediaError(path, f"is empty (0 bytes): the {kind} URL returned no content")
    with path.open("rb") as fh:
        head = fh.read(_HEAD_BYTES)
    problem = _text_problem(head, kind)
    if problem:
        raise MediaError(path, problem)
    if kind == "image":
        return _probe_image(path, head, size)
    return _probe_av(path, kind, head, size)


def _text_problem(head: bytes, kind: str) -> str | None:
    """Name the kind of text document a download turned out to be, or None for binary data."""
    if b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:
            return None
        text = head[: exc.start].decode("utf-8")
    lowered = text.lstrip("\ufeff \t\r\n").lower()
    if lowered.startswith(("<!doctype html", "<html")) or "<html" in lowered[:1024] or "<body" in lowered[:1024]:
        return f"looks like an HTML page, not a {kind}: the URL probably points to a web page or an error page"
    if lowered.startswith("<svg") or "<svg" in lowered[:1024]:
        return f"is an SVG drawing, not a {kind}" + ("; use a JPEG or PNG" if kind == "image" else "")
    if lowered.startswith("<?xml") or lowered.startswith("<error"):
        code = re.search(r"<code>([^<]{1,64})</code>", text, re.IGNORECASE)
        said = f" (it says {code.group(1)})" if code else ""
        return (
            f"looks like an XML document{said}, not a {kind}: storage services answer errors such as "
            "AccessDenied or NoSuchKey this way; check the URL"
        )
    if lowered.startswith(("{", "[")):
        return f"looks like JSON, not a {kind}: the URL probably points to an API response"
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    if text and printable / len(text) > 0.95:
        return f"looks like a text file, not a {kind}"
    return None


_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (4, b"ftyp", "an MP4/MOV file"),
    (0, b"\x1a\x45\xdf\xa3", "a Matroska/WebM file"),
    (0, b"RIFF", "a RIFF (WAV/AVI/WebP) file"),
    (0, b"ID3", "an MP3 file"),
    (0, b"OggS", "an Ogg file"),
    (0, b"fLaC", "a FLAC file"),
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"\x89PNG", "a PNG image"),
    (0, b"GIF8", "a GIF image"),
    (0, b"%PDF", "a PDF document"),
    (0, b"PK\x03\x04", "a ZIP archive"),
)


def _sniff(head: bytes) -> str | None:
    for offset, magic, label in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return label
    return None


def _probe_image(path: Path, head: bytes, size: int) -> MediaInfo:
    try:
        with Image.open(path) as image:
            image.load()
            return MediaInfo(
                path=path,
                kind="image",
                container=image.format or "unknown",
                size_bytes=size,
                has_video=False,
                has_audio=False,
                width=image.width,
                height=image.height,
            )
    except Image.DecompressionBombError as exc:
        raise MediaError(path, f"is too large to be a reference image ({exc})") from None
    except UnidentifiedImageError:
        sniffed = _sniff(head)
        what = f"looks like {sniffed}, not an image" if sniffed else "is not an image format Pillow can read"
        raise MediaError(path, f"{what}; use a JPEG, PNG or WebP image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        problem = f"is a truncated or corrupt image ({exc}); the download may have been cut short"
        raise MediaError(path, problem) from None


def _is_still_image(container: av.container.InputContainer) -> bool:
    name = container.format.name
    return name in ("image2", "webp_pipe") or name.endswith("_pipe")


def _is_cover_art(stream: av.stream.Stream) -> bool:
    return bool(int(stream.disposition) & int(av.stream.Disposition.attached_pic))


def _probe_av(path: Path, kind: str, head: bytes, size: int) -> MediaInfo:
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as exc:
        sniffed = _sniff(head)
        if sniffed and sniffed.split()[-1] in ("image", "document", "archive"):
            raise MediaError(path, f"looks like {sniffed}, not a {kind}") from None
        raise MediaError(
            path,
            f"is not a readable {kind} file ({exc.strerror or exc}); it may be truncated, corrupt "
            "or in an unsupported format",
        ) from None
    with container:
        if _is_still_image(container):
            raise MediaError(path, f"is a still image ({container.format.name}), not a {kind}")
        videos = [s for s in container.streams.video if not _is_cover_art(s)]
        audios = list(container.streams.audio)
        if kind == "video" and not videos:
            if audios:
                codec = audios[0].codec_context.name
                raise MediaError(path, f"has no video stream: it is an audio-only file ({codec}); give a video file")
            raise MediaError(path, "has no video stream; give a video file (MP4, MOV, MKV, WebM)")
        if kind == "audio" and not audios:
            if videos:
                raise MediaError(
                    path, "is a video with no audio track; give an audio file or a video that has sound"
                )
            raise MediaError(path, "has no audio stream; give an audio file (WAV, MP3, AAC, ...)")
        target = videos[0] if kind == "video" else audios[0]
        covered = _scan_packets(container, target, path, kind)
        declared = _declared_duration(target)
        _check_complete(path, f"{kind} stream", covered.get(target.index, 0.0), declared)
        # a cut file stops every stream early; the longest one must reach the container's duration
        container_s = container.duration / av.time_base if container.duration else None
        _check_complete(path, "longest stream", max(covered.values(), default=0.0), container_s)
        duration = declared or covered.get(target.index, 0.0)
        return _media_info(path, kind, size, container, videos, audios, duration)


def _declared_duration(stream: av.stream.Stream) -> float | None:
    """The duration the stream's header declares, seconds; None when it says nothing (Matroska)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


@dataclass
class _Coverage:
    """The time span one stream's packets cover, seconds."""

    start: float | None = None
    end: float = 0.0

    def add(self, packet: av.Packet) -> None:
        if packet.pts is None or not packet.time_base:
            return
        t0 = float(packet.pts * packet.time_base)
        self.start = t0 if self.start is None else min(self.start, t0)
        self.end = max(self.end, float((packet.pts + (packet.duration or 0)) * packet.time_base))

    @property
    def seconds(self) -> float:
        return self.end - (self.start if self.start is not None and self.start > 0 else 0.0)


def _scan_packets(
    container: av.container.InputContainer, target: av.stream.Stream, path: Path, kind: str
) -> dict[int, float]:
    """Demux every packet (decoding only the target's first frame); seconds covered per stream index.

    A damaged last packet of the target means the file was cut; a few damaged packets
    inside are left to the decoder to conceal, many mean the file is corrupt.
    """
    coverage: dict[int, _Coverage] = {}
    decoded = False
    packets = corrupt = 0
    last_corrupt = False
    try:
        for packet in container.demux():
            if not packet.size:
                continue
            coverage.setdefault(packet.stream.index, _Coverage()).add(packet)
            if packet.stream.index != target.index:
                continue
            packets += 1
            last_corrupt = packet.is_corrupt
            corrupt += last_corrupt
            if not decoded:
                decoded = bool(packet.decode())
        if not decoded:
            decoded = bool(target.codec_context.decode(None))
    except av.FFmpegError as exc:
        problem = f"is truncated or corrupt: reading its {kind} stream failed ({exc.strerror or exc})"
        raise MediaError(path, problem) from None
    target_end = coverage[target.index].end if target.index in coverage else 0.0
    if last_corrupt:
        raise MediaError(path, f"is truncated: its {kind} stream ends with a damaged packet at {target_end:.1f} s")
    if corrupt > max(1, packets // 100):
        raise MediaError(path, f"is corrupt: {corrupt} of {packets} {kind} packets are damaged")
    if not decoded:
        raise MediaError(path, f"has a {kind} stream with no decodable frames; the file is corrupt or empty")
    return {index: span.seconds for index, span in coverage.items()}


def _check_complete(path: Path, what: str, covered: float, declared: float | None) -> None:
    """Refuse a file whose packets stop well before the duration its header declares."""
    if declared and covered < declared - max(0.5, 0.05 * declared):
        raise MediaError(
            path,
            f"is truncated: its {what} stops at {covered:.1f} s of the {declared:.1f} s the file "
            "declares; the download was probably cut short or the file is damaged",
        )


def _media_info(
    path: Path,
    kind: str,
    size: int,
    container: av.container.InputContainer,
    videos: list,
    audios: list,
    duration: float,
) -> MediaInfo:
    video = videos[0] if videos else None
    audio = audios[0] if audios else None
    rate: Fraction | None = (video.average_rate or video.guessed_rate) if video else None
    return MediaInfo(
        path=path,
        kind=kind,
        container=container.format.name,
        size_bytes=size,
        has_video=video is not None,
        has_audio=audio is not None,
        duration_s=duration,
        width=video.codec_context.width if video else None,
        height=video.codec_context.height if video else None,
        fps=float(rate) if rate else None,
        frame_count=(video.frames or None) if video else None,
        video_codec=video.codec_context.name if video else None,
        audio_codec=audio.codec_context.name if audio else None,
        sample_rate=audio.codec_context.sample_rate if audio else None,
        channels=audio.codec_context.layout.nb_channels if audio else None,
    )


# ---------------------------------------------------------------- uploading


@dataclass(frozen=True)
class UploadResult:
    """How an upload went: the URL without its signature, HTTP status, tries, bytes, wall time."""

    url: str
    status_code: int
    attempts: int
    bytes_sent: int
    elapsed_ms: float
    etag: str | None = None


def _upload_error(message: str, *, status: int) -> UploadError:
    """UploadError is 502 by default; a URL the caller got wrong is their fault (4xx)."""
    err = UploadError(message)
    err.status_code = status
    return err


def _upload_destination(url: str, policy: UploadPolicy) -> _Destination:
    return _resolve_destination(
        url,
        role="upload_url",
        allow_private=policy.allow_private_networks,
        allowed_networks=policy.allowed_networks,
        error=lambda message: _upload_error(message, status=422),
    )


def check_upload_url(url: str, policy: UploadPolicy, *, probe_connect: bool = True) -> None:
    """Refuse a bad upload URL before the job runs: scheme, DNS, SSRF guard, and (optionally)
    that a TCP connection opens. Sends no HTTP request, since a presigned PUT URL refuses
    any other method. Raises UploadError with status_code 422.
    """
    dest = _upload_destination(url, policy)
    if not probe_connect:
        return
    failure = ""
    for address in dest.addresses:
        try:
            with socket.create_connection((address, dest.port), timeout=policy.connect_timeout_s):
                return
        except OSError as exc:
            failure = exc.strerror or str(exc)
    raise _upload_error(
        f"upload_url {redact_url(url)} cannot be reached: connecting to {dest.host}:{dest.port} failed "
        f"({failure}); check the URL",
        status=422,
    )


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK_BYTES):
            yield chunk


def upload_file(path: Path, url: str, *, policy: UploadPolicy) -> UploadResult:
    """PUT the file at `path` to `url` (e.g. a presigned S3/GCS URL), streamed.

    Content-Length is always sent (presigned PUTs refuse chunked bodies). Connection
    errors, timeouts, 5xx, 408 and 429 are retried with exponential backoff; any other
    4xx fails at once. Raises UploadError: status_code 422 when the URL is wrong or was
    refused (an expired presigned URL), 502 when the store failed or could not be reached.
    """
    path = Path(path)
    if not path.is_file():
        raise UploadError(f"the file to upload {str(path)!r} does not exist")
    size = path.stat().st_size
    shown = redact_url(url)
    dest = _upload_destination(url, policy)
    headers = {"Content-Type": policy.content_type, "Content-Length": str(size)}
    timeout = httpx.Timeout(policy.io_timeout_s, connect=policy.connect_timeout_s)
    started = time.monotonic()
    last_problem = ""
    with _client(timeout, policy.ca_bundle) as client:
        for attempt in range(1, policy.attempts + 1):
            try:
                response = _send_pinned(client, "PUT", dest, headers=headers, content=lambda: _file_chunks(path))
            except httpx.TransportError as exc:
                last_problem = _describe_transport_error(exc, f"{dest.host}:{dest.port}", policy.connect_timeout_s)
            else:
                try:
                    code = response.status_code
                    if 200 <= code < 300:
                        elapsed = (time.monotonic() - started) * 1000
                        log.info("uploaded %d bytes to %s in %.0f ms (%d attempts)", size, shown, elapsed, attempt)
                        return UploadResult(shown, code, attempt, size, elapsed, response.headers.get("etag"))
                    if not (code >= 500 or code in _RETRYABLE_UPLOAD_CODES):
                        raise _refused_upload_error(code, response, shown, size, policy)
                    last_problem = f"the server answered HTTP {code}"
                finally:
                    response.close()
            if attempt < policy.attempts:
                delay = min(policy.backoff_max_s, policy.backoff_base_s * 2 ** (attempt - 1))
                log.warning(
                    "upload to %s attempt %d failed (%s); retrying in %.2f s", shown, attempt, last_problem, delay
                )
                time.sleep(delay)
    raise _upload_error(
        f"upload to {shown} failed after {policy.attempts} attempts: {last_problem}", status=502
    )


def _refused_upload_error(
    code: int, response: httpx.Response, shown: str, size: int, policy: UploadPolicy
) -> UploadError:
    """A 3xx or 4xx: the URL itself is wrong or expired, so retrying cannot help."""
    said = ""
    body = b""
    for chunk in response.iter_bytes(_HEAD_BYTES):
        body += chunk
        if len(body) >= _HEAD_BYTES:
            break
    match = re.search(rb"<Code>([^<]{1,64})</Code>", body)
    store_code = match.group(1).decode("ascii", "replace") if match else ""
    if store_code:
        said = f" (the store says {store_code})"
    if code in _REDIRECT_CODES:
        target = redact_url(response.headers.get("location", "?"))
        message = f"the upload URL answered a redirect (HTTP {code} to {target}); give the final URL"
    elif code in (401, 403):
        message = f"the upload URL was refused (HTTP {code}){said}: presigned URLs expire; request a new one"
        if store_code == "SignatureDoesNotMatch":
            message += (
                f", and check it was signed for Content-Type {policy.content_type!r} "
                "(set LIPSYNC_UPLOAD_CONTENT_TYPE to match)"
            )
    elif code == 404:
        message = f"the upload URL was not found (HTTP 404){said}; check the bucket and key"
    elif code == 413:
        message = f"the upload URL refused a file of {_human_bytes(size)} as too large (HTTP 413)"
    else:
        message = f"the upload URL rejected the upload (HTTP {code}){said}; check the URL"
    return _upload_error(f"{message} [{shown}]", status=422)


# ---------------------------------------------------------------- posting JSON (webhooks)


def check_destination(url: str, *, role: str, policy: UploadPolicy) -> None:
    """Refuse (InputError, 422) a URL the service would send to: scheme, DNS and the SSRF
    guard, by the upload policy's rules. `role` names the request field in the message."""
    _resolve_destination(url, role=role, allow_private=policy.allow_private_networks,
                         allowed_networks=policy.allowed_networks, error=InputError)


@dataclass(frozen=True)
class PostResult:
    """How a JSON POST went: delivered (2xx), tries made, the last HTTP status, the last problem."""

    delivered: bool
    attempts: int
    status_code: int | None
    error: str | None


def post_json(url: str, payload: dict, *, policy: UploadPolicy, role: str = "webhook_url") -> PostResult:
    """POST `payload` as JSON to `url`, pinned to the checked address. Connection errors,
    5xx, 408 and 429 are retried with the upload backoff; other answers end it. Never raises
    for a delivery problem: the result says what happened."""
    shown = redact_url(url)
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    timeout = httpx.Timeout(policy.io_timeout_s, connect=policy.connect_timeout_s)
    try:
        dest = _resolve_destination(url, role=role, allow_private=policy.allow_private_networks,
                                    allowed_networks=policy.allowed_networks, error=InputError)
    except InputError as exc:
        return PostResult(False, 0, None, str(exc))
    problem = ""
    with _client(timeout, policy.ca_bundle) as client:
        for attempt in range(1, policy.attempts + 1):
            try:
                response = _send_pinned(client, "POST", dest, headers=headers, content=lambda: iter([body]))
            except httpx.TransportError as exc:
                problem = _describe_transport_error(exc, f"{dest.host}:{dest.port}", policy.connect_timeout_s)
            else:
                response.close()
                code = response.status_code
                if 200 <= code < 300:
                    return PostResult(True, attempt, code, None)
                problem = f"{shown} answered HTTP {code}"
                if not (code >= 500 or code in _RETRYABLE_UPLOAD_CODES):
                    return PostResult(False, attempt, code, problem)
            if attempt < policy.attempts:
                time.sleep(min(policy.backoff_max_s, policy.backoff_base_s * 2 ** (attempt - 1)))
    return PostResult(False, policy.attempts, None, problem)
