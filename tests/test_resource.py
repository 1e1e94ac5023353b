"""Resource-server helper: validate_access_token, @require_access_token, remote JWKS and the DRF
integration, driven by real tokens from the code flow and by tokens forged to break one rule each."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.urls import reverse
from jwcrypto import jwk, jws
from oauth2_provider.models import get_access_token_model

from oidc_provider_ext import checks, keys
from oidc_provider_ext.adapter import DefaultOIDCAdapter, get_adapter
from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.resource import (
    AccessTokenClaims,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    KeySetUnavailable,
    bearer_challenge,
    require_access_token,
    validate_access_token,
)

from . import presets
from .conftest import oidc_settings
from .factories import ApplicationFactory
from .flow import basic_auth, exchange, get_code, token_request
from .resource_views import AUDIENCE, RESOURCE_URI, SERVICE_AUDIENCE

try:
    import rest_framework  # noqa: F401

    HAS_DRF = True
except ImportError:
    HAS_DRF = False

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.resource_views")]

needs_drf = pytest.mark.skipif(
    not HAS_DRF, reason="djangorestframework is not installed (pip install -e '.[test]' installs it)"
)
DROP = object()


# --- helpers ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _empty_cache():
    # The remote JWKS and its refetch marker live in Django's cache.
    cache.clear()
    yield
    cache.clear()


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def access_claims(**overrides) -> dict:
    """Claims like the provider's (tokens.mint_access_token); DROP removes one."""
    now = int(time.time())
    claims = {
        "iss": app_settings.ISSUER,
        "sub": "42",
        "aud": AUDIENCE,
        "client_id": AUDIENCE,
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "scope": "openid profile",
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not DROP}


def forge(**overrides) -> str:
    """A token signed by the provider's real active key, with the given claim changes."""
    return keys.sign(access_claims(**overrides), typ="at+jwt")


def sign_with(key: jwk.JWK, header: dict, claims: dict) -> str:
    token = jws.JWS(json.dumps(claims).encode())
    token.add_signature(key, protected=json.dumps(header))
    return token.serialize(compact=True)


