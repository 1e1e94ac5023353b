"""The OpenID Foundation's ``oidcc-basic-certification-test-plan`` (static client, code flow), one
test per test module, named after it, against the example IdP on a live server.

Each test does what the suite's module does as the relying party and checks what its conditions
check. Where a module exercises something the provider does not offer (request objects), the test
asserts the refusal the module accepts. Modules that need a human in the suite (a screenshot of
the login page) assert here that the page was really shown.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from urllib.parse import urlencode

import pytest

from idp_project.management.commands.oidc_demo import DEMO_PROFILE

from .conftest import AuthorizationResult, b64url, b64url_decode, pkce_pair

pytestmark = pytest.mark.live

PROFILE_CLAIMS = {
    "name", "family_name", "given_name", "middle_name", "nickname", "preferred_username", "profile",
    "picture", "website", "gender", "birthdate", "zoneinfo", "locale", "updated_at",
}  # fmt: skip
# OIDC Core 2 and 3.1.3.6, RFC 7519 4.1.7 (jti): the ID token's own claims, whatever the scope.
PROTOCOL_CLAIMS = {
    "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp", "sid", "at_hash",
    "jti",
}  # fmt: skip
# This provider's extension claim (docs/tenants.md): every sign-in is at a tenant, and ID tokens,
# access tokens, userinfo and introspection say which one. OIDC Core 5.1.2 allows additional claims.
EXTENSION_CLAIMS = {"tenant"}
SCOPE_CLAIMS = {
    "profile": PROFILE_CLAIMS,
    "email": {"email", "email_verified"},
    "address": {"address"},
    "phone": {"phone_number", "phone_number_verified"},
}


def released(op, scope: str) -> tuple[dict, dict]:
    """(ID token claims, userinfo) for a request with ``scope``."""
    _result, tokens, claims = op.code_flow(scope=scope)
    info = op.check_userinfo(op.userinfo(tokens["access_token"]), claims["sub"])
    return claims, info


def assert_scope_claims(op, released: tuple[dict, dict], scopes: set[str], expected: set[str]) -> None:
    """OIDC Core 5.4: the scopes' claims (those the user has) are released, and no other user
    claims: besides them only ``sub``, the ID token's protocol claims and the provider's ``tenant``
    extension claim (docs/tenants.md), which must name the demo client's tenant."""
    claims, info = released
    scope_claims = set().union(*(SCOPE_CLAIMS.get(scope, set()) for scope in scopes))
    for where, released_claims, allowed in (
        ("userinfo", info, {"sub"} | EXTENSION_CLAIMS | scope_claims),
        ("the ID token", claims, PROTOCOL_CLAIMS | EXTENSION_CLAIMS | scope_claims),
    ):
        assert set(released_claims) <= allowed, (
            f"OIDC Core 5.4: {where} releases only the requested scopes' claims (besides sub, the "
            f"protocol claims and the provider's tenant extension claim), also got "
            f"{set(released_claims) - allowed}"
        )
        assert released_claims.get("tenant") == op.demo["tenant"], (
            f"docs/tenants.md: {where} carries the tenant of the sign-in (the demo clients' default)"
        )
    assert expected <= set(info), (
        f"OIDC Core 5.4: userinfo releases the scope's claims the user has, missing {expected - set(info)}"
    )


# --- the happy paths ------------------------------------------------------------------------------


def test_oidcc_server(op):
    result, tokens, claims = op.code_flow(scope="openid")
    assert result.pages == ["login", "consent"], "OIDC Core 3.1.2.3-4: sign-in and consent were shown"
    assert claims["auth_time"] <= time.time(), "OIDC Core 2: auth_time"
    op.check_userinfo(op.userinfo(tokens["access_token"]), claims["sub"])


def test_oidcc_server_client_secret_post(op):
    _result, tokens, claims = op.code_flow(method="post")
    op.check_userinfo(op.userinfo(tokens["access_token"]), claims["sub"])


