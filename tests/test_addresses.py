"""stream/addresses.py: the SSRF guard refuses every special-purpose range of the IANA registries.

In-process over the registries' entries (iana.org/assignments/iana-ipv4-special-registry and
iana-ipv6-special-registry), IPv6 forms that wrap an IPv4 address, and one real refusal
against a server on 127.0.0.1.
"""
from __future__ import annotations

import ipaddress

import pytest

from service.addresses import non_public_reason
from service.fetch import FetchPolicy, fetch_to_temp
from stream.errors import FetchError
from tests.http_servers import FileServer

NOT_GLOBAL = [
    # IPv4 special-purpose registry: not globally reachable
    "0.0.0.0/8", "0.0.0.0/32", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.0.0/29", "192.0.0.8/32", "192.0.0.170/32", "192.0.0.171/32", "192.0.2.0/24",
    "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4",
    "255.255.255.255/32",
    # multicast registries
    "224.0.0.0/4", "ff00::/8",
    # IPv6 special-purpose registry: not globally reachable
    "::1/128", "::/128", "64:ff9b:1::/48", "100::/64", "100:0:0:1::/64", "2001::/23",
    "2001::/32", "2001:2::/48", "2001:10::/28", "2001:db8::/32", "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10",
    # (::ffff:0:0/96 and 2002::/16 are judged by the IPv4 address they carry: see below)
    # deprecated, still refused
    "fec0::/10", "::/96",
]
GLOBAL = [  # entries the registries mark globally reachable, and ordinary public addresses
    "192.0.0.9/32", "192.0.0.10/32", "2001:1::1/128", "2001:1::2/128", "2001:1::3/128", "2001:3::/32",
    "2001:4:112::/48", "2001:20::/28", "2001:30::/28", "8.8.8.8/32", "1.1.1.1/32", "2606:4700:4700::1111/128",
]