def rs256(key: jwk.JWK, header: dict, claims: dict) -> str:
    """RS256 over any header, even one jwcrypto itself would refuse to produce."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    signing_input = f"{b64(json.dumps(header))}.{b64(json.dumps(claims))}"
    signature = key.get_op_key("sign").sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64(signature)}"


@pytest.fixture
def confidential_app(db):
    # The client the test APIs accept tokens of: its client_id is their audience (RFC 9068 4).
    return ApplicationFactory(client_id=AUDIENCE)


@pytest.fixture
def tokens(browser, rp, user, confidential_app):
    code, _ = get_code(browser, confidential_app, user, scope="openid profile email")
    response = exchange(rp, confidential_app, code)
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def api():
    return Client()


@pytest.fixture
def no_revocation_check(settings):
    # Forged tokens have no DOT row: with the revocation check on they would fail for that reason
    # alone, and the tests below could not show which rule refused them.
    oidc_settings(settings, RESOURCE_SERVER_CHECK_REVOCATION=False)


def assert_invalid_token(response, description: str = "") -> None:
    assert response.status_code == 401, response.content
    assert response.json()["error"] == "invalid_token"
    assert description.lower() in response.json()["error_description"].lower()
    challenge = response["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="api", error="invalid_token", error_description="')
    assert response["Cache-Control"] == "no-store"


# --- the decorator with real tokens -------------------------------------------------------------


def test_valid_access_token_reaches_the_view_with_its_claims(api, user, confidential_app, tokens):
    response = api.get("/api/profile", **bearer(tokens["access_token"]))
    assert response.status_code == 200, response.content
    assert response.json() == {
        "sub": str(user.pk),
        "client_id": confidential_app.client_id,
        "scopes": ["openid", "profile", "email"],
        "jti": response.json()["jti"],
        "has_resource_owner": True,
    }
    assert response.json()["jti"]


def test_validate_access_token_returns_typed_claims(user, confidential_app, tokens):
    claims = validate_access_token(
        tokens["access_token"], required_scopes=["openid", "email"], audience=AUDIENCE
    )
    assert isinstance(claims, AccessTokenClaims)
    assert claims.sub == str(user.pk)
    assert claims.issuer == app_settings.ISSUER
    assert claims.audience == (confidential_app.client_id,)
    assert claims.expires_at - claims.issued_at == 3600
    assert claims.claims["scope"] == "openid profile email"
    assert claims.has_scopes("openid", "profile") and not claims.has_scopes("admin")
    with pytest.raises(TypeError):
        claims.claims["sub"] = "someone else"  # read-only view of what was signed


def test_missing_token_is_401_challenge_without_error(api):
    response = api.get("/api/profile")
    assert response.status_code == 401
    # RFC 6750 3.1: no error code when the request carries no authentication at all; the scope the
    # view needs is a hint (RFC 6750 3; MCP clients pick the scopes to ask for from it).
    assert response["WWW-Authenticate"] == 'Bearer realm="api", scope="profile"'
    assert api.get("/api/any")["WWW-Authenticate"] == 'Bearer realm="api"'
    assert "error" not in response.json()
    assert response["Cache-Control"] == "no-store"


def test_other_authorization_scheme_counts_as_no_token(api, confidential_app):
    response = api.get(
        "/api/profile", HTTP_AUTHORIZATION=basic_auth(confidential_app.client_id, confidential_app.raw_secret)
    )
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api", scope="profile"'


def test_bearer_scheme_is_case_insensitive(api, tokens):
    response = api.get("/api/profile", HTTP_AUTHORIZATION=f"bEaReR {tokens['access_token']}")
    assert response.status_code == 200


def test_bearer_without_token_is_invalid_request(api):
    response = api.get("/api/profile", HTTP_AUTHORIZATION="Bearer   ")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert 'error="invalid_request"' in response["WWW-Authenticate"]


def test_id_token_is_refused_by_the_api_and_by_userinfo(api, rp, tokens, settings):
    response = api.get("/api/any", **bearer(tokens["id_token"]))
    assert_invalid_token(response, "typ")
    # The typ check alone refuses it, even without the revocation lookup.
    oidc_settings(settings, RESOURCE_SERVER_CHECK_REVOCATION=False)
    assert_invalid_token(api.get("/api/any", **bearer(tokens["id_token"])), "typ")
    with pytest.raises(InvalidToken, match="typ"):
        validate_access_token(tokens["id_token"], audience=AUDIENCE)
    userinfo = rp.get(reverse("oidc_provider_ext:userinfo"), **bearer(tokens["id_token"]))
    assert userinfo.status_code == 401
    assert userinfo["WWW-Authenticate"].startswith("Bearer")


def test_missing_scope_is_403_insufficient_scope(api, tokens):
    response = api.get("/api/admin", **bearer(tokens["access_token"]))
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    challenge = response["WWW-Authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="profile admin"' in challenge  # RFC 6750 3: the scope the resource needs
    assert response["Cache-Control"] == "no-store"
    with pytest.raises(InsufficientScope) as raised:
        validate_access_token(tokens["access_token"], required_scopes=["admin"], audience=AUDIENCE)
    assert raised.value.scope == ("admin",)
    assert raised.value.error == "insufficient_scope" and raised.value.status_code == 403


def test_scopes_granted_at_consent_limit_the_api(api, browser, rp, user, confidential_app):
    code, _ = get_code(browser, confidential_app, user, scope="openid")
    access_token = exchange(rp, confidential_app, code).json()["access_token"]
    assert api.get("/api/any", **bearer(access_token)).status_code == 200
    assert api.get("/api/profile", **bearer(access_token)).status_code == 403


def test_token_in_query_string_is_400_even_with_a_header(api, tokens):
    query = urlencode({"access_token": tokens["access_token"]})
    for extra in ({}, bearer(tokens["access_token"])):
        response = api.get(f"/api/profile?{query}", **extra)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"
        assert "query string" in response.json()["error_description"]


def test_token_in_form_body_is_not_read(api, tokens):
    response = api.post(
        "/api/email",
        urlencode({"access_token": tokens["access_token"]}),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api", scope="email"'


def test_class_based_view_with_method_decorator_is_csrf_exempt(tokens):
    browserish = Client(enforce_csrf_checks=True)
    response = browserish.post("/api/email", **bearer(tokens["access_token"]))
    assert response.status_code == 200, response.content
    assert response.json()["method"] == "POST"
    assert browserish.post("/api/email").status_code == 401  # and still protected


def test_async_view(api, tokens):
    response = api.get("/api/async-profile", **bearer(tokens["access_token"]))
    assert response.status_code == 200
    assert response.json()["view"] == "async"
    assert api.get("/api/async-profile").status_code == 401


def test_decorator_needs_parentheses():
    with pytest.raises(TypeError, match="require_access_token"):

        @require_access_token  # type: ignore[arg-type]
        def view(request):  # pragma: no cover
            return None


# --- revocation (in-process keys) ---------------------------------------------------------------


def revoke(client, app, token: str) -> None:
    response = client.post(
        reverse("oidc_provider_ext:revocation"),
        urlencode({"token": token}),
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=basic_auth(app.client_id, app.raw_secret),
    )
    assert response.status_code == 200


def test_revoked_token_is_refused_when_the_revocation_check_is_on(
    api, rp, confidential_app, tokens, settings
):
    assert api.get("/api/profile", **bearer(tokens["access_token"])).status_code == 200
    revoke(rp, confidential_app, tokens["access_token"])
    assert_invalid_token(api.get("/api/profile", **bearer(tokens["access_token"])), "revoked")
    # Off: the signature and claims are still good, so only the lookup could refuse it.
    oidc_settings(settings, RESOURCE_SERVER_CHECK_REVOCATION=False)
    assert api.get("/api/profile", **bearer(tokens["access_token"])).status_code == 200


def test_token_expired_in_the_database_is_refused(api, tokens):
    from datetime import timedelta

    from django.utils import timezone

    get_access_token_model().objects.update(expires=timezone.now() - timedelta(seconds=1))
    assert_invalid_token(api.get("/api/profile", **bearer(tokens["access_token"])), "expired")


# --- forged tokens: one rule broken each --------------------------------------------------------


def test_forged_control_token_is_accepted(api, no_revocation_check):
    # The baseline the tests below break one rule of.
    response = api.get("/api/profile", **bearer(forge()))
    assert response.status_code == 200, response.content
    assert response.json()["sub"] == "42"


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"])
def test_access_token_typ_variants_are_accepted(api, no_revocation_check, typ):
    token = keys.sign(access_claims(), typ=typ)
    assert api.get("/api/profile", **bearer(token)).status_code == 200


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+JWT+x", "application/jwt", "", None, 1])
def test_other_typ_values_are_refused(api, no_revocation_check, typ):
    kid, key = keys.signing_key()
    header = {"alg": "RS256", "kid": kid}
    if typ is not None:
        header["typ"] = typ
    assert_invalid_token(api.get("/api/any", **bearer(sign_with(key, header, access_claims()))), "typ")


def test_a_header_is_read_once_per_spelling_and_a_refused_one_is_not_kept(no_revocation_check, monkeypatch):
    """Tokens of one key share their header segment: its check is kept (bounded), keyed by the
    segment byte for byte, so a header that differs in any way is checked on its own."""
    from oidc_provider_ext import resource

    monkeypatch.setattr(resource, "_headers", {})
    kid, key = keys.signing_key()
    good = rs256(key, {"alg": "RS256", "kid": kid, "typ": "at+jwt"}, access_claims())
    assert validate_access_token(good, audience=AUDIENCE).sub == "42"
    assert resource._headers[good.split(".")[0]] == ("RS256", kid)
    for header in (
        {"alg": "RS256", "kid": kid, "typ": "JWT"},
        {"alg": "RS256", "kid": kid, "typ": "at+jwt", "crit": ["x"]},
    ):
        with pytest.raises(InvalidToken):
            validate_access_token(rs256(key, header, access_claims()), audience=AUDIENCE)
    assert len(resource._headers) == 1
    # Made-up headers (any extra member is allowed) do not grow it without bound.
    for n in range(3 * resource._MAX_HEADERS):
        header = {"alg": "RS256", "kid": kid, "typ": "at+jwt", "x": n}
        validate_access_token(rs256(key, header, access_claims()), audience=AUDIENCE)
        assert len(resource._headers) <= resource._MAX_HEADERS


def test_expired_token(api, no_revocation_check, settings):
    now = int(time.time())
    assert_invalid_token(api.get("/api/any", **bearer(forge(iat=now - 600, exp=now - 60))), "expired")
    # Within the leeway (30 s by default) it still passes; with no leeway it does not.
    barely = forge(iat=now - 600, exp=now - 10)
    assert api.get("/api/any", **bearer(barely)).status_code == 200
    oidc_settings(settings, RESOURCE_SERVER_LEEWAY_SECONDS=0)
    assert_invalid_token(api.get("/api/any", **bearer(barely)), "expired")


def test_expired_real_token(api, tokens, monkeypatch):
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600 + 31)
    assert_invalid_token(api.get("/api/profile", **bearer(tokens["access_token"])), "expired")


def test_issued_in_the_future(api, no_revocation_check):
    now = int(time.time())
    assert_invalid_token(api.get("/api/any", **bearer(forge(iat=now + 120, exp=now + 600))), "future")
    assert api.get("/api/any", **bearer(forge(iat=now + 20))).status_code == 200  # clock skew


def test_not_before_in_the_future(api, no_revocation_check):
    now = int(time.time())
    assert_invalid_token(api.get("/api/any", **bearer(forge(nbf=now + 120))), "not valid yet")
    assert api.get("/api/any", **bearer(forge(nbf=now - 5))).status_code == 200


@pytest.mark.parametrize(
    "issuer", ["https://evil.example.com", "ISSUER/", "ISSUER/x", "ISSUER ", "", ["ISSUER"], None]
)
def test_wrong_issuer(api, no_revocation_check, issuer):
    if isinstance(issuer, str):
        issuer = issuer.replace("ISSUER", app_settings.ISSUER)
    elif isinstance(issuer, list):
        issuer = [app_settings.ISSUER]
    else:
        issuer = DROP
    assert_invalid_token(api.get("/api/any", **bearer(forge(iss=issuer))), "iss")


def test_resource_server_issuer_setting(api, tokens, settings):
    oidc_settings(settings, RESOURCE_SERVER_ISSUER="https://other-idp.example.com/")
    assert_invalid_token(api.get("/api/profile", **bearer(tokens["access_token"])), "issuer")
    oidc_settings(settings, RESOURCE_SERVER_CHECK_REVOCATION=False)
    other = forge(iss="https://other-idp.example.com")
    assert api.get("/api/profile", **bearer(other)).status_code == 200


# --- audience: a resource server names itself (RFC 9068 4) and fails closed ---------------------


@pytest.fixture
def other_client_token(browser, rp, user):
    """(client, access token) of another client of the same provider: aud is that client's id."""
    other = ApplicationFactory()
    code, _ = get_code(browser, other, user, scope="openid profile email")
    response = exchange(rp, other, code)
    assert response.status_code == 200, response.content
    return other, response.json()["access_token"]


