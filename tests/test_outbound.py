"""The guarded outbound client (oidc_provider_ext/internal/outbound.py), attacked with real hostile
servers on 127.0.0.1: one total deadline, no redirects, a size cap, a network policy, coarse errors."""

import ipaddress
import socket

import pytest
from django.core.exceptions import ImproperlyConfigured

from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.internal import outbound

from . import presets
from .conftest import oidc_settings
from .servers import Server, Silent, answer, dead_url, huge_body, redirect, trickle_body, trickle_headers


def get(url, deadline=0.5, max_bytes=1024):
    return outbound.request("GET", url, deadline_seconds=deadline, max_bytes=max_bytes)


def category_of(url, **kwargs) -> str:
    with pytest.raises(outbound.OutboundError) as caught:
        get(url, **kwargs)
    return caught.value.category


@pytest.fixture
def no_allowance(settings):
    oidc_settings(settings, **presets.NO_LOOPBACK)


def test_answer_within_the_deadline():
    with Server(answer(200, b'{"ok": true}')) as server:
        response = get(server.url)
    assert response.status == 200 and response.body == b'{"ok": true}'


def test_trickled_headers_are_cut_at_the_total_deadline():
    # One byte every 0.2 s: a per-read timeout of 0.5 s would wait for all 80-odd bytes.
    with Server(trickle_headers(interval=0.2)) as server:
        assert category_of(server.url) == outbound.TIMEOUT


def test_trickled_body_is_cut_at_the_total_deadline():
    with Server(trickle_body(interval=0.2)) as server:
        assert category_of(server.url) == outbound.TIMEOUT


def test_server_that_never_answers_times_out():
    with Silent() as silent:
        assert category_of(silent.url) == outbound.TIMEOUT


def test_redirect_is_a_failure_and_is_not_followed():
    with Server(answer(200)) as inner, Server(redirect(inner.url)) as outer:
        assert category_of(outer.url) == outbound.REDIRECT
    assert outer.requests == 1 and inner.requests == 0


def test_response_size_is_capped():
    with Server(huge_body()) as server:
        assert category_of(server.url, deadline=5, max_bytes=64 * 1024) == outbound.TOO_LARGE


def test_error_status_is_returned_to_the_caller():
    with Server(answer(500, b"oops")) as server:
        assert get(server.url).status == 500
    assert outbound.status_category(503) == "HTTP 5xx"


def test_loopback_is_refused_unless_the_operator_allows_it(no_allowance):
    with Server(answer(200)) as server:
        assert category_of(server.url) == outbound.REFUSED
        assert category_of(server.url.replace("127.0.0.1", "localhost")) == outbound.REFUSED
    assert server.requests == 0  # refused before a connection was made


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:169.254.169.254",
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "fc00::1",
        "fe80::1",
        "ff02::1",
    ],
)
def test_special_use_addresses_are_refused(no_allowance, address):
    assert not outbound.address_allowed(address)
    host = f"[{address}]" if ":" in address else address
    assert category_of(f"https://{host}:8443/jwks") == outbound.REFUSED


# One address in each IANA special-purpose range (RFC 6890 and the IPv4/IPv6 registries), and the
# IPv6 forms that wrap an internal IPv4 address. Several are "global" to ipaddress on some Python
# versions (3.11.7: 6to4, site-local, 192.88.99.0/24): the policy must not depend on that.
SPECIAL_PURPOSE = [
    "0.1.2.3",
    "10.255.0.1",
    "100.127.255.254",
    "127.1.2.3",
    "169.254.0.1",
    "172.31.255.255",
    "192.0.0.9",  # PCP anycast: globally reachable per IANA, refused with all of 192.0.0.0/24
    "192.0.0.170",
    "192.0.2.10",
    "192.88.99.1",  # 6to4 relay anycast
    "192.168.0.1",
    "198.18.0.1",
    "198.19.255.255",
    "198.51.100.7",
    "203.0.113.7",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "::127.0.0.1",  # IPv4-compatible (deprecated, RFC 4291 2.5.5.1)
    "::ffff:10.0.0.1",  # IPv4-mapped
    "::ffff:0:a00:1",  # IPv4-translated (RFC 2765)
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::c0a8:101",  # NAT64 of 192.168.1.1
    "64:ff9b:1::1",  # local-use NAT64 (RFC 8215)
    "100::1",  # discard-only
    "2001::1",  # Teredo
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo whose client is 10.0.0.1 (XOR-obfuscated)
    "2001:1::1",
    "2001:2::1",  # benchmarking
    "2001:10::1",  # ORCHID
    "2001:1ff::1",  # last of 2001::/23
    "2001:db8::1",  # documentation
    "3fff::1",  # documentation (RFC 9637)
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "2002:c0a8:101:1::1",  # 6to4 of 192.168.1.1
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "febf::1",
    "fec0::1",  # site-local (deprecated, RFC 3879)
    "feff::1",
    "ff02::1",
    "ff0e::1",
    "4000::1",  # outside global unicast 2000::/3
    "5f00::1",  # SRv6 SIDs (RFC 9602)
]


