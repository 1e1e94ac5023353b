"""Dynamic client registration (RFC 7591) and its management protocol (RFC 7592): the operator's
policies, strict metadata, registration access tokens, limits, and the registered client in a
real code flow."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_application_model

from oidc_provider_ext.internal import registration as rules
from oidc_provider_ext.models import AuthorizationGrant, ClientProfile, InitialAccessToken

from . import presets, servers
from .factories import REDIRECT_URI, USER_PASSWORD, ApplicationFactory
from .flow import (
    authorize_url,
    consent,
    exchange,
    get_code,
    introspect,
    pkce_pair,
    query_of,
    token_request,
    verify_jwt,
)

Application = get_application_model()
AccessToken = get_access_token_model()
OPEN = pytest.mark.oidc_settings(REGISTRATION="open")
NATIVE = {"token_endpoint_auth_method": "none", "redirect_uris": ["http://127.0.0.1/callback"]}
WEB = {"redirect_uris": [REDIRECT_URI], "client_name": "Web app"}

pytestmark = pytest.mark.django_db


def code_with_pkce(browser, application, user, **params) -> tuple[str, str]:
    """(code, verifier): every self-registered client must use PKCE."""
    verifier, challenge = pkce_pair()
    code, _query = get_code(
        browser, application, user, code_challenge=challenge, code_challenge_method="S256", **params
    )
    return code, verifier


def register(client, metadata, token: str | None = None, raw: bytes | None = None, **extra):
    if token is not None:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    body = raw if raw is not None else json.dumps(metadata)
    return client.post(reverse("oidc_provider_ext:register"), body, content_type="application/json", **extra)


def manage(client, method: str, uri: str, token: str, body=None):
    path = urlsplit(uri).path
    send = getattr(client, method)
    extra = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    if body is None:
        return send(path, **extra)
    return send(path, json.dumps(body), content_type="application/json", **extra)


# --- policy -----------------------------------------------------------------------------------------


def test_off_by_default_answers_404_and_is_not_advertised(client):
    assert register(client, WEB).status_code == 404
    assert client.get(reverse("oidc_provider_ext:register-client", args=["x"])).status_code == 404
    metadata = client.get(reverse("oidc_provider_ext:discovery")).json()
    assert "registration_endpoint" not in metadata
    assert "client_id_metadata_document_supported" not in metadata
    assert not Application.objects.exists()


@OPEN
def test_open_policy_advertises_the_endpoint(client, settings):
    metadata = client.get(reverse("oidc_provider_ext:discovery")).json()
    issuer = settings.OIDC_PROVIDER_EXT["ISSUER"].rstrip("/")
    assert metadata["registration_endpoint"] == f"{issuer}/connect/register"


@pytest.mark.oidc_settings(REGISTRATION="initial_access_token")
def test_initial_access_token_is_required_stored_hashed_and_use_limited(client):
    assert register(client, WEB).status_code == 401
    assert register(client, WEB, token="guess").status_code == 401
    # Without a token the metadata rules are not even consulted.
    assert register(client, {"redirect_uris": ["javascript:x"]}).status_code == 401
    token = rules.create_initial_access_token(description="partner", days=1, max_uses=2)
    stored = InitialAccessToken.objects.get()
    assert token not in stored.token_hash
    # A refused registration does not spend a use.
    assert register(client, {"redirect_uris": ["javascript:x"]}, token=token).status_code == 400
    assert InitialAccessToken.objects.get().uses == 0
    assert register(client, WEB, token=token).status_code == 201
    assert register(client, WEB, token=token).status_code == 201
    third = register(client, WEB, token=token)
    assert third.status_code == 401 and third.json()["error"] == "invalid_token"
    assert Application.objects.count() == 2
    assert set(ClientProfile.objects.values_list("registration_policy", flat=True)) == {
        "initial_access_token"
    }


@pytest.mark.oidc_settings(REGISTRATION="initial_access_token")
def test_expired_or_revoked_initial_access_token_is_refused(client):
    token = rules.create_initial_access_token(description="", days=1, max_uses=5)
    InitialAccessToken.objects.update(expires=timezone.now() - timedelta(seconds=1))
    assert register(client, WEB, token=token).status_code == 401
    InitialAccessToken.objects.update(expires=timezone.now() + timedelta(days=1), revoked=timezone.now())
    assert register(client, WEB, token=token).status_code == 401


@pytest.mark.oidc_settings(REGISTRATION="initial_access_token")
def test_management_command_prints_a_token_once(client, capsys):
    call_command("oidc_registration_token", "create", "--uses", "1", "--days", "2", "--description", "ci")
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert register(client, WEB, token=token).status_code == 201
    assert InitialAccessToken.objects.get().description == "ci"


# --- registration -------------------------------------------------------------------------------


@OPEN
def test_confidential_registration_response_and_stored_secret(client):
    response = register(client, {**WEB, "contacts": ["ops@example.com"], "software_id": "app-1"})
    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    application = Application.objects.get(client_id=body["client_id"])
    assert body["client_secret_expires_at"] == 0
    assert body["client_id_issued_at"] == int(application.created.timestamp())
    assert body["token_endpoint_auth_method"] == "client_secret_basic"
    assert body["grant_types"] == ["authorization_code", "refresh_token"]
    assert body["response_types"] == ["code"]
    assert body["redirect_uris"] == [REDIRECT_URI]
    assert body["contacts"] == ["ops@example.com"] and body["software_id"] == "app-1"
    assert body["registration_client_uri"].endswith(f"/connect/register/{body['client_id']}")
    # Bearer secrets never in clear: the client secret and the registration access token.
    assert body["client_secret"] not in application.client_secret
    profile = application.oidc_profile
    assert body["registration_access_token"] not in profile.registration_token_hash
    assert application.client_type == "confidential"
    assert application.registration_source == "dcr"
    assert profile.registration_policy == "open" and profile.registered_from == "127.0.0.1"
    assert profile.consent_policy == "ask"


@OPEN
def test_public_native_client_needs_no_secret(client):
    body = register(client, NATIVE).json()
    assert "client_secret" not in body
    application = Application.objects.get(client_id=body["client_id"])
    assert application.client_type == "public" and application.client_secret == ""


HOSTILE_REDIRECTS = [
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "file:///etc/passwd",
    "https://*.example.com/cb",
    "https://rp.example.com/*",
    "https://rp.example.com/cb#fragment",
    "https://user:pw@rp.example.com/cb",
    "http://evil.example.com/cb",
    "http://localhost.evil.example/cb",
    "http://127.0.0.1.nip.io/cb",
    "http://LOCALHOST/cb",
    "http://0x7f000001/cb",
    "http://2130706433/cb",
    "http://127.1/cb",
    "http://localhost:0/cb",
    "http://localhost:99999/cb",
    "https://10.0.0.7/cb",
    "https://192.168.1.1/cb",
    "https://169.254.169.254/latest",
    "https://[::1]/cb",
    "https://localhost/cb",
    "https://intranet/cb",
    "https://rp.example.com/c\x00b",
    "https://rp.example.com/c\nb",
    "https://rp.example.com:0/cb",
    "myapp:/callback",  # a private-use scheme that is not a reverse domain name
    "HTTPS://rp.example.com/cb",
    "relative/path",
    "https://" + "a" * 3000 + ".example.com/",
]


@OPEN
@pytest.mark.oidc_settings(presets.NO_LOOPBACK)  # the example project allows loopback (its receivers)
@pytest.mark.parametrize("uri", HOSTILE_REDIRECTS)
def test_hostile_redirect_uris_are_refused(client, uri):
    for auth_method in ("none", "client_secret_basic"):
        response = register(client, {"redirect_uris": [uri], "token_endpoint_auth_method": auth_method})
        assert response.status_code == 400, (uri, response.content)
        assert response.json()["error"] in ("invalid_redirect_uri", "invalid_client_metadata")
    assert not Application.objects.exists()


@OPEN
@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1/callback",
        "http://127.0.0.1:8123/cb",
        "http://[::1]/cb",
        "http://localhost:3030/callback",
    ],
)
def test_loopback_redirect_uris_for_apps_on_the_device(client, uri):
    # MCP clients (the MCP Python SDK among them) register http://localhost with client_secret_post.
    for auth_method in ("none", "client_secret_post"):
        response = register(client, {"redirect_uris": [uri], "token_endpoint_auth_method": auth_method})
        assert response.status_code == 201, response.content


@OPEN
def test_private_use_schemes_only_for_public_clients(client):
    uri = "com.example.app:/oauth2redirect"
    assert register(client, {"redirect_uris": [uri], "token_endpoint_auth_method": "none"}).status_code == 201
    confidential = register(client, {"redirect_uris": [uri]})
    assert confidential.status_code == 400 and confidential.json()["error"] == "invalid_redirect_uri"


@OPEN
def test_what_the_mcp_python_sdk_sends_is_accepted(client):
    # OAuthClientMetadata of the MCP Python SDK, optional members serialised as null.
    metadata = {
        "redirect_uris": ["http://localhost:3030/callback"],
        "token_endpoint_auth_method": "client_secret_post",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "scope": "openid",
        "client_name": "Simple Auth Client",
        "client_uri": None,
        "logo_uri": None,
        "contacts": None,
        "tos_uri": None,
        "policy_uri": None,
        "jwks_uri": None,
        "jwks": None,
        "software_id": None,
        "software_version": None,
    }
    body = register(client, metadata).json()
    assert body["client_secret"] and body["redirect_uris"] == ["http://localhost:3030/callback"]


@OPEN
@pytest.mark.oidc_settings(OUTBOUND_ALLOWED_NETWORKS=["10.0.0.0/8"])
def test_private_https_hosts_only_where_the_operator_allows(client):
    assert register(client, {"redirect_uris": ["https://10.1.2.3/cb"]}).status_code == 201
    assert register(client, {"redirect_uris": ["https://192.168.0.1/cb"]}).status_code == 400


@OPEN
@pytest.mark.parametrize(
    ("metadata", "error"),
    [
        ({**WEB, "grant_types": ["implicit"], "response_types": ["token"]}, "invalid_client_metadata"),
        ({**WEB, "grant_types": ["client_credentials"]}, "invalid_client_metadata"),
        ({**WEB, "grant_types": ["password", "authorization_code"]}, "invalid_client_metadata"),
        ({**WEB, "response_types": ["code id_token"]}, "invalid_client_metadata"),
        ({**WEB, "grant_types": ["refresh_token"]}, "invalid_client_metadata"),
        ({**WEB, "token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata"),
        ({**WEB, "token_endpoint_auth_method": "client_secret_jwt"}, "invalid_client_metadata"),
        ({**WEB, "jwks_uri": "https://rp.example.com/jwks"}, "invalid_client_metadata"),
        ({**WEB, "jwks": {"keys": []}}, "invalid_client_metadata"),
        ({**WEB, "scope": "openid admin:all"}, "invalid_client_metadata"),
        ({**WEB, "client_name": "x" * 101}, "invalid_client_metadata"),
        ({**WEB, "client_name": "Bad\u202e\x1bname"}, "invalid_client_metadata"),
        ({**WEB, "client_name": 42}, "invalid_client_metadata"),
        ({**WEB, "logo_uri": "http://rp.example.com/logo.png"}, "invalid_client_metadata"),
        ({**WEB, "tos_uri": "javascript:alert(1)"}, "invalid_client_metadata"),
        ({**WEB, "contacts": ["a"] * 6}, "invalid_client_metadata"),
        ({**WEB, "software_statement": "eyJhbGciOiJub25lIn0.e30."}, "unapproved_software_statement"),
        ({**WEB, "software_statement": "not a jwt"}, "invalid_software_statement"),
        ({**WEB, "software_statement": {"iss": "x"}}, "invalid_software_statement"),
        ({"client_name": "no redirect"}, "invalid_redirect_uri"),
        ({**WEB, "redirect_uris": "https://rp.example.com/cb"}, "invalid_client_metadata"),
        ({**WEB, "redirect_uris": [REDIRECT_URI] * 11}, "invalid_client_metadata"),
    ],
)
def test_metadata_rules(client, metadata, error):
    response = register(client, metadata)
    assert response.status_code == 400, response.content
    assert response.json()["error"] == error
    assert not Application.objects.exists()


@OPEN
@pytest.mark.parametrize(
    "raw",
    [
        b"[]",
        b'"just a string"',
        b"null",
        b"{not json",
        b'{"redirect_uris": ["https://rp.example.com/cb"], "redirect_uris": ["https://evil.example/cb"]}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50 + b"1" + b"}" * 50,
        b'{"client_name": "a\\u0000b", "redirect_uris": ["https://rp.example.com/cb"]}',
        b'{"client_name": 1e999, "redirect_uris": ["https://rp.example.com/cb"]}',
        b'{"client_name": NaN}',
        b"\xff\xfe{}",
        b'{"client_name": "' + b"x" * (1024 * 1024) + b'"}',
    ],
)
def test_hostile_bodies_are_refused_with_invalid_client_metadata(client, raw):
    response = register(client, None, raw=raw)
    assert response.status_code == 400, response.content[:200]
    assert response.json()["error"] == "invalid_client_metadata"


@OPEN
def test_only_json_bodies(client):
    response = client.post(reverse("oidc_provider_ext:register"), {"redirect_uris": REDIRECT_URI})
    assert response.status_code == 400 and response.json()["error"] == "invalid_client_metadata"
    assert client.get(reverse("oidc_provider_ext:register")).status_code == 405


@OPEN
def test_unknown_members_are_ignored(client):
    body = register(client, {**WEB, "x-custom": {"deep": [1, 2]}}).json()
    assert "x-custom" not in body


# --- limits -------------------------------------------------------------------------------------


@pytest.mark.oidc_settings(REGISTRATION="open", REGISTRATION_OPEN_PER_ADDRESS_PER_DAY=2)
def test_open_registrations_per_address_per_day(client):
    assert register(client, WEB).status_code == 201
    assert register(client, WEB).status_code == 201
    refused = register(client, WEB)
    assert refused.status_code == 429
    other = Client(REMOTE_ADDR="203.0.113.9")
    assert register(other, WEB).status_code == 201


@pytest.mark.oidc_settings(REGISTRATION="open", REGISTRATION_OPEN_MAX_CLIENTS=1)
def test_open_registrations_total_cap(client):
    assert register(client, WEB).status_code == 201
    assert register(Client(REMOTE_ADDR="203.0.113.9"), WEB).status_code == 429
    assert Application.objects.count() == 1


@pytest.mark.oidc_settings(REGISTRATION="open", REGISTRATION_REQUESTS_PER_ADDRESS=3)
def test_requests_per_address_are_rate_limited_failures_included(client):
    for _ in range(3):
        assert register(client, {"redirect_uris": ["javascript:x"]}).status_code == 400
    assert register(client, WEB).status_code == 429
    # An IPv6 address counts as its /64: rotating inside it does not help.
    first, second = Client(REMOTE_ADDR="2001:db8:1:2::1"), Client(REMOTE_ADDR="2001:db8:1:2::ffff")
    for _ in range(3):
        register(first, WEB)
    assert register(second, WEB).status_code == 429


# --- RFC 7592 -----------------------------------------------------------------------------------


@OPEN
def test_read_update_delete_with_the_registration_access_token(client, user):
    created = register(client, WEB).json()
    uri, token = created["registration_client_uri"], created["registration_access_token"]
    read = manage(client, "get", uri, token)
    assert read.status_code == 200 and read["Cache-Control"] == "no-store"
    assert read.json()["client_id"] == created["client_id"]
    assert "client_secret" not in read.json() and "registration_access_token" not in read.json()

    new_uri = "https://rp.example.com/other"
    updated = manage(
        client, "put", uri, token, {"client_id": created["client_id"], "redirect_uris": [new_uri]}
    )
    assert updated.status_code == 200, updated.content
    assert updated.json()["redirect_uris"] == [new_uri]
    assert "client_name" not in updated.json()  # RFC 7592 2.2: omitted means removed
    application = Application.objects.get(client_id=created["client_id"])
    assert application.redirect_uris == new_uri and application.name == ""

    # A token issued to it is revoked by the deletion.
    application.raw_secret = created["client_secret"]
    code, verifier = code_with_pkce(Client(), application, user, redirect_uri=new_uri)
    tokens = exchange(Client(), application, code, verifier, redirect_uri=new_uri).json()
    assert manage(client, "delete", uri, token).status_code == 204
    assert not Application.objects.filter(client_id=created["client_id"]).exists()
    assert not AccessToken.objects.exists()
    assert manage(client, "get", uri, token).status_code == 401
    assert tokens["access_token"]


@OPEN
def test_update_keeps_the_rules(client):
    created = register(client, NATIVE).json()
    uri, token, client_id = (
        created["registration_client_uri"],
        created["registration_access_token"],
        created["client_id"],
    )
    for body in (
        {
            "client_id": client_id,
            "redirect_uris": ["javascript:alert(1)"],
            "token_endpoint_auth_method": "none",
        },
        {"client_id": client_id, "redirect_uris": [REDIRECT_URI]},  # would become confidential
        {"client_id": "another", "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"},
        {"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"},
        {"client_id": client_id, **NATIVE, "registration_access_token": token},
        {"client_id": client_id, **NATIVE, "grant_types": ["client_credentials"]},
    ):
        response = manage(client, "put", uri, token, body)
        assert response.status_code == 400, (body, response.content)
    application = Application.objects.get(client_id=client_id)
    assert application.redirect_uris == "http://127.0.0.1/callback" and application.client_type == "public"


@OPEN
def test_another_clients_token_or_a_guess_is_401_without_an_existence_oracle(client):
    victim = register(client, WEB).json()
    attacker = register(client, WEB).json()
    victim_uri = victim["registration_client_uri"]
    answers = [
        manage(client, "get", victim_uri, attacker["registration_access_token"]),
        manage(client, "delete", victim_uri, attacker["registration_access_token"]),
        manage(
            client,
            "put",
            victim_uri,
            attacker["registration_access_token"],
            {"client_id": victim["client_id"], **WEB},
        ),
        manage(client, "get", victim_uri, "guess"),
        manage(
            client,
            "get",
            victim_uri.replace(victim["client_id"], "no-such-client"),
            attacker["registration_access_token"],
        ),
        client.get(urlsplit(victim_uri).path),
        client.get(
            "/connect/register/%00", HTTP_AUTHORIZATION=f"Bearer {victim['registration_access_token']}"
        ),
        client.get(f"/connect/register/{'x' * 5000}", HTTP_AUTHORIZATION="Bearer x"),
    ]
    for response in answers:
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_token"
        assert response["WWW-Authenticate"].startswith("Bearer")
    assert len({response.content for response in answers[3:]}) == 1
    assert Application.objects.filter(client_id=victim["client_id"]).exists()


@OPEN
def test_admin_made_clients_cannot_be_managed_through_rfc7592(client):
    app = ApplicationFactory()
    response = manage(client, "get", f"/connect/register/{app.client_id}", "anything")
    assert response.status_code == 401


# --- the registered client at work ----------------------------------------------------------------


@OPEN
def test_public_client_full_code_flow_with_pkce_and_refresh_rotation(client, user):
    created = register(client, {**NATIVE, "client_name": "CLI", "scope": "openid offline_access"}).json()
    application = Application.objects.get(client_id=created["client_id"])
    browser, rp = Client(), Client()
    # PKCE is required (the error is a page at the IdP: a self-registered client's redirect URI is
    # not trusted before the user acted, RFC 9700 4.11.2).
    no_pkce = browser.get(authorize_url(application, redirect_uri="http://127.0.0.1:53123/callback"))
    assert no_pkce.status_code == 400 and "Code challenge required" in no_pkce.content.decode()
    verifier, challenge = pkce_pair()
    code, _query = get_code(
        browser,
        application,
        user,
        redirect_uri="http://127.0.0.1:53123/callback",
        scope="openid offline_access",
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    response = exchange(
        rp, application, code, verifier=verifier, redirect_uri="http://127.0.0.1:53123/callback"
    )
    assert response.status_code == 200, response.content
    tokens = response.json()
    assert verify_jwt(tokens["id_token"])["aud"] == application.client_id
    data = {
        "grant_type": "refresh_token",
        "refresh_token": tokens["refresh_token"],
        "client_id": application.client_id,
    }
    rotated = token_request(rp, data)
    assert rotated.status_code == 200
    assert rotated.json()["refresh_token"] != tokens["refresh_token"]
    # The old one is spent; presenting it again is theft and ends the family.
    assert token_request(rp, data).status_code == 400
    data["refresh_token"] = rotated.json()["refresh_token"]
    assert token_request(rp, data).status_code == 400


@OPEN
def test_consent_is_always_asked_with_a_warning_and_no_logo(client, user):
    created = register(
        client, {**WEB, "client_name": "Unknown app", "logo_uri": "https://192.0.2.1/logo.png"}
    ).json()
    application = Application.objects.get(client_id=created["client_id"])
    # The operator cannot turn consent off for it, and a remembered consent is not used.
    ClientProfile.objects.filter(application=application).update(consent_policy="skip")
    application.raw_secret = created["client_secret"]
    browser = Client()
    code_with_pkce(browser, application, user)  # consents once
    page = browser.get(
        authorize_url(application, code_challenge=pkce_pair()[1], code_challenge_method="S256")
    )
    assert page.status_code == 200
    html = page.content.decode()
    assert "data-self-registered" in html
    assert "has not reviewed this application" in html
    assert "data-redirect-host>rp.example.com<" in html
    assert "Unknown app" in html
    assert "192.0.2.1" not in html
    assert "data-fetched-logo" not in html  # TEST-NET-1 is refused by policy: nothing fetched
    assert consent(browser, page).status_code == 302


def test_admin_made_client_consent_page_has_no_warning(client, user):
    app = ApplicationFactory()
    browser = Client()
    response = browser.get(authorize_url(app))
    response = browser.post(response["Location"], {"username": user.username, "password": USER_PASSWORD})
    page = browser.get(response["Location"])
    assert page.status_code == 200
    assert "data-self-registered" not in page.content.decode()


# --- admin and cleanup --------------------------------------------------------------------------


@OPEN
def test_admin_shows_and_filters_self_registered_clients(client, admin_client):
    created = register(client, {**WEB, "client_name": "Self-made"}).json()
    ApplicationFactory(name="Operator-made")
    page = admin_client.get("/admin/oauth2_provider/application/?registration_source__exact=dcr")
    html = page.content.decode()
    assert page.status_code == 200
    assert "Self-made" in html and "Operator-made" not in html
    assert "self-registered" in html
    change = admin_client.get(
        f"/admin/oauth2_provider/application/{Application.objects.get(client_id=created['client_id']).pk}/change/"
    )
    assert change.status_code == 200
    assert created["registration_access_token"] not in change.content.decode()


@OPEN
def test_cleanup_removes_unused_open_registrations_only(client, user):
    register(client, WEB)  # never used
    used = register(client, WEB).json()
    application = Application.objects.get(client_id=used["client_id"])
    application.raw_secret = used["client_secret"]
    code_with_pkce(Client(), application, user)
    token = rules.create_initial_access_token(description="", days=1, max_uses=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            "oidc_provider_ext.conf.AppSettings.REGISTRATION", property(lambda self: "initial_access_token")
        )
        kept = register(client, WEB, token=token).json()
    Application.objects.update(created=timezone.now() - timedelta(days=2))
    call_command("oidc_cleanup")
    remaining = set(Application.objects.values_list("client_id", flat=True))
    assert remaining == {used["client_id"], kept["client_id"]}
    assert AuthorizationGrant.objects.exists()


def test_introspection_of_registered_clients_tokens_works(client, user, settings):
    settings.OIDC_PROVIDER_EXT = {**settings.OIDC_PROVIDER_EXT, "REGISTRATION": "open"}
    created = register(client, WEB).json()
    application = Application.objects.get(client_id=created["client_id"])
    application.raw_secret = created["client_secret"]
    code, verifier = code_with_pkce(Client(), application, user)
    tokens = exchange(Client(), application, code, verifier).json()
    assert introspect(Client(), application, tokens["access_token"])["active"] is True


# --- system checks ------------------------------------------------------------------------------


def _check_ids():
    from django.core.checks import run_checks

    return {message.id for message in run_checks() if message.id}


def test_e060_unknown_registration_policy(settings):
    from oidc_provider_ext import checks

    settings.OIDC_PROVIDER_EXT = {**settings.OIDC_PROVIDER_EXT, "REGISTRATION": "yes"}
    assert checks.E070 in _check_ids()
    settings.OIDC_PROVIDER_EXT = {
        **settings.OIDC_PROVIDER_EXT,
        "REGISTRATION": "open",
        "REGISTRATION_TENANT_CODES": "acme",
    }
    assert checks.E070 in _check_ids()
    settings.OIDC_PROVIDER_EXT = {**settings.OIDC_PROVIDER_EXT, "REGISTRATION_TENANT_CODES": ["acme"]}
    assert checks.E070 not in _check_ids()


@pytest.mark.parametrize(
    "override",
    [
        {"CLIENT_ID_METADATA_DOCUMENT_TIMEOUT_SECONDS": 30},
        {"CLIENT_ID_METADATA_DOCUMENT_TIMEOUT_SECONDS": 0},
        {"CLIENT_ID_METADATA_DOCUMENT_MAX_BYTES": 10 * 1024 * 1024},
        {
            "CLIENT_ID_METADATA_DOCUMENT_MIN_CACHE_SECONDS": 600,
            "CLIENT_ID_METADATA_DOCUMENT_MAX_CACHE_SECONDS": 60,
        },
        {"CLIENT_ID_METADATA_DOCUMENT_MAX_BYTES": "8k"},
    ],
)
def test_e061_metadata_document_limits(settings, override):
    from oidc_provider_ext import checks

    assert checks.E071 not in _check_ids()
    settings.OIDC_PROVIDER_EXT = {**settings.OIDC_PROVIDER_EXT, **override}
    assert checks.E071 in _check_ids()


@OPEN
def test_browser_clients_may_register_cross_origin(client):
    preflight = client.options(
        reverse("oidc_provider_ext:register"),
        HTTP_ORIGIN="https://inspector.example",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
    )
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == "*"
    assert "POST" in preflight["Access-Control-Allow-Methods"]
    assert "Authorization" in preflight["Access-Control-Allow-Headers"]
    created = register(client, WEB, HTTP_ORIGIN="https://inspector.example")
    assert created["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in created
    assert not Application.objects.filter(registration_source="manual").exists()


@OPEN
def test_private_use_scheme_receives_the_code(client, user):
    native = "com.example.app:/oauth2redirect"
    created = register(client, {"redirect_uris": [native], "token_endpoint_auth_method": "none"}).json()
    application = Application.objects.get(client_id=created["client_id"])
    browser = Client()
    verifier, challenge = pkce_pair()
    url = authorize_url(
        application, redirect_uri=native, code_challenge=challenge, code_challenge_method="S256"
    )
    response = browser.get(url)
    response = browser.post(response["Location"], {"username": user.username, "password": USER_PASSWORD})
    page = browser.get(response["Location"])
    # The consent page names the app that receives the answer.
    assert "data-redirect-host>com.example.app<" in page.content.decode()
    redirect = consent(browser, page)
    assert redirect["Location"].startswith(native + "?")
    code = query_of(redirect["Location"])["code"]
    response = exchange(Client(), application, code, verifier, redirect_uri=native)
    assert response.status_code == 200, response.content


@pytest.mark.oidc_settings(REGISTRATION="open", REGISTRATION_TENANT_CODES=["Acme"])
def test_self_registered_clients_get_the_operators_tenants(client):
    created = register(client, WEB).json()
    assert ClientProfile.objects.get(application__client_id=created["client_id"]).tenant_codes == ["acme"]


@pytest.mark.oidc_settings(REGISTRATION="initial_access_token", CLIENT_ID_METADATA_DOCUMENTS=True)
def test_admin_shows_the_policy_and_initial_access_tokens_once(admin_client, client):
    page = admin_client.get("/admin/oauth2_provider/application/")
    assert "Dynamic client registration: with an initial access token" in page.content.decode()
    assert "Client ID metadata documents: accepted" in page.content.decode()
    added = admin_client.post(
        "/admin/oidc_provider_ext/initialaccesstoken/add/",
        {"description": "partner", "expires_0": "2099-01-01", "expires_1": "00:00:00", "max_uses": "1"},
    )
    assert added.status_code == 200
    token = added.context["token"]
    assert token not in InitialAccessToken.objects.get().token_hash
    assert register(client, WEB, token=token).status_code == 201
    listing = admin_client.get("/admin/oidc_provider_ext/initialaccesstoken/").content.decode()
    assert token not in listing and "partner" in listing


# --- software statements (RFC 7591 2.3) ------------------------------------------------------------

STATEMENT_ISSUER = "https://software-publisher.example"


def _statement_key():
    from jwcrypto import jwk

    return jwk.JWK.generate(kty="EC", crv="P-256", kid="publisher-1")


def _statement(key, claims: dict, alg: str = "ES256") -> str:
    import time

    from jwcrypto import jwt

    token = jwt.JWT(
        header={"alg": alg, "kid": key["kid"]},
        claims={"iss": STATEMENT_ISSUER, "iat": int(time.time()), **claims},
    )
    token.make_signed_token(key)
    return token.serialize()


@pytest.fixture
def publisher(settings):
    key = _statement_key()
    keyset = {"keys": [json.loads(key.export_public())]}
    settings.OIDC_PROVIDER_EXT = {
        **settings.OIDC_PROVIDER_EXT,
        "REGISTRATION": "open",
        "REGISTRATION_SOFTWARE_STATEMENT_ISSUERS": {STATEMENT_ISSUER: keyset},
    }
    return key


def test_a_trusted_statements_claims_take_precedence(client, publisher):
    statement = _statement(publisher, {"client_name": "Signed name", "software_id": "signed-app"})
    body = register(client, {**WEB, "client_name": "Claimed name", "software_statement": statement}).json()
    assert body["client_name"] == "Signed name" and body["software_id"] == "signed-app"
    assert "software_statement" not in body


def test_a_statements_metadata_follows_the_same_rules(client, publisher):
    statement = _statement(publisher, {"redirect_uris": ["javascript:alert(1)"]})
    response = register(client, {**WEB, "software_statement": statement})
    assert response.status_code == 400 and response.json()["error"] == "invalid_redirect_uri"


def test_forged_expired_or_untrusted_statements_are_refused(client, publisher):
    import time

    stranger = _statement_key()
    cases = {
        "invalid_software_statement": [
            _statement(stranger, {"client_name": "forged"}),  # a key the issuer does not have
            _statement(publisher, {"exp": int(time.time()) - 3600}),
            _statement(publisher, {"iat": int(time.time()) + 3600}),
            _statement(publisher, {"exp": "tomorrow"}),
            # RFC 7519 2: a NumericDate is a finite number; every comparison with NaN is false.
            _statement(publisher, {"exp": float("nan")}),
            _statement(publisher, {"exp": float("inf")}),
            _statement(publisher, {"nbf": float("nan")}),
            _statement(publisher, {"iat": float("nan")}),
            _statement(publisher, {"iat": float("-inf")}),
        ],
        "unapproved_software_statement": [_statement(publisher, {"iss": "https://other.example"})],
    }
    for error, statements in cases.items():
        for statement in statements:
            response = register(client, {**WEB, "software_statement": statement})
            assert response.status_code == 400 and response.json()["error"] == error, statement
    # alg "none" and a symmetric alg are refused whatever they claim.
    header, payload, _signature = _statement(publisher, {}).split(".")
    import base64

    none_header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    response = register(client, {**WEB, "software_statement": f"{none_header}.{payload}."})
    assert response.json()["error"] == "invalid_software_statement"
    assert not Application.objects.exists()


def test_e060_malformed_statement_issuers(settings):
    from oidc_provider_ext import checks

    settings.OIDC_PROVIDER_EXT = {
        **settings.OIDC_PROVIDER_EXT,
        "REGISTRATION_SOFTWARE_STATEMENT_ISSUERS": {"x": "jwks"},
    }
    assert checks.E070 in _check_ids()


@pytest.mark.oidc_settings(REGISTRATION="open", REGISTRATION_UNUSED_EXPIRE_SECONDS=7 * 86400)
def test_unused_expiry_is_the_operators(client):
    register(client, WEB)
    Application.objects.update(created=timezone.now() - timedelta(days=2))
    call_command("oidc_cleanup")
    assert Application.objects.count() == 1
    Application.objects.update(created=timezone.now() - timedelta(days=8))
    call_command("oidc_cleanup")
    assert not Application.objects.exists()


# --- logos: fetched once through the outbound client, shown as a data: URI --------------------------

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
GIF = b"GIF89a" + b"\x00" * 32
WEBP = b"RIFF\x20\x00\x00\x00WEBPVP8 " + b"\x00" * 32
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>'


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        (servers.answer(200, PNG, {"Content-Type": "image/png"}), "data:image/png;base64,"),
        (servers.answer(200, GIF, {"Content-Type": "image/gif"}), "data:image/gif;base64,"),
        (servers.answer(200, WEBP, {"Content-Type": "image/webp"}), "data:image/webp;base64,"),
        (servers.answer(200, SVG, {"Content-Type": "image/svg+xml"}), ""),
        (servers.answer(200, PNG, {"Content-Type": "text/html"}), ""),
        (servers.answer(200, GIF, {"Content-Type": "image/png"}), ""),
        (servers.answer(200, b"<html>", {"Content-Type": "image/png"}), ""),
        (servers.answer(200, PNG + b"\x00" * (40 * 1024), {"Content-Type": "image/png"}), ""),
        (servers.answer(404, PNG, {"Content-Type": "image/png"}), ""),
        (servers.redirect("https://elsewhere.example/logo.png"), ""),
        (servers.trickle_body(interval=0.2, size=100), ""),
    ],
)
def test_logo_fetch_rules(behaviour, expected):
    with servers.Server(behaviour) as server:
        data = rules.fetch_logo(server.url, 0.5)
    assert data.startswith(expected) if expected else data == ""


@pytest.mark.oidc_settings(presets.NO_LOOPBACK)
def test_logo_at_a_private_address_is_not_fetched():
    with servers.Server(servers.answer(200, PNG, {"Content-Type": "image/png"})) as server:
        assert rules.fetch_logo(server.url, 0.5) == ""
        assert server.requests == 0


@OPEN
def test_consent_page_shows_the_fetched_logo_never_the_url(client, user, monkeypatch):
    from oidc_provider_ext.internal import outbound

    real = outbound.request
    with servers.Server(servers.answer(200, PNG, {"Content-Type": "image/png"})) as server:
        monkeypatch.setattr(outbound, "request", lambda method, url, **kw: real(method, server.url, **kw))
        created = register(client, {**WEB, "logo_uri": "https://cdn.example.net/logo.png"}).json()
        assert server.requests == 1
    application = Application.objects.get(client_id=created["client_id"])
    browser = Client()
    response = browser.get(
        authorize_url(application, code_challenge=pkce_pair()[1], code_challenge_method="S256")
    )
    response = browser.post(response["Location"], {"username": user.username, "password": USER_PASSWORD})
    html = browser.get(response["Location"]).content.decode()
    assert 'src="data:image/png;base64,' in html
    assert "cdn.example.net" not in html


@pytest.mark.oidc_settings(REGISTRATION="initial_access_token")
def test_management_command_lists_and_revokes(client, capsys):
    from django.core.management.base import CommandError

    call_command("oidc_registration_token", "create", "--description", "partner")
    token = capsys.readouterr().out.strip()
    call_command("oidc_registration_token", "list")
    listing = capsys.readouterr().out
    assert "partner" in listing and "0/1" in listing and "usable" in listing and token not in listing
    pk = InitialAccessToken.objects.get().pk
    call_command("oidc_registration_token", "revoke", str(pk))
    assert register(client, WEB, token=token).status_code == 401
    with pytest.raises(CommandError):
        call_command("oidc_registration_token", "revoke", str(pk))
    with pytest.raises(CommandError):
        call_command("oidc_registration_token", "create", "--uses", "0")


# --- found by review 3 (registration) ---------------------------------------------------------------

# https redirect URIs to loopback/private addresses written in a non-canonical IPv4 form: every
# browser (WHATWG URL host parser) reads these hosts as the IPv4 address in the comment, which
# ipaddress.ip_address does not parse, so they must not pass as public DNS names.
NON_CANONICAL = [
    "https://127.1/cb",  # 127.0.0.1
    "https://0x7f.0.0.1/cb",  # 127.0.0.1
    "https://0177.0.0.1/cb",  # 127.0.0.1 (octal)
    "https://10.1/cb",  # 10.0.0.1
    "https://192.168.1/cb",  # 192.168.0.1
    "https://169.254.43518/cb",  # 169.254.169.254, cloud metadata
]


@OPEN
@pytest.mark.oidc_settings(presets.NO_LOOPBACK)
@pytest.mark.parametrize("uri", NON_CANONICAL)
def test_non_canonical_ipv4_https_redirect_hosts_are_refused(client, uri):
    response = register(client, {"redirect_uris": [uri], "token_endpoint_auth_method": "none"})
    assert response.status_code == 400, (uri, response.status_code, response.content[:200])
    assert response.json()["error"] == "invalid_redirect_uri"


@OPEN
def test_put_keeps_the_operators_tenant_restriction(client):
    """RFC 7592 PUT replaces the client's metadata, not what the operator set in the admin: a
    client narrowed to one organisation does not give itself every organisation back."""
    from .factories import TenantFactory

    TenantFactory(code="acme")
    TenantFactory(code="globex")
    created = register(client, WEB).json()
    profile = ClientProfile.objects.get(application__client_id=created["client_id"])
    profile.allowed_tenant_codes = "acme"  # the operator narrows the client in the admin
    profile.save()
    body = {"client_id": created["client_id"], **WEB}
    response = manage(
        client, "put", created["registration_client_uri"], created["registration_access_token"], body
    )
    assert response.status_code == 200, response.content
    profile.refresh_from_db()
    assert profile.tenant_codes == ["acme"], profile.tenant_codes


@OPEN
def test_non_ascii_redirect_uri_is_refused_at_registration(client):
    """A Cyrillic homograph host: the authorization endpoint refuses non-ASCII redirect URIs, so
    RFC 7591 3.2.2 invalid_redirect_uri at registration, not a client that can never sign in."""
    homograph = "https://\u0430pple.com/cb"  # Cyrillic a
    response = register(client, {"redirect_uris": [homograph], "client_name": "Apple"})
    assert response.status_code == 400, response.content[:200]
    assert response.json()["error"] == "invalid_redirect_uri"


# ClientProfile stores client_uri, logo_uri, tos_uri and policy_uri in URLFields of max_length 200:
# a longer one is refused at registration (PostgreSQL would refuse the INSERT with a DataError, an
# HTTP 500; SQLite does not enforce the length, so run this on PostgreSQL too).
LONG_URI = "https://rp.example.com/" + "a" * 250


@OPEN
@pytest.mark.parametrize("member", ["client_uri", "tos_uri", "policy_uri"])
def test_url_metadata_longer_than_its_column_is_refused(member):
    browser = Client(raise_request_exception=False)
    response = register(browser, {**WEB, member: LONG_URI})
    assert response.status_code < 500, response.status_code
    if response.status_code == 201:
        column = ClientProfile._meta.get_field(member).max_length
        assert len(LONG_URI) <= column, (
            f"{member}: {len(LONG_URI)} characters accepted, column holds {column}"
        )


@OPEN
def test_put_does_not_write_back_a_stale_cached_client(client):
    """An RFC 7592 PUT writes the metadata columns of the row as it is now, never every column of
    a cached copy: a secret the operator rotated and a minimum acr set through another worker
    (simulated: the row changes without this process's cache being told) stay."""
    from django.contrib.auth.hashers import check_password, make_password

    from oidc_provider_ext.hashers import ALGORITHM
    from oidc_provider_ext.internal import clients

    created = register(client, WEB).json()
    client_id = created["client_id"]
    assert clients.get_client(client_id) is not None  # cached in this worker
    # The operator, on another worker: rotates the leaked secret and requires MFA for this client.
    new_secret = "rotated-" + "x" * 40
    Application.objects.filter(client_id=client_id).update(
        client_secret=make_password(new_secret, hasher=ALGORITHM)
    )
    ClientProfile.objects.filter(application__client_id=client_id).update(minimum_acr="urn:mfa")
    # The client (holding its registration access token) updates its name through this worker:
    body = {"client_id": client_id, **WEB, "client_name": "renamed"}
    response = manage(
        client, "put", created["registration_client_uri"], created["registration_access_token"], body
    )
    assert response.status_code == 200, response.content
    stored = Application.objects.get(client_id=client_id)
    assert not check_password(created["client_secret"], stored.client_secret), "the leaked secret works again"
    assert ClientProfile.objects.get(application=stored).minimum_acr == "urn:mfa"
    assert stored.name == "renamed"


@OPEN
@pytest.mark.parametrize("member", ["client_uri", "logo_uri", "tos_uri", "policy_uri"])
def test_malformed_url_member_is_invalid_client_metadata(member):
    response = register(Client(raise_request_exception=False), {**WEB, member: "https://[::1"})
    assert response.status_code == 400, response.status_code
    assert response.json()["error"] == "invalid_client_metadata"


def test_url_member_limits_are_the_column_lengths():
    for name, limit in rules.URL_MEMBER_LENGTHS.items():
        assert ClientProfile._meta.get_field(name).max_length == limit, name