@pytest.mark.parametrize(
    "path", ["/api/any", "/api/profile", "/api/email", "/api/async-profile", "/api/audience"]
)
def test_token_of_another_client_is_refused_by_the_decorator(api, other_client_token, path):
    assert_invalid_token(api.get(path, **bearer(other_client_token[1])), "aud")


def test_token_of_another_client_is_refused_only_for_its_aud(other_client_token):
    other, token = other_client_token
    with pytest.raises(InvalidToken, match="aud"):
        validate_access_token(token, audience=AUDIENCE)
    # Signature, issuer, revocation row and scopes are all good: naming its client accepts it.
    assert validate_access_token(token, audience=[AUDIENCE, other.client_id]).client_id == other.client_id


def test_no_audience_configured_refuses_every_token(api, tokens, other_client_token):
    assert app_settings.RESOURCE_SERVER_AUDIENCE is None
    for token in (tokens["access_token"], other_client_token[1], forge(), "garbage"):
        # An operator error, raised before the token is even parsed: never "allow all".
        with pytest.raises(ImproperlyConfigured, match="RESOURCE_SERVER_AUDIENCE"):
            validate_access_token(token)
        with pytest.raises(ImproperlyConfigured, match="RESOURCE_SERVER_AUDIENCE"):
            api.get("/api/setting-audience", **bearer(token))
    response = Client(raise_request_exception=False).get(
        "/api/setting-audience", **bearer(tokens["access_token"])
    )
    assert response.status_code == 500
    assert api.get("/api/setting-audience").status_code == 401  # no token: the plain challenge


def test_audience_setting_serves_views_that_name_none(api, tokens, other_client_token, settings):
    other, other_token = other_client_token
    oidc_settings(settings, RESOURCE_SERVER_AUDIENCE=RESOURCE_URI)
    assert_invalid_token(api.get("/api/setting-audience", **bearer(tokens["access_token"])), "aud")
    oidc_settings(settings, RESOURCE_SERVER_AUDIENCE=AUDIENCE)
    assert api.get("/api/setting-audience", **bearer(tokens["access_token"])).status_code == 200
    assert_invalid_token(api.get("/api/setting-audience", **bearer(other_token)), "aud")
    # A list: the tokens of each client named are accepted, and no other.
    oidc_settings(settings, RESOURCE_SERVER_AUDIENCE=[AUDIENCE, other.client_id])
    assert (AUDIENCE, other.client_id) == app_settings.RESOURCE_SERVER_AUDIENCE
    for token in (tokens["access_token"], other_token):
        assert api.get("/api/setting-audience", **bearer(token)).status_code == 200
    assert_invalid_token(api.get("/api/setting-audience", **bearer(forge(aud="client-z"))), "aud")


@pytest.mark.oidc_settings(RESOURCE_SERVER_AUDIENCE=AUDIENCE)
def test_view_audience_overrides_the_setting(api, no_revocation_check):
    assert_invalid_token(api.get("/api/audience", **bearer(forge())), "aud")
    both = forge(aud=[AUDIENCE, RESOURCE_URI])
    assert api.get("/api/audience", **bearer(both)).status_code == 200
    assert api.get("/api/any", **bearer(both)).status_code == 200
    # RFC 8707-style resource URI as the audience: the same exact comparison.
    resource_only = forge(aud=RESOURCE_URI)
    assert api.get("/api/audience", **bearer(resource_only)).status_code == 200
    assert_invalid_token(api.get("/api/any", **bearer(resource_only)), "aud")


@pytest.mark.parametrize(
    "value", ["*", ["*"], [AUDIENCE, "*"], "", [], [""], [AUDIENCE, 7], f" {AUDIENCE}", 7, {"aud": 1}]
)
def test_there_is_no_wildcard_or_empty_audience(api, tokens, settings, value):
    oidc_settings(settings, RESOURCE_SERVER_AUDIENCE=value)
    with pytest.raises(ImproperlyConfigured, match="RESOURCE_SERVER_AUDIENCE"):
        api.get("/api/setting-audience", **bearer(tokens["access_token"]))
    with pytest.raises(ImproperlyConfigured, match="audience"):
        validate_access_token(tokens["access_token"], audience=value)
    with pytest.raises(ImproperlyConfigured, match="audience"):
        require_access_token(audience=value)