@pytest.mark.parametrize("address", SPECIAL_PURPOSE)
def test_every_special_purpose_form_is_refused(no_allowance, address):
    assert not outbound.address_allowed(address)
    assert not outbound.address_allowed(f"{address}%2") if ":" in address else True  # zone id
    host = f"[{address}]" if ":" in address else address
    assert category_of(f"https://{host}:8443/jwks") == outbound.REFUSED


@pytest.mark.parametrize("address", SPECIAL_PURPOSE)
def test_the_policy_does_not_ask_ipaddress_what_is_global(no_allowance, monkeypatch, address):
    # Another Python version may call any of these global: the answer must not change.
    for cls in (ipaddress.IPv4Address, ipaddress.IPv6Address):
        for name in ("is_global", "is_private", "is_reserved", "is_multicast", "is_link_local"):
            monkeypatch.setattr(cls, name, property(lambda self, name=name: name == "is_global"))
    assert not outbound.address_allowed(address)


@pytest.mark.parametrize(
    "address",
    ["2002:5db8:d822::1", "::ffff:93.184.216.34", "64:ff9b::5db8:d822"],  # all reach 93.184.216.34
)
def test_wrapped_public_ipv4_is_judged_as_that_ipv4(no_allowance, address):
    assert outbound.address_allowed(address)


def test_operator_allowance_is_matched_on_the_unwrapped_address(settings):
    oidc_settings(settings, OUTBOUND_ALLOWED_NETWORKS=["10.0.0.0/8"])
    assert outbound.address_allowed("2002:a00:1::1") and outbound.address_allowed("64:ff9b::a00:1")
    assert not outbound.address_allowed("2002:c0a8:101::1")  # 6to4 of 192.168.1.1
    # Teredo is not unwrapped: listing its client's network does not let it through.
    assert not outbound.address_allowed("2001:0:4136:e378:8000:63bf:f5ff:fffe")
    oidc_settings(settings, OUTBOUND_ALLOWED_NETWORKS=["fec0::/10"])
    assert outbound.address_allowed("fec0::1")  # an operator may list any range itself


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed_over_https_only(no_allowance, address):
    assert outbound.address_allowed(address)
    host = f"[{address}]" if ":" in address else address
    assert category_of(f"http://{host}/logout") == outbound.REFUSED  # no plain http to the world


def test_a_name_that_resolves_to_a_private_address_is_refused(no_allowance, monkeypatch):
    def resolve(host, port, *args):
        assert host == "rp.example"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    assert category_of("https://rp.example/logout") == outbound.REFUSED


def test_the_connected_peer_is_checked(no_allowance, settings):
    # Whatever the name resolved to, the connected socket's peer is what is checked last.
    with Server(answer(200)) as server:
        sock = socket.create_connection(("127.0.0.1", server.port))
        try:
            with pytest.raises(outbound.OutboundError) as caught:
                outbound._check(sock.getpeername()[0], "https")
            assert caught.value.category == outbound.REFUSED
        finally:
            sock.close()


@pytest.mark.oidc_settings(OUTBOUND_ALLOWED_NETWORKS=["10.1.0.0/16"])
def test_operator_allowance_covers_mapped_addresses():
    assert outbound.address_allowed("10.1.2.3") and outbound.address_allowed("::ffff:10.1.2.3")
    assert not outbound.address_allowed("10.2.0.1")


