"""The address policy (SSRF guard) shared by fetches, uploads and webhooks.

The service sends requests to URLs its callers name, from inside its own network, so every
destination is resolved and checked before a socket is opened: loopback, private,
link-local, multicast, reserved and other special-purpose addresses (the IANA registries,
and IPv6 forms that wrap an IPv4 address: mapped, 6to4, Teredo, NAT64) are refused unless
the policy allows them, on the first request and on every redirect hop. The request is
then sent to the very address that was checked (the Host header and TLS SNI keep the
original name), so a second DNS answer cannot swap in an internal address.

Env vars (read by the fetch and upload policies):

  LIPSYNC_ALLOW_PRIVATE_URLS     1 allows loopback/private/link-local destinations (tests, local dev); default 0
  LIPSYNC_ALLOWED_NETWORKS       comma-separated CIDRs allowed even though non-public, e.g. "10.20.0.0/16"; default none
  LIPSYNC_CA_BUNDLE              PEM file of CAs trusted for https instead of certifi's (internal storage); default unset
"""
from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import httpx

from stream.errors import LipSyncError

log = logging.getLogger(__name__)

REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


# ---------------------------------------------------------------- env parsing shared by the policies


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={raw!r} is not a boolean; use 1 or 0")


def env_number(env: Mapping[str, str], name: str, default: float, cast: type, minimum: float) -> float:
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


def env_networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name, "")
    networks = tuple(part.strip() for part in raw.split(",") if part.strip())
    for cidr in networks:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ValueError(f"{name}: {cidr!r} is not an IP network like 10.0.0.0/8") from None
    return networks



# ---------------------------------------------------------------- the SSRF guard


def redact_url(url: str | httpx.URL) -> str:
    """The URL without credentials or query string, safe for logs and error messages.

    Presigned URLs carry their signature in the query, so it never leaves this module.
    A very long URL is cut (`clipped`).
    """
    try:
        parsed = httpx.URL(str(url))
    except (httpx.InvalidURL, TypeError):
        return "<unparseable URL>"
    netloc = parsed.netloc.decode("ascii", "replace")
    text = f"{parsed.scheme}://{netloc}{parsed.path}" if parsed.scheme else parsed.path
    return clipped(text) + ("?..." if parsed.query else "")


def clipped(text: str, limit: int = 200) -> str:
    """`text` cut to `limit` characters for an error message or log line (a request may hold
    a URL of a megabyte; echoing it whole helps nobody)."""
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} characters)"


SPECIAL_PURPOSE_NETWORKS: tuple[tuple[str, str], ...] = (
    # IANA IPv4 Special-Purpose Address Registry, entries not globally reachable
    ("0.0.0.0/8", "this network"), ("10.0.0.0/8", "private"), ("100.64.0.0/10", "shared address space"),
    ("127.0.0.0/8", "loopback"), ("169.254.0.0/16", "link-local"), ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignment"), ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay anycast"), ("192.168.0.0/16", "private"), ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"), ("203.0.113.0/24", "documentation"), ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"), ("255.255.255.255/32", "broadcast"),
    # IANA IPv6 Special-Purpose Address Registry, entries not globally reachable
    ("::/128", "unspecified"), ("::1/128", "loopback"), ("::/96", "IPv4-compatible (deprecated)"),
    ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation"), ("100::/64", "discard-only"),
    ("100:0:0:1::/64", "dummy prefix"), ("2001::/23", "IETF protocol assignment"), ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"), ("5f00::/16", "segment routing"), ("fc00::/7", "unique-local (private)"),
    ("fe80::/10", "link-local"), ("fec0::/10", "site-local (deprecated)"), ("ff00::/8", "multicast"),
)
"""Destinations refused with the name of their range. Entries IANA marks globally reachable
(anycast services such as 192.0.0.9/32 or 2001:1::1/128, AS112, AMT) are public."""
_GLOBAL_EXCEPTIONS = tuple(ipaddress.ip_network(cidr) for cidr in (
    "192.0.0.9/32", "192.0.0.10/32", "2001:1::1/128", "2001:1::2/128", "2001:1::3/128", "2001:3::/32",
    "2001:4:112::/48", "2001:20::/28", "2001:30::/28",
))
_SPECIAL = tuple((ipaddress.ip_network(cidr), label) for cidr, label in SPECIAL_PURPOSE_NETWORKS)