def test_check_e011_names_the_views_without_an_audience(settings):
    def e011():
        return [message for message in run_checks() if message.id == checks.E011]

    (message,) = e011()
    assert "'api/setting-audience'" in message.msg
    assert ("'drf/setting-audience'" in message.msg) is HAS_DRF
    for named in ("api/any", "api/profile", "api/email", "api/async-profile", "api/audience", "drf/profile"):
        assert f"'{named}'" not in message.msg
    oidc_settings(settings, RESOURCE_SERVER_AUDIENCE=AUDIENCE)
    assert e011() == []
    oidc_settings(settings, RESOURCE_SERVER_AUDIENCE="*")
    assert [m.id for m in e011()] == [checks.E011]


def test_check_e011_for_a_remote_resource_server(settings, jwks_server):
    # The API runs apart (only a JWKS URL) and no view names an audience: the check fires.
    settings.ROOT_URLCONF = "idp_project.urls"
    assert not [m for m in run_checks() if m.id == checks.E011]
    oidc_settings(settings, RESOURCE_SERVER_JWKS_URL=jwks_server.url)
    assert [m.id for m in run_checks() if m.id == checks.E011] == [checks.E011]
    oidc_settings(settings, RESOURCE_SERVER_AUDIENCE=AUDIENCE)
    assert not [m for m in run_checks() if m.id == checks.E011]


@pytest.mark.parametrize(
    ("claim", "value", "complaint"),
    [
        ("sub", DROP, "sub"),
        ("sub", 42, "sub"),
        ("client_id", DROP, "client_id"),
        ("jti", DROP, "jti"),
        ("exp", DROP, "exp"),
        ("exp", "tomorrow", "exp"),
        ("exp", True, "exp"),
        ("iat", DROP, "iat"),
        ("aud", DROP, "aud"),
        ("aud", [], "aud"),
        ("aud", ["client-x", 7], "aud"),
        ("scope", ["openid", "profile"], "scope"),
    ],
)
def test_missing_or_malformed_required_claims(api, no_revocation_check, claim, value, complaint):
    assert_invalid_token(api.get("/api/any", **bearer(forge(**{claim: value}))), complaint)


def test_token_signed_by_an_unknown_key(api, no_revocation_check):
    stranger = jwk.JWK.generate(kty="EC", crv="P-256")
    token = sign_with(stranger, {"alg": "ES256", "typ": "at+jwt", "kid": "made-up-kid"}, access_claims())
    assert_invalid_token(api.get("/api/any", **bearer(token)), "key")


def test_token_signed_by_another_key_under_our_kid(api, no_revocation_check):
    kid, _ = keys.signing_key()
    impostor = jwk.JWK.generate(kty="RSA", size=2048)
    token = sign_with(impostor, {"alg": "RS256", "typ": "at+jwt", "kid": kid}, access_claims())
    assert_invalid_token(api.get("/api/any", **bearer(token)), "signature")


def test_alg_none_is_refused(api, no_revocation_check):
    kid, _ = keys.signing_key()
    header = {"alg": "none", "typ": "at+jwt", "kid": kid}
    token = f"{b64(json.dumps(header))}.{b64(json.dumps(access_claims()))}."
    assert_invalid_token(api.get("/api/any", **bearer(token)), "alg")
    # Even with the real signature of the same payload attached.
    real = forge().split(".")
    token = f"{b64(json.dumps(header))}.{real[1]}.{real[2]}"
    assert_invalid_token(api.get("/api/any", **bearer(token)))


def test_hs256_with_the_public_key_as_secret_is_refused(api, no_revocation_check):
    # The classic algorithm confusion: the public key is public, so as an HMAC secret it forges.
    kid, _ = keys.signing_key()
    public = keys.verification_key(kid)
    for secret in (public.export_to_pem(), public.export_public().encode()):
        hmac_key = jwk.JWK(kty="oct", k=b64(secret))
        token = sign_with(hmac_key, {"alg": "HS256", "typ": "at+jwt", "kid": kid}, access_claims())
        assert_invalid_token(api.get("/api/any", **bearer(token)), "alg")


def test_alg_must_match_the_key(api, no_revocation_check):
    # RFC 8725 3.1: our key is published for RS256; a PS256 signature by the same key is refused.
    kid, key = keys.signing_key()
    token = sign_with(key, {"alg": "PS256", "typ": "at+jwt", "kid": kid}, access_claims())
    assert_invalid_token(api.get("/api/any", **bearer(token)), "alg")


def test_es256_key_verifies(api, no_revocation_check):
    token = keys.sign(access_claims(), typ="at+jwt", alg="ES256")
    assert api.get("/api/any", **bearer(token)).status_code == 200


@pytest.mark.parametrize("extension", [{"crit": ["exp"], "exp": 1}, {"b64": False, "crit": ["b64"]}])
def test_unsupported_header_extensions_are_refused(api, no_revocation_check, extension):
    kid, key = keys.signing_key()
    header = {"alg": "RS256", "typ": "at+jwt", "kid": kid, **extension}
    assert_invalid_token(api.get("/api/any", **bearer(rs256(key, header, access_claims()))), "extension")


def test_duplicate_header_names_are_refused(api, no_revocation_check):
    # RFC 7515 4: a parser that kept the last "typ" would take this ID token for an access token.
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    kid, key = keys.signing_key()
    header = f'{{"alg": "RS256", "kid": "{kid}", "typ": "JWT", "typ": "at+jwt"}}'
    signing_input = f"{b64(header)}.{b64(json.dumps(access_claims()))}"
    signature = key.get_op_key("sign").sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    assert_invalid_token(api.get("/api/any", **bearer(f"{signing_input}.{b64(signature)}")), "header")


def test_tampered_payload_is_refused(api, no_revocation_check):
    header, _, signature = forge().split(".")
    payload = b64(json.dumps(access_claims(scope="openid profile admin")))
    assert_invalid_token(api.get("/api/admin", **bearer(f"{header}.{payload}.{signature}")), "signature")


