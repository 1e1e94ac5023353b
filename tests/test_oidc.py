"""OpenID Connect Core 1.0 behaviour: ID token claims (2, 12.2), authentication request parameters
(3.1.2.1), scope claims (5.4), the claims parameter (5.5) and discovery (Discovery 3)."""

import base64
import hashlib
import json
import time
from urllib.parse import urlencode

import pytest
from django.urls import reverse

from oidc_provider_ext import acr, keys
from oidc_provider_ext.conf import app_settings

from . import presets
from .factories import REDIRECT_URI, UserFactory
from .flow import (
    authorize_url,
    exchange,
    get_code,
    login,
    query_of,
    set_auth_time,
    token_request,
    verify_jwt,
)

pytestmark = pytest.mark.django_db


def tokens_for(browser, rp, app, user, **params):
    code, _ = get_code(browser, app, user, **params)
    response = exchange(rp, app, code)
    assert response.status_code == 200, response.content
    return response.json()


def refresh(rp, app, refresh_token):
    response = token_request(
        rp,
        {"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(app.client_id, app.raw_secret),
    )
    assert response.status_code == 200, response.content
    return response.json()


def client_error(response):
    assert response.status_code == 302
    assert response["Location"].startswith(REDIRECT_URI)
    return query_of(response["Location"])


def goes_to_login(response) -> bool:
    return response.status_code == 302 and response["Location"].startswith(reverse("oidc_provider_ext:login"))


class TestIdTokenClaims:
    def test_every_claim_a_strict_rp_checks(self, browser, rp, user, confidential_app):
        before = int(time.time())
        body = tokens_for(browser, rp, confidential_app, user)
        claims = verify_jwt(body["id_token"])
        assert claims["iss"] == app_settings.ISSUER
        assert claims["sub"] == str(user.pk)
        assert claims["aud"] == confidential_app.client_id
        assert claims["azp"] == confidential_app.client_id
        assert before <= claims["iat"] <= int(time.time())
        assert claims["exp"] == claims["iat"] + 3600
        assert claims["nonce"] == "nonce-456"
        assert claims["acr"] == "urn:oidc-provider-ext:acr:password"
        assert claims["amr"] == ["pwd"]
        assert claims["sid"]
        # at_hash: left half of SHA-256 of the access token, base64url (OIDC Core 3.1.3.6).
        digest = hashlib.sha256(body["access_token"].encode()).digest()
        assert claims["at_hash"] == base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()

    def test_auth_time_is_the_sign_in_not_last_login(self, browser, rp, user, confidential_app):
        from django.utils import timezone

        user.last_login = timezone.now() - timezone.timedelta(days=3)
        user.save()
        login(browser, user)
        set_auth_time(browser, 120)
        expected = int(time.time()) - 120
        claims = verify_jwt(tokens_for(browser, rp, confidential_app, user)["id_token"])
        assert abs(claims["auth_time"] - expected) <= 1

    def test_no_nonce_when_none_was_sent(self, browser, rp, user, confidential_app):
        claims = verify_jwt(tokens_for(browser, rp, confidential_app, user, nonce=None)["id_token"])
        assert "nonce" not in claims

    def test_sid_is_the_op_session(self, browser, rp, user, confidential_app):
        from oidc_provider_ext.models import OPSession

        claims = verify_jwt(tokens_for(browser, rp, confidential_app, user)["id_token"])
        op_session = OPSession.objects.get(sid=claims["sid"])
        assert op_session.user == user
        assert abs(op_session.auth_time.timestamp() - claims["auth_time"]) < 1

    def test_refreshed_id_token_keeps_the_original_authentication(self, browser, rp, user, confidential_app):
        body = tokens_for(browser, rp, confidential_app, user, scope="openid offline_access")
        original = verify_jwt(body["id_token"])
        time.sleep(1.1)
        refreshed = verify_jwt(refresh(rp, confidential_app, body["refresh_token"])["id_token"])
        for claim in ("iss", "sub", "aud", "azp", "auth_time", "acr", "amr", "sid"):
            assert refreshed[claim] == original[claim], claim
        assert refreshed["iat"] > original["iat"]
        assert "nonce" not in refreshed  # OIDC Core 12.2: SHOULD NOT

    def test_refresh_after_sign_out_still_reports_original_auth_time(
        self, browser, rp, user, confidential_app
    ):
        body = tokens_for(browser, rp, confidential_app, user, scope="openid offline_access")
        original = verify_jwt(body["id_token"])
        browser.logout()
        refreshed = verify_jwt(refresh(rp, confidential_app, body["refresh_token"])["id_token"])
        assert refreshed["auth_time"] == original["auth_time"]

    def test_access_token_carries_authentication_context(self, browser, rp, user, confidential_app):
        body = tokens_for(browser, rp, confidential_app, user)
        access = verify_jwt(body["access_token"], typ="at+jwt")
        id_token = verify_jwt(body["id_token"])
        assert access["auth_time"] == id_token["auth_time"]
        assert access["acr"] == id_token["acr"]
        assert access["sid"] == id_token["sid"]


class TestPrompt:
    def test_none_signed_in_with_consent_issues_code(self, browser, rp, user, confidential_app):
        get_code(browser, confidential_app, user)
        response = browser.get(authorize_url(confidential_app, prompt="none"))
        query = client_error(response)
        assert "code" in query and query["state"] == "state-123"
        assert exchange(rp, confidential_app, query["code"]).status_code == 200

    def test_none_not_signed_in(self, browser, confidential_app):
        query = client_error(browser.get(authorize_url(confidential_app, prompt="none")))
        assert query["error"] == "login_required" and query["state"] == "state-123"

    def test_none_without_consent(self, browser, user, confidential_app):
        login(browser, user)
        assert (
            client_error(browser.get(authorize_url(confidential_app, prompt="none")))["error"]
            == "consent_required"
        )

    def test_none_combined_with_another_value(self, browser, user, confidential_app):
        login(browser, user)
        query = client_error(browser.get(authorize_url(confidential_app, prompt="none consent")))
        assert query["error"] == "invalid_request"

    def test_none_never_renders_a_page(self, browser, user, confidential_app):
        login(browser, user)
        for params in (
            {"prompt": "none"},
            {"prompt": "none", "max_age": "0"},
            {"prompt": "none", "scope": "openid offline_access"},
        ):
            response = browser.get(authorize_url(confidential_app, **params))
            assert response.status_code == 302 and response["Location"].startswith(REDIRECT_URI)

    def test_login_forces_reauthentication_then_continues(self, browser, rp, user, confidential_app):
        get_code(browser, confidential_app, user)
        first = verify_jwt(tokens_for(browser, rp, confidential_app, user)["id_token"])
        response = browser.get(authorize_url(confidential_app, prompt="login"))
        assert goes_to_login(response)
        time.sleep(1.1)
        response = login(browser, user, next_url=query_of(response["Location"])["next"])
        response = browser.get(response["Location"])
        code = client_error(response)["code"]  # consent remembered, no loop back to login
        second = verify_jwt(exchange(rp, confidential_app, code).json()["id_token"])
        assert second["auth_time"] > first["auth_time"]
        assert second["sid"] != first["sid"]

    def test_consent_always_asks(self, browser, user, confidential_app):
        get_code(browser, confidential_app, user)
        response = browser.get(authorize_url(confidential_app, prompt="consent"))
        assert response.status_code == 200
        assert response.templates[0].name == "oidc_provider_ext/consent.html"

    def test_select_account_shows_the_login_page(self, browser, user, confidential_app):
        get_code(browser, confidential_app, user)
        other = UserFactory()
        response = browser.get(authorize_url(confidential_app, prompt="select_account"))
        assert goes_to_login(response)
        response = login(browser, other, next_url=query_of(response["Location"])["next"])
        response = browser.get(response["Location"])
        assert response.status_code == 200  # the other account has not consented yet
        assert response.context["user"] == other

    def test_unknown_prompt_value_is_ignored(self, browser, user, confidential_app):
        get_code(browser, confidential_app, user)
        assert "code" in client_error(browser.get(authorize_url(confidential_app, prompt="create-nothing")))


class TestMaxAge:
    def test_zero_always_reauthenticates(self, browser, rp, user, confidential_app):
        get_code(browser, confidential_app, user)
        response = browser.get(authorize_url(confidential_app, max_age="0"))
        assert goes_to_login(response)
        response = login(browser, user, next_url=query_of(response["Location"])["next"])
        assert "code" in client_error(browser.get(response["Location"]))

    def test_older_session_reauthenticates(self, browser, user, confidential_app):
        get_code(browser, confidential_app, user)
        set_auth_time(browser, 5)
        assert goes_to_login(browser.get(authorize_url(confidential_app, max_age="1")))

    def test_recent_session_is_enough(self, browser, rp, user, confidential_app):
        get_code(browser, confidential_app, user)
        set_auth_time(browser, 60)
        query = client_error(browser.get(authorize_url(confidential_app, max_age="10000")))
        claims = verify_jwt(exchange(rp, confidential_app, query["code"]).json()["id_token"])
        assert abs(claims["auth_time"] - (int(time.time()) - 60)) <= 1

    def test_with_prompt_none_on_old_session(self, browser, user, confidential_app):
        get_code(browser, confidential_app, user)
        set_auth_time(browser, 5)
        query = client_error(browser.get(authorize_url(confidential_app, max_age="1", prompt="none")))
        assert query["error"] == "login_required"

    @pytest.mark.parametrize("value", ["-1", "abc", "1.5", "+5", "5s"])
    def test_invalid_values(self, browser, user, confidential_app, value):
        login(browser, user)
        assert (
            client_error(browser.get(authorize_url(confidential_app, max_age=value)))["error"]
            == "invalid_request"
        )


class TestIdTokenHint:
    def _hint(self, browser, rp, app, user):
        return tokens_for(browser, rp, app, user)["id_token"]

    def test_hint_of_the_signed_in_user(self, browser, rp, user, confidential_app):
        hint = self._hint(browser, rp, confidential_app, user)
        query = client_error(browser.get(authorize_url(confidential_app, prompt="none", id_token_hint=hint)))
        assert "code" in query

    def test_hint_of_another_user_with_prompt_none(self, browser, rp, user, confidential_app):
        other = UserFactory()
        hint = self._hint(browser, rp, confidential_app, other)
        browser.logout()
        login(browser, user)
        get_code(browser, confidential_app, user)
        query = client_error(browser.get(authorize_url(confidential_app, prompt="none", id_token_hint=hint)))
        assert query["error"] == "login_required"

    def test_hint_of_another_user_asks_to_sign_in(self, browser, rp, user, confidential_app):
        other = UserFactory()
        hint = self._hint(browser, rp, confidential_app, other)
        browser.logout()
        get_code(browser, confidential_app, user)
        assert goes_to_login(browser.get(authorize_url(confidential_app, id_token_hint=hint)))

    @pytest.mark.oidc_settings(ID_TOKEN_EXPIRE_SECONDS=-10)
    def test_expired_hint_is_accepted(self, browser, rp, user, confidential_app):
        hint = self._hint(browser, rp, confidential_app, user)
        assert verify_jwt(hint)["exp"] < time.time()
        query = client_error(browser.get(authorize_url(confidential_app, prompt="none", id_token_hint=hint)))
        assert "code" in query

    def test_hint_signed_by_a_retired_key_after_rotation(self, browser, rp, user, confidential_app):
        from django.utils import timezone

        from oidc_provider_ext.models import SigningKey

        hint = self._hint(browser, rp, confidential_app, user)
        SigningKey.objects.filter(state="active").update(state="retired", retired=timezone.now())
        keys.create_key("RS256", state=SigningKey.State.ACTIVE)
        keys.invalidate()
        query = client_error(browser.get(authorize_url(confidential_app, prompt="none", id_token_hint=hint)))
        assert "code" in query
        new_header = json.loads(
            base64.urlsafe_b64decode(self._hint(browser, rp, confidential_app, user).split(".")[0] + "==")
        )
        assert new_header["kid"] != json.loads(base64.urlsafe_b64decode(hint.split(".")[0] + "=="))["kid"]

    @pytest.mark.parametrize("hint", ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."])
    def test_invalid_hint(self, browser, user, confidential_app, hint):
        login(browser, user)
        assert (
            client_error(browser.get(authorize_url(confidential_app, id_token_hint=hint)))["error"]
            == "invalid_request"
        )

    def test_hint_for_another_client_is_invalid(self, browser, rp, user, confidential_app):
        from .factories import ApplicationFactory

        other = ApplicationFactory()
        hint = self._hint(browser, rp, other, user)
        query = client_error(browser.get(authorize_url(confidential_app, id_token_hint=hint)))
        assert query["error"] == "invalid_request"

    def test_access_token_is_not_an_id_token_hint(self, browser, rp, user, confidential_app):
        access = tokens_for(browser, rp, confidential_app, user)["access_token"]
        query = client_error(browser.get(authorize_url(confidential_app, id_token_hint=access)))
        assert query["error"] == "invalid_request"


class TestOtherParameters:
    def test_login_hint_prefills_the_login_form(self, browser, confidential_app):
        response = browser.get(authorize_url(confidential_app, login_hint="alice@example.com"), follow=True)
        assert response.templates[0].name == "oidc_provider_ext/login.html"
        assert 'value="alice@example.com"' in response.content.decode()

    @pytest.mark.oidc_settings(UI_LOCALES=["en", "de"])
    def test_ui_locales_picks_an_offered_language(self, browser, user, confidential_app):
        response = browser.get(authorize_url(confidential_app, ui_locales="fr-CA de-DE en"), follow=True)
        page = response.content.decode()
        assert '<html lang="de" dir="ltr">' in page
        assert "Benutzername" in page  # Django's own German label for "Username"
        login(browser, user)
        response = browser.get(authorize_url(confidential_app, ui_locales="de"))
        assert '<html lang="de" dir="ltr">' in response.content.decode()

    @pytest.mark.oidc_settings(UI_LOCALES=["en"])
    def test_ui_locales_not_offered_falls_back(self, browser, confidential_app):
        response = browser.get(authorize_url(confidential_app, ui_locales="de"), follow=True)
        assert '<html lang="en' in response.content.decode()

    def test_acr_values_are_accepted(self, browser, rp, user, confidential_app):
        claims = verify_jwt(
            tokens_for(browser, rp, confidential_app, user, acr_values="urn:oidc-provider-ext:acr:password")[
                "id_token"
            ]
        )
        assert claims["acr"] == "urn:oidc-provider-ext:acr:password"


class TestClaimsParameter:
    def test_userinfo_member_releases_requested_claims(self, browser, rp, user, confidential_app):
        claims = json.dumps({"userinfo": {"name": {"essential": True}, "email": None}})
        body = tokens_for(browser, rp, confidential_app, user, scope="openid", claims=claims)
        info = rp.get(
            reverse("oidc_provider_ext:userinfo"), HTTP_AUTHORIZATION=f"Bearer {body['access_token']}"
        ).json()
        assert info == {"sub": str(user.pk), "name": "Ada Lovelace", "email": user.email}
        assert "name" not in verify_jwt(body["id_token"])

    def test_id_token_member_releases_requested_claims(self, browser, rp, user, confidential_app):
        claims = json.dumps({"id_token": {"email": {"essential": True}, "preferred_username": None}})
        id_token = verify_jwt(
            tokens_for(browser, rp, confidential_app, user, scope="openid", claims=claims)["id_token"]
        )
        assert id_token["email"] == user.email
        assert id_token["preferred_username"] == user.username
        assert "name" not in id_token

    def test_requested_claims_survive_refresh(self, browser, rp, user, confidential_app):
        claims = json.dumps({"id_token": {"email": None}, "userinfo": {"given_name": None}})
        body = tokens_for(browser, rp, confidential_app, user, scope="openid offline_access", claims=claims)
        refreshed = refresh(rp, confidential_app, body["refresh_token"])
        assert verify_jwt(refreshed["id_token"])["email"] == user.email
        info = rp.get(
            reverse("oidc_provider_ext:userinfo"), HTTP_AUTHORIZATION=f"Bearer {refreshed['access_token']}"
        )
        assert info.json()["given_name"] == "Ada"

    def test_essential_acr_we_support(self, browser, rp, user, confidential_app):
        claims = json.dumps(
            {"id_token": {"acr": {"essential": True, "values": ["urn:oidc-provider-ext:acr:password"]}}}
        )
        id_token = verify_jwt(tokens_for(browser, rp, confidential_app, user, claims=claims)["id_token"])
        assert id_token["acr"] == "urn:oidc-provider-ext:acr:password"

    def test_essential_acr_we_cannot_meet(self, browser, user, confidential_app):
        login(browser, user)
        claims = json.dumps({"id_token": {"acr": {"essential": True, "value": "urn:example:mfa"}}})
        query = client_error(browser.get(authorize_url(confidential_app, claims=claims)))
        assert query["error"] == "unmet_authentication_requirements"
        assert query["state"] == "state-123"

    def test_voluntary_acr_we_cannot_meet_returns_ours(self, browser, rp, user, confidential_app):
        claims = json.dumps({"id_token": {"acr": {"values": ["urn:example:mfa"]}}})
        id_token = verify_jwt(tokens_for(browser, rp, confidential_app, user, claims=claims)["id_token"])
        assert id_token["acr"] == "urn:oidc-provider-ext:acr:password"

    def test_sub_value_of_another_user(self, browser, user, confidential_app):
        get_code(browser, confidential_app, user)
        claims = json.dumps({"id_token": {"sub": {"value": "someone-else"}}})
        query = client_error(browser.get(authorize_url(confidential_app, prompt="none", claims=claims)))
        assert query["error"] == "login_required"

    def test_malformed_claims_parameter(self, browser, user, confidential_app):
        login(browser, user)
        query = client_error(browser.get(authorize_url(confidential_app, claims="{not json")))
        assert query["error"] == "invalid_request"


class TestScopes:
    def _userinfo(self, browser, rp, app, user, scope):
        body = tokens_for(browser, rp, app, user, scope=scope)
        return rp.get(
            reverse("oidc_provider_ext:userinfo"), HTTP_AUTHORIZATION=f"Bearer {body['access_token']}"
        ).json()

    def test_profile(self, browser, rp, user, confidential_app):
        info = self._userinfo(browser, rp, confidential_app, user, "openid profile")
        assert info["name"] == "Ada Lovelace" and info["preferred_username"] == user.username
        assert "email" not in info

    def test_email(self, browser, rp, user, confidential_app):
        info = self._userinfo(browser, rp, confidential_app, user, "openid email")
        assert info == {"sub": str(user.pk), "email": user.email, "email_verified": False}

    @pytest.mark.oidc_settings(presets.ADDRESS_PHONE_ADAPTER)
    def test_address_and_phone_through_the_adapter(self, browser, rp, user, confidential_app):
        info = self._userinfo(browser, rp, confidential_app, user, "openid address phone")
        assert info["address"]["locality"] == "London"
        assert info["phone_number"] == "+44 20 7946 0000" and info["phone_number_verified"] is True
        assert "email" not in info and "name" not in info
        meta = browser.get("/.well-known/openid-configuration").json()
        assert {"address", "phone_number"} <= set(meta["claims_supported"])

    @pytest.mark.oidc_settings(presets.DEFAULT_ADAPTER)
    def test_default_adapter_releases_nothing_it_does_not_know(self, browser, rp, user, confidential_app):
        info = self._userinfo(browser, rp, confidential_app, user, "openid address phone")
        assert info == {"sub": str(user.pk)}


class TestDiscoveryTellsTheTruth:
    @pytest.fixture
    def meta(self, client):
        return client.get("/.well-known/openid-configuration").json()

    def test_advertised_values(self, meta):
        assert meta["prompt_values_supported"] == ["none", "login", "consent", "select_account"]
        assert meta["claims_parameter_supported"] is True
        assert meta["acr_values_supported"] == list(acr.LEVELS)
        assert meta["response_types_supported"] == ["code"]
        assert meta["code_challenge_methods_supported"] == ["S256"]
        assert meta["request_parameter_supported"] is False
        assert meta["authorization_response_iss_parameter_supported"] is True
        assert {"auth_time", "acr", "amr", "sid", "azp"} <= set(meta["claims_supported"])

    def test_every_advertised_scope_is_accepted(self, browser, user, confidential_app, meta):
        login(browser, user)
        response = browser.get(authorize_url(confidential_app, scope=" ".join(meta["scopes_supported"])))
        assert response.status_code == 200

    def test_unadvertised_auth_method_is_refused(self, rp, confidential_app):
        # private_key_jwt is not advertised, so a client assertion is not client authentication.
        response = token_request(
            rp,
            {
                "grant_type": "client_credentials",
                "client_id": confidential_app.client_id,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": "x.y.z",
            },
        )
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"

    @pytest.mark.parametrize(
        ("param", "error"),
        [("request", "request_not_supported"), ("request_uri", "request_uri_not_supported")],
    )
    def test_unadvertised_request_objects_are_refused(self, browser, user, confidential_app, param, error):
        login(browser, user)
        url = authorize_url(confidential_app) + "&" + urlencode({param: "eyJhbGciOiJub25lIn0.e30."})
        # OIDC Core 6.1 / 6.2 and 3.1.2.6: an OP that does not support them says so.
        assert client_error(browser.get(url))["error"] == error
