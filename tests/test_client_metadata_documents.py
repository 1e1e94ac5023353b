"""Client ID metadata documents: a client_id that is an https URL, whose JSON document the provider
fetches through the guarded outbound client. The hostile servers of tests/servers.py stand in for
the client's host (internal/metadata_documents._location maps the URL to them)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from oauth2_provider.models import get_application_model

from oidc_provider_ext.internal import metadata_documents

from . import presets, servers
from .factories import USER_PASSWORD, ApplicationFactory
from .flow import authorize_url, consent, pkce_pair, query_of, token_request, verify_jwt

Application = get_application_model()
CLIENT_ID = "https://mcp-client.example.com/oauth/client-metadata.json"
REDIRECT = "http://127.0.0.1/callback"
DOCUMENT = {
    "client_id": CLIENT_ID,
    "client_name": "Example MCP client",
    "redirect_uris": [REDIRECT],
    "token_endpoint_auth_method": "none",
    "grant_types": ["authorization_code", "refresh_token"],
    "response_types": ["code"],
}
JSON = {"Content-Type": "application/json"}

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.oidc_settings(
        CLIENT_ID_METADATA_DOCUMENTS=True, CLIENT_ID_METADATA_DOCUMENT_TIMEOUT_SECONDS=0.5
    ),
]


@pytest.fixture
def host(monkeypatch):
    """Serve ``behaviour`` as the client's host: ``with host(answer(...)) as server``."""

    def serve(behaviour):
        server = servers.Server(behaviour)
        monkeypatch.setattr(metadata_documents, "_location", lambda client_id: server.url)
        return server

    return serve


def document_answer(document=None, headers=None, status=200):
    body = json.dumps(DOCUMENT if document is None else document).encode()
    return servers.answer(status, body, {**JSON, **(headers or {})})


def authorize(browser, client_id=CLIENT_ID, **params):
    verifier, challenge = pkce_pair()
    app = type("App", (), {"client_id": client_id})
    params = {
        "redirect_uri": REDIRECT,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **params,
    }
    url = authorize_url(app, **params)
    return browser.get(url), verifier


def assert_refused_at_the_idp(response, text: str = ""):
    # A page at the IdP (never a redirect to a redirect_uri nobody vouched for), never a 500.
    assert response.status_code == 400, response.content[:300]
    body = response.content.decode()
    assert "invalid_client" in body
    assert text in body
    assert not Application.objects.filter(client_id=CLIENT_ID).exists()


# --- the happy path -----------------------------------------------------------------------------


def test_discovery_advertises_support(client):
    assert client.get(reverse("oidc_provider_ext:discovery")).json()["client_id_metadata_document_supported"]


def test_full_code_flow_refresh_and_introspection_free_paths(host, user):
    with host(document_answer(headers={"Cache-Control": "max-age=600"})) as server:
        browser, rp = Client(), Client()
        response, verifier = authorize(browser, scope="openid offline_access")
        assert server.requests == 1
        application = Application.objects.get(client_id=CLIENT_ID)
        assert application.registration_source == "cimd"
        assert application.client_type == "public"
        assert application.name == "Example MCP client"
        assert application.oidc_profile.consent_policy == "ask"
        # Sign in, then the consent page: always asked, with the warning.
        response = browser.post(response["Location"], {"username": user.username, "password": USER_PASSWORD})
        page = browser.get(response["Location"])
        assert page.status_code == 200
        html = page.content.decode()
        assert "has not reviewed this application" in html and "data-redirect-host>127.0.0.1<" in html
        redirect = consent(browser, page)
        assert redirect["Location"].startswith(REDIRECT)
        code = query_of(redirect["Location"])["code"]
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
        tokens = token_request(rp, {**data, "client_id": CLIENT_ID, "code_verifier": verifier}).json()
        assert verify_jwt(tokens["id_token"])["aud"] == CLIENT_ID
        refresh = {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": CLIENT_ID,
        }
        rotated = token_request(rp, refresh)
        assert rotated.status_code == 200 and rotated.json()["refresh_token"] != tokens["refresh_token"]
        # Cached by its Cache-Control: a second authorization request fetches nothing.
        authorize(Client())
        assert server.requests == 1


def test_document_is_fetched_again_when_its_cache_lifetime_ends(host):
    with host(document_answer(headers={"Cache-Control": "public, max-age=999999999"})) as server:
        authorize(Client())
        application = Application.objects.get(client_id=CLIENT_ID)
        # Bounded by CLIENT_ID_METADATA_DOCUMENT_MAX_CACHE_SECONDS (a day).
        assert application.cimd_expires_at <= timezone.now() + timedelta(days=1, seconds=5)
        application.cimd_expires_at = timezone.now() - timedelta(seconds=1)
        application.save()  # (drops the client cache, as every change through the ORM does)
        authorize(Client())
        assert server.requests == 2