def _garbage() -> list[tuple[str, str]]:
    good_header = b64(json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": "k"}))
    nan_header = '{"alg": NaN, "typ": "at+jwt", "kid": "k"}'
    duplicate_typ = '{"alg": "RS256", "typ": "JWT", "typ": "at+jwt", "kid": "k"}'
    return [
        ("empty", ""),
        ("word", "abc"),
        ("one dot", "abc.def"),
        ("four parts", "a.b.c.d"),
        ("only dots", ".."),
        ("bad base64 length", "a.b.c"),
        ("not base64url", "ey+J/.ey.sig"),
        ("spaces", "eyJ hbGc.eyJ.sig"),
        ("non-ascii", "eyJé.eyJ.sig"),
        ("header not json", f"{b64('not json')}.{b64('{}')}.c2ln"),
        ("header json array", f"{b64('[1, 2]')}.{b64('{}')}.c2ln"),
        ("header not utf-8", f"{b64(bytes([0xFF, 0xFE, 0x7B]))}.{b64('{}')}.c2ln"),
        ("header nested too deep", f"{b64('[' * 3000 + ']' * 3000)}.{b64('{}')}.c2ln"),
        ("header NaN", f"{b64(nan_header)}.{b64('{}')}.c2ln"),
        ("duplicate typ", f"{b64(duplicate_typ)}.{b64('{}')}.c2ln"),
        ("huge", f"{good_header}.{'A' * 9000}.c2ln"),
        ("payload not json", f"{good_header}.{b64('nope')}.c2ln"),
        ("kid not a string", f"{b64(json.dumps({'alg': 'RS256', 'typ': 'at+jwt', 'kid': 7}))}.e30.c2ln"),
        ("no kid", f"{b64(json.dumps({'alg': 'RS256', 'typ': 'at+jwt'}))}.e30.c2ln"),
        ("alg not a string", f"{b64(json.dumps({'alg': ['RS256'], 'typ': 'at+jwt', 'kid': 'k'}))}.e30.c2ln"),
    ]


@pytest.mark.parametrize(("name", "token"), _garbage(), ids=[name for name, _ in _garbage()])
def test_garbage_is_invalid_token_and_nothing_else(api, name, token):
    with pytest.raises(InvalidToken) as raised:
        validate_access_token(token, audience=AUDIENCE)
    assert raised.value.error == "invalid_token" and raised.value.status_code == 401
    if token.strip() and " " not in token:
        assert_invalid_token(api.get("/api/any", **bearer(token)))


@pytest.mark.parametrize("value", [None, 42, b"eyJ.eyJ.sig"])
def test_non_string_tokens_are_invalid(value):
    with pytest.raises(InvalidToken):
        validate_access_token(value, audience=AUDIENCE)  # type: ignore[arg-type]


def test_token_size_is_bounded(api, no_revocation_check):
    assert api.get("/api/any", **bearer(forge(padding="x" * 5000))).status_code == 200
    assert_invalid_token(api.get("/api/any", **bearer(forge(padding="x" * 6500))), "longer than 8192")


def test_garbage_with_real_signature_parts(api, no_revocation_check):
    header, payload, signature = forge().split(".")
    for token in (f"{header}.{payload}.", f"{header}.{payload}.{signature[:-4]}", f"{header}..{signature}"):
        assert_invalid_token(api.get("/api/any", **bearer(token)))


@pytest.mark.oidc_settings(RESOURCE_SERVER_REALM='orders "v2"')
def test_realm_setting(api):
    response = api.get("/api/any")
    assert response["WWW-Authenticate"] == 'Bearer realm="orders v2"'  # quotes cannot be escaped
    assert bearer_challenge(InvalidRequest("x"), realm="r") == (
        'Bearer realm="r", error="invalid_request", error_description="x"'
    )


# --- settings -----------------------------------------------------------------------------------


def test_resource_server_setting_defaults(settings):
    settings.OIDC_PROVIDER_EXT = {"ISSUER": "https://id.example.com/"}
    assert app_settings.RESOURCE_SERVER_ISSUER == "https://id.example.com"
    assert app_settings.RESOURCE_SERVER_AUDIENCE is None
    assert app_settings.RESOURCE_SERVER_JWKS_URL is None
    assert app_settings.RESOURCE_SERVER_JWKS_CACHE_SECONDS == 300
    assert app_settings.RESOURCE_SERVER_JWKS_REFETCH_SECONDS == 60
    assert app_settings.RESOURCE_SERVER_CHECK_REVOCATION is True
    assert app_settings.RESOURCE_SERVER_LEEWAY_SECONDS == 30
    assert app_settings.RESOURCE_SERVER_REALM == "api"


@pytest.mark.parametrize(
    "url", ["http://idp.example.com/connect/jwks", "ftp://127.0.0.1/jwks", "file:///etc/jwks.json", "jwks"]
)
def test_jwks_url_must_be_https_except_loopback(settings, url):
    oidc_settings(settings, RESOURCE_SERVER_JWKS_URL=url)
    with pytest.raises(ImproperlyConfigured, match="RESOURCE_SERVER_JWKS_URL"):
        assert app_settings.RESOURCE_SERVER_JWKS_URL


@pytest.mark.parametrize(
    "url", ["https://idp.example.com/connect/jwks", "http://127.0.0.1:8000/connect/jwks", "http://[::1]/j"]
)
def test_jwks_url_accepted(settings, url):
    oidc_settings(settings, RESOURCE_SERVER_JWKS_URL=url)
    assert url == app_settings.RESOURCE_SERVER_JWKS_URL


def test_every_resource_server_setting_is_documented():
    from oidc_provider_ext.conf import _SETTINGS

    documented = (Path(__file__).resolve().parent.parent / "docs" / "settings.md").read_text()
    for name in _SETTINGS:
        if name.startswith("RESOURCE_SERVER_"):
            assert f"`{name}`" in documented, name


# --- remote JWKS --------------------------------------------------------------------------------


class JWKSServer:
    """A provider's JWKS endpoint on 127.0.0.1, counting the requests it gets."""

    def __init__(self) -> None:
        self.document: dict = {"keys": []}
        self.status = 200
        self.body: bytes | None = None
        self.headers: dict[str, str] = {}
        self.requests = 0
        self.url = ""
        self.redirect_to = ""  # answer /connect/jwks with a 302 to this path of the same server

    def publish(self) -> None:
        self.document = json.loads(json.dumps(keys.jwks()))


@pytest.fixture
def jwks_server():
    state = JWKSServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            state.requests += 1
            if state.redirect_to and self.path == "/connect/jwks":
                self.send_response(302)
                self.send_header("Location", state.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = state.body if state.body is not None else json.dumps(state.document).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            for name, value in state.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/connect/jwks"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def remote(settings, jwks_server, tokens):
    """Remote mode: the API knows the provider only by its JWKS URL."""
    jwks_server.publish()
    oidc_settings(settings, RESOURCE_SERVER_JWKS_URL=jwks_server.url)
    return jwks_server


def test_remote_jwks_validates_and_caches(api, remote, user, tokens):
    response = api.get("/api/profile", **bearer(tokens["access_token"]))
    assert response.status_code == 200, response.content
    assert response.json()["sub"] == str(user.pk)
    assert remote.requests == 1
    for _ in range(3):
        assert api.get("/api/profile", **bearer(tokens["access_token"])).status_code == 200
    assert remote.requests == 1  # served from the cache


@pytest.mark.oidc_settings(RESOURCE_SERVER_JWKS_CACHE_SECONDS=0)  # no caching
def test_remote_jwks_cache_seconds_setting(api, remote, tokens):
    for _ in range(3):
        assert api.get("/api/profile", **bearer(tokens["access_token"])).status_code == 200
    assert remote.requests == 3


def test_remote_jwks_refetches_for_a_rotated_key_at_most_once_per_interval(api, remote, tokens, monkeypatch):
    assert api.get("/api/profile", **bearer(tokens["access_token"])).status_code == 200
    assert remote.requests == 1

    # The provider starts signing with a key the cached set does not have yet.
    rotated = keys.sign(access_claims(), typ="at+jwt", alg="ES256")
    remote.publish()
    # Within RESOURCE_SERVER_JWKS_REFETCH_SECONDS (60) of the last fetch: no new request.
    for _ in range(3):
        assert_invalid_token(api.get("/api/any", **bearer(rotated)), "key")
    assert remote.requests == 1

    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 61)
    assert api.get("/api/any", **bearer(rotated)).status_code == 200
    assert remote.requests == 2
    # Made-up kids right after that refetch cause no request either.
    stranger = jwk.JWK.generate(kty="EC", crv="P-256")
    for n in range(5):
        token = sign_with(stranger, {"alg": "ES256", "typ": "at+jwt", "kid": f"kid-{n}"}, access_claims())
        assert_invalid_token(api.get("/api/any", **bearer(token)), "key")
    assert remote.requests == 2
    # The old key is still in the refreshed set.
    assert api.get("/api/profile", **bearer(tokens["access_token"])).status_code == 200
    assert remote.requests == 2


@pytest.mark.oidc_settings(RESOURCE_SERVER_JWKS_REFETCH_SECONDS=0)
def test_remote_jwks_refetch_seconds_setting(api, remote, tokens):
    assert api.get("/api/profile", **bearer(tokens["access_token"])).status_code == 200
    rotated = keys.sign(access_claims(), typ="at+jwt", alg="ES256")
    remote.publish()
    assert api.get("/api/any", **bearer(rotated)).status_code == 200
    assert remote.requests == 2


def test_remote_mode_cannot_see_revocation(api, rp, remote, confidential_app, tokens):
    # Documented limit: apart from the provider there is no token table; use introspection.
    revoke(rp, confidential_app, tokens["access_token"])
    assert api.get("/api/profile", **bearer(tokens["access_token"])).status_code == 200
    assert remote.requests == 1


def test_remote_mode_still_refuses_id_tokens_and_forgeries(api, remote, tokens):
    assert_invalid_token(api.get("/api/any", **bearer(tokens["id_token"])), "typ")
    kid = remote.document["keys"][0]["kid"]
    impostor = jwk.JWK.generate(kty="RSA", size=2048)
    forged = sign_with(impostor, {"alg": "RS256", "typ": "at+jwt", "kid": kid}, access_claims())
    assert_invalid_token(api.get("/api/any", **bearer(forged)), "signature")


def test_remote_key_with_another_use_is_ignored(api, remote, tokens):
    for key in remote.document["keys"]:
        key["use"] = "enc"
    assert_invalid_token(api.get("/api/profile", **bearer(tokens["access_token"])), "key")


@pytest.mark.parametrize(
    ("status", "body", "headers"),
    [
        (500, b"oops", {}),
        (200, b"<html>not json</html>", {}),
        (200, b'{"no": "keys"}', {}),
        (200, b"[]", {}),
    ],
    ids=["500", "not-json", "no-keys", "array"],
)
def test_unusable_jwks_is_503_not_401(api, remote, tokens, status, body, headers):
    remote.status, remote.body, remote.headers = status, body, headers
    response = api.get("/api/profile", **bearer(tokens["access_token"]))
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert "WWW-Authenticate" not in response  # the token was not found wanting
    with pytest.raises(KeySetUnavailable):
        validate_access_token(tokens["access_token"], audience=AUDIENCE)
    assert remote.requests == 2


def test_jwks_redirects_are_not_followed(api, remote, tokens):
    # The moved document is a perfectly good key set: only not following the redirect refuses it.
    remote.redirect_to = "/moved/jwks"
    response = api.get("/api/profile", **bearer(tokens["access_token"]))
    assert response.status_code == 503
    assert remote.requests == 1
    remote.redirect_to = ""
    assert api.get("/api/profile", **bearer(tokens["access_token"])).status_code == 200


def test_jwks_fetch_has_one_total_deadline(api, settings, tokens, monkeypatch):
    from oidc_provider_ext.resource import remote_jwks

    from .servers import Server, trickle_body

    monkeypatch.setattr(remote_jwks, "FETCH_TIMEOUT_SECONDS", 0.5)
    # Headers at once, then one body byte every 0.2 s: no single read waits 0.5 s.
    with Server(trickle_body(interval=0.2, size=200)) as trickler:
        oidc_settings(settings, RESOURCE_SERVER_JWKS_URL=trickler.url)
        with pytest.raises(KeySetUnavailable):
            validate_access_token(tokens["access_token"], audience=AUDIENCE)


@pytest.mark.oidc_settings(presets.NO_LOOPBACK)  # the provider on 127.0.0.1 is not allowed
def test_jwks_url_is_subject_to_the_network_policy(api, remote, tokens):
    assert api.get("/api/profile", **bearer(tokens["access_token"])).status_code == 503
    assert remote.requests == 0


def test_empty_cache_is_filled_by_one_fetch(remote, tokens):
    from oidc_provider_ext.resource import remote_jwks

    from .servers import Server, answer

    document = json.dumps(remote.document).encode()
    kid = remote.document["keys"][0]["kid"]

    def slow_jwks(handler, server):
        server.release.wait(30)
        answer(200, document, {"Content-Type": "application/json"})(handler, server)

    with Server(slow_jwks) as provider:
        results: list = []

        def verify():
            results.append(remote_jwks.verification_key(provider.url, kid))

        threads = [threading.Thread(target=verify) for _ in range(8)]
        for thread in threads:
            thread.start()
        assert provider.arrived.wait(10)
        # Give the other seven every chance to send their own request before the first is answered.
        for thread in threads:
            thread.join(timeout=0.1)
        provider.release.set()
        for thread in threads:
            thread.join(timeout=10)
    assert provider.requests == 1
    assert len(results) == 8 and all(key is not None and key.kid == kid for key in results)


def test_another_process_fetching_means_waiting_for_its_result(remote, tokens, monkeypatch):
    from oidc_provider_ext.resource import remote_jwks

    monkeypatch.setattr(remote_jwks, "FETCH_TIMEOUT_SECONDS", 0.2)
    monkeypatch.setattr(remote_jwks, "FLIGHT_WAIT_SECONDS", 0.1)
    data_key, _refetched = remote_jwks._cache_keys(remote.url)
    kid = remote.document["keys"][0]["kid"]
    cache.add(f"{data_key}:fetching", True, timeout=30)  # another process holds the fetch lock
    with pytest.raises(remote_jwks.JWKSFetchError):  # ... and caches nothing in time
        remote_jwks.verification_key(remote.url, kid)
    assert remote.requests == 0

    def other_process_finishes(_seconds):  # while we wait, the other process caches its set
        cache.set(data_key, remote.document, timeout=30)

    monkeypatch.setattr(remote_jwks.time, "sleep", other_process_finishes)
    assert remote_jwks.verification_key(remote.url, kid).kid == kid
    assert remote.requests == 0


def test_a_cache_outage_is_not_a_500_and_does_not_flood_the_provider(api, remote, tokens, cache_down):
    # The API keeps answering from the key set it fetched, in this process, for the cache TTL:
    # one fetch, not one per request.
    for _ in range(4):
        response = api.get("/api/profile", **bearer(tokens["access_token"]))
        assert response.status_code == 200, response.content
    assert remote.requests == 1


def test_a_cache_that_refuses_writes_costs_one_fetch_not_one_per_request(api, remote, tokens, monkeypatch):
    def refused(*args, **kwargs):
        raise ConnectionError("READONLY You can't write against a read only replica.")

    for name in ("set", "add", "delete"):
        monkeypatch.setattr(cache, name, refused)
    for _ in range(5):
        assert api.get("/api/profile", **bearer(tokens["access_token"])).status_code == 200
    assert remote.requests == 1


def test_a_cache_outage_keeps_the_refetch_interval(api, remote, tokens, cache_down, monkeypatch):
    assert api.get("/api/profile", **bearer(tokens["access_token"])).status_code == 200
    rotated = keys.sign(access_claims(), typ="at+jwt", alg="ES256")
    remote.publish()
    stranger = jwk.JWK.generate(kty="EC", crv="P-256")
    for n in range(5):  # made-up kids within the interval of the last fetch: no request
        token = sign_with(stranger, {"alg": "ES256", "typ": "at+jwt", "kid": f"kid-{n}"}, access_claims())
        assert_invalid_token(api.get("/api/any", **bearer(token)), "key")
    assert remote.requests == 1
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 61)
    assert api.get("/api/any", **bearer(rotated)).status_code == 200  # one refetch finds the new key
    assert_invalid_token(api.get("/api/any", **bearer(token)), "key")  # and starts a new interval
    assert remote.requests == 2