@pytest.mark.parametrize("value", ["10.0.0.0/8", ["10.0.0.1/8"], ["not a network"]])
def test_allowed_networks_must_be_a_list_of_networks(settings, value):
    oidc_settings(settings, OUTBOUND_ALLOWED_NETWORKS=value)
    with pytest.raises(ImproperlyConfigured, match="OUTBOUND_ALLOWED_NETWORKS"):
        assert app_settings.OUTBOUND_ALLOWED_NETWORKS is None


def test_example_project_allows_loopback_only():
    assert [
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    ] == app_settings.OUTBOUND_ALLOWED_NETWORKS


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "file:///etc/passwd", "http://user:pw@127.0.0.1/x"])
def test_only_plain_http_urls(url):
    assert category_of(url) == outbound.REFUSED


def test_errors_are_coarse():
    # "Connection refused" vs "timed out" vs "No route to host" would map the provider's network.
    assert category_of(dead_url()) == outbound.CONNECTION_FAILED


def test_production_settings_allow_no_internal_network():
    import os
    import secrets
    import subprocess
    import sys
    from pathlib import Path

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "idp_project.settings_production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "OIDC_SECRET_KEYS": secrets.token_urlsafe(50),
        "OIDC_ISSUER": "https://id.example.com",
    }
    env.pop("DATABASE_URL", None)
    script = (
        "import django; django.setup(); from oidc_provider_ext.conf import app_settings; "
        "print(app_settings.OUTBOUND_ALLOWED_NETWORKS)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_body_is_not_read_when_only_the_status_matters():
    with Server(huge_body()) as server:
        response = outbound.request("POST", server.url, deadline_seconds=5, max_bytes=0, read_body=False)
    assert response.status == 200 and response.body == b""


# --- name resolution: one slow DNS server does not starve the others ------------------------------
# Anyone can make the provider look up a name whose DNS server never answers in time (a metadata
# document's client_id, a registration's logo_uri, each a distinct URL). A lookup that hangs keeps
# its thread until the system resolver gives up, but no other lookup waits behind it.


def _slow_dns(monkeypatch, release, resolves_to=None):
    real = outbound.socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host.endswith(".slow-dns.example"):
            release.wait(10)  # an authoritative server that never answers
            raise outbound.socket.gaierror("timed out")
        if resolves_to and host in resolves_to:
            return real(resolves_to[host], *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(outbound.socket, "getaddrinfo", getaddrinfo)


@pytest.mark.oidc_settings(presets.NO_LOOPBACK)
def test_slow_dns_of_one_host_does_not_time_out_other_hosts(monkeypatch):
    import threading
    import time

    release = threading.Event()
    _slow_dns(monkeypatch, release)
    try:
        for n in range(4):  # four attacker requests, each cut at its own deadline
            with pytest.raises(outbound.OutboundError):
                outbound.request(
                    "GET", f"https://x{n}.slow-dns.example/doc", deadline_seconds=0.2, max_bytes=1024
                )
        # An unrelated request: its name resolves at once, to an address the policy refuses, so a
        # working resolver answers "refused by policy" immediately (no packet is sent).
        started = time.monotonic()
        with pytest.raises(outbound.OutboundError) as error:
            outbound.request("GET", "https://127.0.0.1/", deadline_seconds=1.0, max_bytes=1024)
        assert error.value.category == outbound.REFUSED, (error.value.category, time.monotonic() - started)
    finally:
        release.set()


@pytest.mark.oidc_settings(presets.NO_LOOPBACK)
def test_slow_dns_names_do_not_hold_up_the_lookup_of_another_name(monkeypatch):
    """As above with a *name* (looked up, not parsed) and more slow lookups than any pool size:
    the other domain's lookup still runs at once."""
    import threading

    release = threading.Event()
    _slow_dns(monkeypatch, release, resolves_to={"other.example": "127.0.0.1"})
    try:
        for n in range(outbound.MAX_LOOKUPS_PER_DOMAIN + 4):
            with pytest.raises(outbound.OutboundError) as error:
                outbound.request(
                    "GET", f"https://x{n}.slow-dns.example/doc", deadline_seconds=0.1, max_bytes=1024
                )
            assert error.value.category == outbound.TIMEOUT
        with pytest.raises(outbound.OutboundError) as error:
            outbound.request("GET", "https://other.example/", deadline_seconds=1.0, max_bytes=1024)
        assert error.value.category == outbound.REFUSED
    finally:
        release.set()