def non_public_reason(address: str) -> str | None:
    """Why an IP address is not a public destination ('loopback', 'private', ...), or None.

    An IPv6 address that carries an IPv4 one (IPv4-mapped ::ffff:0:0/96, 6to4 2002::/16,
    NAT64 64:ff9b::/96) is judged by the IPv4 address it reaches.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        wrapped = ip.ipv4_mapped or ip.sixtofour
        if wrapped is None and ip in _NAT64:
            wrapped = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if wrapped is not None:
            reason = non_public_reason(str(wrapped))
            kind = "" if ip.ipv4_mapped else "6to4" if ip.sixtofour else "NAT64"
            return f"{kind}-wrapped {reason}" if reason and kind else reason
    if any(ip in net for net in _GLOBAL_EXCEPTIONS):
        return None
    for net, label in _SPECIAL:
        if ip.version == net.version and ip in net:
            return _LABELS.get(label, label)
    if not ip.is_global:
        return "special-purpose (non-public)"
    return None


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LABELS = {"this network": "unspecified", "unique-local (private)": "private"}


@dataclass(frozen=True)
class Destination:
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


def resolve_destination(
    url: str,
    *,
    role: str,
    allow_private: bool,
    allowed_networks: tuple[str, ...],
    error: Callable[[str], LipSyncError],
) -> Destination:
    """Parse an http(s) URL, resolve its host, and refuse it if any address is non-public."""
    shown = redact_url(url)
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise error(f"{role} {shown} is not a valid URL ({clipped(str(exc))})") from None
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
        raise error(f"{role} {shown}: the host {clipped(repr(host))} does not resolve ({exc.strerror}); check the URL") from None
    addresses = tuple(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise error(f"{role} {shown}: the host {clipped(repr(host))} has no addresses; check the URL")
    if not allow_private:
        networks = [ipaddress.ip_network(cidr, strict=False) for cidr in allowed_networks]
        for address in addresses:
            reason = non_public_reason(address)
            if reason and not any(ipaddress.ip_address(address.split("%", 1)[0]) in net for net in networks):
                raise error(
                    f"{role} {shown} resolves to a {reason} address {address}; "
                    "private and loopback URLs are refused, use a publicly reachable URL "
                    "(for local testing, run the server with LIPSYNC_ALLOW_PRIVATE_URLS=1)"
                )
    return Destination(url=parsed, host=host, port=port, addresses=addresses)


def send_pinned(
    client: httpx.Client,
    method: str,
    dest: Destination,
    *,
    headers: Mapping[str, str],
    content: Callable[[], Iterator[bytes]] | None = None,
    trace: Callable[[str, dict], None] | None = None,
) -> httpx.Response:
    """Send to each checked address in turn until one accepts the connection (streamed response).

    `trace` is httpcore's trace extension (the fetch watchdog uses it to see the sockets)."""
    last: httpx.TransportError | None = None
    for address in dest.addresses:
        request = client.build_request(
            method,
            dest.pinned_url(address),
            headers={**headers, "Host": dest.host_header},
            content=content() if content is not None else None,
            extensions={**dest.extensions, **({"trace": trace} if trace else {})},
        )
        try:
            return client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            log.debug("connect to %s (%s) failed: %s", dest.host, address, exc)
            last = exc
    assert last is not None
    raise last


def pinned_client(timeout: httpx.Timeout, ca_bundle: str | None) -> httpx.Client:
    """A client that ignores proxy env vars (a proxy would defeat address pinning) and follows no redirects."""
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
    return httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False, verify=verify)


def describe_transport_error(exc: httpx.TransportError, dest_text: str, policy_timeout_s: float) -> str:
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



def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
