"""Fetch input URLs to temp files (httpx), under a wall-clock deadline and the job's cancel flag.

Every hop passes the address policy (`service.addresses`). A download ends, whatever the
sender does (one byte a minute, a huge Content-Length, silence after the headers), when:
the file is complete; it passes LIPSYNC_FETCH_MAX_BYTES; LIPSYNC_FETCH_TOTAL_TIMEOUT_S of
wall-clock time have gone by since it started (502); or the job is cancelled (within
about 0.2 s, reported as cancelled). A `service.watchdog.Watchdog` enforces the last two by
shutting down the download's sockets, which wakes a read blocked inside httpx at once.

Env vars (read by `FetchPolicy.from_env`; LIPSYNC_ALLOW_PRIVATE_URLS, LIPSYNC_ALLOWED_NETWORKS
and LIPSYNC_CA_BUNDLE are described in `service.addresses`):

  LIPSYNC_ALLOW_LOCAL_FILES      1 accepts local paths and file:// URLs as inputs (CLI, local dev); default 0
  LIPSYNC_FETCH_MAX_BYTES        largest input accepted, bytes; default 2147483648 (2 GiB)
  LIPSYNC_FETCH_MAX_REDIRECTS    redirects followed per input; default 5
  LIPSYNC_FETCH_CONNECT_TIMEOUT_S  seconds to open a connection; default 10
  LIPSYNC_FETCH_READ_TIMEOUT_S   seconds the server may stay silent mid-download; default 30
  LIPSYNC_FETCH_TOTAL_TIMEOUT_S  wall-clock seconds for a whole download, redirects included; default 600
"""
from __future__ import annotations

import ipaddress
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from service.addresses import (
    REDIRECT_CODES,
    clipped,
    describe_transport_error,
    env_bool,
    env_networks,
    env_number,
    human_bytes,
    pinned_client,
    redact_url,
    resolve_destination,
    send_pinned,
)
from service.watchdog import Watchdog
from stream.errors import FetchError
from stream.pipeline import PipelineCancelled

log = logging.getLogger(__name__)

KINDS = ("video", "audio", "image")


class FetchCancelled(PipelineCancelled):
    """The job was cancelled while one of its inputs was downloading."""


_job_cancelled: ContextVar[Callable[[], bool] | None] = ContextVar("fetch_job_cancelled", default=None)


@contextmanager
def fetches_cancelled_by(cancelled: Callable[[], bool]) -> Iterator[None]:
    """Within the block, every fetch_to_temp on this thread stops once `cancelled()` is True
    (a job's cancel flag reaches its downloads without threading it through each call)."""
    token = _job_cancelled.set(cancelled)
    try:
        yield
    finally:
        _job_cancelled.reset(token)


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
            allow_private_networks=env_bool(env, "LIPSYNC_ALLOW_PRIVATE_URLS", d.allow_private_networks),
            allowed_networks=env_networks(env, "LIPSYNC_ALLOWED_NETWORKS"),
            allow_local_files=env_bool(env, "LIPSYNC_ALLOW_LOCAL_FILES", d.allow_local_files),
            max_bytes=int(env_number(env, "LIPSYNC_FETCH_MAX_BYTES", d.max_bytes, int, 1)),
            max_redirects=int(env_number(env, "LIPSYNC_FETCH_MAX_REDIRECTS", d.max_redirects, int, 0)),
            connect_timeout_s=env_number(env, "LIPSYNC_FETCH_CONNECT_TIMEOUT_S", d.connect_timeout_s, float, 0.001),
            read_timeout_s=env_number(env, "LIPSYNC_FETCH_READ_TIMEOUT_S", d.read_timeout_s, float, 0.001),
            total_timeout_s=env_number(env, "LIPSYNC_FETCH_TOTAL_TIMEOUT_S", d.total_timeout_s, float, 0.001),
            ca_bundle=env.get("LIPSYNC_CA_BUNDLE", "").strip() or None,
        )


