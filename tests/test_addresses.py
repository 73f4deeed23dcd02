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