def samples(cidr: str) -> list[str]:
    """The first, a middle and the last address of a network."""
    net = ipaddress.ip_network(cidr)
    return [str(net[0]), str(net[net.num_addresses // 2]), str(net[-1])]


@pytest.mark.parametrize("cidr", NOT_GLOBAL)
def test_every_special_purpose_range_is_refused(cidr):
    for address in samples(cidr):
        assert non_public_reason(address) is not None, address


@pytest.mark.parametrize("cidr", GLOBAL)
def test_globally_reachable_entries_are_public(cidr):
    for address in samples(cidr):
        assert non_public_reason(address) is None, address


@pytest.mark.parametrize("address,reason", [
    ("2002:7f00:1::1", "6to4-wrapped loopback"),  # before: passed
    ("2002:a00:1::", "6to4-wrapped private"),
    ("2002:a9fe:a9fe::1", "6to4-wrapped link-local"),
    ("64:ff9b::7f00:1", "NAT64-wrapped loopback"),
    ("64:ff9b::c0a8:101", "NAT64-wrapped private"),
    ("::ffff:10.0.0.1", "private"),
    ("fec0::1", "site-local (deprecated)"),  # before: passed
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "IETF protocol assignment"),  # Teredo
    ("::7f00:1", "IPv4-compatible (deprecated)"),
    ("fe80::1%eth0", "link-local"),
])
def test_ipv6_forms_that_wrap_an_ipv4_address(address, reason):
    assert non_public_reason(address) == reason


@pytest.mark.parametrize("address", ["2002:808:808::1", "64:ff9b::808:808", "::ffff:8.8.8.8"])
def test_wrapped_public_ipv4_is_public(address):
    assert non_public_reason(address) is None


def test_loopback_refusal_names_the_env_var_for_local_testing(tmp_path, data_dir):
    with FileServer(data_dir) as files:
        with pytest.raises(FetchError) as caught:
            fetch_to_temp(files.url("video/d20.mp4"), workdir=tmp_path, policy=FetchPolicy(), kind="video")
    message = str(caught.value)
    assert "loopback address 127.0.0.1" in message and "LIPSYNC_ALLOW_PRIVATE_URLS=1" in message
    assert files.requests == []  # refused before connecting


# --- resolve_destination, send_pinned and the env parsers, in-process (issue 27: each test
# names the behaviour a one-line break in service/addresses.py would lose) -------------------
import socket  # noqa: E402
import ssl  # noqa: E402

import httpx  # noqa: E402

from service import addresses  # noqa: E402
from service.addresses import (  # noqa: E402
    Destination, clipped, describe_transport_error, env_bool, env_networks, env_number, human_bytes,
    pinned_client, redact_url, resolve_destination, send_pinned,
)


def fake_dns(monkeypatch, answers: list[str], calls: list | None = None) -> None:
    """Make getaddrinfo answer `answers` (in order) for every host, recording its arguments."""
    def getaddrinfo(host, port, *args, **kwargs):
        if calls is not None:
            calls.append((host, port, args, kwargs))
        family = lambda a: socket.AF_INET6 if ":" in a else socket.AF_INET  # noqa: E731
        return [(family(a), socket.SOCK_STREAM, 6, "", (a, port)) for a in answers]
    monkeypatch.setattr(addresses.socket, "getaddrinfo", getaddrinfo)


def resolve(url: str, *, allow_private: bool = False, allowed: tuple[str, ...] = ()) -> Destination:
    return resolve_destination(url, role="the video URL", allow_private=allow_private,
                               allowed_networks=allowed, error=FetchError)


@pytest.mark.parametrize("answers", [["93.184.216.34", "10.0.0.5"], ["10.0.0.5", "93.184.216.34"],
                                     ["2606:4700::1", "::1"]])
def test_a_name_with_a_public_and_a_private_address_is_refused(monkeypatch, answers):
    """Every DNS answer is checked, not only the first: a rebinding name cannot slip one in."""
    fake_dns(monkeypatch, answers)
    with pytest.raises(FetchError) as caught:
        resolve("http://mixed.example/video.mp4")
    private = [a for a in answers if non_public_reason(a)][0]
    assert f"resolves to a {non_public_reason(private)} address {private}" in str(caught.value)


def test_refusal_message_names_url_reason_and_the_way_out(monkeypatch):
    fake_dns(monkeypatch, ["192.168.1.7"])
    with pytest.raises(FetchError) as caught:
        resolve("http://nas.example/v.mp4?sig=secret")
    assert str(caught.value) == (
        "the video URL http://nas.example/v.mp4?... resolves to a private address 192.168.1.7; "
        "private and loopback URLs are refused, use a publicly reachable URL "
        "(for local testing, run the server with LIPSYNC_ALLOW_PRIVATE_URLS=1)")


def test_public_destination_keeps_every_address_once_in_dns_order(monkeypatch):
    calls = []
    fake_dns(monkeypatch, ["93.184.216.34", "2606:2800:220:1::1", "93.184.216.34"], calls)
    dest = resolve("https://cdn.example/a/b.mp4?x=1")
    assert dest.addresses == ("93.184.216.34", "2606:2800:220:1::1")
    assert (dest.host, dest.port, str(dest.url)) == ("cdn.example", 443, "https://cdn.example/a/b.mp4?x=1")
    assert calls == [("cdn.example", 443, (), {"type": socket.SOCK_STREAM})]


@pytest.mark.parametrize("url,port", [("http://h.example/", 80), ("https://h.example/", 443),
                                      ("http://h.example:8080/", 8080), ("https://h.example:8443/", 8443)])
def test_default_port_follows_the_scheme(monkeypatch, url, port):
    calls = []
    fake_dns(monkeypatch, ["93.184.216.34"], calls)
    assert resolve(url).port == port
    assert calls[0][1] == port


def test_allow_private_accepts_loopback(monkeypatch):
    fake_dns(monkeypatch, ["127.0.0.1"])
    assert resolve("http://localhost:9000/v.mp4", allow_private=True).addresses == ("127.0.0.1",)


def test_allowed_networks_let_in_only_their_own_addresses(monkeypatch):
    fake_dns(monkeypatch, ["10.20.3.4"])
    # a CIDR with host bits set is accepted (strict=False), as LIPSYNC_ALLOWED_NETWORKS documents
    assert resolve("http://store.internal/v.mp4", allowed=("10.20.1.0/16",)).addresses == ("10.20.3.4",)
    fake_dns(monkeypatch, ["10.21.0.1"])
    with pytest.raises(FetchError, match="private address 10.21.0.1"):
        resolve("http://store.internal/v.mp4", allowed=("10.20.0.0/16",))


def test_allowed_network_matches_a_scoped_ipv6_address(monkeypatch):
    fake_dns(monkeypatch, ["fe80::1%eth0"])
    assert resolve("http://printer.local/", allowed=("fe80::/10",)).addresses == ("fe80::1%eth0",)
    with pytest.raises(FetchError, match="link-local address fe80::1%eth0"):
        resolve("http://printer.local/", allowed=("fd00::/8",))


def test_public_address_passes_even_with_allowed_networks(monkeypatch):
    fake_dns(monkeypatch, ["93.184.216.34"])
    assert resolve("http://h.example/", allowed=("10.0.0.0/8",)).addresses == ("93.184.216.34",)


@pytest.mark.parametrize("url,message", [
    ("ftp://h.example/v.mp4", "the video URL ftp://h.example/v.mp4 uses the scheme 'ftp'; only http and https URLs are accepted"),
    ("/just/a/path.mp4", "the video URL /just/a/path.mp4 uses the scheme 'none'; only http and https URLs are accepted"),
    ("http:///v.mp4", "the video URL http:///v.mp4 has no host name"),
])
def test_urls_that_cannot_be_fetched_are_named(monkeypatch, url, message):
    fake_dns(monkeypatch, ["93.184.216.34"])
    with pytest.raises(FetchError) as caught:
        resolve(url)
    assert str(caught.value) == message


def test_invalid_url_error_names_the_parse_problem():
    with pytest.raises(FetchError) as caught:
        resolve("http://[::1/v.mp4")
    assert str(caught.value) == "the video URL <unparseable URL> is not a valid URL (Invalid port: ':1')"


def test_unresolvable_host_names_host_and_reason(monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    monkeypatch.setattr(addresses.socket, "getaddrinfo", fail)
    with pytest.raises(FetchError) as caught:
        resolve("https://nowhere.example/v.mp4")
    assert str(caught.value) == ("the video URL https://nowhere.example/v.mp4: the host 'nowhere.example' "
                                 "does not resolve (Name or service not known); check the URL")


def test_host_without_addresses_is_refused(monkeypatch):
    fake_dns(monkeypatch, [])
    with pytest.raises(FetchError) as caught:
        resolve("https://empty.example/v.mp4")
    assert str(caught.value) == "the video URL https://empty.example/v.mp4: the host 'empty.example' has no addresses; check the URL"


@pytest.mark.parametrize("address,reason", [
    ("0.1.2.3", "unspecified"), ("fd12::1", "private"), ("fc00::1", "private"), ("10.1.1.1", "private"),
    ("100.64.0.1", "shared address space"), ("127.0.0.1", "loopback"), ("169.254.169.254", "link-local"),
    ("224.0.0.1", "multicast"), ("::1", "loopback"), ("::", "unspecified"),
])
def test_reason_names_the_range(address, reason):
    assert non_public_reason(address) == reason


def test_destination_pins_the_address_and_keeps_the_name():
    dest = Destination(url=httpx.URL("https://cdn.example:8443/v.mp4?x=1"), host="cdn.example", port=8443,
                       addresses=("93.184.216.34",))
    assert dest.host_header == "cdn.example:8443"
    assert dest.extensions == {"sni_hostname": "cdn.example"}
    assert str(dest.pinned_url("93.184.216.34")) == "https://93.184.216.34:8443/v.mp4?x=1"
    by_ip = Destination(url=httpx.URL("https://93.184.216.34/v"), host="93.184.216.34", port=443, addresses=())
    assert by_ip.extensions == {}  # an IP literal has no name to verify against
    plain = Destination(url=httpx.URL("http://cdn.example/v"), host="cdn.example", port=80, addresses=())
    assert plain.extensions == {}


def test_send_pinned_tries_each_address_until_one_connects():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers["host"], request.content, request.extensions.get("trace")))
        if request.url.host == "192.0.2.1":
            raise httpx.ConnectError("refused")
        return httpx.Response(200, stream=httpx.ByteStream(b"ok"))

    dest = Destination(url=httpx.URL("http://cdn.example/v.mp4"), host="cdn.example", port=80,
                       addresses=("192.0.2.1", "93.184.216.34"))
    bodies = iter([b"first", b"second"])
    trace = lambda name, info: None  # noqa: E731
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        response = send_pinned(client, "PUT", dest, headers={"x-a": "1"},
                               content=lambda: iter([next(bodies)]), trace=trace)
        assert response.status_code == 200
        assert response.request.method == "PUT" and response.request.headers["x-a"] == "1"
        assert not response.is_stream_consumed  # streamed: the caller reads it with its own limits
        response.close()
    # a fresh body for every attempt, the name in Host, the trace hook on each request
    assert seen == [("192.0.2.1", "cdn.example", b"first", trace), ("93.184.216.34", "cdn.example", b"second", trace)]


def test_send_pinned_without_body_or_trace():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.content, "trace" in request.extensions, request.extensions.get("sni_hostname")))
        return httpx.Response(204)

    dest = Destination(url=httpx.URL("https://cdn.example/v"), host="cdn.example", port=443, addresses=("93.184.216.34",))
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        send_pinned(client, "GET", dest, headers={}).close()
    assert seen == [(b"", False, "cdn.example")]