def fetch_to_temp(url: str, *, workdir: Path, policy: FetchPolicy, kind: str, label: str | None = None,
                  cancelled: Callable[[], bool] | None = None) -> Path:
    """Download `url` into a new temp file in `workdir` and return its path.

    `kind` is 'video', 'audio' or 'image'; error messages name the input as `label`
    (the request field, e.g. "characters[0].reference_image_url"), by default
    f"{kind}_url". Local paths and file:// URLs are returned as they are (not
    copied, so never delete the returned path unless it is inside `workdir`), and only
    when `policy.allow_local_files`. On any failure the temp file is removed and a
    FetchError says what to fix. `cancelled` (default: the one `fetches_cancelled_by`
    set) is polled while downloading; once it answers True the download stops and
    FetchCancelled is raised.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    role = label or f"{kind}_url"
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        return _download(url, workdir=Path(workdir), policy=policy, kind=kind, role=role,
                         cancelled=cancelled or _job_cancelled.get())
    if scheme in ("", "file"):
        return _local_input(url, policy=policy, role=role)
    raise FetchError(f"{role} {redact_url(url)} uses the scheme {scheme!r}; only http and https URLs are accepted")


def _local_input(url: str, *, policy: FetchPolicy, role: str) -> Path:
    if not policy.allow_local_files:
        raise FetchError(f"{role} {clipped(repr(url))} is not an http or https URL; local paths are accepted "
                         "only by the CLI")
    if url.lower().startswith("file:"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise FetchError(f"{role} {clipped(repr(url))} names a remote host; a file:// URL must be "
                             "file:///absolute/path")
        path = Path(unquote(parts.path))
    else:
        path = Path(url).expanduser()
    if not path.is_file():
        raise FetchError(f"{role} {clipped(repr(str(path)))} does not exist or is not a file")
    return path.resolve()


def _raise_if_stopped(watchdog: Watchdog, role: str, shown: str) -> None:
    """Raise why the watchdog stopped the download, if it did."""
    why = watchdog.why_stopped()
    if why == "cancelled":
        raise FetchCancelled(f"fetching {role} stopped: the job was cancelled")
    if why == "deadline":
        raise _fetch_error(
            f"{role} {shown} took longer than {watchdog.total_s:g} s to download "
            "(LIPSYNC_FETCH_TOTAL_TIMEOUT_S); use a faster host or a smaller file",
            status=502,
        )


def _download(url: str, *, workdir: Path, policy: FetchPolicy, kind: str, role: str,
              cancelled: Callable[[], bool] | None) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{kind}-", suffix=_suffix_of(url), dir=workdir)
    path = Path(name)
    started = time.monotonic()
    shown = redact_url(url)
    try:
        with os.fdopen(fd, "wb") as out, Watchdog(policy.total_timeout_s, cancelled) as watchdog:
            timeout = httpx.Timeout(policy.read_timeout_s, connect=min(policy.connect_timeout_s, watchdog.left_s()))
            with pinned_client(timeout, policy.ca_bundle) as client:
                try:
                    response, final_url = _open_following_redirects(client, url, policy=policy, role=role,
                                                                    watchdog=watchdog)
                    try:
                        size = _copy_body(response, out, policy=policy, role=role, shown=shown, watchdog=watchdog)
                    finally:
                        response.close()
                except (FetchError, httpx.TransportError):
                    _raise_if_stopped(watchdog, role, shown)  # the watchdog's reason, not the broken socket
                    raise
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
    client: httpx.Client, url: str, *, policy: FetchPolicy, role: str, watchdog: Watchdog
) -> tuple[httpx.Response, str]:
    """GET with redirects followed by hand, so each hop passes the SSRF guard."""
    current = url
    for _hop in range(policy.max_redirects + 1):
        dest = resolve_destination(
            current,
            role=role,
            allow_private=policy.allow_private_networks,
            allowed_networks=policy.allowed_networks,
            error=FetchError,
        )
        shown = redact_url(current)
        try:
            response = send_pinned(client, "GET", dest, headers={"Accept-Encoding": "identity"},
                                   trace=watchdog.trace)
        except httpx.TransportError as exc:
            raise _fetch_error(
                f"{role} {shown}: "
                + describe_transport_error(exc, f"{dest.host}:{dest.port}", policy.connect_timeout_s)
                + "; check the URL is reachable from the server",
                status=502,
            ) from None
        code = response.status_code
        if code in REDIRECT_CODES:
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
    response: httpx.Response, out, *, policy: FetchPolicy, role: str, shown: str, watchdog: Watchdog
) -> int:
    """Stream the body to `out` as it arrives, enforcing the size limit; returns bytes.

    Each network read is written at once (no 1 MiB buffering), so the deadline is checked
    however slowly bytes come; the watchdog ends a read that blocks.
    """
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > policy.max_bytes:
        raise FetchError(
            f"{role} {shown} is {human_bytes(int(declared))}, over the {human_bytes(policy.max_bytes)} limit; "
            "send a shorter or more compressed file"
        )
    written = 0
    try:
        for chunk in response.iter_bytes():
            _raise_if_stopped(watchdog, role, shown)
            written += len(chunk)
            if written > policy.max_bytes:
                raise FetchError(
                    f"{role} {shown} is larger than the {human_bytes(policy.max_bytes)} limit; "
                    "send a shorter or more compressed file"
                )
            out.write(chunk)
    except httpx.TransportError as exc:
        _raise_if_stopped(watchdog, role, shown)
        raise _fetch_error(
            f"{role} {shown}: download failed after {written} bytes: "
            + describe_transport_error(exc, "the server", policy.connect_timeout_s),
            status=502,
        ) from None
    return written