def test_no_cache_headers_still_cache_for_the_minimum(host):
    with host(document_answer(headers={"Cache-Control": "no-store"})) as server:
        authorize(Client())
        authorize(Client())
        assert server.requests == 1
        expires = Application.objects.get(client_id=CLIENT_ID).cimd_expires_at
        assert expires <= timezone.now() + timedelta(seconds=301)


def test_an_unregistered_redirect_uri_is_a_page_not_a_redirect(host):
    with host(document_answer()):
        response, _verifier = authorize(Client(), redirect_uri="https://evil.example/cb")
        assert response.status_code == 400


def test_operator_made_client_with_a_url_client_id_is_not_fetched(host):
    ApplicationFactory(client_id=CLIENT_ID, redirect_uris=REDIRECT)
    with host(document_answer()) as server:
        authorize(Client())
        assert server.requests == 0


def test_a_metadata_document_url_that_is_a_resource_identifier_is_refused(host):
    # Review 1 F2: its tokens without resource would have aud = the API's identifier.
    from .factories import ResourceServerFactory

    ResourceServerFactory(identifier=CLIENT_ID)
    with host(document_answer()) as server:
        response, _verifier = authorize(Client())
        assert server.requests == 0
    assert_refused_at_the_idp(response, "resource server")


@pytest.mark.oidc_settings(CLIENT_ID_METADATA_DOCUMENTS=False)
def test_off_nothing_is_fetched(host, client):
    with host(document_answer()) as server:
        response, _verifier = authorize(Client())
        assert response.status_code == 400
        assert server.requests == 0
    assert (
        "client_id_metadata_document_supported"
        not in client.get(reverse("oidc_provider_ext:discovery")).json()
    )


# --- hostile hosts and documents ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "shown"),
    [
        (servers.trickle_headers(interval=0.2), "timeout"),
        (servers.trickle_body(interval=0.2, size=100), "timeout"),
        (servers.redirect("https://evil.example/client.json"), "redirect not followed"),
        (servers.huge_body(1024 * 1024), "response too large"),
        (servers.answer(200, b"<html>hi</html>", {"Content-Type": "text/html"}), "not application/json"),
        (servers.answer(200, b"not json", JSON), "not valid"),
        (servers.answer(200, b'{"a":' * 100 + b"1" + b"}" * 100, JSON), "not valid"),
        (servers.answer(200, b'{"client_id": "a\\u0000"}', JSON), "not valid"),
        (servers.answer(200, b"[]", JSON), "not valid"),
        (servers.answer(404, b"{}", JSON), "HTTP 4xx"),
        (servers.answer(500, b"{}", JSON), "HTTP 5xx"),
        (document_answer({**DOCUMENT, "client_id": CLIENT_ID + "?x"}), "not the URL"),
        (document_answer({**DOCUMENT, "client_id": CLIENT_ID.upper()}), "not the URL"),
        (document_answer({k: v for k, v in DOCUMENT.items() if k != "client_id"}), "not the URL"),
        (document_answer({**DOCUMENT, "token_endpoint_auth_method": "client_secret_basic"}), "none"),
        (document_answer({**DOCUMENT, "client_secret": "s3cret"}), "client secret"),
        (document_answer({**DOCUMENT, "redirect_uris": ["javascript:alert(1)"]}), "not valid"),
        (document_answer({**DOCUMENT, "redirect_uris": ["https://*.example.com/cb"]}), "wildcards"),
        (document_answer({**DOCUMENT, "redirect_uris": ["http://evil.example.com/cb"]}), "not valid"),
        (document_answer({**DOCUMENT, "grant_types": ["client_credentials"]}), "not valid"),
    ],
)
def test_hostile_hosts_and_documents_get_the_idps_error_page(host, behaviour, shown):
    with host(behaviour):
        response, _verifier = authorize(Client())
    assert_refused_at_the_idp(response, shown)


def test_silent_host_is_cut_off_at_the_deadline(monkeypatch):
    with servers.Silent() as silent:
        monkeypatch.setattr(metadata_documents, "_location", lambda client_id: silent.url)
        response, _verifier = authorize(Client())
    assert_refused_at_the_idp(response, "timeout")


@pytest.mark.oidc_settings(presets.NO_LOOPBACK)
@pytest.mark.parametrize(
    "client_id",
    [
        "https://127.0.0.1/client.json",
        "https://10.0.0.8/client.json",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/client.json",
    ],
)
def test_private_addresses_are_never_fetched(client_id):
    response, _verifier = authorize(Client(), client_id=client_id)
    assert response.status_code == 400
    assert "refused by policy" in response.content.decode()
    assert not Application.objects.filter(client_id=client_id).exists()


