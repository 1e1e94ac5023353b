"""Token endpoint errors follow RFC 6749 5.2: JSON error/error_description, right status, no-store."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from oauth2_provider.models import AccessToken, RefreshToken

from oidc_provider_ext.models import AuthorizationGrant
from oidc_provider_ext.validator import checksum

from . import presets
from .factories import REDIRECT_URI, ApplicationFactory, PublicApplicationFactory
from .flow import basic_auth, exchange, get_code, pkce_pair, refresh, token_request

pytestmark = pytest.mark.django_db


def assert_oauth_error(response, error, status=400):
    assert response.status_code == status, response.content
    assert response["Cache-Control"] == "no-store"
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error"] == error, body
    return body


def code_request(app, code, **extra):
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    data.update(extra)
    return data


class TestClientAuthentication:
    def test_wrong_secret_basic(self, browser, rp, user, confidential_app):
        code, _ = get_code(browser, confidential_app, user)
        response = token_request(
            rp, code_request(confidential_app, code), auth=(confidential_app.client_id, "wrong")
        )
        assert_oauth_error(response, "invalid_client", status=401)

    def test_wrong_secret_post(self, browser, rp, user, confidential_app):
        code, _ = get_code(browser, confidential_app, user)
        data = code_request(
            confidential_app, code, client_id=confidential_app.client_id, client_secret="wrong"
        )
        assert_oauth_error(token_request(rp, data), "invalid_client", status=401)

    def test_unknown_client(self, rp, db):
        response = token_request(rp, code_request(None, "x"), auth=("nobody", "secret"))
        assert_oauth_error(response, "invalid_client", status=401)

    def test_confidential_client_without_secret(self, browser, rp, user, confidential_app):
        code, _ = get_code(browser, confidential_app, user)
        data = code_request(confidential_app, code, client_id=confidential_app.client_id)
        assert_oauth_error(token_request(rp, data), "invalid_client", status=401)

    def test_malformed_basic_header(self, rp, confidential_app):
        response = token_request(
            rp, code_request(confidential_app, "x"), HTTP_AUTHORIZATION="Basic !!!not-base64"
        )
        assert_oauth_error(response, "invalid_client", status=401)

    def test_code_of_another_client_is_invalid_grant(self, browser, rp, user, confidential_app):
        other = ApplicationFactory()
        code, _ = get_code(browser, confidential_app, user)
        assert_oauth_error(exchange(rp, other, code), "invalid_grant")
        # ... and it does not burn the code for its rightful owner.
        assert exchange(rp, confidential_app, code).status_code == 200


class TestCodeRedemption:
    def test_unknown_code(self, rp, confidential_app):
        assert_oauth_error(exchange(rp, confidential_app, "not-a-code"), "invalid_grant")

    def test_missing_code(self, rp, confidential_app):
        data = {"grant_type": "authorization_code", "redirect_uri": REDIRECT_URI}
        response = token_request(rp, data, auth=(confidential_app.client_id, confidential_app.raw_secret))
        assert_oauth_error(response, "invalid_request")

    def test_expired_code(self, browser, rp, user, confidential_app):
        code, _ = get_code(browser, confidential_app, user)
        AuthorizationGrant.objects.filter(code_checksum=checksum(code)).update(
            expires=timezone.now() - timedelta(seconds=1)
        )
        assert_oauth_error(exchange(rp, confidential_app, code), "invalid_grant")

    def test_code_lifetime_is_60_seconds(self, browser, user, confidential_app):
        code, _ = get_code(browser, confidential_app, user)
        grant = AuthorizationGrant.objects.get(code_checksum=checksum(code))
        lifetime = (grant.expires - grant.created).total_seconds()
        assert 59 <= lifetime <= 61

    @pytest.mark.oidc_settings(CODE_EXPIRE_SECONDS=3600)
    def test_code_lifetime_setting_is_capped_at_10_minutes(self, browser, user, confidential_app):
        code, _ = get_code(browser, confidential_app, user)
        grant = AuthorizationGrant.objects.get(code_checksum=checksum(code))
        assert (grant.expires - grant.created).total_seconds() <= 601

    @pytest.mark.oidc_settings(CODE_EXPIRE_SECONDS=30)
    def test_code_lifetime_setting_is_honoured(self, browser, user, confidential_app):
        code, _ = get_code(browser, confidential_app, user)
        grant = AuthorizationGrant.objects.get(code_checksum=checksum(code))
        assert 29 <= (grant.expires - grant.created).total_seconds() <= 31

    def test_reused_code_fails_and_revokes_what_it_issued(self, browser, rp, user, confidential_app):
        code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
        first = exchange(rp, confidential_app, code)
        assert first.status_code == 200
        tokens = first.json()

        assert_oauth_error(exchange(rp, confidential_app, code), "invalid_grant")

        userinfo = rp.get(
            reverse("oidc_provider_ext:userinfo"), HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}"
        )
        assert userinfo.status_code == 401
        refresh = token_request(
            rp,
            {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            auth=(confidential_app.client_id, confidential_app.raw_secret),
        )
        assert_oauth_error(refresh, "invalid_grant")
        assert not AccessToken.objects.filter(user=user).exists()

    def test_reuse_after_refresh_revokes_the_rotated_tokens_too(self, browser, rp, user, confidential_app):
        code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
        tokens = exchange(rp, confidential_app, code).json()
        auth = (confidential_app.client_id, confidential_app.raw_secret)
        rotated = token_request(
            rp, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, auth=auth
        )
        assert rotated.status_code == 200
        assert_oauth_error(exchange(rp, confidential_app, code), "invalid_grant")
        refresh = token_request(
            rp, {"grant_type": "refresh_token", "refresh_token": rotated.json()["refresh_token"]}, auth=auth
        )
        assert_oauth_error(refresh, "invalid_grant")
        assert not AccessToken.objects.filter(user=user).exists()

    def test_redirect_uri_must_match_the_authorization_request(self, browser, rp, user, confidential_app):
        confidential_app.redirect_uris = f"{REDIRECT_URI} https://rp.example.com/other"
        confidential_app.save()
        code, _ = get_code(browser, confidential_app, user)
        response = exchange(rp, confidential_app, code, redirect_uri="https://rp.example.com/other")
        assert_oauth_error(response, "invalid_request")  # oauthlib: mismatching redirect URI

    def test_missing_redirect_uri_at_token_endpoint(self, browser, rp, user, confidential_app):
        code, _ = get_code(browser, confidential_app, user)
        data = {"grant_type": "authorization_code", "code": code}
        response = token_request(rp, data, auth=(confidential_app.client_id, confidential_app.raw_secret))
        assert_oauth_error(response, "invalid_request")


class TestPkce:
    def test_public_client_missing_verifier(self, browser, rp, user, public_app):
        _, challenge = pkce_pair()
        code, _ = get_code(browser, public_app, user, code_challenge=challenge, code_challenge_method="S256")
        assert_oauth_error(exchange(rp, public_app, code), "invalid_request")

    def test_public_client_wrong_verifier(self, browser, rp, user, public_app):
        _, challenge = pkce_pair()
        code, _ = get_code(browser, public_app, user, code_challenge=challenge, code_challenge_method="S256")
        wrong, _ = pkce_pair()
        assert_oauth_error(exchange(rp, public_app, code, verifier=wrong), "invalid_grant")

    def test_confidential_client_sending_challenge_must_send_verifier(
        self, browser, rp, user, confidential_app
    ):
        verifier, challenge = pkce_pair()
        code, _ = get_code(
            browser, confidential_app, user, code_challenge=challenge, code_challenge_method="S256"
        )
        assert_oauth_error(exchange(rp, confidential_app, code), "invalid_request")
        code, _ = get_code(
            browser, confidential_app, user, code_challenge=challenge, code_challenge_method="S256"
        )
        assert exchange(rp, confidential_app, code, verifier=verifier).status_code == 200

    def test_confidential_client_without_pkce_is_allowed_by_default(
        self, browser, rp, user, confidential_app
    ):
        code, _ = get_code(browser, confidential_app, user)
        assert exchange(rp, confidential_app, code).status_code == 200

    @pytest.mark.parametrize("verifier", ["a" * 43, ""])
    def test_verifier_for_a_code_issued_without_challenge_is_refused(
        self, browser, rp, user, confidential_app, verifier
    ):
        # RFC 9700 4.8.2 (PKCE downgrade): no code_challenge at authorization, so a code_verifier
        # at the token endpoint means the request was tampered with or the code was injected.
        code, _ = get_code(browser, confidential_app, user)
        data = code_request(confidential_app, code, code_verifier=verifier)
        response = token_request(rp, data, auth=(confidential_app.client_id, confidential_app.raw_secret))
        body = assert_oauth_error(response, "invalid_grant")
        assert "code_challenge" in body["error_description"]
        assert not AccessToken.objects.exists()

    def test_public_client_cannot_use_a_secret_to_skip_pkce(self, browser, rp, user):
        app = PublicApplicationFactory()
        _, challenge = pkce_pair()
        code, _ = get_code(browser, app, user, code_challenge=challenge, code_challenge_method="S256")
        data = code_request(app, code, client_id=app.client_id)
        assert_oauth_error(token_request(rp, data), "invalid_request")


class TestRequestShape:
    def test_unknown_grant_type(self, rp, confidential_app):
        data = {"grant_type": "urn:example:nope"}
        response = token_request(rp, data, auth=(confidential_app.client_id, confidential_app.raw_secret))
        assert_oauth_error(response, "unsupported_grant_type")

    @pytest.mark.parametrize("grant_type", ["password", "implicit"])
    def test_rfc9700_forbidden_grants(self, rp, user, confidential_app, grant_type):
        data = {"grant_type": grant_type, "username": user.username, "password": "x", "device_code": "x"}
        response = token_request(rp, data, auth=(confidential_app.client_id, confidential_app.raw_secret))
        assert_oauth_error(response, "unsupported_grant_type")

    def test_device_grant_needs_the_clients_permission(self, rp, confidential_app):
        # RFC 8628 is served (tests/test_device.py), but only to clients whose profile allows it:
        # any other client is unauthorized for it (RFC 6749 5.2).
        data = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": "x"}
        response = token_request(rp, data, auth=(confidential_app.client_id, confidential_app.raw_secret))
        assert_oauth_error(response, "unauthorized_client")

    def test_get_is_refused(self, rp):
        response = rp.get(reverse("oidc_provider_ext:token"))
        assert response.status_code == 405

    def test_json_body_is_refused(self, rp, confidential_app):
        response = rp.post(
            reverse("oidc_provider_ext:token"),
            {"grant_type": "client_credentials"},
            content_type="application/json",
            HTTP_AUTHORIZATION=basic_auth(confidential_app.client_id, confidential_app.raw_secret),
        )
        assert_oauth_error(response, "invalid_request")

    def test_parameters_in_query_string_are_refused(self, rp, confidential_app):
        response = rp.post(
            reverse("oidc_provider_ext:token") + "?grant_type=authorization_code&code=x",
            "",
            content_type="application/x-www-form-urlencoded",
        )
        assert_oauth_error(response, "invalid_request")


class TestRefresh:
    def test_bad_refresh_token(self, rp, confidential_app):
        response = token_request(
            rp,
            {"grant_type": "refresh_token", "refresh_token": "not-a-token"},
            auth=(confidential_app.client_id, confidential_app.raw_secret),
        )
        assert_oauth_error(response, "invalid_grant")

    def test_refresh_token_of_another_client(self, browser, rp, user, confidential_app):
        code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
        tokens = exchange(rp, confidential_app, code).json()
        other = ApplicationFactory()
        response = token_request(
            rp,
            {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            auth=(other.client_id, other.raw_secret),
        )
        assert_oauth_error(response, "invalid_grant")

    def test_no_refresh_token_without_offline_access(self, browser, rp, user, confidential_app):
        code, _ = get_code(browser, confidential_app, user, scope="openid email")
        assert "refresh_token" not in exchange(rp, confidential_app, code).json()
        assert not RefreshToken.objects.exists()

    def test_rotated_refresh_token_cannot_be_used_again(self, browser, rp, user, confidential_app):
        code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
        tokens = exchange(rp, confidential_app, code).json()
        auth = (confidential_app.client_id, confidential_app.raw_secret)
        assert (
            token_request(
                rp, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, auth=auth
            ).status_code
            == 200
        )
        again = token_request(
            rp, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, auth=auth
        )
        assert_oauth_error(again, "invalid_grant")


def test_client_credentials_for_machine_clients(rp, db):
    from oauth2_provider.models import Application

    app = ApplicationFactory(authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS)
    response = token_request(rp, {"grant_type": "client_credentials"}, auth=(app.client_id, app.raw_secret))
    assert response.status_code == 200, response.content
    body = response.json()
    assert "refresh_token" not in body and "id_token" not in body


@pytest.mark.oidc_settings(presets.API_SCOPES)
def test_a_refresh_refused_for_a_wider_scope_leaves_the_refresh_token_usable(
    browser, rp, user, confidential_app
):
    # Review 1 F6: the refusal consumes nothing, so the retry is no replay (RFC 9700 4.14.2) and
    # the family lives on.
    code, _ = get_code(browser, confidential_app, user, scope="openid offline_access api:read")
    body = exchange(rp, confidential_app, code).json()
    widened = refresh(
        rp, confidential_app, body["refresh_token"], scope="openid offline_access api:read api:write"
    )
    assert widened.status_code == 400, widened.content
    assert widened.json()["error"] == "invalid_scope"
    retry = refresh(rp, confidential_app, body["refresh_token"])
    assert retry.status_code == 200, retry.content  # was invalid_grant, family revoked


class TestClientAuthenticationChallenge:
    """RFC 6749 5.2: a 401 ``invalid_client`` carries a WWW-Authenticate challenge "matching the
    authentication scheme used by the client" — HTTP Basic (2.3.1) at every endpoint where clients
    authenticate, never oauthlib's ``Bearer`` (the scheme of access tokens at resource servers)."""

    @pytest.mark.parametrize("url_name", ["token", "revocation", "introspect", "device-authorization"])
    def test_wrong_basic_credentials_get_a_basic_challenge(self, rp, confidential_app, url_name):
        from urllib.parse import urlencode

        from django.urls import reverse

        from .flow import basic_auth

        body = {
            "token": code_request(confidential_app, "x"),
            "revocation": {"token": "x"},
            "introspect": {"token": "x"},
            "device-authorization": {"scope": "openid"},
        }[url_name]
        response = rp.post(
            reverse(f"oidc_provider_ext:{url_name}"),
            urlencode(body),
            content_type="application/x-www-form-urlencoded",
            HTTP_AUTHORIZATION=basic_auth(confidential_app.client_id, "wrong"),
        )
        assert response.status_code == 401, response.content
        assert response.json()["error"] == "invalid_client"
        assert response["WWW-Authenticate"].startswith("Basic "), response["WWW-Authenticate"]
