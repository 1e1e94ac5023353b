"""openid-client (Node, v6) as the relying party: tests/interop/rp.mjs runs the whole life of a
sign-in against the example IdP on the live server, and these tests assert on what it saw.

openid-client is strict: it validates discovery (issuer equality), state, the ID token (signature
against the JWKS, iss, aud, exp, iat, nonce), the userinfo ``sub`` and content types, and refuses to
continue on any deviation, so a passing run is a real interoperability proof.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.live import INTEROP_DIR, node_binary, query_of

pytestmark = pytest.mark.live

NODE_TIMEOUT = 60


def run_rp(demo: dict, client: str, auth_method: str, **extra) -> dict:
    node = node_binary()
    config = {
        "issuer": demo["issuer"],
        "client_id": demo[client]["client_id"],
        "client_secret": demo[client].get("client_secret", ""),
        "auth_method": auth_method,
        "redirect_uri": demo[client]["redirect_uri"],
        "username": demo["user"]["username"],
        "password": demo["user"]["password"],
        **extra,
    }
    completed = subprocess.run(
        [node, str(INTEROP_DIR / "rp.mjs")],
        env={**os.environ, "RP_CONFIG": json.dumps(config)},
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        cwd=INTEROP_DIR,
    )
    try:
        result = json.loads(completed.stdout)
    except ValueError:
        pytest.fail(f"rp.mjs printed no JSON (exit {completed.returncode}):\n{completed.stderr[-3000:]}")
    assert "error" not in result, (
        f"openid-client failed at step {result['error']['step']!r}: {json.dumps(result['error'], indent=1)}\n"
        f"stderr: {completed.stderr[-2000:]}"
    )
    return result


def assert_full_life(result: dict, demo: dict, client: str) -> None:
    issuer = demo["issuer"]
    client_id = demo[client]["client_id"]
    assert result["discovery"]["issuer"] == issuer, "OIDC Discovery 4.3: issuer must equal the URL used"
    assert result["discovery"]["code_challenge_methods_supported"] == ["S256"], "RFC 8414 2 / RFC 7636"
    assert [page["page"] for page in result["pages"]] == ["login", "consent"], (
        "OIDC Core 3.1.2.3/3.1.2.4: a new user signs in on the hosted page, then consents"
    )
    consent = result["pages"][1]
    assert consent["scopes"] == ["openid", "profile", "email", "offline_access"], (
        "docs/consent.md: the consent page has one checkbox per requested scope"
    )
    assert consent["posted_scopes"] == ["profile", "email", "offline_access"], (
        "HTML form submission: the ticked scopes are sent, openid (ticked and disabled) is not"
    )
    callback = query_of(result["callback"])
    assert result["callback"].startswith(demo[client]["redirect_uri"] + "?"), (
        "RFC 6749 4.1.2: the response goes to the registered redirect_uri"
    )
    assert "code" in callback and "state" in callback, "OIDC Core 3.1.2.5: code and state in the query"

    claims = result["id_token_claims"]
    assert claims["iss"] == issuer, "OIDC Core 3.1.3.7 item 2: iss must equal the issuer"
    assert claims["aud"] == client_id, "OIDC Core 3.1.3.7 item 3: aud must contain the client_id"
    assert claims["azp"] == client_id, "OIDC Core 2: azp is the party the token was issued to"
    assert claims["exp"] > time.time() >= claims["iat"] - 5, "OIDC Core 3.1.3.7 items 9-10: exp/iat"
    assert isinstance(claims["auth_time"], int), "OIDC Core 2: auth_time is a number of seconds"
    assert claims["at_hash"], "OIDC Core 3.1.3.6: at_hash lets the RP bind the access token"
    assert claims["email"] == "demo@example.com", "OIDC Core 5.4: scope email releases email"
    assert claims["tenant"] == demo["tenant"], (
        "docs/tenants.md: the demo clients sign in to their default tenant, named in the ID token"
    )

    tokens = result["tokens"]
    assert tokens["token_type"].lower() == "bearer", "RFC 6749 5.1 / OIDC Core 3.1.3.3: token_type Bearer"
    assert tokens["expires_in"] == 3600, "RFC 6749 5.1: expires_in (docs/flows.md: 3600)"
    assert tokens["has_refresh_token"], "OIDC Core 11: offline_access was granted, so a refresh token"

    info = result["userinfo"]
    assert info["sub"] == claims["sub"], "OIDC Core 5.3.2: userinfo sub must equal the ID token's sub"
    assert info["name"] == "Dana Demo" and info["email"] == "demo@example.com", "OIDC Core 5.4"
    assert info["tenant"] == demo["tenant"], "docs/tenants.md: userinfo carries the tenant"

    refreshed = result["refreshed_id_token_claims"]
    for name in ("iss", "sub", "aud", "auth_time", "azp"):
        assert refreshed[name] == claims[name], f"OIDC Core 12.2: a refreshed ID token keeps {name}"
    assert "nonce" not in refreshed, "OIDC Core 12.2: a refreshed ID token SHOULD NOT carry nonce"
    assert result["refresh_rotated"], "RFC 9700 4.14.2: refresh tokens are rotated (docs: on every use)"

    revoked = result["revoked"]
    assert not revoked["userinfo"]["ok"] and revoked["userinfo"]["error"]["status"] == 401, (
        "RFC 7009 2.2 / RFC 6750 3.1: a revoked access token is refused at userinfo with 401"
    )
    assert not revoked["refresh"]["ok"] and revoked["refresh"]["error"]["error"] == "invalid_grant", (
        "RFC 7009 2.1: revoking the access token revoked its refresh token (docs/flows.md)"
    )


def assert_logged_out(result: dict, demo: dict, client: str) -> None:
    logout = result["end_session"]
    assert not logout["confirmation_shown"], (
        "docs/logout.md: an id_token_hint of the signed-in user's own session logs out without a "
        "confirmation page (RP-Initiated Logout 1.0 §2 makes asking a SHOULD, not a MUST, then); got "
        f"HTTP {logout['first_status']}: {logout['first_text']}"
    )
    assert logout["status"] == 302, (
        "RP-Initiated Logout 1.0 §3: the OP redirects after logout, got HTTP "
        f"{logout['status']}: {logout['first_text']}"
    )
    assert logout["location"].startswith(demo[client]["redirect_uri"]), (
        "RP-Initiated Logout 1.0 §3: to the registered post_logout_redirect_uri"
    )
    assert query_of(logout["location"]).get("state") == logout["expected_state"], (
        "RP-Initiated Logout 1.0 §3: state is passed back unchanged"
    )
    after = result["prompt_none_after_logout"]
    assert after["status"] == 302 and query_of(after["location"]).get("error") == "login_required", (
        "OIDC Core 3.1.2.6: after logout the OP session is gone, so prompt=none answers login_required"
    )


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_confidential_client(demo, auth_method):
    result = run_rp(demo, "confidential", auth_method)
    assert_full_life(result, demo, "confidential")
    assert_logged_out(result, demo, "confidential")
    introspection = result["introspection"]
    assert introspection["ok"], f"RFC 7662 2.2: introspection failed: {introspection.get('error')}"
    assert introspection["value"]["active"] is True, "RFC 7662 2.2: a fresh access token is active"
    assert introspection["value"]["client_id"] == demo["confidential"]["client_id"], "RFC 7662 2.2"
    assert introspection["value"]["sub"] == result["id_token_claims"]["sub"], "RFC 7662 2.2: sub"
    assert introspection["value"]["tenant"] == demo["tenant"], (
        "docs/tenants.md: introspection names the token's tenant"
    )


def test_public_client(demo):
    """The public client's post_logout_redirect_uri is an http loopback URI, registered by oidc_demo
    and accepted like its redirect_uri (RFC 8252 7.3; RP-Initiated Logout 1.0 §3: exact match)."""
    result = run_rp(demo, "public", "none")
    assert_full_life(result, demo, "public")
    assert_logged_out(result, demo, "public")
    introspection = result["introspection"]
    assert not introspection["ok"] and introspection["error"]["status"] == 401, (
        "RFC 7662 2.1: introspection needs client authentication, which a public client cannot do"
    )


@pytest.mark.parametrize(
    ("client", "auth_method"), [("confidential", "client_secret_basic"), ("public", "none")]
)
def test_tenant_selected_by_acr_values(demo, client, auth_method):
    result = run_rp(demo, client, auth_method, acr_values=f"tenant:{demo['tenant']}")
    assert_full_life(result, demo, client)
    assert_logged_out(result, demo, client)
    assert "Acme Corporation" in result["pages"][0]["html"], (
        "docs/tenants.md: acr_values=tenant:acme brands the login page with the tenant's name"
    )
    assert result["id_token_claims"]["tenant"] == demo["tenant"], (
        "docs/tenants.md: the ID token names the tenant the user signed in to"
    )
    assert "tenant:" not in result["id_token_claims"]["acr"], (
        "docs/tenants.md: tenant: values never appear in acr (OIDC Core 2: acr is the authentication "
        "context class that was satisfied)"
    )