def test_oidcc_response_type_missing(op):
    user_agent = op.user_agent()
    user_agent.login()
    url, query = op.authorization_url(response_type=None)
    response = user_agent.get(url)
    # OIDC Core 3.1.2.6 / RFC 6749 4.1.2.1: invalid_request (or unsupported_response_type) to the
    # client, or an error page at the OP; never a code.
    if response.is_redirect:
        result = AuthorizationResult(url, query, response.headers["Location"])
        op.expect_error(result, "invalid_request", "unsupported_response_type")
    else:
        assert response.status_code == 400, "RFC 6749 4.1.2.1: an error page for a malformed request"


def test_oidcc_idtoken_signature(op):
    _result, tokens, _claims = op.code_flow()
    header, payload, signature = tokens["id_token"].split(".")
    claims = json.loads(b64url_decode(payload))
    claims["sub"] = "someone-else"
    forged = f"{header}.{b64url(json.dumps(claims).encode())}.{signature}"
    with pytest.raises(AssertionError, match="3.1.3.7 item 6"):
        op.verify_signature(forged)


def test_oidcc_idtoken_unsigned(op):
    # The suite asks for alg "none" through client registration; a static client cannot, and an OP
    # that never offers unsigned ID tokens passes by not listing it (OIDC Core 2, Discovery 3).
    assert "none" not in op.meta["id_token_signing_alg_values_supported"], (
        "OIDC Core 2: ID tokens MUST be signed unless the client asked for none; this OP never offers it"
    )
    _result, tokens, _claims = op.code_flow()
    header = json.loads(b64url_decode(tokens["id_token"].split(".")[0]))
    assert header["alg"] == "RS256", "OIDC Core 3.1.3.7 item 7: RS256 by default"


def _userinfo(op, how: str) -> None:
    _result, tokens, claims = op.code_flow(scope="openid profile email")
    info = op.check_userinfo(op.userinfo(tokens["access_token"], how), claims["sub"])
    assert info["email"] == "demo@example.com", "OIDC Core 5.4: scope email releases email"


def test_oidcc_userinfo_get(op):
    _userinfo(op, "get")  # OIDC Core 5.3.1: GET with Authorization: Bearer


def test_oidcc_userinfo_post_header(op):
    _userinfo(op, "post-header")  # OIDC Core 5.3.1: POST with Authorization: Bearer


def test_oidcc_userinfo_post_body(op):
    _userinfo(op, "post-body")  # RFC 6750 2.2: access_token in a form-encoded body


def test_oidcc_ensure_request_without_nonce_succeeds_for_code_flow(op):
    # OIDC Core 3.1.2.1: nonce is OPTIONAL in the code flow; check_id_token asserts its absence.
    op.code_flow(nonce=None)


# --- scopes -----------------------------------------------------------------------------------------


def test_oidcc_scope_profile(op):
    assert_scope_claims(
        op,
        released(op, "openid profile"),
        {"profile"},
        {"name", "given_name", "family_name", "preferred_username"},
    )


def test_oidcc_scope_email(op):
    assert_scope_claims(op, released(op, "openid email"), {"email"}, {"email", "email_verified"})


# The example project's own adapter (idp_project.adapter.ExampleAdapter) and the demo user's profile
# that oidc_demo fills: what `make run` serves, no test adapter.


def test_oidcc_scope_address(op):
    _claims, info = result = released(op, "openid address")
    assert_scope_claims(op, result, {"address"}, {"address"})
    assert isinstance(info["address"], dict), "OIDC Core 5.1.1: address is a JSON object"
    assert info["address"]["locality"] == DEMO_PROFILE["locality"], "the demo user's address"
    assert info["address"]["formatted"].startswith(DEMO_PROFILE["street_address"]), (
        "OIDC Core 5.1.1 formatted"
    )