@pytest.mark.parametrize(
    "client_id",
    [
        "https://client.example.com",
        "https://client.example.com/",
        "https://client.example.com/a/../b.json",
        "https://client.example.com/./b.json",
        "https://user@client.example.com/b.json",
        "http://client.example.com/b.json",
        "https://client.example.com/" + "a" * 300,
    ],
)
def test_urls_that_are_not_metadata_document_urls_are_unknown_clients(host, client_id):
    with host(document_answer()) as server:
        response, _verifier = authorize(Client(), client_id=client_id)
        assert response.status_code == 400
        assert server.requests == 0


def test_a_failure_is_remembered_so_the_host_is_not_hammered(host):
    with host(servers.answer(500, b"", JSON)) as server:
        for _ in range(3):
            assert authorize(Client())[0].status_code == 400
        assert server.requests == 1


@pytest.mark.oidc_settings(REGISTRATION_REQUESTS_PER_ADDRESS=2)
def test_fetches_are_rate_limited_per_address(host):
    with host(document_answer()) as server:
        for n in range(2):
            authorize(Client(), client_id=f"https://mcp-client.example.com/c{n}.json")
        response, _verifier = authorize(Client(), client_id="https://mcp-client.example.com/c9.json")
        assert response.status_code == 400
        assert "Too many" in response.content.decode()
        assert server.requests == 2


@pytest.mark.oidc_settings(REGISTRATION_OPEN_MAX_CLIENTS=1)
def test_total_cap_on_self_registered_clients(host):
    with host(document_answer()) as server:
        authorize(Client())
        other = "https://mcp-client.example.com/other.json"
        response, _verifier = authorize(Client(), client_id=other)
        assert server.requests == 1
    assert response.status_code == 400
    assert "no more self-registered clients" in response.content.decode()
    assert Application.objects.filter(client_id=CLIENT_ID).exists()
    assert not Application.objects.filter(client_id=other).exists()


def test_turning_metadata_documents_off_makes_their_clients_unknown(host, settings, user):
    with host(document_answer()):
        browser = Client()
        response, verifier = authorize(browser, scope="openid")
        response = browser.post(response["Location"], {"username": user.username, "password": USER_PASSWORD})
        redirect = consent(browser, browser.get(response["Location"]))
        code = query_of(redirect["Location"])["code"]
    settings.OIDC_PROVIDER_EXT = {**settings.OIDC_PROVIDER_EXT, "CLIENT_ID_METADATA_DOCUMENTS": False}
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    refused = token_request(Client(), {**data, "client_id": CLIENT_ID, "code_verifier": verifier})
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    assert authorize(Client())[0].status_code == 400


# --- every setting changes behaviour ------------------------------------------------------------


@pytest.mark.parametrize(("limit", "accepted"), [(2048, False), (4096, True)])
def test_max_bytes(host, settings, limit, accepted):
    settings.OIDC_PROVIDER_EXT = {
        **settings.OIDC_PROVIDER_EXT,
        "CLIENT_ID_METADATA_DOCUMENT_MAX_BYTES": limit,
    }
    padded = {**DOCUMENT, "x-padding": "x" * 2500}  # unknown members are ignored
    with host(document_answer(padded)):
        response, _verifier = authorize(Client())
    assert Application.objects.filter(client_id=CLIENT_ID).exists() is accepted
    if not accepted:
        assert "response too large" in response.content.decode()


@pytest.mark.parametrize(("deadline", "timed_out"), [(0.3, True), (5, False)])
def test_timeout(host, settings, deadline, timed_out):
    settings.OIDC_PROVIDER_EXT = {
        **settings.OIDC_PROVIDER_EXT,
        "CLIENT_ID_METADATA_DOCUMENT_TIMEOUT_SECONDS": deadline,
    }
    with host(servers.trickle_headers(interval=0.02, count=10)):
        response, _verifier = authorize(Client())
    assert ("timeout" in response.content.decode()) is timed_out


def test_cache_bounds(host, settings):
    settings.OIDC_PROVIDER_EXT = {
        **settings.OIDC_PROVIDER_EXT,
        "CLIENT_ID_METADATA_DOCUMENT_MIN_CACHE_SECONDS": 1000,
        "CLIENT_ID_METADATA_DOCUMENT_MAX_CACHE_SECONDS": 2000,
    }
    with host(document_answer(headers={"Cache-Control": "max-age=10"})):
        authorize(Client())
    expires = Application.objects.get(client_id=CLIENT_ID).cimd_expires_at
    assert timezone.now() + timedelta(seconds=990) <= expires <= timezone.now() + timedelta(seconds=1001)
    Application.objects.all().delete()
    with host(document_answer(headers={"Cache-Control": "max-age=99999"})):
        authorize(Client())
    expires = Application.objects.get(client_id=CLIENT_ID).cimd_expires_at
    assert expires <= timezone.now() + timedelta(seconds=2001)


