"""CORS for browser apps (OIDC Core 5.3; Fetch "CORS protocol"): token (errors too), userinfo and
revocation answer the client's allowed origins, with preflight; authorize and the hosted pages never.
The browser's view of the same rule is tests/e2e/test_cors_browser.py."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.urls import reverse

from .factories import PublicApplicationFactory, UserFactory
from .flow import authorize_url, exchange, get_code, pkce_pair, post_client_change, token_request

SPA = "https://spa.example"
DEV = "http://localhost:5173"  # a single-page app under local development
OTHER = "https://other.example"  # registered by another client


@pytest.fixture
def spa(db):
    return PublicApplicationFactory(allowed_origins=f"{SPA} {DEV}")


@pytest.fixture
def other(db):
    return PublicApplicationFactory(allowed_origins=OTHER)


@pytest.fixture
def tokens(browser, rp, spa):
    user = UserFactory()
    verifier, challenge = pkce_pair()
    code, _query = get_code(
        browser,
        spa,
        user,
        code_challenge=challenge,
        code_challenge_method="S256",
        scope="openid offline_access",
    )
    response = exchange(rp, spa, code, verifier)
    assert response.status_code == 200, response.content
    return response.json()


def preflight(client, name: str, origin: str, method: str = "POST"):
    return client.options(
        reverse(f"oidc_provider_ext:{name}"),
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD=method,
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )


def userinfo(client, access_token: str, origin: str):
    return client.get(
        reverse("oidc_provider_ext:userinfo"), HTTP_AUTHORIZATION=f"Bearer {access_token}", HTTP_ORIGIN=origin
    )


def revoke(client, token: str, client_id: str, origin: str):
    return client.post(
        reverse("oidc_provider_ext:revocation"),
        urlencode({"token": token, "client_id": client_id}),
        content_type="application/x-www-form-urlencoded",
        HTTP_ORIGIN=origin,
    )


@pytest.mark.parametrize("name,method", [("token", "POST"), ("userinfo", "GET"), ("revocation", "POST")])
@pytest.mark.parametrize("origin", [SPA, DEV])
def test_preflight_for_a_registered_origin(rp, spa, name, method, origin):
    response = preflight(rp, name, origin, method)
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == origin
    assert method in response["Access-Control-Allow-Methods"]
    assert {"authorization", "content-type"} <= {
        h.strip().lower() for h in response["Access-Control-Allow-Headers"].split(",")
    }
    assert "Origin" in response["Vary"]
    assert "Access-Control-Allow-Credentials" not in response, "no cookies on these endpoints"


@pytest.mark.parametrize("name", ["token", "userinfo", "revocation"])
@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://spa.example",  # the registered https origin over plain http
        "https://spa.example:8443",  # another port
        "http://localhost:5174",
        "null",
    ],
)
def test_no_preflight_for_an_unregistered_origin(rp, spa, name, origin):
    response = preflight(rp, name, origin)
    assert "Access-Control-Allow-Origin" not in response


def test_http_origin_only_for_loopback(rp, db):
    PublicApplicationFactory(allowed_origins="http://intranet.example:8080")
    response = preflight(rp, "token", "http://intranet.example:8080")
    assert "Access-Control-Allow-Origin" not in response, "plain http is for local development only"


def test_token_response_and_errors_readable_by_the_clients_origin(browser, rp, spa):
    user = UserFactory()
    verifier, challenge = pkce_pair()
    code, _query = get_code(browser, spa, user, code_challenge=challenge, code_challenge_method="S256")
    response = exchange(rp, spa, code, verifier, HTTP_ORIGIN=DEV)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == DEV, "http://localhost:PORT is served too"
    assert "Access-Control-Allow-Credentials" not in response
    # RFC 6749 5.2: the replay's invalid_grant must be readable, or it looks like a network failure.
    replay = exchange(rp, spa, code, verifier, HTTP_ORIGIN=SPA)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert replay["Access-Control-Allow-Origin"] == SPA
    assert "Origin" in replay["Vary"]


def test_token_response_not_readable_by_another_clients_origin(browser, rp, spa, other):
    user = UserFactory()
    verifier, challenge = pkce_pair()
    code, _query = get_code(browser, spa, user, code_challenge=challenge, code_challenge_method="S256")
    response = exchange(rp, spa, code, verifier, HTTP_ORIGIN=OTHER)
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response, "OTHER is another client's origin"


def test_token_error_for_an_unknown_client(rp, spa):
    data = {"grant_type": "authorization_code", "code": "x", "client_id": "no-such-client"}
    response = token_request(rp, data, HTTP_ORIGIN=SPA)
    assert response.status_code == 401
    assert response["Access-Control-Allow-Origin"] == SPA, "no client known: any registered origin"
    response = token_request(rp, data, HTTP_ORIGIN="https://evil.example")
    assert "Access-Control-Allow-Origin" not in response


def test_boundary_errors_carry_cors(rp, spa):
    response = token_request(
        rp, "grant_type=authorization_code&code=%00&client_id=" + spa.client_id, HTTP_ORIGIN=SPA
    )
    assert response.status_code == 400
    assert response["Access-Control-Allow-Origin"] == SPA


def test_refresh_readable_by_the_clients_origin(rp, spa, tokens):
    data = {
        "grant_type": "refresh_token",
        "refresh_token": tokens["refresh_token"],
        "client_id": spa.client_id,
    }
    response = token_request(rp, data, HTTP_ORIGIN=DEV)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == DEV


def test_userinfo_readable_only_by_the_tokens_client(rp, spa, other, tokens):
    response = userinfo(rp, tokens["access_token"], SPA)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == SPA
    assert "WWW-Authenticate" in response["Access-Control-Expose-Headers"]
    response = userinfo(rp, tokens["access_token"], OTHER)
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response, "the claims are the token's client's"


def test_userinfo_invalid_token_readable(rp, spa):
    response = userinfo(rp, "not-a-token", SPA)
    assert response.status_code == 401
    assert response["Access-Control-Allow-Origin"] == SPA
    assert "WWW-Authenticate" in response["Access-Control-Expose-Headers"], "RFC 6750 3: the error is there"


def test_revocation_readable_by_the_clients_origin(rp, spa, other, tokens):
    response = revoke(rp, tokens["refresh_token"], spa.client_id, OTHER)
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response
    response = revoke(rp, tokens["access_token"], spa.client_id, SPA)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == SPA


def test_oauthlib_never_adds_its_own_header(rp, browser, db):
    """oauthlib adds Access-Control-Allow-Origin to successful token responses for an https origin
    its validator allows; our rule is the only one (the client here registered no origin)."""
    app = PublicApplicationFactory()
    user = UserFactory()
    verifier, challenge = pkce_pair()
    code, _query = get_code(browser, app, user, code_challenge=challenge, code_challenge_method="S256")
    response = exchange(rp, app, code, verifier, HTTP_ORIGIN=SPA)
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response


def test_never_on_authorize_or_pages(browser, spa):
    """The authorization endpoint and the hosted pages are navigated to, never fetched: no CORS."""
    for url in (
        authorize_url(spa),
        reverse("oidc_provider_ext:login"),
        reverse("oidc_provider_ext:endsession"),
    ):
        response = browser.get(url, HTTP_ORIGIN=SPA)
        assert "Access-Control-Allow-Origin" not in response, url
        response = browser.options(url, HTTP_ORIGIN=SPA, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST")
        assert "Access-Control-Allow-Origin" not in response, url


def test_preflight_costs_one_query_then_is_cached(rp, spa, django_assert_num_queries):
    with django_assert_num_queries(1):
        preflight(rp, "token", SPA)
    with django_assert_num_queries(0):
        preflight(rp, "token", SPA)
    spa.allowed_origins = DEV
    spa.save()
    response = preflight(rp, "token", SPA)
    assert "Access-Control-Allow-Origin" not in response, "a removed origin stops working at once"


def test_no_origin_no_cors_headers(rp, spa, tokens):
    response = userinfo(rp, tokens["access_token"], SPA)
    assert "Access-Control-Allow-Origin" in response
    response = rp.get(
        reverse("oidc_provider_ext:userinfo"), HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}"
    )
    assert "Access-Control-Allow-Origin" not in response


class TestAdmin:
    @pytest.fixture
    def admin_client(self, client, db):
        from django.contrib.auth import get_user_model

        admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-123")
        client.force_login(admin)
        return client

    def test_localhost_origin_can_be_saved(self, admin_client):
        app = PublicApplicationFactory()
        response = post_client_change(
            admin_client, app, allowed_origins=f"{SPA} http://localhost:5173 http://127.0.0.1:8080"
        )
        assert response.status_code == 302, response.context["adminform"].form.errors
        app.refresh_from_db()
        assert "http://localhost:5173" in app.allowed_origins

    @pytest.mark.parametrize("origin", ["http://intranet.example", "https://spa.example/app"])
    def test_origin_that_would_never_match_is_refused(self, admin_client, origin):
        app = PublicApplicationFactory()
        response = post_client_change(admin_client, app, allowed_origins=origin)
        assert response.status_code == 200
        assert "allowed_origins" in response.context["adminform"].form.errors