def test_oidcc_scope_phone(op):
    _claims, info = result = released(op, "openid phone")
    assert_scope_claims(op, result, {"phone"}, {"phone_number", "phone_number_verified"})
    assert isinstance(info["phone_number_verified"], bool), "OIDC Core 5.1: phone_number_verified is boolean"
    assert info["phone_number"] == DEMO_PROFILE["phone_number"], "the demo user's phone number"


def test_oidcc_scope_all(op):
    assert_scope_claims(
        op,
        released(op, "openid profile email address phone"),
        {"profile", "email", "address", "phone"},
        {"name", "email", "email_verified", "address", "phone_number", "phone_number_verified"},
    )
    # What the plan's module asks for is what discovery offers: every advertised scope.
    claim_scopes = {scope for scope in op.meta["scopes_supported"] if scope in SCOPE_CLAIMS}
    assert claim_scopes == {"profile", "email", "address", "phone"}, (
        "OIDC Discovery 3: the example advertises exactly the scopes whose claims it releases"
    )


def test_oidcc_ensure_other_scope_order_succeeds(op):
    # RFC 6749 3.3: scope is a space-delimited, order-independent list.
    _claims, info = released(op, "email openid")
    assert "email" in info, "OIDC Core 5.4: scope email releases email whatever the order"


def test_unticked_scope_is_not_granted(op):
    """Not a module of the plan: the consent page lets the user untick a scope (docs/consent.md)."""
    result = op.authorize(op.user_agent(), scope="openid profile email", uncheck={"email"})
    tokens = op.exchange(op.expect_code(result))
    assert tokens.get("scope", "").split() == ["openid", "profile"], (
        "RFC 6749 5.1: when the granted scope differs from the requested one the response MUST say so; "
        "the user unticked email"
    )
    claims = op.check_id_token(tokens["id_token"], nonce=result.params["nonce"])
    info = op.check_userinfo(op.userinfo(tokens["access_token"]), claims["sub"])
    assert "name" in info and "email" not in info and "email" not in claims, (
        "OIDC Core 5.4: claims of a scope the user did not grant are not released"
    )


# --- request parameters ------------------------------------------------------------------------------


def _display(op, display: str) -> None:
    # OIDC Core 3.1.2.1 display: how the OP shows its pages; any defined value is accepted.
    result, _tokens, _claims = op.code_flow(display=display)
    assert "login" in result.pages, "OIDC Core 3.1.2.1: the sign-in page is shown"


def test_oidcc_display_page(op):
    _display(op, "page")


def test_oidcc_display_popup(op):
    _display(op, "popup")


def test_oidcc_prompt_login(op):
    user_agent = op.user_agent()
    _result, _tokens, first = op.code_flow(user_agent)
    time.sleep(1.1)  # auth_time has a resolution of one second
    result, _tokens, second = op.code_flow(user_agent, prompt="login")
    assert "login" in result.pages, "OIDC Core 3.1.2.1 prompt=login: the OP MUST prompt for reauthentication"
    assert second["auth_time"] > first["auth_time"], (
        "OIDC Core 2: auth_time is the time of the new authentication after prompt=login"
    )
    assert second["sub"] == first["sub"], "OIDC Core 2: the same user has the same sub"


def test_oidcc_prompt_none_not_logged_in(op):
    result = op.authorize(op.user_agent(), prompt="none")
    assert result.pages == [], "OIDC Core 3.1.2.1 prompt=none: the OP MUST NOT display any page"
    op.expect_error(result, "login_required", "interaction_required", "consent_required")


def test_oidcc_prompt_none_logged_in(op):
    user_agent = op.user_agent()
    _result, _tokens, first = op.code_flow(user_agent)
    result, _tokens, second = op.code_flow(user_agent, prompt="none")
    assert result.pages == [], "OIDC Core 3.1.2.1 prompt=none: no page is displayed"
    assert second["sub"] == first["sub"], "OIDC Core 3.1.2.1: the signed-in user is the one returned"


