"""Deliver results: upload them to presigned URLs and POST JSON to webhooks (httpx), pinned to checked addresses.

Env vars (read by `UploadPolicy.from_env`; LIPSYNC_ALLOW_PRIVATE_URLS, LIPSYNC_ALLOWED_NETWORKS
and LIPSYNC_CA_BUNDLE are described in `service.addresses`):

  LIPSYNC_UPLOAD_CONTENT_TYPE    Content-Type of the PUT (must match what a presigned URL signed); default video/mp4
  LIPSYNC_UPLOAD_ATTEMPTS        tries per upload, first one included; default 4
  LIPSYNC_UPLOAD_BACKOFF_S       delay before the first retry, doubled for each next one, seconds; default 0.5
  LIPSYNC_UPLOAD_BACKOFF_MAX_S   cap on one retry delay, seconds; default 8
  LIPSYNC_UPLOAD_CONNECT_TIMEOUT_S seconds to open a connection to the upload URL; default 10
  LIPSYNC_UPLOAD_TIMEOUT_S       seconds the upload server may stall while sending or answering; default 120
  LIPSYNC_UPLOAD_TOTAL_TIMEOUT_S wall-clock seconds for a whole upload, retries included, however slowly the
                                 server reads (a `service.watchdog.Watchdog`); default 1800
"""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from service.addresses import (
    REDIRECT_CODES,
    Destination,
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
from stream.errors import InputError, UploadError
from stream.pipeline import PipelineCancelled

log = logging.getLogger(__name__)

_RETRYABLE_UPLOAD_CODES = frozenset({408, 429})
_CHUNK_BYTES = 1 << 20
_HEAD_BYTES = 4096


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
    total_timeout_s: float = 1800.0  # LIPSYNC_UPLOAD_TOTAL_TIMEOUT_S
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
            allow_private_networks=env_bool(env, "LIPSYNC_ALLOW_PRIVATE_URLS", d.allow_private_networks),
            allowed_networks=env_networks(env, "LIPSYNC_ALLOWED_NETWORKS"),
            content_type=env.get("LIPSYNC_UPLOAD_CONTENT_TYPE", "").strip() or d.content_type,
            attempts=int(env_number(env, "LIPSYNC_UPLOAD_ATTEMPTS", d.attempts, int, 1)),
            backoff_base_s=env_number(env, "LIPSYNC_UPLOAD_BACKOFF_S", d.backoff_base_s, float, 0.0),
            backoff_max_s=env_number(env, "LIPSYNC_UPLOAD_BACKOFF_MAX_S", d.backoff_max_s, float, 0.0),
            connect_timeout_s=env_number(env, "LIPSYNC_UPLOAD_CONNECT_TIMEOUT_S", d.connect_timeout_s, float, 0.001),
            io_timeout_s=env_number(env, "LIPSYNC_UPLOAD_TIMEOUT_S", d.io_timeout_s, float, 0.001),
            total_timeout_s=env_number(env, "LIPSYNC_UPLOAD_TOTAL_TIMEOUT_S", d.total_timeout_s, float, 0.001),
            ca_bundle=env.get("LIPSYNC_CA_BUNDLE", "").strip() or None,
        )



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


def _upload_destination(url: str, policy: UploadPolicy) -> Destination:
    return resolve_destination(
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


class UploadCancelled(PipelineCancelled):
    """The job was cancelled while its result was uploading."""


def upload_file(path: Path, url: str, *, policy: UploadPolicy,
                cancelled: Callable[[], bool] | None = None) -> UploadResult:
    """PUT the file at `path` to `url` (e.g. a presigned S3/GCS URL), streamed.

    Content-Length is always sent (presigned PUTs refuse chunked bodies). Connection
    errors, timeouts, 5xx, 408 and 429 are retried with exponential backoff; any other
    4xx fails at once. Raises UploadError: status_code 422 when the URL is wrong or was
    refused (an expired presigned URL), 502 when the store failed or could not be reached
    or the upload took longer than policy.total_timeout_s (wall clock, retries included).
    Once `cancelled()` is True the upload stops within about 0.2 s (UploadCancelled).
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
    with Watchdog(policy.total_timeout_s, cancelled) as watchdog, pinned_client(timeout, policy.ca_bundle) as client:
        for attempt in range(1, policy.attempts + 1):
            try:
                response = send_pinned(client, "PUT", dest, headers=headers, content=lambda: _file_chunks(path),
                                       trace=watchdog.trace)
            except httpx.TransportError as exc:
                _raise_if_stopped(watchdog, shown)
                last_problem = describe_transport_error(exc, f"{dest.host}:{dest.port}", policy.connect_timeout_s)
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
                watchdog.stopped.wait(delay)
                _raise_if_stopped(watchdog, shown)
    raise _upload_error(
        f"upload to {shown} failed after {policy.attempts} attempts: {last_problem}", status=502
    )


def _raise_if_stopped(watchdog: Watchdog, shown: str) -> None:
    why = watchdog.why_stopped()
    if why == "cancelled":
        raise UploadCancelled("uploading the result stopped: the job was cancelled")
    if why == "deadline":
        raise _upload_error(f"upload to {shown} took longer than {watchdog.total_s:g} s "
                            "(LIPSYNC_UPLOAD_TOTAL_TIMEOUT_S); the storage is too slow, try again", status=502)


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
    if code in REDIRECT_CODES:
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
        message = f"the upload URL refused a file of {human_bytes(size)} as too large (HTTP 413)"
    else:
        message = f"the upload URL rejected the upload (HTTP {code}){said}; check the URL"
    return _upload_error(f"{message} [{shown}]", status=422)


# ---------------------------------------------------------------- posting JSON (webhooks)


def check_destination(url: str, *, role: str, policy: UploadPolicy) -> None:
    """Refuse (InputError, 422) a URL the service would send to: scheme, DNS and the SSRF
    guard, by the upload policy's rules. `role` names the request field in the message."""
    resolve_destination(url, role=role, allow_private=policy.allow_private_networks,
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
    5xx, 408 and 429 are retried with the upload backoff; other answers end it, and so does
    policy.total_timeout_s. Never raises for a delivery problem: the result says what happened."""
    shown = redact_url(url)
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    timeout = httpx.Timeout(policy.io_timeout_s, connect=policy.connect_timeout_s)
    try:
        dest = resolve_destination(url, role=role, allow_private=policy.allow_private_networks,
                                    allowed_networks=policy.allowed_networks, error=InputError)
    except InputError as exc:
        return PostResult(False, 0, None, str(exc))
    problem = ""
    with Watchdog(policy.total_timeout_s) as watchdog, pinned_client(timeout, policy.ca_bundle) as client:
        for attempt in range(1, policy.attempts + 1):
            try:
                response = send_pinned(client, "POST", dest, headers=headers, content=lambda: iter([body]),
                                       trace=watchdog.trace)
            except httpx.TransportError as exc:
                if watchdog.why_stopped():
                    return PostResult(False, attempt, None, f"{shown} took longer than {watchdog.total_s:g} s "
                                                            "(LIPSYNC_UPLOAD_TOTAL_TIMEOUT_S)")
                problem = describe_transport_error(exc, f"{dest.host}:{dest.port}", policy.connect_timeout_s)
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
