"""Review 3 (December 2026): reproducing tests for client ID metadata documents and the device
authorization grant. Each test fails on 7eaa159."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from oauth2_provider.models import get_application_model

from oidc_provider_ext.internal import metadata_documents
from oidc_provider_ext.internal import registration as rules

from .factories import USER_PASSWORD, PublicApplicationFactory
from .flow import consent
from .test_client_metadata_documents import CLIENT_ID, DOCUMENT, authorize, document_answer, host  # noqa: F401
from .test_device import device_authorize, start
from .test_registration import WEB, register

Application = get_application_model()
pytestmark = [
    pytest.mark.django_db,
    pytest.mark.oidc_settings(
        CLIENT_ID_METADATA_DOCUMENTS=True, CLIENT_ID_METADATA_DOCUMENT_TIMEOUT_SECONDS=0.5
    ),
]


# --- 1. The consent page never names the metadata document's host ----------------------------------
# draft-ietf-oauth-client-id-metadata-document, "OAuth Phishing Attacks": "The authorization server
# SHOULD display the hostname of the client_id on the authorization interface". consent.html shows
# the document's own client_name, its client_uri as a link and the redirect host; the client_id's
# host -- the only thing the provider verified -- appears nowhere. With a loopback redirect URI
# (what every MCP/CLI client registers) a document at attacker.example naming itself "Google
# Drive" with client_uri https://drive.google.com is indistinguishable from the real one.


def test_review3_consent_page_shows_the_metadata_document_host(host, user):  # noqa: F811
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


# --- 2. One address fills the provider-wide cap of self-registered clients ----------------------------
# REGISTRATION_OPEN_PER_ADDRESS_PER_DAY bounds what one address may register, so that
# REGISTRATION_OPEN_MAX_CLIENTS cannot be exhausted by a single source. Metadata-document clients
# count against the same cap (metadata_documents.prepare) but have no per-address bound except the
# request rate (20 per 15 minutes = 1,920 a day from one address, IPv6: one /64). Each distinct URL
# on a wildcard host is a new client, so one address keeps the cap full (oidc_cleanup only removes
# them after a day) and nobody can register or use a new metadata-document client.


@pytest.mark.oidc_settings(
    REGISTRATION="open",
    REGISTRATION_OPEN_MAX_CLIENTS=6,
    REGISTRATION_OPEN_PER_ADDRESS_PER_DAY=2,
    REGISTRATION_REQUESTS_PER_ADDRESS=100,
)
def test_review3_one_address_cannot_exhaust_the_self_registration_cap(monkeypatch, client):
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


# --- 3. A device request answered through the code flow's continue URL is an HTTP 500 ---------------
# The pending request of a device sign-in lives in the same session store as the code flow's, and
# AuthorizeContinueView (views/authorize.py:368-400) loads any of them. GET renders the consent page
# without the RFC 8628 5.4 device warning; its POST calls _issue_code / client_error with
# credentials that hold only client_id: KeyError 'redirect_uri' in DOT -> HTTP 500 (DESIGN.md,
# "Request boundary": never a 500). DeviceContinueView checks pending.device; this view does not.


@pytest.mark.parametrize("decision", ["allow", "deny"])
def test_review3_device_request_at_the_code_flow_continue_url_is_no_500(user, decision):
    app = PublicApplicationFactory(profile__allow_device_flow=True)
    body = start(Client(), app, scope="openid profile")
    browser = Client(raise_request_exception=False)
    response = browser.post(reverse("oidc_provider_ext:device"), {"user_code": body["user_code"]})
    assert response.status_code == 302
    request_id = response["Location"].rstrip("/").rsplit("/", 1)[-1]
    response = browser.get(response["Location"])
    browser.post(response["Location"], {"username": user.username, "password": USER_PASSWORD})
    page = browser.get(reverse("oidc_provider_ext:authorize-continue", args=[request_id]))
    if page.status_code == 200:
        warned = page.context.get("device") is True
        response = consent(browser, page, decision=decision)
        assert response.status_code < 500, response.status_code
        assert warned, "device sign-in confirmed without the RFC 8628 5.4 warning"


# --- 4. Anyone can use up a public client's device sign-ins (and everyone's) -----------------------
# internal/devices.py:75-79: the only bounds at the device authorization endpoint are the pending
# caps per client (100) and in total (10,000); nothing is counted per address. A public client's
# id is no secret, so one anonymous address that re-sends 100 requests every 10 minutes keeps that
# client's device sign-in refused (429) for every real user; 10,000 does it for all clients.


@pytest.mark.oidc_settings(DEVICE_MAX_PENDING_PER_CLIENT=5)
def test_review3_one_address_cannot_use_up_a_clients_device_sign_ins():
    app = PublicApplicationFactory(profile__allow_device_flow=True)
    attacker = Client(REMOTE_ADDR="198.51.100.7")
    for _ in range(5):
        device_authorize(attacker, app, scope="openid")
    victim = device_authorize(Client(REMOTE_ADDR="203.0.113.9"), app, scope="openid")
    assert victim.status_code == 200, (victim.status_code, victim.content)


# --- 5. The user-code throttle is check-then-count: concurrent guesses all get through --------------
# views/device.py:100-106 with throttle.py:259-276: user_code_entry_allowed() reads the counter,
# the code is looked up, and only then is a failure counted. Guesses sent in parallel all read the
# counter before any of them increments it, so DEVICE_USER_CODE_FAILURE_LIMIT bounds sequential
# guessing only: N workers give N guesses per round trip, without limit per window. Simulated with
# the lookup taking 100 ms (a loaded database), 40 parallel guesses against a limit of 5.


@pytest.mark.oidc_settings(DEVICE_USER_CODE_FAILURE_LIMIT=5)
def test_review3_parallel_user_code_guesses_respect_the_limit(transactional_db, monkeypatch):
    import threading
    import time

    from oidc_provider_ext.internal import devices

    looked_up = []
    real = devices.find_pending

    def slow_lookup(typed):
        looked_up.append(typed)
        time.sleep(0.1)
        return real(typed)

    monkeypatch.setattr(devices, "find_pending", slow_lookup)
    url = reverse("oidc_provider_ext:device")

    def guess(n):
        Client(REMOTE_ADDR="198.51.100.7").post(
            url, {"user_code": f"BCDF-GH{'JKLMNPQRSTVWXZ'[n % 14]}{'BCDFGHJKLM'[n % 10]}"}
        )

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(looked_up) <= 5, f"{len(looked_up)} codes tried from one address with a limit of 5"


# --- 6. A metadata document with a malformed URL member: HTTP 500 at the authorization endpoint ----
# See test_review3_registration.py::test_review3_malformed_url_member_is_invalid_client_metadata_not_a_500:
# the ValueError from _https_url escapes metadata_documents.fetch/prepare. Any user sent to
# /connect/authorize with that client_id gets a 500, instead of the documented 400 page.


def test_review3_document_with_a_malformed_url_member_is_a_page_not_a_500(host):  # noqa: F811
    with host(document_answer({**DOCUMENT, "client_uri": "https://[::1"})):
        browser = Client(raise_request_exception=False)
        response, _verifier = authorize(browser)
    assert response.status_code == 400, response.status_code
    assert "invalid_client" in response.content.decode()


# --- 7. Basic credentials of one client with another client_id in the body: "server_error" ----------
# oauthlib's validate_client_confidential raises ServerError("Discrepency found between client
# identifier") when the body's client_id is not the authenticated client's; server.py's
# DeviceCodeGrant keeps that path for both the device authorization request and the device poll.
# RFC 6749 5.2 has no server_error at these endpoints; the request is invalid (invalid_request,
# or invalid_client), and the answer should not claim an internal error.


def test_review3_mismatched_client_id_is_invalid_request_not_server_error():
    from urllib.parse import urlencode

    from .factories import ApplicationFactory
    from .flow import basic_auth

    confidential = ApplicationFactory(profile__allow_device_flow=True)
    other = PublicApplicationFactory(profile__allow_device_flow=True)
    response = Client().post(
        reverse("oidc_provider_ext:device-authorization"),
        urlencode({"client_id": other.client_id, "scope": "openid"}),
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=basic_auth(confidential.client_id, confidential.raw_secret),
    )
    assert response.status_code in (400, 401)
    assert response.json()["error"] in ("invalid_request", "invalid_client"), response.content