def test_send_pinned_raises_the_last_connect_error_when_every_address_fails():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout(f"timeout {request.url.host}")

    dest = Destination(url=httpx.URL("http://cdn.example/v"), host="cdn.example", port=80,
                       addresses=("192.0.2.1", "192.0.2.2"))
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(httpx.ConnectTimeout, match="timeout 192.0.2.2"):
            send_pinned(client, "GET", dest, headers={})


def test_pinned_client_follows_no_redirect_and_ignores_proxy_env():
    timeout = httpx.Timeout(7.0)
    with pinned_client(timeout, None) as client:
        assert client.follow_redirects is False and client.trust_env is False and client.timeout == timeout
        assert client._transport._pool._ssl_context.verify_mode == ssl.CERT_REQUIRED


def test_pinned_client_reads_the_ca_bundle(tmp_path):
    with pytest.raises(FileNotFoundError):
        pinned_client(httpx.Timeout(1.0), str(tmp_path / "missing.pem"))


@pytest.mark.parametrize("raw,value", [(None, True), ("1", True), (" YES ", True), ("on", True), ("true", True),
                                       ("0", False), ("off", False), ("", False), ("No", False), ("false", False)])
def test_env_bool(raw, value):
    env = {} if raw is None else {"FLAG": raw}
    assert env_bool(env, "FLAG", default=True) is value


