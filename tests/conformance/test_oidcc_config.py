"""The OpenID Foundation's ``oidcc-config-certification-test-plan``: the discovery document and the
keys it points to, one test per test module, against the example IdP on a live server. The tests
after the plan's modules check that what discovery advertises is what the OP does."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

from .conftest import b64url_decode

pytestmark = pytest.mark.live

AUTH_METHODS = {
    "client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt", "none",
    "tls_client_auth", "self_signed_tls_client_auth",
}  # fmt: skip
PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def test_oidcc_discovery_endpoint_verification(op):
    response = op.http.get(f"{op.issuer}/.well-known/openid-configuration", timeout=10)
    assert response.headers["Content-Type"].startswith("application/json"), (
        "OIDC Discovery 4.2: the configuration is application/json"
    )
    meta = response.json()
    assert meta["issuer"] == op.issuer, "OIDC Discovery 4.3: issuer MUST equal the URL the document came from"
    issuer = urlsplit(op.issuer)
    assert not issuer.query and not issuer.fragment, "OIDC Discovery 3: issuer has no query or fragment"

    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        assert name in meta, f"OIDC Discovery 3: {name} is REQUIRED (token_endpoint unless implicit-only)"
    assert "userinfo_endpoint" in meta, "OIDC Discovery 3: userinfo_endpoint is RECOMMENDED"
    for name, value in meta.items():
        if name.endswith(("_endpoint", "_uri")):
            # Discovery 3 requires https; the live server is plain HTTP, so the test checks that every
            # URL is built from the issuer (scheme and host) and never from the request.
            assert urlsplit(value)[:2] == issuer[:2], f"OIDC Discovery 3: {name} must be served by the issuer"

    assert "code" in meta["response_types_supported"], "OIDC Discovery 3: response_types_supported has code"
    assert (
        set(meta["subject_types_supported"]) <= {"public", "pairwise"} and meta["subject_types_supported"]
    ), "OIDC Discovery 3: subject_types_supported is REQUIRED, public and/or pairwise"
    assert "RS256" in meta["id_token_signing_alg_values_supported"], (
        "OIDC Discovery 3: id_token_signing_alg_values_supported MUST include RS256"
    )
    assert "openid" in meta.get("scopes_supported", ["openid"]), (
        "OIDC Discovery 3: scopes_supported has openid"
    )
    assert "authorization_code" in meta.get("grant_types_supported", ["authorization_code"]), (
        "OIDC Discovery 3: grant_types_supported includes the code flow this OP serves"
    )
    assert "query" in meta.get("response_modes_supported", ["query"]), (
        "OAuth 2.0 Multiple Response Types 2.1: query is the code flow's default response mode"
    )
    methods = set(meta.get("token_endpoint_auth_methods_supported", ["client_secret_basic"]))
    assert methods <= AUTH_METHODS, f"OIDC Discovery 3: unknown auth methods {methods - AUTH_METHODS}"
    assert "sub" in meta.get("claims_supported", ["sub"]), "OIDC Discovery 3: claims_supported lists sub"
    for flag in (
        "claims_parameter_supported",
        "request_parameter_supported",
        "request_uri_parameter_supported",
        "require_request_uri_registration",
    ):
        if flag in meta:
            assert isinstance(meta[flag], bool), f"OIDC Discovery 3: {flag} is a boolean"
    if "none" in meta["id_token_signing_alg_values_supported"]:  # pragma: no cover - not offered
        assert meta["response_types_supported"] == ["code"], "OIDC Discovery 3: none only for code flow"

    jwks_response = op.http.get(meta["jwks_uri"], timeout=10)
    assert jwks_response.status_code == 200, "OIDC Discovery 3: jwks_uri serves the JWK Set"
    keys = jwks_response.json()["keys"]
    assert isinstance(keys, list), "RFC 7517 5: a JWK Set has a keys array"
    kids = [key.get("kid") for key in keys]
    assert len(keys) <= 1 or (None not in kids and len(set(kids)) == len(kids)), (
        "OIDC Core 10.1: with several keys each needs a distinct kid"
    )
    for key in keys:
        assert not PRIVATE_JWK_MEMBERS & set(key), "OIDC Core 10: the JWKS publishes no private key"
        assert key.get("use", "sig") == "sig", "OIDC Discovery 3: keys for signing are use=sig"
        if key["kty"] == "RSA":
            assert len(b64url_decode(key["n"])) * 8 >= 2048, "RFC 7518 3.3: RSA keys are at least 2048 bits"


def test_oidcc_discovery_issuer_not_matching_config(op, live_server):
    """The suite fails an OP whose discovery ``issuer`` differs from the issuer it was configured with.
    Here: the issuer never follows the Host the document is fetched through, so a client that used
    another name for the server notices the mismatch instead of trusting a forged issuer."""
    port = urlsplit(live_server.url).port
    other = op.http.get(
        f"http://127.0.0.1:{port}/.well-known/openid-configuration",
        headers={"Host": f"localhost:{port}"},
        timeout=10,
    )
    meta = other.json()
    assert meta["issuer"] == op.issuer, "OIDC Discovery 4.3: issuer is configured, not taken from Host"
    assert meta["token_endpoint"].startswith(op.issuer + "/"), (
        "OIDC Discovery 3: endpoints are those of the configured issuer, not of the Host header"
    )
    assert not op.issuer.endswith("/"), "OIDC Discovery 4.1: the issuer is used without a trailing slash"


def test_oidcc_server_rotate_keys(op):
    """Key rotation as OIDC Core 10.1.1 describes it: the new key is published before it signs, tokens
    signed with the old key still verify after the switch, and new tokens carry the new kid."""
    from django.utils import timezone

    from oidc_provider_ext import keys
    from oidc_provider_ext.models import SigningKey

    _result, before, _claims = op.code_flow()
    old_kid = op.verify_signature(before["id_token"])[0]["kid"]
    announced = keys.create_key("RS256", state=SigningKey.State.NEXT)
    assert announced.kid in {key["kid"] for key in op.jwks()["keys"]}, (
        "OIDC Core 10.1.1: a new signing key is published in the JWKS before it is used"
    )
    for key in SigningKey.objects.filter(state=SigningKey.State.ACTIVE):
        key.state, key.retired = SigningKey.State.RETIRED, timezone.now()
        key.save()
    announced.state, announced.activated = SigningKey.State.ACTIVE, timezone.now()
    announced.save()

    _result, after, _claims = op.code_flow()
    assert op.verify_signature(after["id_token"])[0]["kid"] == announced.kid, (
        "OIDC Core 10.1.1: after rotation new tokens are signed with the new key"
    )
    assert op.verify_signature(before["id_token"])[0]["kid"] == old_kid, (
        "OIDC Core 10.1.1: the retired key stays published while its tokens are valid"
    )


# --- not modules of the plan ---------------------------------------------------------------------------


def test_discovery_advertises_what_the_op_does(op):
    """Each optional capability the document claims, exercised: OIDC Discovery 3 metadata is a
    promise relying parties act on."""
    meta = op.meta
    user_agent = op.user_agent()

    assert meta.get("authorization_response_iss_parameter_supported") is True, (
        "RFC 9207 3: the OP advertises that it sends iss"
    )
    # op.expect_error / op.expect_code assert iss == issuer in both kinds of response (RFC 9207 2).
    op.expect_error(op.authorize(user_agent, prompt="none"), "login_required")

    assert meta.get("claims_parameter_supported") is True, "OIDC Discovery 3: claims_parameter_supported"
    claims_request = json.dumps({"id_token": {"email": None}})
    _result, _tokens, claims = op.code_flow(user_agent, scope="openid", claims=claims_request)
    assert claims.get("email") == "demo@example.com", (
        "OIDC Core 5.5: a claim requested in the claims parameter's id_token member is in the ID token"
    )

    assert set(meta.get("prompt_values_supported", [])) == {"none", "login", "consent", "select_account"}, (
        "Initiating User Registration via OpenID Connect 1.0 §4: prompt_values_supported lists the "
        "prompt values the OP supports (OIDC Core 3.1.2.1)"
    )
    result = op.authorize(user_agent, prompt="select_account")
    op.expect_code(result)
    assert result.pages == ["login"], "OIDC Core 3.1.2.1 select_account: the OP lets the user (re)choose"
    result = op.authorize(user_agent, prompt="consent")
    op.expect_code(result)
    assert result.pages == ["consent"] and user_agent.asked == [["openid"]], (
        "OIDC Core 3.1.2.1 prompt=consent: the OP asks for consent although it is remembered"
    )
    # prompt=login and prompt=none with a session: test_oidcc_prompt_login, test_oidcc_prompt_none_*.

    acr_values = meta.get("acr_values_supported", [])
    assert claims["acr"] in acr_values, "OIDC Discovery 3: the acr the OP issues is one it advertises"
    assert not [value for value in acr_values if value.startswith("tenant:")], (
        "docs/tenants.md: tenant: selectors are not authentication context classes"
    )

    assert meta.get("backchannel_logout_supported") is True, "Back-Channel Logout 1.0 §2.1"
    assert meta.get("backchannel_logout_session_supported") is True, (
        "Back-Channel Logout 1.0 §2.1: logout tokens carry sid (test_backchannel_logout_token checks one)"
    )


def test_jwks_is_never_empty(op):
    published = op.jwks()["keys"]
    assert published, (
        "OIDC Discovery 1.0 §3: the JWK Set holds the OP's signing key(s) before any token is signed"
    )
    _result, tokens, _claims = op.code_flow()
    kid = op.verify_signature(tokens["id_token"])[0]["kid"]
    assert kid in {key.get("kid") for key in published}, (
        "OIDC Core 10.1.1: the key that signs was published before it signed"
    )
