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

from tests.live import UserAgent, http_session, query_of

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
        # signing key when it first signs, so a JWKS fetched before any sign-in is empty (see
        # test_jwks_is_never_empty in tests/conformance/test_oidcc_config.py).
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
    assert user_agent.asked == [SCOPE.split()], "docs/consent.md: one checkbox per requested scope"
    assert token["token_type"] == "Bearer", "OIDC Core 3.1.3.3: token_type Bearer"
    assert token["scope"].split() == SCOPE.split(), (
        "RFC 6749 5.1 / docs/consent.md: every ticked scope (and openid) was granted"
    )
    claims = rp.id_token_claims(token, nonce=rp.nonce)
    assert claims["aud"] == rp.client["client_id"], "OIDC Core 3.1.3.7 item 3"
    assert claims["tenant"] == demo["tenant"], "docs/tenants.md: the demo clients' default tenant"

    info = rp.session.get(rp.meta["userinfo_endpoint"]).json()
    assert info["sub"] == claims["sub"], "OIDC Core 5.3.2: userinfo sub must equal the ID token's sub"
    assert info["email"] == "demo@example.com", "OIDC Core 5.4: scope email"
    assert info["tenant"] == demo["tenant"], "docs/tenants.md: userinfo carries the tenant"

    refreshed = rp.session.refresh_token(rp.meta["token_endpoint"], refresh_token=token["refresh_token"])
    # OIDC Core 12.2: a refreshed ID token has no nonce and keeps sub, auth_time, … of the original.
    refreshed_claims = rp.id_token_claims(refreshed)
    for name in ("iss", "sub", "aud", "auth_time"):
        assert refreshed_claims[name] == claims[name], f"OIDC Core 12.2: {name} must not change"
    assert refreshed["refresh_token"] != token["refresh_token"], "refresh tokens rotate (docs/flows.md)"

    introspect = rp.session.introspect_token(
        rp.meta["introspection_endpoint"], token=refreshed["access_token"], token_type_hint="access_token"
    )
    if client == "confidential":
        body = introspect.json()
        assert introspect.status_code == 200 and body["active"] is True, "RFC 7662 2.2: active token"
        assert body["sub"] == claims["sub"] and body["client_id"] == rp.client["client_id"], "RFC 7662 2.2"
        assert body["tenant"] == demo["tenant"], "docs/tenants.md: introspection names the tenant"
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
    old = _raw_refresh(rp, auth_method, token["refresh_token"])
    assert old.status_code == 400 and old.json()["error"] == "invalid_grant", (
        "RFC 9700 4.14.2: a rotated-out refresh token is no longer valid"
    )

    # Both clients: the public client's http loopback post_logout_redirect_uri is registered too.
    logged_out = _end_session(user_agent, rp, refreshed["id_token"])
    assert logged_out.startswith(rp.client["redirect_uri"]), "RP-Initiated Logout 1.0 §3"
    assert query_of(logged_out)["state"] == "bye", "RP-Initiated Logout 1.0 §3: state comes back"


@pytest.mark.parametrize(
    ("client", "auth_method"), [("confidential", "client_secret_basic"), ("public", "none")]
)
def test_remembered_consent_and_refresh_token_replay(demo, client, auth_method):
    rp = AuthlibRP(demo, client, auth_method)
    user_agent = UserAgent(demo["issuer"], **demo["user"])
    rp.sign_in(user_agent)
    token = rp.sign_in(user_agent)
    assert user_agent.pages == ["consent"], (
        "OIDC Core 11 / docs/consent.md: signed in already and consent remembered, but offline_access "
        "is asked for every time"
    )
    assert user_agent.asked == [["offline_access"]], (
        "docs/consent.md: the consent page asks only for what is not remembered"
    )
    assert token["scope"].split() == SCOPE.split(), "the remembered scopes are granted again"

    refreshed = rp.session.refresh_token(rp.meta["token_endpoint"], refresh_token=token["refresh_token"])
    replay = _raw_refresh(rp, auth_method, token["refresh_token"])
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant", (
        "RFC 9700 4.14.2: a rotated-out refresh token is refused"
    )
    current = _raw_refresh(rp, auth_method, refreshed["refresh_token"])
    assert current.status_code == 400 and current.json()["error"] == "invalid_grant", (
        "RFC 9700 4.14.2: on reuse of a rotated-out refresh token the AS revokes the active one, since it "
        "cannot tell the attacker from the legitimate client (docs/security.md)"
    )
    userinfo = rp.session.get(rp.meta["userinfo_endpoint"])
    assert userinfo.status_code == 401, (
        "docs/security.md: a replay revokes the family, the current access token included"
    )