def test_oidcc_max_age_1(op):
    user_agent = op.user_agent()
    _result, _tokens, first = op.code_flow(user_agent)
    time.sleep(1.5)  # older than max_age=1 whatever the sub-second part of auth_time
    result, _tokens, second = op.code_flow(user_agent, max_age="1")
    assert "login" in result.pages, "OIDC Core 3.1.2.1 max_age: an older authentication MUST be redone"
    assert second["auth_time"] > first["auth_time"], "OIDC Core 2: auth_time of the new authentication"


def test_oidcc_max_age_10000(op):
    user_agent = op.user_agent()
    _result, _tokens, first = op.code_flow(user_agent)
    result, _tokens, second = op.code_flow(user_agent, max_age="10000")
    assert "login" not in result.pages, "OIDC Core 3.1.2.1 max_age: a recent authentication is reused"
    assert second["auth_time"] == first["auth_time"], (
        "OIDC Core 2 / 3.1.2.1: auth_time is that of the reused authentication"
    )


def test_oidcc_ensure_request_with_unknown_parameter_succeeds(op):
    # RFC 6749 3.1: the authorization server MUST ignore unrecognized request parameters.
    op.code_flow(extra="foobar", **{"unknown_parameter-with.odd~chars": "1"})


def test_oidcc_id_token_hint(op):
    user_agent = op.user_agent()
    _result, tokens, first = op.code_flow(user_agent)
    result, _tokens, second = op.code_flow(user_agent, prompt="none", id_token_hint=tokens["id_token"])
    assert result.pages == [], "OIDC Core 3.1.2.1: prompt=none with a matching id_token_hint shows nothing"
    assert second["sub"] == first["sub"], "OIDC Core 3.1.2.1 id_token_hint: the hinted user is returned"


def test_oidcc_login_hint(op):
    user_agent = op.user_agent()
    url, _query = op.authorization_url(login_hint=op.username)
    response = user_agent.get(url)
    while response.is_redirect:
        response = user_agent.get(response.headers["Location"])
    assert user_agent.page_kind(response) == "login", "OIDC Core 3.1.2.1: the login page is shown"
    assert f'value="{op.username}"' in response.text, (
        "OIDC Core 3.1.2.1 login_hint: the OP uses the hint to pre-fill the identifier"
    )
    op.code_flow(login_hint=op.username)


def test_oidcc_ui_locales(op):
    # OIDC Core 3.1.2.1 ui_locales: a preference; a language the OP lacks is not an error.
    op.code_flow(ui_locales="se")


def test_oidcc_claims_locales(op):
    # OIDC Core 5.2 claims_locales: a preference; a language the OP lacks is not an error.
    op.code_flow(claims_locales="se", scope="openid profile")


def test_oidcc_ensure_request_with_acr_values_succeeds(op):
    # OIDC Core 3.1.2.1 acr_values: voluntary; values the OP cannot satisfy are not an error.
    _result, _tokens, claims = op.code_flow(acr_values="1 2")
    assert "acr" in claims, "OIDC Core 5.5.1.1: acr_values requests the acr claim as voluntary"


# --- codes -------------------------------------------------------------------------------------------


def _redeem_twice(op, shift_seconds: int = 0) -> None:
    result = op.authorize(op.user_agent())
    code = op.expect_code(result)
    tokens = op.exchange(code)
    if shift_seconds:
        from oidc_provider_ext.models import AuthorizationGrant
        from oidc_provider_ext.validator import checksum

        # The server's view of "30 seconds later": its decision depends only on the stored times.
        grant = AuthorizationGrant.objects.get(code_checksum=checksum(code))
        AuthorizationGrant.objects.filter(pk=grant.pk).update(
            created=grant.created - timedelta(seconds=shift_seconds),
            redeemed=grant.redeemed - timedelta(seconds=shift_seconds),
            expires=grant.expires - timedelta(seconds=shift_seconds),
        )
    again = op.token_request(
        {"grant_type": "authorization_code", "code": code, "redirect_uri": op.client.redirect_uri}
    )
    assert again.status_code == 400 and again.json().get("error") == "invalid_grant", (
        f"RFC 6749 4.1.2 / 5.2: a code is single use, a second redemption is invalid_grant; got "
        f"{again.status_code} {again.text[:200]}"
    )
    response = op.userinfo(tokens["access_token"])
    assert response.status_code == 401, (
        "RFC 6749 4.1.2: the tokens issued from a reused code SHOULD be revoked (docs/flows.md: they are)"
    )