def test_a_cache_outage_copy_expires_with_the_cache_ttl(api, remote, tokens, cache_down, monkeypatch):
    assert api.get("/api/profile", **bearer(tokens["access_token"])).status_code == 200
    remote.document = {"keys": []}  # the provider withdrew every key
    real_time = time.time
    monkeypatch.setattr(
        time, "time", lambda: real_time() + app_settings.RESOURCE_SERVER_JWKS_CACHE_SECONDS + 1
    )
    assert_invalid_token(api.get("/api/profile", **bearer(tokens["access_token"])), "key")
    assert remote.requests == 2


def test_a_cache_failing_while_another_process_fetches_is_a_503_then_a_fetch(remote, tokens, monkeypatch):
    from oidc_provider_ext.resource import remote_jwks

    data_key, _refetched = remote_jwks._cache_keys(remote.url)
    cache.add(f"{data_key}:fetching", True, timeout=30)  # another process holds the fetch lock
    kid = remote.document["keys"][0]["kid"]

    down: list[bool] = []

    def failing(call):
        def wrapper(*args, **kwargs):
            if down:
                raise ConnectionError("cache down")
            return call(*args, **kwargs)

        return wrapper

    for name in ("get", "set", "add", "delete"):
        monkeypatch.setattr(cache, name, failing(getattr(cache, name)))
    # ... and the cache goes down while we wait for it
    monkeypatch.setattr(remote_jwks.time, "sleep", lambda _seconds: down.append(True))
    # This process's memory has no set and no lock: the other process looks done without a result.
    with pytest.raises(remote_jwks.JWKSFetchError):  # a 503, and the client retries
        remote_jwks.verification_key(remote.url, kid)
    assert remote_jwks.verification_key(remote.url, kid).kid == kid  # the retry fetches here
    assert remote.requests == 1


