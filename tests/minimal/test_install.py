"""The reusable app as README.md installs it (tests/settings_minimal.py): no example project, no
axes, csp or whitenoise. Everything goes through URLs and Django's test client, as a site would."""

import base64
import hashlib
import json
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import checks
from django.core.management import call_command
from django.test import Client
from jwcrypto import jwk, jwt
from oauth2_provider.models import get_application_model

ISSUER = "https://id.example.com"
REDIRECT_URI = "https://rp.example.com/callback"
LOGGED_OUT = "https://rp.example.com/logged-out"
PASSWORD = "correct horse battery staple"
TOKEN_FORM = "application/x-www-form-urlencoded"


def _pkce_pair() -> tuple[str, str]:
    """RFC 7636 4.1/4.2: a verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    return verifier, base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(
        b"="
    ).decode()


def test_these_are_the_minimal_settings():
    # Guards the invocation: under idp_project.settings this module would prove nothing.
    assert settings.ROOT_URLCONF == "tests.minimal.urls"
    assert not {"axes", "csp", "whitenoise"} & {app.split(".")[0] for app in settings.INSTALLED_APPS}


def test_check_is_clean_including_deployment_checks_of_the_app():
    messages = checks.run_checks(include_deployment_checks=True)
    ours = [m for m in messages if (m.id or "").startswith("oidc_provider_ext.")]
    assert ours == []
    assert [m for m in messages if m.is_serious()] == []


@pytest.mark.django_db
def test_migrations_are_complete_under_a_plain_site():
    # pytest-django built the test database by applying every migration; none may be missing.
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db
def test_discovery_and_jwks_answer():
    client = Client()
    meta = client.get("/.well-known/openid-configuration").json()
    assert meta["issuer"] == ISSUER
    assert meta["authorization_endpoint"] == f"{ISSUER}/connect/authorize"
    assert meta["jwks_uri"] == f"{ISSUER}/connect/jwks"
    assert "S256" in meta["code_challenge_methods_supported"]
    jwks = client.get("/connect/jwks").json()
    assert jwks["keys"] and all("d" not in key for key in jwks["keys"])


def _verify(token: str, client: Client) -> dict:
    keyset = jwk.JWKSet.from_json(json.dumps(client.get("/connect/jwks").json()))
    return json.loads(jwt.JWT(jwt=token, key=keyset, algs=["RS256", "PS256", "ES256"]).claims)


def _query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@pytest.mark.django_db
def test_code_flow_with_pkce_end_to_end():
    user = get_user_model().objects.create_user("alice", "alice@example.com", PASSWORD)
    raw_secret = secrets.token_urlsafe(32)
    app = get_application_model().objects.create(
        name="Relying party",
        client_id="rp",
        client_secret=raw_secret,
        client_type="confidential",
        authorization_grant_type="authorization-code",
        redirect_uris=REDIRECT_URI,
        post_logout_redirect_uris=LOGGED_OUT,
    )
    auth = "Basic " + base64.b64encode(f"{app.client_id}:{raw_secret}".encode()).decode()
    browser, rp = Client(), Client()

    def post(path, data):
        return rp.post(path, urlencode(data), content_type=TOKEN_FORM, HTTP_AUTHORIZATION=auth)

    # Authorize: not signed in, so to the app's own login page (no LOGIN_URL or auth URLs needed).
    verifier, challenge = _pkce_pair()
    params = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid email offline_access",
        "state": "st",
        "nonce": "n-1",
        "prompt": "consent",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    response = browser.get(f"/connect/authorize?{urlencode(params)}")
    assert response.status_code == 302 and response["Location"].startswith("/connect/login"), response
    assert browser.get(response["Location"]).status_code == 200  # the login page renders
    response = browser.post(response["Location"], {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302, response.content[:500]
    # README's session engine: the signed-in browser's key is nowhere in the sessions' table.
    from django.contrib.sessions.models import Session

    stored = set(Session.objects.values_list("session_key", flat=True))
    assert stored and browser.cookies["sessionid"].value not in stored
    assert browser.session["_auth_user_id"] == str(user.pk)

    # Consent: the page renders with the app's own templates (crispy forms, no project templates).
    page = browser.get(response["Location"])
    assert page.status_code == 200 and app.name in page.content.decode()
    response = _allow(browser, page)
    assert response.status_code == 302 and response["Location"].startswith(REDIRECT_URI + "?")
    query = _query(response["Location"])
    assert query["state"] == "st"

    # Token (PKCE verifier), then the ID token verifies against the published JWKS.
    code_request = {"grant_type": "authorization_code", "code": query["code"], "redirect_uri": REDIRECT_URI}
    assert post("/connect/token", {**code_request, "code_verifier": "x" * 43}).status_code == 400
    query = _query(_fresh_code(browser, params))
    response = post("/connect/token", {**code_request, "code": query["code"], "code_verifier": verifier})
    assert response.status_code == 200, response.content
    tokens = response.json()
    id_token = _verify(tokens["id_token"], rp)
    assert (id_token["iss"], id_token["aud"], id_token["nonce"]) == (ISSUER, "rp", "n-1")
    assert id_token["sub"] == str(user.pk)

    # UserInfo.
    response = rp.get("/connect/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    assert response.status_code == 200 and response.json()["email"] == "alice@example.com"

    # Refresh (rotated), introspection of the new access token, revocation of it.
    response = post(
        "/connect/token", {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    assert response.status_code == 200, response.content
    refreshed = response.json()
    assert refreshed["refresh_token"] != tokens["refresh_token"]
    assert post("/connect/introspect", {"token": refreshed["access_token"]}).json()["active"] is True
    assert post("/connect/revocation", {"token": refreshed["access_token"]}).status_code == 200
    assert post("/connect/introspect", {"token": refreshed["access_token"]}).json() == {"active": False}

    # End session with the ID token as hint: back to the RP, signed out, tokens of the session end.
    response = browser.get(
        "/connect/endsession",
        {"id_token_hint": refreshed["id_token"], "post_logout_redirect_uri": LOGGED_OUT, "state": "bye"},
    )
    assert response.status_code == 302 and response["Location"] == f"{LOGGED_OUT}?state=bye"
    assert "_auth_user_id" not in browser.session
    assert post("/connect/introspect", {"token": refreshed["refresh_token"]}).json() == {"active": False}


def _allow(browser: Client, page):
    """Submit the consent form as a browser does: every optional scope ticked."""
    ticked = [s["name"] for s in page.context["scopes"] if not s["required"]]
    request_id = page.context["form"].initial["request_id"]
    return browser.post(
        page.context["form_action"], {"request_id": request_id, "decision": "allow", "scope": ticked}
    )


def _fresh_code(browser: Client, params: dict) -> str:
    """A new code for the same request (the one sent with a wrong verifier is not reused).
    offline_access is asked again even with remembered consent (OIDC Core 11), so answer it."""
    response = browser.get(
        "/connect/authorize?" + urlencode({k: v for k, v in params.items() if k != "prompt"})
    )
    if response.status_code == 200:
        response = _allow(browser, response)
    assert response.status_code == 302, response.content[:500]
    return response["Location"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "hasher",
    ["Argon2PasswordHasher", "ScryptPasswordHasher", "PBKDF2SHA1PasswordHasher", "PBKDF2PasswordHasher"],
)
def test_existing_users_sign_in_whatever_their_password_hash(hasher):
    """Issue 14.2: README's PASSWORD_HASHERS used to replace Django's list, locking out users whose
    stored hash was Argon2, scrypt or PBKDF2-SHA1. Their rows exist before the app is installed."""
    from django.contrib.auth import hashers

    # Hashed as the site did before installing the app, whatever PASSWORD_HASHERS says now.
    site_hasher = getattr(hashers, hasher)()
    get_user_model().objects.create(
        username="old-timer", password=site_hasher.encode(PASSWORD, site_hasher.salt())
    )
    assert [m.id for m in checks.run_checks(databases=["default"]) if m.id == "oidc_provider_ext.W030"] == []
    app = get_application_model().objects.create(
        client_id="rp-hashers",
        client_type="public",
        authorization_grant_type="authorization-code",
        redirect_uris=REDIRECT_URI,
    )
    verifier, challenge = _pkce_pair()
    params = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    browser = Client()
    login = browser.get(f"/connect/authorize?{urlencode(params)}")["Location"]
    response = browser.post(login, {"username": "old-timer", "password": PASSWORD})
    assert response.status_code == 302, response.content[:500]
    assert browser.session["_auth_user_id"] == str(get_user_model().objects.get(username="old-timer").pk)
