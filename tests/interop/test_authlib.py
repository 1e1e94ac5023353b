"""Authlib as the relying party: ``OAuth2Session`` with PKCE S256 for the code flow, refresh,
introspection and revocation, and Authlib's own ID-token validation (``CodeIDToken``: signature
against the JWKS, iss, aud, exp, iat, nonce, at_hash), against the example IdP on the live server.
The user's side is ``tests.live.UserAgent`` driving the hosted login and consent pages."""

from __future__ import annotations

import warnings
from urllib.parse import urlencode

import authlib.deprecate
import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session

from tests.live import UserAgent, forms_of, http_session, query_of, tenant_selection_implemented

with warnings.catch_warnings():
    # Authlib 1.x announces that authlib.jose moves to joserfc in 2.0 (and forces that warning on with
    # its own "always" filter); it is still the API Authlib's OpenID clients validate ID tokens with.
    warnings.filterwarnings("ignore", category=authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.jose import JsonWebKey, jwt
    from authlib.jose.errors import BadSignatureError
    from authlib.oidc.core import CodeIDToken

pytestmark = pytest.mark.live

SCOPE = "openid profile email offline_access"


class AuthlibRP:
    """What an Authlib-based web app does, step by step."""

    def __init__(self, demo: dict, client: str, auth_method: str):
        self.demo = demo
        self.client = demo[client]
        self.meta = (
            http_session().get(f"{demo['issuer']}/.well-known/openid-configuration", timeout=10).json()
        )
        self.session = http_session(
            OAuth2Session(
                client_id=self.client["client_id"],
                client_secret=self.client.get("client_secret"),
                scope=SCOPE,
                redirect_uri=self.client["redirect_uri"],
                code_challenge_method="S256",
                token_endpoint_auth_method=auth_method,
            )
        )
        self.session.timeout = 10

    def sign_in(self, user_agent: UserAgent, **params) -> dict:
        verifier = generate_token(48)
        self.nonce = generate_token(20)
        url, state = self.session.create_authorization_url(
            self.meta["authorization_endpoint"], code_verifier=verifier, nonce=self.nonce, **params
        )
        callback = user_agent.authorize(url)
        assert callback.startswith(self.client["redirect_uri"] + "?"), (
            f"RFC 6749 4.1.2: the response goes to the registered redirect_uri, got {callback}"
        )
        # fetch_token checks the state of the callback (RFC 6749 10.12) and sends the verifier.
        return self.session.fetch_token(
            self.meta["token_endpoint"], authorization_response=callback, state=state, code_verifier=verifier
        )

    def id_token_claims(self, token: dict, nonce: str | None = None) -> CodeIDToken:
        # Fetched when needed, as Authlib's framework clients do: the example IdP creates its first
        # signing key when it first signs, so a JWKS fetched before any sign-in can be empty.
        jwks = JsonWebKey.import_key_set(http_session().get(self.meta["jwks_uri"], timeout=10).json())
        claims = jwt.decode(
            token["id_token"],
            jwks,
            claims_cls=CodeIDToken,
            claims_options={"iss": {"essential": True, "value": self.meta["issuer"]}},
            claims_params={
                "nonce": nonce,
                "client_id": self.client["client_id"],
                "access_token": token["access_token"],
            },
        )
        claims.validate(leeway=5)  # OIDC Core 3.1.3.7: iss, aud, azp, exp, iat, nonce, at_hash
        return claims


@pytest.mark.parametrize(
    ("client", "auth_method"),
    [
        ("confidential", "client_secret_basic"),
        ("confidential", "client_secret_post"),
        ("public", "none"),
    ],
)
def test_code_flow_refresh_introspection_revocation(demo, client, auth_method):
    rp = AuthlibRP(demo, client, auth_method)
    user_agent = UserAgent(demo["issuer"], **demo["user"])
    token = rp.sign_in(user_agent)
    assert user_agent.pages == ["login", "consent"], "OIDC Core 3.1.2.3-4: sign-in, then consent"
    assert token["token_type"] == "Bearer", "OIDC Core 3.1.3.3: token_type Bearer"
    claims = rp.id_token_claims(token, nonce=rp.nonce)
    assert claims["aud"] == rp.client["client_id"], "OIDC Core 3.1.3.7 item 3"

    info = rp.session.get(rp.meta["userinfo_endpoint"]).json()
    assert info["sub"] == claims["sub"], "OIDC Core 5.3.2: userinfo sub must equal the ID token's sub"
    assert info["email"] == "demo@example.com", "OIDC Core 5.4: scope email"

    refreshed = rp.session.refresh_token(rp.meta["token_endpoint"], refresh_token=token["refresh_token"])
    # OIDC Core 12.2: a refreshed ID token has no nonce and keeps sub, auth_time, … of the original.
    refreshed_claims = rp.id_token_claims(refreshed)
    for name in ("iss", "sub", "aud", "auth_time"):
        assert refreshed_claims[name] == claims[name], f"OIDC Core 12.2: {name} must not change"
    assert refreshed["refresh_token"] != token["refresh_token"], "refresh tokens rotate (docs/flows.md)"
    old = _raw_refresh(rp, auth_method, token["refresh_token"])
    assert old.status_code == 400 and old.json()["error"] == "invalid_grant", (
        "RFC 9700 4.14.2: a rotated-out refresh token is no longer valid"
    )

    introspect = rp.session.introspect_token(
        rp.meta["introspection_endpoint"], token=refreshed["access_token"], token_type_hint="access_token"
    )
    if client == "confidential":
        body = introspect.json()
        assert introspect.status_code == 200 and body["active"] is True, "RFC 7662 2.2: active token"
        assert body["sub"] == claims["sub"] and body["client_id"] == rp.client["client_id"], "RFC 7662 2.2"
    else:
        assert introspect.status_code == 401, "RFC 7662 2.1: a public client cannot authenticate"

    revoke = rp.session.revoke_token(
        rp.meta["revocation_endpoint"], token=refreshed["refresh_token"], token_type_hint="refresh_token"
    )
    assert revoke.status_code == 200, f"RFC 7009 2.2: revocation answers 200, got {revoke.status_code}"
    again = _raw_refresh(rp, auth_method, refreshed["refresh_token"])
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant", (
        "RFC 7009 2.1: a revoked refresh token cannot be used"
    )

    if client == "confidential":  # the public client's loopback logout URI: see test_openid_client.py
        logged_out = _end_session(user_agent, rp, refreshed["id_token"])
        assert logged_out.startswith(rp.client["redirect_uri"]), "RP-Initiated Logout 1.0 §3"
        assert query_of(logged_out)["state"] == "bye", "RP-Initiated Logout 1.0 §3: state comes back"