def test_env_bool_rejects_other_words():
    with pytest.raises(ValueError) as caught:
        env_bool({"FLAG": "maybe"}, "FLAG", default=False)
    assert str(caught.value) == "FLAG='maybe' is not a boolean; use 1 or 0"
    assert env_bool({}, "FLAG", default=False) is False


def test_env_number():
    assert env_number({}, "N", 5.0, float, 1.0) == 5.0
    assert env_number({"N": "  "}, "N", 5.0, float, 1.0) == 5.0
    assert env_number({"N": " 2.5 "}, "N", 5.0, float, 1.0) == 2.5
    assert env_number({"N": "1"}, "N", 5, int, 1) == 1  # the minimum itself is allowed
    with pytest.raises(ValueError) as caught:
        env_number({"N": "0"}, "N", 5, int, 1)
    assert str(caught.value) == "N='0' must be at least 1"
    with pytest.raises(ValueError) as caught:
        env_number({"N": "1.5"}, "N", 5, int, 1)
    assert str(caught.value) == "N='1.5' is not a valid int"


def test_env_networks():
    assert env_networks({}, "NETS") == ()
    assert env_networks({"NETS": " 10.20.0.0/16, ,fd00::/8 ,"}, "NETS") == ("10.20.0.0/16", "fd00::/8")
    with pytest.raises(ValueError) as caught:
        env_networks({"NETS": "10.0.0.0/8,intranet"}, "NETS")
    assert str(caught.value) == "NETS: 'intranet' is not an IP network like 10.0.0.0/8"


