"""Userinfo, introspection, revocation, discovery and JWKS."""

import pytest
from django.urls import reverse

from oidc_provider_ext.conf import app_settings

from .factories import ApplicationFactory
from .flow import basic_auth, exchange, get_code

pytestmark = pytest.mark.django_db


@pytest.fixture
def tokens(browser, rp, user, confidential_app):
    code, _ = get_code(browser, confidential_app, user, scope="openid profile email offline_access")
    response = exchange(rp, confidential_app, code)
    assert response.status_code == 200
    return response.json()


def form_post(client, name, data, auth=None):
    from urllib.parse import urlencode

    extra = {"HTTP_AUTHORIZATION": basic_auth(*auth)} if auth else {}
    return client.post(
        reverse(name), urlencode(data), content_type="application/x-www-form-urlencoded", **extra
    )


class TestUserinfo:
    def test_get_with_header(self, rp, user, tokens):
        response = rp.get(
            reverse("oidc_provider_ext:userinfo"), HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}"
        )
        assert response.status_code == 200
        assert response["Cache-Control"] == "no-store"
        body = response.json()
        assert body == {
            "sub": str(user.pk),
            "name": "Ada Lovelace",
            "given_name": "Ada",
            "family_name": "Lovelace",
            "preferred_username": user.username,
            "email": user.email,
            "email_verified": False,
            "updated_at": int(user.date_joined.timestamp()),
        }

    def test_post_with_header(self, rp, user, tokens):
        response = rp.post(
            reverse("oidc_provider_ext:userinfo"), HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}"
        )
        assert response.status_code == 200
        assert response.json()["sub"] == str(user.pk)

    def test_post_with_token_in_body(self, rp, user, tokens):
        response = form_post(rp, "oidc_provider_ext:userinfo", {"access_token": tokens["access_token"]})
        assert response.status_code == 200
        assert response.json()["sub"] == str(user.pk)

    def test_scopes_limit_claims(self, browser, rp, user, confidential_app):
        code, _ = get_code(browser, confidential_app, user, scope="openid")
        access_token = exchange(rp, confidential_app, code).json()["access_token"]
        response = rp.get(reverse("oidc_provider_ext:userinfo"), HTTP_AUTHORIZATION=f"Bearer {access_token}")
        assert response.json() == {"sub": str(user.pk)}

    @pytest.mark.parametrize("header", ["Bearer not-a-token", "Bearer ", "Basic abc", ""])
    def test_bad_token_is_401_with_www_authenticate(self, rp, header):
        extra = {"HTTP_AUTHORIZATION": header} if header else {}
        response = rp.get(reverse("oidc_provider_ext:userinfo"), **extra)
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")

    def test_id_token_is_not_an_access_token(self, rp, tokens):
        response = rp.get(
            reverse("oidc_provider_ext:userinfo"), HTTP_AUTHORIZATION=f"Bearer {tokens['id_token']}"
        )
        assert response.status_code == 401

    def test_access_token_in_query_string_is_refused(self, rp, tokens):
        response = rp.get(reverse("oidc_provider_ext:userinfo") + f"?access_token={tokens['access_token']}")
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"


class TestIntrospection:
    def test_active_access_token(self, rp, user, confidential_app, tokens):
        response = form_post(
            rp,
            "oidc_provider_ext:introspect",
            {"token": tokens["access_token"]},
            auth=(confidential_app.client_id, confidential_app.raw_secret),
        )
        assert response.status_code == 200
        body = response.json()
        assert body["active"] is True
        assert body["client_id"] == confidential_app.client_id
        assert body["sub"] == str(user.pk)
        assert body["scope"] == "openid profile email offline_access"
        assert body["exp"] > body["iat"]

    def test_active_refresh_token(self, rp, confidential_app, tokens):
        response = form_post(
            rp,
            "oidc_provider_ext:introspect",
            {"token": tokens["refresh_token"], "token_type_hint": "refresh_token"},
            auth=(confidential_app.client_id, confidential_app.raw_secret),
        )
        assert response.json()["active"] is True

    def test_unknown_token_is_inactive_only(self, rp, confidential_app):
        response = form_post(
            rp,
            "oidc_provider_ext:introspect",
            {"token": "nope"},
            auth=(confidential_app.client_id, confidential_app.raw_secret),
        )
        assert response.json() == {"active": False}

    def test_another_clients_token_is_inactive(self, rp, tokens):
        other = ApplicationFactory()
        response = form_post(
            rp,
            "oidc_provider_ext:introspect",
            {"token": tokens["access_token"]},
            auth=(other.client_id, other.raw_secret),
        )
        assert response.json() == {"active": False}

    def test_requires_client_authentication(self, rp, tokens):
        response = form_post(rp, "oidc_provider_ext:introspect", {"token": tokens["access_token"]})
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"

    def test_missing_token_parameter(self, rp, confidential_app):
        response = form_post(
            rp,
            "oidc_provider_ext:introspect",
            {},
            auth=(confidential_app.client_id, confidential_app.raw_secret),
        )
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"

    def test_token_in_query_string_is_refused(self, rp, confidential_app, tokens):
        response = rp.get(reverse("oidc_provider_ext:introspect") + f"?token={tokens['access_token']}")
        assert response.status_code == 405