@pytest.mark.oidc_settings(RESOURCE_SERVER_JWKS_URL="http://127.0.0.1:9/connect/jwks")  # discard port
def test_unreachable_jwks_is_503(api, tokens):
    response = api.get("/api/profile", **bearer(tokens["access_token"]))
    assert response.status_code == 503


def test_remote_mode_works_in_a_project_without_the_provider_app(remote, tokens):
    # The API as a separate Django project: no oidc_provider_ext or DOT in INSTALLED_APPS, no DRF.
    script = f"""
import json, sys
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
    DATABASES={{}},
    CACHES={{"default": {{"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}}},
    OIDC_PROVIDER_EXT={{
        "RESOURCE_SERVER_ISSUER": {app_settings.ISSUER!r},
        "RESOURCE_SERVER_JWKS_URL": {remote.url!r},
        "RESOURCE_SERVER_AUDIENCE": {AUDIENCE!r},
        "OUTBOUND_ALLOWED_NETWORKS": ["127.0.0.0/8"],  # the test's provider listens on loopback
    }},
)
import django
django.setup()
from oidc_provider_ext.resource import InvalidToken, validate_access_token
claims = validate_access_token(sys.argv[1], required_scopes=["profile"])
try:
    validate_access_token(sys.argv[2])
    raise SystemExit("the ID token was accepted")
except InvalidToken:
    pass
modules = ("rest_framework", "oauth2_provider.models", "oidc_provider_ext.models")
loaded = [name for name in modules if name in sys.modules]
print(json.dumps({{"sub": claims.sub, "loaded": loaded}}))
"""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-c", script, tokens["access_token"], tokens["id_token"]],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["loaded"] == []
    assert output["sub"] == validate_access_token(tokens["access_token"], audience=AUDIENCE).sub