@pytest.mark.parametrize("url,shown", [
    ("https://cdn.example:8443/a/b.mp4?X-Amz-Signature=abc", "https://cdn.example:8443/a/b.mp4?..."),
    ("https://user:secret@cdn.example/a.mp4", "https://cdn.example/a.mp4"),
    ("/local/path.mp4", "/local/path.mp4"),
    ("http://[::1", "<unparseable URL>"),
    (httpx.URL("http://h.example/x?q=1"), "http://h.example/x?..."),
])
def test_redact_url_drops_credentials_and_query(url, shown):
    assert redact_url(url) == shown


def test_redact_url_clips_a_long_url():
    url = "https://h.example/" + "a" * 300
    assert redact_url(url) == url[:200] + f"...({len(url)} characters)"


def test_clipped_keeps_exactly_the_limit():
    assert clipped("x" * 200) == "x" * 200
    assert clipped("x" * 201) == "x" * 200 + "...(201 characters)"
    assert clipped("abcdef", limit=3) == "abc...(6 characters)"


@pytest.mark.parametrize("exc,message", [
    (httpx.ConnectTimeout("t"), "timed out after 2.5 s connecting to D"),
    (httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] bad"), "the TLS certificate of D is not valid ([SSL: CERTIFICATE_VERIFY_FAILED] bad)"),
    (httpx.ConnectError("hostname mismatch, Certificate is not valid"), "the TLS certificate of D is not valid (hostname mismatch, Certificate is not valid)"),
    (httpx.ConnectError("[Errno 111] Connection Refused"), "could not connect to D: connection refused (nothing is listening there)"),
    (httpx.ConnectError("network unreachable"), "could not connect to D (network unreachable)"),
    (httpx.ConnectError(""), "could not connect to D (ConnectError)"),
    (httpx.ReadTimeout("r"), "D stopped responding (ReadTimeout)"),
    (httpx.RemoteProtocolError("peer closed"), "D closed the connection early (peer closed)"),
    (httpx.ReadError("reset"), "the connection to D failed (reset)"),
])
def test_describe_transport_error(exc, message):
    assert describe_transport_error(exc, "D", 2.5) == message


@pytest.mark.parametrize("count,text", [(0, "0 bytes"), (1023, "1023 bytes"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
                                        (1024 ** 2, "1.0 MiB"), (5 * 1024 ** 3, "5.0 GiB"), (3 * 1024 ** 4, "3072.0 GiB")])
def test_human_bytes(count, text):
    assert human_bytes(count) == text


def test_scope_id_is_ignored_when_judging_and_matching_an_address(monkeypatch):
    """Only the part before the first % is the address (a scope id may hold anything)."""
    assert non_public_reason("fe80::1%odd%scope") == "link-local"
    fake_dns(monkeypatch, ["fe80::1%odd%scope"])
    assert resolve("http://printer.local/", allowed=("fe80::/10",)).addresses == ("fe80::1%odd%scope",)


def test_env_networks_accepts_a_cidr_with_host_bits():
    assert env_networks({"NETS": "10.20.1.0/16"}, "NETS") == ("10.20.1.0/16",)


def test_send_pinned_logs_each_failed_address(caplog):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "192.0.2.1":
            raise httpx.ConnectError("refused")
        return httpx.Response(200)

    dest = Destination(url=httpx.URL("http://cdn.example/v"), host="cdn.example", port=80,
                       addresses=("192.0.2.1", "93.184.216.34"))
    caplog.set_level("DEBUG", logger="service.addresses")
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        send_pinned(client, "GET", dest, headers={}).close()
    assert [r.getMessage() for r in caplog.records if r.name == "service.addresses"] == [
        "connect to cdn.example (192.0.2.1) failed: refused"]