def test_oidcc_codereuse(op):
    _redeem_twice(op)


def test_oidcc_codereuse_30seconds(op):
    _redeem_twice(op, shift_seconds=30)


def test_oidcc_ensure_registered_redirect_uri(op):
    user_agent = op.user_agent()
    url, _query = op.authorization_url(redirect_uri=op.client.redirect_uri + "/not-registered")
    response = user_agent.get(url)
    assert not response.is_redirect, (
        "RFC 6749 3.1.2.4 / 4.1.2.1: with an unregistered redirect_uri the OP MUST NOT redirect"
    )
    assert response.status_code == 400, "RFC 6749 4.1.2.1: the OP informs the user of the error"
    assert user_agent.page_kind(response) == "error", "the user sees an error page"


def test_oidcc_ensure_post_request_succeeds(op):
    """OIDC Core 3.1.2.1: "Authorization Servers MUST support the use of the HTTP GET and POST methods
    at the Authorization Endpoint"; with POST the parameters are form-serialized (3.1.2.1, 13.2). The
    suite sends the request from an auto-submitted form on its own site, so no IdP cookie is sent."""
    user_agent = op.user_agent()
    query = op.request_params()
    response = user_agent.post(op.meta["authorization_endpoint"], query)
    assert response.status_code in (200, 302), (
        "OIDC Core 3.1.2.1: an authorization request sent by POST must be processed like a GET one; "
        f"POST {op.meta['authorization_endpoint']} answered HTTP {response.status_code}: "
        f"{' '.join(response.text.split())[:200]}"
    )
    location = user_agent.follow(response)
    result = AuthorizationResult(op.meta["authorization_endpoint"], query, location, list(user_agent.pages))
    assert "login" in result.pages, "OIDC Core 3.1.2.3: the user signs in"
    tokens = op.exchange(op.expect_code(result))
    op.check_id_token(tokens["id_token"], nonce=query["nonce"], access_token=tokens["access_token"])


# --- request objects ----------------------------------------------------------------------------------


def _unsigned_request_object(claims: dict) -> str:
    header = b64url(json.dumps({"alg": "none"}).encode())
    return f"{header}.{b64url(json.dumps(claims).encode())}."


def test_oidcc_unsigned_request_object_supported_correctly_or_rejected_as_unsupported(op):
    assert op.meta.get("request_parameter_supported") is False, (
        "OIDC Discovery 3: request_parameter_supported says whether request objects are supported"
    )
    params = op.request_params()
    request_object = _unsigned_request_object({**params, "iss": op.client.client_id, "aud": op.issuer})
    result = op.authorize(op.user_agent(), **{**params, "request": request_object})
    # OIDC Core 6.1 / 3.1.2.6: an OP that does not support request objects answers request_not_supported.
    op.expect_error(result, "request_not_supported")


def test_oidcc_request_uri_unsigned_supported_correctly_or_rejected_as_unsupported(op):
    assert op.meta.get("request_uri_parameter_supported") is False, (
        "OIDC Discovery 3: request_uri_parameter_supported defaults to true, so an OP without it says false"
    )
    result = op.authorize(op.user_agent(), request_uri="https://rp.example.com/request.jwt")
    op.expect_error(result, "request_uri_not_supported")