class TestRevocation:
    def test_revoked_access_token_stops_working(self, rp, confidential_app, tokens):
        auth = (confidential_app.client_id, confidential_app.raw_secret)
        response = form_post(rp, "oidc_provider_ext:revocation", {"token": tokens["access_token"]}, auth=auth)
        assert response.status_code == 200
        userinfo = rp.get(
            reverse("oidc_provider_ext:userinfo"), HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}"
        )
        assert userinfo.status_code == 401
        introspection = form_post(
            rp, "oidc_provider_ext:introspect", {"token": tokens["access_token"]}, auth=auth
        )
        assert introspection.json() == {"active": False}

    def test_revoked_refresh_token_stops_working(self, rp, confidential_app, tokens):
        from .flow import token_request

        auth = (confidential_app.client_id, confidential_app.raw_secret)
        form_post(rp, "oidc_provider_ext:revocation", {"token": tokens["refresh_token"]}, auth=auth)
        response = token_request(
            rp, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, auth=auth
        )
        assert response.json()["error"] == "invalid_grant"

    def test_other_client_cannot_revoke(self, rp, tokens):
        other = ApplicationFactory()
        response = form_post(
            rp,
            "oidc_provider_ext:revocation",
            {"token": tokens["access_token"]},
            auth=(other.client_id, other.raw_secret),
        )
        assert response.status_code == 200  # RFC 7009 2.2: no disclosure
        userinfo = rp.get(
            reverse("oidc_provider_ext:userinfo"), HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}"
        )
        assert userinfo.status_code == 200

    def test_bad_client_credentials(self, rp, confidential_app, tokens):
        response = form_post(
            rp,
            "oidc_provider_ext:revocation",
            {"token": tokens["access_token"]},
            auth=(confidential_app.client_id, "x"),
        )
        assert response.status_code == 401


class TestDiscovery:
    def test_metadata(self, client):
        response = client.get("/.well-known/openid-configuration")
        assert response.status_code == 200
        meta = response.json()
        issuer = app_settings.ISSUER
        assert meta["issuer"] == issuer
        for key, name in [
            ("authorization_endpoint", "authorize"),
            ("token_endpoint", "token"),
            ("userinfo_endpoint", "userinfo"),
            ("jwks_uri", "jwks"),
            ("introspection_endpoint", "introspect"),
            ("revocation_endpoint", "revocation"),
            ("end_session_endpoint", "endsession"),
        ]:
            assert meta[key] == issuer + reverse(f"oidc_provider_ext:{name}")
            assert meta[key].startswith(issuer + "/connect/")
        assert meta["response_types_supported"] == ["code"]
        assert meta["code_challenge_methods_supported"] == ["S256"]
        assert "implicit" not in meta["grant_types_supported"]
        assert "password" not in meta["grant_types_supported"]
        assert set(meta["scopes_supported"]) >= {"openid", "offline_access", "profile", "email"}
        assert meta["id_token_signing_alg_values_supported"] == ["RS256", "PS256", "ES256"]

    def test_issuer_comes_from_settings_not_host_header(self, client, settings):
        settings.OIDC_PROVIDER_EXT = {"ISSUER": "https://id.example.com"}
        settings.ALLOWED_HOSTS = ["*"]
        response = client.get("/.well-known/openid-configuration", HTTP_HOST="evil.example.com")
        assert response.status_code == 200
        assert response.json()["issuer"] == "https://id.example.com"
        assert response.json()["token_endpoint"] == "https://id.example.com/connect/token"

    def test_jwks_publishes_public_keys_with_cache_headers(self, client, tokens):
        response = client.get(reverse("oidc_provider_ext:jwks"))
        assert response.status_code == 200
        assert "max-age=3600" in response["Cache-Control"]
        body = response.json()
        assert len(body["keys"]) == 1
        key = body["keys"][0]
        assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig" and key["kid"]
        assert "d" not in key and "p" not in key


def test_userinfo_token_sent_two_ways_is_invalid_request(rp, tokens):
    from urllib.parse import urlencode

    response = rp.post(
        reverse("oidc_provider_ext:userinfo"),
        urlencode({"access_token": tokens["access_token"]}),
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}",
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
