"""Who may call the server from a browser: trusted Host names, same-origin writes, JSON bodies.

Three checks, each against a way another web site could use a browser as its proxy:

- Host (`TrustedHosts`, Starlette's TrustedHostMiddleware): a request whose Host header is not
  an allowed name is refused (400), so a page on another name that resolves to this server
  (DNS rebinding) can neither read jobs and results nor create them.
- Origin (`CrossSiteGuard`): a request that changes something (POST, PUT, PATCH, DELETE) from
  a page of another origin is refused (403): its `Origin` must be this server's own (same
  host and port) or an allowed origin, and its `Sec-Fetch-Site` "same-origin" or "none" (typed
  or bookmarked). Requests with neither header (curl, other servers, SDKs) are not browsers'
  cross-site requests and pass.
- Content-Type (`require_json`, used by the server's JSON endpoints): a body that is not sent
  as `application/json` is refused (415); an HTML form can send only form types and text/plain.

`SecurityHeaders` adds X-Content-Type-Options, X-Frame-Options and Referrer-Policy to every
response, and the review page's Content-Security-Policy to HTML.

Env vars (read by `BrowserPolicy.from_env`; the server has no CLI of its own):

  LIPSYNC_ALLOWED_HOSTS    comma-separated Host names the server answers to ("*.example.com"
                           matches subdomains, "*" any name); default localhost,127.0.0.1,::1.
                           Behind a proxy or in a container, list the names clients use.
  LIPSYNC_ALLOWED_ORIGINS  comma-separated origins (scheme://host[:port]) whose pages may
                           create jobs and uploads besides the server's own; default none
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.trustedhost import TrustedHostMiddleware, parse_host_header
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from stream.errors import LipSyncError

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SAME_SITE_FETCH = frozenset({"same-origin", "none"})
"""`Sec-Fetch-Site` values of a request this server's own page (or the user typing a URL) makes."""


@dataclass(frozen=True)
class BrowserPolicy:
    """Allowed Host names and extra allowed origins; each has an env var (module docstring)."""

    allowed_hosts: tuple[str, ...] = DEFAULT_HOSTS
    allowed_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for host in self.allowed_hosts:
            if not host or ("*" in host[1:]) or (host.startswith("*") and host != "*" and not host.startswith("*.")):
                raise ValueError(f"LIPSYNC_ALLOWED_HOSTS: {host!r} is not a host name or a '*.domain' pattern")
        for origin in self.allowed_origins:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
                raise ValueError(f"LIPSYNC_ALLOWED_ORIGINS: {origin!r} is not an origin like https://app.example.com")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BrowserPolicy:
        env = os.environ if environ is None else environ
        hosts = _items(env.get("LIPSYNC_ALLOWED_HOSTS", ""))
        origins = _items(env.get("LIPSYNC_ALLOWED_ORIGINS", ""))
        return cls(tuple(hosts) or DEFAULT_HOSTS, tuple(o.rstrip("/").lower() for o in origins))


def _items(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def _bare(host: str) -> str:
    """A host without IPv6 brackets, lower case: "[::1]" -> "::1"."""
    return host.strip("[]").lower()


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"success": False, "error_message": message}, status_code=status)


class TrustedHosts(TrustedHostMiddleware):
    """Starlette's TrustedHostMiddleware, answering the API's JSON error that names the env var."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        super().__init__(app, [_bare(h) if not h.startswith("*") else h for h in allowed_hosts], www_redirect=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.allow_any or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        parsed = parse_host_header(Headers(scope=scope).get("host"))
        host = _bare(parsed.host) if parsed is not None else ""
        if host and any(host == p or (p.startswith("*.") and host.endswith(p[1:])) for p in self.allowed_hosts):
            await self.app(scope, receive, send)
            return
        shown = host[:80] or "(none)"
        await error(400, f"this server does not answer to the host name {shown!r}; call it by one of "
                         f"{', '.join(self.allowed_hosts)}, or add the name to LIPSYNC_ALLOWED_HOSTS")(scope, receive, send)


class CrossSiteGuard:
    """Refuse (403) a write from a page of another origin (module docstring)."""

    def __init__(self, app: ASGIApp, allowed_origins: Sequence[str] = ()) -> None:
        self.app = app
        self.allowed_origins = frozenset(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in UNSAFE_METHODS:
            problem = self.problem(Headers(scope=scope))
            if problem:
                await error(403, problem)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def problem(self, headers: Headers) -> str | None:
        """Why a write with these headers is refused, or None when it may go on."""
        origin = headers.get("origin")
        allowed = origin is not None and origin.rstrip("/").lower() in self.allowed_origins
        if origin is not None and not allowed and origin != "null":
            if not same_origin(origin, headers.get("host")):
                return (f"a page of another site ({origin[:80]}) may not create jobs or uploads here; call the API "
                        "from your own server, or add that origin to LIPSYNC_ALLOWED_ORIGINS")
        elif origin == "null":
            return "a page with an opaque origin (a sandboxed frame or a file) may not create jobs or uploads here"
        site = headers.get("sec-fetch-site")
        if site is not None and site not in SAME_SITE_FETCH and not allowed:
            return (f"a {site} request from a browser may not create jobs or uploads here; use the server's own "
                    "page, call the API from your own server, or add the page's origin to LIPSYNC_ALLOWED_ORIGINS")
        return None


def same_origin(origin: str, host_header: str | None) -> bool:
    """True when `origin` names this server: the same host and port as the request's Host header
    (the scheme is not compared: a TLS proxy in front makes the page https and the server http)."""
    try:
        parts = urlsplit(origin)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return False
    host = parse_host_header(host_header)
    if not parts.hostname or host is None:
        return False
    return _bare(parts.hostname) == _bare(host.host) and port == (int(host.port) if host.port else
                                                                   {"http": 80, "https": 443}.get(parts.scheme))


PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob: http: https:; "
               "media-src 'self' data: blob: http: https:; connect-src 'self' http: https:; object-src 'none'; "
               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
"""The review page's Content-Security-Policy: its own scripts and styles only; media and waveforms
may come from the input URLs a user gives (http(s)); no framing by other sites."""


class SecurityHeaders:
    """Every response: nosniff and no framing; HTML pages also get PAGE_POLICY (CSP)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "same-origin")
                if headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("Content-Security-Policy", PAGE_POLICY)
            await send(message)

        await self.app(scope, receive, with_headers)


class NotJson(LipSyncError):
    """A JSON endpoint's body sent as another Content-Type (HTTP 415)."""

    status_code = 415


def require_json(content_type: str | None) -> None:
    """Raise NotJson unless the request says its body is application/json (charset allowed)."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise NotJson(f"send the request body as JSON with the header Content-Type: application/json "
                      f"(it came as {kind[:60] or 'no Content-Type'})")