def test_tampered_id_token_is_rejected_by_authlib(demo):
    """Proves the validation above really checks the signature (OIDC Core 3.1.3.7 item 6)."""
    rp = AuthlibRP(demo, "confidential", "client_secret_basic")
    token = rp.sign_in(UserAgent(demo["issuer"], **demo["user"]))
    header, payload, signature = token["id_token"].split(".")
    flipped = ("A" if signature[10] != "A" else "B").join((signature[:10], signature[11:]))
    with pytest.raises(BadSignatureError):
        rp.id_token_claims({**token, "id_token": f"{header}.{payload}.{flipped}"}, nonce=rp.nonce)


def test_tenant_selected_by_acr_values(demo):
    rp = AuthlibRP(demo, "confidential", "client_secret_basic")
    user_agent = UserAgent(demo["issuer"], **demo["user"])
    url, _state = rp.session.create_authorization_url(
        rp.meta["authorization_endpoint"], code_verifier=generate_token(48), acr_values="tenant:acme"
    )
    login = user_agent.get(url)
    while login.is_redirect:
        login = user_agent.get(login.headers["Location"])
    assert user_agent.page_kind(login) == "login" and "Acme Corporation" in login.text, (
        "docs/tenants.md: acr_values=tenant:acme shows the login page branded with the tenant's name"
    )
    token = rp.sign_in(UserAgent(demo["issuer"], **demo["user"]), acr_values=f"tenant:{demo['tenant']}")
    claims = rp.id_token_claims(token, nonce=rp.nonce)
    assert claims["tenant"] == demo["tenant"], "docs/tenants.md: the ID token names the tenant"
    info = rp.session.get(rp.meta["userinfo_endpoint"]).json()
    assert info["tenant"] == demo["tenant"], "docs/tenants.md: userinfo names the tenant"


def test_unknown_tenant_is_an_error_page_at_the_idp(demo):
    rp = AuthlibRP(demo, "confidential", "client_secret_basic")
    user_agent = UserAgent(demo["issuer"], **demo["user"])
    url, _state = rp.session.create_authorization_url(
        rp.meta["authorization_endpoint"], code_verifier=generate_token(48), acr_values="tenant:globex"
    )
    response = user_agent.get(url)
    assert not response.is_redirect, (
        "docs/tenants.md: an unknown tenant is never sent back to the client (RFC 6749 4.1.2.1 allows "
        f"informing the user instead), got a redirect to {response.headers.get('Location')}"
    )
    assert response.status_code == 400 and user_agent.page_kind(response) == "error", (
        f"docs/tenants.md: an unknown tenant is an HTTP 400 page at the IdP, got {response.status_code}"
    )


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
    response = user_agent.get(f"{rp.meta['end_session_endpoint']}?{urlencode(params)}")
    assert response.status_code == 302, (
        "docs/logout.md: an id_token_hint of the user's own session logs out without a confirmation "
        "page and redirects (RP-Initiated Logout 1.0 §2-3); got HTTP "
        f"{response.status_code} ({user_agent.page_kind(response)} page)"
    )
    return response.headers["Location"]