# --- found by review 3 --------------------------------------------------------------------------------


def test_consent_page_shows_the_metadata_document_host(host, user):
    """draft-ietf-oauth-client-id-metadata-document, "OAuth Phishing Attacks": "The authorization
    server SHOULD display the hostname of the client_id". A document at attacker.example may call
    itself "Google Drive" and link https://drive.google.com; the client_id's host is the one thing
    the provider verified, so the page names it and does not link a client_uri on another host."""
    document = {**DOCUMENT, "client_name": "Google Drive", "client_uri": "https://drive.google.com"}
    with host(document_answer(document)):
        browser = Client()
        response, _verifier = authorize(browser)
        response = browser.post(response["Location"], {"username": user.username, "password": USER_PASSWORD})
        page = browser.get(response["Location"])
    assert page.status_code == 200
    html = page.content.decode()
    assert "Google Drive" in html and "data-self-registered" in html
    assert "mcp-client.example.com" in html, "the client_id's host is not on the consent page"
    assert "data-client-host" in html and 'href="https://drive.google.com"' not in html


def test_client_uri_on_the_documents_own_host_is_linked(host, user):
    document = {**DOCUMENT, "client_uri": "https://mcp-client.example.com/about"}
    with host(document_answer(document)):
        browser = Client()
        response, _verifier = authorize(browser)
        response = browser.post(response["Location"], {"username": user.username, "password": USER_PASSWORD})
        page = browser.get(response["Location"])
    assert 'href="https://mcp-client.example.com/about"' in page.content.decode()


@pytest.mark.oidc_settings(
    REGISTRATION="open",
    REGISTRATION_OPEN_MAX_CLIENTS=6,
    REGISTRATION_OPEN_PER_ADDRESS_PER_DAY=2,
    REGISTRATION_REQUESTS_PER_ADDRESS=100,
)
def test_one_address_cannot_exhaust_the_self_registration_cap(monkeypatch, client):
    """New metadata-document clients count against REGISTRATION_OPEN_PER_ADDRESS_PER_DAY like open
    registrations: one address with a wildcard host cannot fill REGISTRATION_OPEN_MAX_CLIENTS."""
    from oidc_provider_ext.internal import registration as rules

    from .test_registration import WEB, register

    def wildcard_host(client_id):  # an attacker's server answering a valid document at every path
        return rules.validate_metadata(
            {"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"},
            metadata_document=True,
        ), 300

    monkeypatch.setattr(metadata_documents, "fetch", wildcard_host)
    attacker = Client(REMOTE_ADDR="198.51.100.7")
    for n in range(6):
        authorize(attacker, client_id=f"https://attacker.example/c/{n}", redirect_uri="http://127.0.0.1/cb")
    created = Application.objects.filter(registration_source="cimd").count()
    # Someone else, at another address, registering for the first time today:
    victim = register(Client(REMOTE_ADDR="203.0.113.9"), WEB)
    assert created <= 2 or victim.status_code == 201, (created, victim.status_code, victim.content[:200])


def test_document_with_a_malformed_url_member_is_a_page(host):
    """A document whose client_uri is "https://[::1" (urlsplit raises): the IdP's 400 page."""
    with host(document_answer({**DOCUMENT, "client_uri": "https://[::1"})):
        browser = Client(raise_request_exception=False)
        response, _verifier = authorize(browser)
    assert response.status_code == 400, response.status_code
    assert "invalid_client" in response.content.decode()


def test_refreshing_a_document_keeps_what_the_operator_set(host, settings):
    """A re-read document replaces the client's metadata, not the operator's tenants or acr."""
    from oidc_provider_ext.models import ClientProfile

    with host(document_answer()):
        authorize(Client())
    ClientProfile.objects.filter(application__client_id=CLIENT_ID).update(
        allowed_tenant_codes="acme", minimum_acr="urn:mfa"
    )
    Application.objects.filter(client_id=CLIENT_ID).update(cimd_expires_at=timezone.now())
    metadata_documents.clients.forget(CLIENT_ID)
    with host(document_answer({**DOCUMENT, "client_name": "Renamed"})):
        authorize(Client())
    application = Application.objects.get(client_id=CLIENT_ID)
    assert application.name == "Renamed"
    assert application.oidc_profile.allowed_tenant_codes == "acme"
    assert application.oidc_profile.minimum_acr == "urn:mfa"
