"""The authorization code flow end to end, as the source documents describe it."""

import pytest
from django.urls import reverse

from oidc_provider_ext import keys
from oidc_provider_ext.conf import app_settings

from .factories import REDIRECT_URI
from .flow import (
    authorize_url,
    consent,
    exchange,
    get_code,
    login,
    pkce_pair,
    query_of,
    token_request,
    verify_jwt,
)

pytestmark = pytest.mark.django_db


def test_confidential_client_flow_with_basic_auth(browser, rp, user, confidential_app):
    response = browser.get(authorize_url(confidential_app))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("oidc_provider_ext:login"))

    response = login(browser, user, next_url=authorize_url(confidential_app))
    assert response.status_code == 302
    response = browser.get(response["Location"])
    assert response.status_code == 200
    assert confidential_app.name in response.content.decode()
    assert response["Cache-Control"].startswith("max-age=0") or "no-cache" in response["Cache-Control"]

    response = consent(browser, response)
    assert response.status_code == 302
    assert response["Referrer-Policy"] == "no-referrer"
    query = query_of(response["Location"])
    assert response["Location"].startswith(REDIRECT_URI + "?")
    assert query["state"] == "state-123"
    assert len(query["code"]) >= 22  # >= 128 bits of base64/ascii randomness

    response = exchange(rp, confidential_app, query["code"])
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "openid profile email"
    assert "refresh_token" not in body  # no offline_access requested

    id_token = verify_jwt(body["id_token"], typ="JWT")
    assert id_token["iss"] == app_settings.ISSUER
    assert id_token["aud"] == confidential_app.client_id
    assert id_token["sub"] == str(user.pk)
    assert id_token["nonce"] == "nonce-456"
    assert id_token["exp"] > id_token["iat"]
    assert "at_hash" in id_token

    access = verify_jwt(body["access_token"], typ="at+jwt")
    assert access["client_id"] == confidential_app.client_id
    assert access["sub"] == str(user.pk)
    assert access["scope"] == "openid profile email"
    assert access["exp"] - access["iat"] == 3600
    assert access["jti"]

    userinfo = rp.get(
        reverse("oidc_provider_ext:userinfo"), HTTP_AUTHORIZATION=f"Bearer {body['access_token']}"
    )
    assert userinfo.status_code == 200
    assert userinfo.json()["sub"] == str(user.pk)
    assert userinfo.json()["email"] == user.email


def test_confidential_client_flow_with_client_secret_post(browser, rp, user, confidential_app):
    code, _ = get_code(browser, confidential_app, user)
    response = token_request(
        rp,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "client_id": confidential_app.client_id,
            "client_secret": confidential_app.raw_secret,
        },
    )
    assert response.status_code == 200, response.content
    assert "id_token" in response.json()


def test_public_client_flow_with_pkce(browser, rp, user, public_app):
    verifier, challenge = pkce_pair()
    code, query = get_code(browser, public_app, user, code_challenge=challenge, code_challenge_method="S256")
    assert query["state"] == "state-123"
    response = exchange(rp, public_app, code, verifier=verifier)
    assert response.status_code == 200, response.content
    body = response.json()
    assert verify_jwt(body["id_token"], typ="JWT")["aud"] == public_app.client_id


def test_offline_access_gives_refresh_token_that_refreshes(browser, rp, user, confidential_app):
    code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
    body = exchange(rp, confidential_app, code).json()
    assert body["scope"] == "openid offline_access"
    refresh_token = body["refresh_token"]
    assert not refresh_token.startswith("ey"), "the refresh token is opaque, not a JWT"

    response = token_request(
        rp,
        {"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(confidential_app.client_id, confidential_app.raw_secret),
    )
    assert response.status_code == 200, response.content
    refreshed = response.json()
    assert refreshed["access_token"] != body["access_token"]
    assert refreshed["refresh_token"] != refresh_token  # rotated
    assert verify_jwt(refreshed["id_token"], typ="JWT")["sub"] == str(user.pk)


def test_remembered_consent_skips_login_and_consent(browser, user, confidential_app):
    get_code(browser, confidential_app, user, scope="openid email")
    response = browser.get(authorize_url(confidential_app, scope="openid email"))
    assert response.status_code == 302
    assert "code" in query_of(response["Location"])
    # A scope the user has not consented to yet brings the consent page back.
    response = browser.get(authorize_url(confidential_app, scope="openid email profile"))
    assert response.status_code == 200
    assert response.templates[0].name == "oidc_provider_ext/consent.html"


def test_offline_access_is_always_asked(browser, user, confidential_app):
    get_code(browser, confidential_app, user, scope="openid offline_access")
    response = browser.get(authorize_url(confidential_app, scope="openid offline_access"))
    assert response.status_code == 200
    assert response.templates[0].name == "oidc_provider_ext/consent.html"


def test_skip_authorization_client_gets_code_without_consent_page(browser, user):
    from .factories import ApplicationFactory

    app = ApplicationFactory(profile__consent_policy="skip")
    login(browser, user)
    response = browser.get(authorize_url(app))
    assert response.status_code == 302
    assert "code" in query_of(response["Location"])


def test_signing_key_is_created_once_and_reused(browser, rp, user, confidential_app):
    from oidc_provider_ext.models import SigningKey

    for _ in range(2):
        code, _ = get_code(browser, confidential_app, user)
        assert exchange(rp, confidential_app, code).status_code == 200
    assert SigningKey.objects.filter(state="active").count() == 1
    key = SigningKey.objects.get()
    assert "d" not in key.public_jwk  # no private material published
    assert "BEGIN" not in key.private_jwk_encrypted and '"d"' not in key.private_jwk_encrypted
    keys.invalidate()
    assert keys.signing_key()[0] == key.kid