# --- adapter hook -------------------------------------------------------------------------------


class TestGetUserBySubject:
    def test_inverse_of_get_subject(self, user):
        adapter = get_adapter()
        assert adapter.get_user_by_subject(adapter.get_subject(user)) == user

    @pytest.mark.parametrize("subject", ["abc", "", "1.0", " 1", "99999999999999999999999", "client-1"])
    def test_subjects_that_are_no_user(self, user, subject):
        assert get_adapter().get_user_by_subject(subject) is None

    def test_whitespace_variant_of_a_real_subject_is_no_user(self, user):
        assert get_adapter().get_user_by_subject(f" {user.pk}") is None

    def test_inactive_user_is_no_user(self, user):
        get_user_model().objects.filter(pk=user.pk).update(is_active=False)
        assert get_adapter().get_user_by_subject(str(user.pk)) is None

    def test_overridden_get_subject_without_inverse_gives_none(self, user):
        class ByUsername(DefaultOIDCAdapter):
            def get_subject(self, user, **kwargs):
                return user.get_username()

        adapter = ByUsername()
        assert adapter.get_user_by_subject(str(user.pk)) is None
        assert adapter.get_user_by_subject(user.get_username()) is None


# --- Django REST framework ----------------------------------------------------------------------


@pytest.fixture
def client_credentials_token(rp):
    from oauth2_provider.models import get_application_model

    app = ApplicationFactory(
        client_id=SERVICE_AUDIENCE, authorization_grant_type=get_application_model().GRANT_CLIENT_CREDENTIALS
    )
    response = token_request(
        rp, {"grant_type": "client_credentials", "scope": "profile"}, auth=(app.client_id, app.raw_secret)
    )
    assert response.status_code == 200, response.content
    return app, response.json()["access_token"]


@needs_drf
class TestDRF:
    def test_valid_token_authenticates_the_user(self, api, user, tokens):
        response = api.get("/drf/profile", **bearer(tokens["access_token"]))
        assert response.status_code == 200, response.content
        assert response.json() == {
            "user": user.get_username(),
            "sub": str(user.pk),
            "scopes": ["openid", "profile", "email"],
        }

    def test_post_needs_no_csrf_token(self, tokens):
        response = Client(enforce_csrf_checks=True).post("/drf/profile", **bearer(tokens["access_token"]))
        assert response.status_code == 200

    def test_client_credentials_token_has_no_user(self, api, client_credentials_token):
        app, token = client_credentials_token
        response = api.get("/drf/profile", **bearer(token))
        assert response.status_code == 200, response.content
        assert response.json() == {"user": None, "sub": app.client_id, "scopes": ["profile"]}

    def test_token_of_a_deactivated_user_is_refused(self, api, user, tokens):
        # In-process the provider's account-state rule applies (adapter.may_use_client): a user
        # deactivated behind the provider's back (no signal) is refused, not served anonymously.
        get_user_model().objects.filter(pk=user.pk).update(is_active=False)
        response = api.get("/drf/profile", **bearer(tokens["access_token"]))
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_token"

    def test_no_token_is_401_with_plain_challenge(self, api):
        response = api.get("/drf/profile")
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == 'Bearer realm="api", scope="profile"'

    def test_id_token_is_401_invalid_token(self, api, tokens):
        response = api.get("/drf/profile", **bearer(tokens["id_token"]))
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_token"
        assert 'error="invalid_token"' in response["WWW-Authenticate"]
        assert "typ" in response["WWW-Authenticate"]

    @pytest.mark.parametrize("token", ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.e30."])
    def test_garbage_is_401_invalid_token(self, api, token):
        response = api.get("/drf/profile", **bearer(token))
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_token"

    def test_revoked_token_is_401(self, api, rp, confidential_app, tokens):
        revoke(rp, confidential_app, tokens["access_token"])
        response = api.get("/drf/profile", **bearer(tokens["access_token"]))
        assert response.status_code == 401
        assert "revoked" in response.json()["error_description"]

    def test_missing_scope_is_403_insufficient_scope(self, api, tokens):
        response = api.get("/drf/admin", **bearer(tokens["access_token"]))
        assert response.status_code == 403
        assert response.json()["error"] == "insufficient_scope"
        assert 'error="insufficient_scope"' in response["WWW-Authenticate"]
        assert 'scope="profile admin"' in response["WWW-Authenticate"]

    def test_token_in_query_string_is_400(self, api, tokens):
        response = api.get("/drf/profile?" + urlencode({"access_token": tokens["access_token"]}))
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"

    def test_view_without_required_scopes_is_a_configuration_error(self, api, tokens):
        with pytest.raises(ImproperlyConfigured, match="required_scopes"):
            api.get("/drf/misconfigured", **bearer(tokens["access_token"]))

    def test_token_of_another_client_is_401_invalid_token(self, api, other_client_token):
        response = api.get("/drf/profile", **bearer(other_client_token[1]))
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_token"
        assert "aud" in response.json()["error_description"]
        assert 'error="invalid_token"' in response["WWW-Authenticate"]

    def test_no_audience_configured_refuses_every_token(self, api, tokens, settings):
        with pytest.raises(ImproperlyConfigured, match="RESOURCE_SERVER_AUDIENCE"):
            api.get("/drf/setting-audience", **bearer(tokens["access_token"]))
        oidc_settings(settings, RESOURCE_SERVER_AUDIENCE=AUDIENCE)
        assert api.get("/drf/setting-audience", **bearer(tokens["access_token"])).status_code == 200

    @pytest.mark.parametrize("value", ["*", ["*"], [], ""])
    def test_wildcard_or_empty_audience_is_refused_when_the_class_is_defined(self, value):
        from oidc_provider_ext.contrib.drf import JWTAccessTokenAuthentication

        with pytest.raises(ImproperlyConfigured, match="AnyClient.audience"):

            class AnyClient(JWTAccessTokenAuthentication):
                audience = value

    @pytest.mark.oidc_settings(RESOURCE_SERVER_JWKS_URL="http://127.0.0.1:9/connect/jwks")
    def test_unavailable_remote_jwks_is_503(self, api, tokens):
        response = api.get("/drf/profile", **bearer(tokens["access_token"]))
        assert response.status_code == 503
        assert response.json()["error"] == "temporarily_unavailable"


def test_resource_module_does_not_import_drf():
    code = (
        "import django, sys; django.setup(); import oidc_provider_ext.resource; "
        "sys.exit('rest_framework' in sys.modules)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "idp_project.settings"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode == 0, result.stderr
