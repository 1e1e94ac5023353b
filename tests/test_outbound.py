"""The guarded outbound client (oidc_provider_ext/internal/outbound.py), attacked with real hostile
servers on 127.0.0.1: one total deadline, no redirects, a size cap, a network policy, coarse errors."""

import ipaddress
import socket

import pytest
from django.core.exceptions import ImproperlyConfigured

from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.internal import outbound

from .servers import Server, Silent, answer, dead_url, huge_body, redirect, trickle_body, trickle_headers


def get(url, deadline=0.5, max_bytes=1024):
    return outbound.request("GET", url, deadline_seconds=deadline, max_bytes=max_bytes)


def category_of(url, **kwargs) -> str:
    with pytest.raises(outbound.OutboundError) as caught:
        get(url, **kwargs)
    return caught.value.category


@pytest.fixture
def no_allowance(settings):
    settings.OIDC_PROVIDER_EXT = {**settings.OIDC_PROVIDER_EXT, "OUTBOUND_ALLOWED_NETWORKS": []}


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


def test_operator_allowance_covers_mapped_addresses(settings):
    settings.OIDC_PROVIDER_EXT = {**settings.OIDC_PROVIDER_EXT, "OUTBOUND_ALLOWED_NETWORKS": ["10.1.0.0/16"]}
    assert outbound.address_allowed("10.1.2.3") and outbound.address_allowed("::ffff:10.1.2.3")
    assert not outbound.address_allowed("10.2.0.1")


@pytest.mark.parametrize("value", ["10.0.0.0/8", ["10.0.0.1/8"], ["not a network"]])
def test_allowed_networks_must_be_a_list_of_networks(settings, value):
    settings.OIDC_PROVIDER_EXT = {**settings.OIDC_PROVIDER_EXT, "OUTBOUND_ALLOWED_NETWORKS": value}
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