def test_tampered_id_token_is_rejected_by_authlib(demo):
    """Proves the validation above really checks the signature (OIDC Core 3.1.3.7 item 6)."""
    rp = AuthlibRP(demo, "confidential", "client_secret_basic")
    token = rp.sign_in(UserAgent(demo["issuer"], **demo["user"]))
    header, payload, signature = token["id_token"].split(".")
    flipped = ("A" if signature[10] != "A" else "B").join((signature[:10], signature[11:]))
    with pytest.raises(BadSignatureError):
        rp.id_token_claims({**token, "id_token": f"{header}.{payload}.{flipped}"}, nonce=rp.nonce)


def test_tenant_selected_by_acr_values(demo):
    if not tenant_selection_implemented(demo):
        pytest.xfail("tenant selection not implemented yet")
    rp = AuthlibRP(demo, "confidential", "client_secret_basic")
    user_agent = UserAgent(demo["issuer"], **demo["user"])
    token = rp.sign_in(user_agent, acr_values=f"tenant:{demo['tenant']}")
    claims = rp.id_token_claims(token, nonce=rp.nonce)
    # The claim that names the tenant is the tenant work's decision; it must say "acme" somewhere.
    assert demo["tenant"] in repr(dict(claims)), "DESIGN.md: tenant-scoped tokens carry the tenant"


def _raw_refresh(rp: AuthlibRP, auth_method: str, refresh_token: str) -> requests.Response:
    """A refresh request authenticated as the session would, for the expected refusals (Authlib's
    own refresh_token() raises before the status can be asserted)."""
    data = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": rp.client["client_id"],
    }
    auth = None
    if auth_method == "client_secret_basic":
        auth = (rp.client["client_id"], rp.client["client_secret"])
        del data["client_id"]
    elif auth_method == "client_secret_post":
        data["client_secret"] = rp.client["client_secret"]
    return http_session().post(rp.meta["token_endpoint"], data=data, auth=auth, timeout=10)


def _end_session(user_agent: UserAgent, rp: AuthlibRP, id_token: str) -> str:
    params = {
        "id_token_hint": id_token,
        "post_logout_redirect_uri": rp.client["redirect_uri"],
        "state": "bye",
    }
    page = user_agent.get(f"{rp.meta['end_session_endpoint']}?{urlencode(params)}")
    assert user_agent.page_kind(page) == "logout", (
        f"RP-Initiated Logout 1.0 §2: confirmation page, got {page}"
    )
    form = next(f for f in forms_of(page.text) if "post_logout_redirect_uri" in f.fields)
    response = user_agent.post(page.url, {**form.fields, "allow": "true"})
    assert response.status_code == 302, f"RP-Initiated Logout 1.0 §3: redirect, got {response.status_code}"
    return response.headers["Location"]