def test_oidcc_ensure_request_object_with_redirect_uri(op):
    params = op.request_params()
    request_object = _unsigned_request_object({**params, "iss": op.client.client_id, "aud": op.issuer})
    query = {key: params[key] for key in ("response_type", "client_id", "scope")}
    query["request"] = request_object
    user_agent = op.user_agent()
    response = user_agent.get(f"{op.meta['authorization_endpoint']}?{urlencode(query)}")
    # Request objects are not supported, so the redirect_uri inside one is unknown to the OP: it must
    # not redirect to it, and no code may be issued (OIDC Core 6.1, RFC 6749 4.1.2.1).
    if response.is_redirect:
        location = response.headers["Location"]
        assert location.startswith(op.client.redirect_uri + "?") and "code=" not in location
        assert "request_not_supported" in location, "OIDC Core 6.1: request_not_supported"
    else:
        assert response.status_code == 400, "RFC 6749 4.1.2.1: an error page when there is no redirect_uri"


# --- claims, refresh, PKCE ---------------------------------------------------------------------------------


def test_oidcc_claims_essential(op):
    claims_request = json.dumps({"userinfo": {"name": {"essential": True}}})
    _result, tokens, claims = op.code_flow(scope="openid", claims=claims_request)
    info = op.check_userinfo(op.userinfo(tokens["access_token"]), claims["sub"])
    assert info.get("name") == "Dana Demo", "OIDC Core 5.5: an essential claim the OP has is returned"


def test_oidcc_refresh_token(op):
    _result, tokens, claims = op.code_flow(scope="openid offline_access", prompt="consent")
    assert tokens.get("refresh_token"), "OIDC Core 11: offline_access was granted, so a refresh token"
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}

    stolen = op.token_request(refresh, op.client2)
    assert stolen.status_code == 400 and stolen.json().get("error") == "invalid_grant", (
        "RFC 6749 6 / 10.4: a refresh token is bound to its client; another client gets invalid_grant"
    )

    refreshed = op.check_token_response(op.token_request(refresh))
    new = op.check_id_token(refreshed["id_token"], access_token=refreshed["access_token"])
    for name in ("iss", "sub", "aud", "azp", "auth_time"):
        assert new.get(name) == claims.get(name), f"OIDC Core 12.2: a refreshed ID token keeps {name}"
    assert new["iat"] >= claims["iat"], "OIDC Core 12.2: iat is the time of the new token"
    op.check_userinfo(op.userinfo(refreshed["access_token"]), claims["sub"])


def test_oidcc_ensure_request_with_valid_pkce_succeeds(op):
    verifier, challenge = pkce_pair()
    result = op.authorize(op.user_agent(), code_challenge=challenge, code_challenge_method="S256")
    tokens = op.exchange(op.expect_code(result), verifier=verifier)
    op.check_id_token(tokens["id_token"], nonce=result.params["nonce"], access_token=tokens["access_token"])


def test_oidcc_ensure_pkce_required(op):
    """Not a module of the oidcc plans (the suite sends PKCE only in the module above): a public client
    without a code_challenge is refused (RFC 9700 2.1.1, RFC 7636 4.4.1), and so is ``plain``."""
    user_agent = op.user_agent()
    user_agent.login()
    result = op.authorize(user_agent, op.public)
    op.expect_error(result, "invalid_request", client=op.public)
    _verifier, challenge = pkce_pair()
    result = op.authorize(user_agent, op.public, code_challenge=challenge, code_challenge_method="plain")
    op.expect_error(result, "invalid_request", client=op.public)
    # And a challenge once sent binds the code: a wrong verifier is invalid_grant (RFC 7636 4.6).
    result = op.authorize(user_agent, op.public, code_challenge=challenge, code_challenge_method="S256")
    code = op.expect_code(result, op.public)
    wrong = op.token_request(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": op.public.redirect_uri,
            "code_verifier": pkce_pair()[0],
        },
        op.public,
    )
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant", "RFC 7636 4.6"
