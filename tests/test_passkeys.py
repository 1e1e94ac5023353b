"""Passkeys (issue 17, item 1): registration, passwordless sign-in, the passkey second factor, and
the attacks on them, with a software authenticator (tests/soft_authenticator.py)."""

from __future__ import annotations

import json
import logging
from urllib.parse import urlencode

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.core.checks import run_checks
from django.test import Client, RequestFactory
from django.urls import reverse

from oidc_provider_ext import acr, checks
from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.internal import op_sessions
from oidc_provider_ext.internal.passkeys import PasskeyFactor, delete_for
from oidc_provider_ext.models import OPSession, Passkey
from tests import flow
from tests.factories import USER_PASSWORD, TenantFactory, TenantMembershipFactory, UserFactory
from tests.soft_authenticator import SoftAuthenticator

LOGIN = reverse("oidc_provider_ext:login")
PASSKEYS = reverse("oidc_provider_ext:passkeys")
REGISTER_OPTIONS = reverse("oidc_provider_ext:passkey-registration-options")
SIGN_IN_OPTIONS = reverse("oidc_provider_ext:passkey-options")


@pytest.fixture
def authenticator(db):
    return SoftAuthenticator(app_settings.WEBAUTHN_RP_ID, app_settings.WEBAUTHN_ORIGINS[0])


def signed_in(user, authenticator=None) -> Client:
    """A browser that just signed in (a recent authentication): with the password, and for a user
    whose passkey makes the password only half a sign-in (internal/sign_in.py) with ``authenticator``
    on the challenge page; without one, the way Django's test client signs in (a password-only
    session, which may not change the user's factors: internal/factor_changes.py)."""
    browser = Client()
    response = flow.login(browser, user)
    assert response.status_code == 302
    if response.url == reverse("oidc_provider_ext:login-verify"):
        if authenticator is None:
            browser.force_login(user)
        else:
            page = browser.get(response.url, {"factor": "passkey"})
            options = page.context["factor_context"]["passkey_options"]
            done = browser.post(response.url, {"factor": "passkey", "credential": authenticator.get(options)})
            assert done.status_code == 302, done.content[:300]
    return browser


def register(browser, authenticator, name: str = "Laptop", **tamper):
    options = browser.post(REGISTER_OPTIONS)
    assert options.status_code == 200, options.content
    credential = authenticator.create(options.json(), **tamper)
    return browser.post(PASSKEYS, {"name": name, "credential": credential})


def sign_in_options(browser) -> dict:
    response = browser.post(SIGN_IN_OPTIONS)
    assert response.status_code == 200, response.content
    assert response["Cache-Control"].startswith("max-age=0") or "no-store" in response["Cache-Control"]
    return response.json()


def passkey_sign_in(browser, credential: str, next_url: str = "/"):
    return browser.post(f"{LOGIN}?{urlencode({'next': next_url})}", {"credential": credential})


@pytest.fixture
def enrolled(user, authenticator):
    """``user`` with a registered passkey on ``authenticator``."""
    response = register(signed_in(user), authenticator)
    assert response.status_code == 302, response.content
    return user


def passkey_session(browser) -> OPSession:
    entry = browser.session[op_sessions.SESSION_KEY][""]
    return OPSession.objects.get(pk=entry["id"])


class TestRegistration:
    def test_register_lists_the_named_passkey(self, user, authenticator):
        browser = signed_in(user)
        options = browser.post(REGISTER_OPTIONS).json()
        # Discoverable, attestation none, user verification preferred (issue 17, item 1).
        assert options["authenticatorSelection"]["residentKey"] == "required"
        assert options["authenticatorSelection"]["userVerification"] == "preferred"
        assert options["attestation"] == "none"
        assert options["rp"]["id"] == app_settings.WEBAUTHN_RP_ID
        assert options["excludeCredentials"] == []
        response = browser.post(
            PASSKEYS, {"name": "  Work\tlaptop ", "credential": authenticator.create(options)}
        )
        assert response.status_code == 302
        passkey = Passkey.objects.get(user=user)
        assert passkey.name == "Work laptop"
        assert passkey.transports == ["internal", "hybrid"]
        assert not passkey.backup_eligible
        page = browser.get(PASSKEYS)
        assert b"Work laptop" in page.content
        assert b"Never used" in page.content

    def test_registered_passkeys_are_excluded_and_share_one_user_handle(self, enrolled, authenticator):
        browser = signed_in(enrolled, authenticator)
        options = browser.post(REGISTER_OPTIONS).json()
        assert [d["id"] for d in options["excludeCredentials"]] == [Passkey.objects.get().credential_id]
        second = SoftAuthenticator(authenticator.rp_id, authenticator.origin, backup_eligible=True)
        assert (
            browser.post(PASSKEYS, {"name": "Phone", "credential": second.create(options)}).status_code == 302
        )
        assert second.user_handle == authenticator.user_handle
        assert Passkey.objects.get(name="Phone").backup_eligible

    def test_the_same_credential_twice_is_refused(self, enrolled, authenticator):
        response = register(signed_in(enrolled, authenticator), authenticator, name="Again")
        assert response.status_code == 400
        assert Passkey.objects.count() == 1

    @pytest.mark.parametrize(
        "tamper", [{"origin": "https://evil.example"}, {"rp_id": "evil.example"}], ids=["origin", "rp-id"]
    )
    def test_wrong_origin_or_rp_id_is_refused(self, user, authenticator, tamper):
        response = register(signed_in(user), authenticator, **tamper)
        assert response.status_code == 400
        assert b'role="alert"' in response.content
        assert not Passkey.objects.exists()

    def test_an_overlong_credential_id_is_refused(self, user, authenticator):
        authenticator.credential_id = bytes(1024)
        assert register(signed_in(user), authenticator).status_code == 400
        assert not Passkey.objects.exists()

    def test_the_challenge_is_single_use(self, user, authenticator):
        browser = signed_in(user)
        credential = authenticator.create(browser.post(REGISTER_OPTIONS).json())
        assert browser.post(PASSKEYS, {"name": "A", "credential": credential}).status_code == 302
        Passkey.objects.all().delete()
        assert browser.post(PASSKEYS, {"name": "A", "credential": credential}).status_code == 400
        assert not Passkey.objects.exists()

    def test_a_challenge_from_another_session_is_refused(self, user, authenticator):
        first, second = signed_in(user), signed_in(user)
        credential = authenticator.create(first.post(REGISTER_OPTIONS).json())
        second.post(REGISTER_OPTIONS)  # the second browser has a challenge of its own
        assert second.post(PASSKEYS, {"name": "A", "credential": credential}).status_code == 400
        assert not Passkey.objects.exists()

    def test_a_challenge_for_another_user_is_refused(self, user, authenticator):
        browser = signed_in(user)
        options = browser.post(REGISTER_OPTIONS).json()
        # The session changes hands (another account signs in): the challenge was not theirs.
        other = UserFactory()
        session = browser.session
        stored = session["oidc_webauthn"]
        assert flow.login(browser, other).status_code == 302
        session = browser.session
        session["oidc_webauthn"] = stored
        session.save()
        response = browser.post(PASSKEYS, {"name": "A", "credential": authenticator.create(options)})
        assert response.status_code == 400
        assert not Passkey.objects.exists()

    def test_adding_needs_a_recent_sign_in(self, user, authenticator):
        browser = signed_in(user)
        flow.set_auth_time(browser, 3600)
        response = browser.post(REGISTER_OPTIONS)
        assert response.status_code == 403
        assert response.json()["login_url"].startswith(LOGIN)
        response = browser.post(PASSKEYS, {"name": "A", "credential": "{}"})
        assert response.status_code == 302 and response["Location"].startswith(LOGIN)

    def test_anonymous_users_are_sent_to_sign_in(self, db):
        assert Client().get(PASSKEYS)["Location"].startswith(LOGIN)
        assert Client().post(REGISTER_OPTIONS).status_code == 403


class TestPasswordlessSignIn:
    def test_sign_in_with_a_passkey(self, enrolled, authenticator):
        browser = Client()
        options = sign_in_options(browser)
        assert options["userVerification"] == "required"
        assert options["allowCredentials"] == []  # discoverable: the authenticator picks the account
        response = passkey_sign_in(browser, authenticator.get(options), next_url="/somewhere")
        assert response.status_code == 302 and response["Location"] == "/somewhere"
        session = passkey_session(browser)
        assert session.user == enrolled
        assert session.amr == ["hwk", "user", "mfa"]
        assert session.acr == acr.PHISHING_RESISTANT
        passkey = Passkey.objects.get()
        assert passkey.sign_count == 1 and passkey.last_used is not None

    def test_two_queries_for_the_passkey(self, enrolled, authenticator):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        browser = Client()
        credential = authenticator.get(sign_in_options(browser))
        with CaptureQueriesContext(connection) as queries:
            assert passkey_sign_in(browser, credential).status_code == 302
        ours = [q["sql"] for q in queries.captured_queries if "oidc_provider_ext_passkey" in q["sql"]]
        assert len(ours) == 2, ours  # find the credential (with its user), move its counter

    def test_a_synced_passkey_says_swk(self, user):
        synced = SoftAuthenticator(
            app_settings.WEBAUTHN_RP_ID, app_settings.WEBAUTHN_ORIGINS[0], backup_eligible=True
        )
        register(signed_in(user), synced)
        browser = Client()
        passkey_sign_in(browser, synced.get(sign_in_options(browser)))
        assert passkey_session(browser).amr == ["swk", "user", "mfa"]
        assert Passkey.objects.get().backed_up

    def test_through_an_authorization_request_into_the_id_token(
        self, enrolled, authenticator, confidential_app, rp
    ):
        browser = Client()
        response = browser.get(flow.authorize_url(confidential_app))
        assert response.status_code == 302 and response["Location"].startswith(LOGIN)
        login_page = response["Location"]
        assert browser.get(login_page).status_code == 200
        credential = authenticator.get(sign_in_options(browser))
        response = browser.post(login_page, {"credential": credential})
        assert response.status_code == 302, response.content[:500]
        response = browser.get(response["Location"])
        if response.status_code == 200:
            response = flow.consent(browser, response)
        code = flow.query_of(response["Location"])["code"]
        tokens = flow.exchange(rp, confidential_app, code).json()
        claims = flow.verify_jwt(tokens["id_token"])
        assert claims["sub"] == str(enrolled.pk)
        assert claims["acr"] == acr.PHISHING_RESISTANT
        assert claims["amr"] == ["hwk", "user", "mfa"]

    def test_user_verification_is_required(self, enrolled, authenticator):
        authenticator.user_verified = False
        browser = Client()
        response = passkey_sign_in(browser, authenticator.get(sign_in_options(browser)))
        assert response.status_code == 400
        assert "_auth_user_id" not in browser.session

    @pytest.mark.parametrize(
        "tamper", [{"origin": "https://evil.example"}, {"rp_id": "evil.example"}], ids=["origin", "rp-id"]
    )
    def test_wrong_origin_or_rp_id_hash(self, enrolled, authenticator, tamper):
        browser = Client()
        response = passkey_sign_in(browser, authenticator.get(sign_in_options(browser), **tamper))
        assert response.status_code == 400
        assert b"could not be verified" in response.content
        assert "_auth_user_id" not in browser.session

    def test_a_replayed_assertion_is_refused(self, enrolled, authenticator):
        browser = Client()
        credential = authenticator.get(sign_in_options(browser))
        assert passkey_sign_in(browser, credential).status_code == 302
        browser.logout()
        # Same assertion again, on the same browser and on one with a fresh challenge of its own.
        assert passkey_sign_in(browser, credential).status_code == 400
        other = Client()
        sign_in_options(other)
        assert passkey_sign_in(other, credential).status_code == 400
        assert "_auth_user_id" not in other.session

    def test_a_failed_attempt_uses_up_the_challenge(self, enrolled, authenticator):
        browser = Client()
        options = sign_in_options(browser)
        assert (
            passkey_sign_in(browser, authenticator.get(options, origin="https://evil.example")).status_code
            == 400
        )
        assert passkey_sign_in(browser, authenticator.get(options)).status_code == 400

    def test_a_challenge_from_another_session(self, enrolled, authenticator):
        issued_to, other = Client(), Client()
        credential = authenticator.get(sign_in_options(issued_to))
        response = passkey_sign_in(other, credential)  # no challenge in this session at all
        assert response.status_code == 400
        assert b"expired" in response.content

    def test_the_challenge_expires(self, enrolled, authenticator, monkeypatch):
        import time

        browser = Client()
        credential = authenticator.get(sign_in_options(browser))
        later = time.time() + 301
        monkeypatch.setattr("oidc_provider_ext.internal.passkeys.time.time", lambda: later)
        assert passkey_sign_in(browser, credential).status_code == 400

    def test_counter_regression_is_refused_and_logged(self, enrolled, authenticator, caplog):
        Passkey.objects.update(sign_count=10)
        authenticator.sign_count = 4  # a clone that lags behind the original
        browser = Client()
        with caplog.at_level(logging.WARNING, logger="oidc_provider_ext.internal.passkeys"):
            response = passkey_sign_in(browser, authenticator.get(sign_in_options(browser)))
        assert response.status_code == 400
        assert "possibly cloned" in caplog.text
        assert Passkey.objects.get().sign_count == 10

    def test_a_zero_counter_authenticator_keeps_working(self, enrolled, authenticator):
        # WebAuthn L3 6.1.1: authenticators without a counter always send 0.
        for _ in range(2):
            browser = Client()
            credential = authenticator.get(sign_in_options(browser), count=False)
            assert passkey_sign_in(browser, credential).status_code == 302

    def test_a_deleted_passkey(self, enrolled, authenticator):
        Passkey.objects.all().delete()
        browser = Client()
        response = passkey_sign_in(browser, authenticator.get(sign_in_options(browser)))
        assert response.status_code == 400
        assert b"not registered here" in response.content

    def test_another_users_handle_is_refused(self, enrolled, authenticator):
        browser = Client()
        credential = authenticator.get(sign_in_options(browser), user_handle=b"someone else")
        assert passkey_sign_in(browser, credential).status_code == 400

    def test_an_inactive_user(self, enrolled, authenticator):
        type(enrolled).objects.filter(pk=enrolled.pk).update(is_active=False)
        browser = Client()
        response = passkey_sign_in(browser, authenticator.get(sign_in_options(browser)))
        assert response.status_code == 400
        assert "_auth_user_id" not in browser.session

    def test_a_tenant_login_page_only_lets_members_in(self, enrolled, authenticator, confidential_app):
        tenant = TenantFactory(code="acme")
        browser = Client()
        # A non-member: the answer an unknown passkey gets.
        response = browser.get(flow.authorize_url(confidential_app, acr_values="tenant:acme"))
        login_page = response["Location"]
        response = browser.post(login_page, {"credential": authenticator.get(sign_in_options(browser))})
        assert response.status_code == 400
        assert b"not registered here" in response.content
        # A member gets in, into the tenant's OP session.
        TenantMembershipFactory(user=enrolled, tenant=tenant)
        response = browser.post(login_page, {"credential": authenticator.get(sign_in_options(browser))})
        assert response.status_code == 302
        assert "acme" in browser.session[op_sessions.SESSION_KEY]

    def test_the_address_throttle_applies(self, enrolled, authenticator):
        browser = Client()
        options = sign_in_options(browser)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("oidc_provider_ext.conf.AppSettings.LOGIN_ADDRESS_FAILURE_LIMIT", 1)
            passkey_sign_in(browser, "{}")  # a failure
            response = passkey_sign_in(browser, authenticator.get(options))
        assert response.status_code == 429
        assert "_auth_user_id" not in browser.session

    @pytest.mark.parametrize(
        "credential",
        [
            '{"id": "\x00"}',
            "x" * 1_000_000,
            "[" * 5000 + "]" * 5000,
            '{"a":' * 50 + "1" + "}" * 50,
            "not json",
            "[]",
        ],
        ids=["nul", "1mb", "deep-array", "deep-object", "not-json", "not-object"],
    )
    def test_bad_input_is_a_400(self, enrolled, credential):
        browser = Client()
        sign_in_options(browser)
        response = passkey_sign_in(browser, credential)
        assert response.status_code == 400

    @pytest.mark.parametrize(
        "response",
        [
            "x",
            [],
            1,
            None,
            {"clientDataJSON": "!!", "authenticatorData": "AA", "signature": "AA"},
            {"clientDataJSON": "e30", "authenticatorData": "AA", "signature": "AA"},
            {"clientDataJSON": "W10", "authenticatorData": "AA", "signature": "AA", "userHandle": 5},
            {"clientDataJSON": 7, "authenticatorData": [], "signature": {}},
            {"clientDataJSON": "e30", "attestationObject": "oA", "transports": "usb"},
        ],
    )
    @pytest.mark.parametrize("where", ["sign-in", "register"])
    def test_malformed_credentials_are_a_400(self, enrolled, authenticator, response, where):
        real = json.loads(authenticator.get({"challenge": "AA"}))
        credential = json.dumps({**real, "response": response})
        if where == "sign-in":
            browser = Client()
            sign_in_options(browser)
            assert passkey_sign_in(browser, credential).status_code == 400
        else:
            browser = signed_in(enrolled, authenticator)
            browser.post(REGISTER_OPTIONS)
            assert browser.post(PASSKEYS, {"name": "x", "credential": credential}).status_code == 400

    def test_a_well_formed_but_empty_credential_is_a_400(self, enrolled):
        browser = Client()
        sign_in_options(browser)
        response = passkey_sign_in(browser, json.dumps({"id": "AA", "rawId": "!!", "response": {}}))
        assert response.status_code == 400

    def test_the_anonymous_session_expires_with_the_request(self, db):
        browser = Client()
        sign_in_options(browser)
        assert browser.session.get_expiry_age() == app_settings.AUTHORIZE_REQUEST_MAX_AGE_SECONDS

    @pytest.mark.oidc_settings(ISSUER="http://localhost:8000")
    def test_login_page_offers_passkeys(self, db):
        page = Client().get(LOGIN).content.decode()
        assert 'autocomplete="username webauthn"' in page
        assert 'id="oidc-passkey-signin"' in page
        assert "oidc_provider_ext/passkeys.js" in page
        assert "<script>" not in page  # CSP script-src 'self': no inline code

    @pytest.mark.oidc_settings(ISSUER="http://127.0.0.1:8000")
    def test_no_passkey_button_where_browsers_refuse_them(self, db):
        page = Client().get(LOGIN).content.decode()
        assert 'id="oidc-passkey-signin"' not in page


class TestFactor:
    """PasskeyFactor: a passkey as the second factor of ONE user (contract17.md)."""

    def _request(self, user, session, data=None):
        request = (
            RequestFactory().post("/step-up", data or {}) if data is not None else RequestFactory().get("/")
        )
        request.session = session
        request.user = user
        return request

    def test_verify_gives_the_amr_of_the_users_passkey(self, enrolled, authenticator):
        factor, session = PasskeyFactor(), SessionStore()
        assert factor.enrolled(enrolled)
        context = factor.challenge_context(self._request(enrolled, session), enrolled)
        options = context["passkey_options"]
        assert [d["id"] for d in options["allowCredentials"]] == [Passkey.objects.get().credential_id]
        credential = authenticator.get(options)
        assert factor.verify(self._request(enrolled, session, {"credential": credential}), enrolled) == [
            "hwk",
            "user",
        ]
        # Single use.
        assert factor.verify(self._request(enrolled, session, {"credential": credential}), enrolled) is None

    def test_another_users_passkey_is_refused(self, enrolled, authenticator):
        victim = UserFactory()
        mine = SoftAuthenticator(authenticator.rp_id, authenticator.origin)
        register(signed_in(victim), mine)
        factor, session = PasskeyFactor(), SessionStore()
        options = factor.challenge_context(self._request(victim, session), victim)["passkey_options"]
        # The attacker answers the victim's challenge with the attacker's own passkey.
        credential = authenticator.get(options)
        assert factor.verify(self._request(victim, session, {"credential": credential}), victim) is None

    def test_a_sign_in_challenge_is_not_a_factor_challenge(self, enrolled, authenticator):
        browser = Client()
        options = sign_in_options(browser)
        session = SessionStore(session_key=browser.session.session_key)
        credential = authenticator.get(options)
        assert (
            PasskeyFactor().verify(self._request(enrolled, session, {"credential": credential}), enrolled)
            is None
        )

    def test_not_enrolled_and_nothing_posted(self, user):
        factor = PasskeyFactor()
        assert not factor.enrolled(user)
        assert factor.verify(self._request(user, SessionStore(), {}), user) is None

    def test_the_partial_renders(self, enrolled):
        from django.template.loader import render_to_string

        request = self._request(enrolled, SessionStore())
        factor = PasskeyFactor()
        html = render_to_string(
            factor.template_name,
            {"factor_context": factor.challenge_context(request, enrolled)},
            request=request,
        )
        # Inside the challenge page's form (which names the factor): the widget, the hidden field
        # the script fills, and the options with this user's passkey only.
        assert 'id="oidc-passkey-factor"' in html and 'name="credential"' in html
        assert 'id="oidc-passkey-options" type="application/json"' in html
        assert Passkey.objects.get(user=enrolled).credential_id in html


class TestManagement:
    def test_rename(self, enrolled):
        browser = signed_in(enrolled)
        passkey = Passkey.objects.get()
        response = browser.post(
            reverse("oidc_provider_ext:passkey-rename", args=[passkey.pk]), {"name": "Desk\x00"}
        )
        assert response.status_code == 400  # the request boundary: a control character
        browser.post(
            reverse("oidc_provider_ext:passkey-rename", args=[passkey.pk]), {"name": "x" * 60 + " Desk"}
        )
        assert Passkey.objects.get().name == ("x" * 60 + " Desk")[:64]

    def test_another_users_passkey_is_a_404(self, enrolled):
        passkey = Passkey.objects.get()
        stranger = signed_in(UserFactory())
        for name in ("passkey-rename", "passkey-remove"):
            url = reverse(f"oidc_provider_ext:{name}", args=[passkey.pk])
            assert stranger.post(url, {"name": "mine"}).status_code == 404
        assert stranger.get(reverse("oidc_provider_ext:passkey-remove", args=[passkey.pk])).status_code == 404
        assert Passkey.objects.get().name == "Laptop"

    def test_removal_needs_a_recent_sign_in(self, enrolled):
        browser = signed_in(enrolled)
        flow.set_auth_time(browser, 3600)
        url = reverse("oidc_provider_ext:passkey-remove", args=[Passkey.objects.get().pk])
        response = browser.post(url)
        assert response.status_code == 302 and response["Location"].startswith(LOGIN)
        assert Passkey.objects.exists()

    def test_removal_ends_the_sign_ins_that_relied_on_a_passkey(self, enrolled, authenticator):
        elsewhere = Client()
        passkey_sign_in(elsewhere, authenticator.get(sign_in_options(elsewhere)))
        by_passkey = passkey_session(elsewhere)
        by_password = signed_in(enrolled, authenticator)  # password and passkey
        here = passkey_session(by_password)
        url = reverse("oidc_provider_ext:passkey-remove", args=[Passkey.objects.get().pk])
        assert by_password.get(url).status_code == 200
        assert by_password.post(url).status_code == 302
        assert not Passkey.objects.exists()
        by_passkey.refresh_from_db()
        here.refresh_from_db()
        assert by_passkey.ended is not None
        assert here.ended is None
        # The stale browser is signed out on its next request.
        assert elsewhere.get(PASSKEYS)["Location"].startswith(LOGIN)

    def test_delete_for_is_the_reset_hook(self, enrolled, authenticator):
        browser = Client()
        passkey_sign_in(browser, authenticator.get(sign_in_options(browser)))
        assert delete_for(enrolled) == 1
        assert passkey_session(browser).ended is not None
        assert not Passkey.objects.exists()

    def test_admin_is_read_only_and_deleting_ends_sessions(self, enrolled, authenticator, admin_client):
        browser = Client()
        passkey_sign_in(browser, authenticator.get(sign_in_options(browser)))
        passkey = Passkey.objects.get()
        assert admin_client.get("/admin/oidc_provider_ext/passkey/").status_code == 200
        assert admin_client.get("/admin/oidc_provider_ext/passkey/add/").status_code == 403
        change = admin_client.get(f"/admin/oidc_provider_ext/passkey/{passkey.pk}/change/")
        assert change.status_code == 200 and b'name="name"' not in change.content
        admin_client.post(f"/admin/oidc_provider_ext/passkey/{passkey.pk}/delete/", {"post": "yes"})
        assert not Passkey.objects.exists()
        assert passkey_session(browser).ended is not None

    def test_a_view_only_staff_member_can_only_look(self, enrolled):
        from django.contrib.auth.models import Permission

        staff = UserFactory(is_staff=True)
        staff.user_permissions.add(Permission.objects.get(codename="view_passkey"))
        browser = Client()
        browser.force_login(staff)
        passkey = Passkey.objects.get()
        assert browser.get("/admin/oidc_provider_ext/passkey/").status_code == 200
        assert browser.get(f"/admin/oidc_provider_ext/passkey/{passkey.pk}/change/").status_code == 200
        assert (
            browser.post(f"/admin/oidc_provider_ext/passkey/{passkey.pk}/change/", {"name": "x"}).status_code
            == 403
        )
        assert (
            browser.post(
                f"/admin/oidc_provider_ext/passkey/{passkey.pk}/delete/", {"post": "yes"}
            ).status_code
            == 403
        )
        assert Passkey.objects.get().name == "Laptop"


class TestAcr:
    @pytest.mark.parametrize(
        ("amr", "level"),
        [
            (["pwd"], acr.PASSWORD),
            (["pwd", "otp"], acr.MFA),
            (["hwk"], acr.PASSWORD),
            (["hwk", "user"], acr.PHISHING_RESISTANT),
            (["pwd", "swk"], acr.PHISHING_RESISTANT),
            (["otp"], acr.PASSWORD),
        ],
    )
    def test_acr_for(self, amr, level):
        assert acr.acr_for(amr) == level

    def test_amr_with_mfa_and_satisfies(self):
        assert acr.amr_with_mfa(["hwk", "user", "hwk"]) == ["hwk", "user", "mfa"]
        assert acr.amr_with_mfa(["pwd"]) == ["pwd"]
        assert acr.satisfies(acr.PHISHING_RESISTANT, acr.MFA)
        assert not acr.satisfies(acr.PASSWORD, acr.MFA)
        assert acr.satisfies("urn:other", "urn:other") and not acr.satisfies("urn:other", acr.PASSWORD)


class TestChecks:
    def _ids(self):
        return {message.id for message in run_checks(include_deployment_checks=True)}

    def test_defaults_are_clean(self):
        ids = {m.id for m in run_checks()}
        assert not ids & {checks.E060, checks.E061, checks.W060}

    def test_e060_rp_id_not_a_suffix_of_the_origin(self, settings):
        flow_settings = {"ISSUER": "https://id.example.com", "WEBAUTHN_RP_ID": "other.example"}
        settings.OIDC_PROVIDER_EXT = {**settings.OIDC_PROVIDER_EXT, **flow_settings}
        assert checks.E060 in self._ids()
        settings.OIDC_PROVIDER_EXT = {**settings.OIDC_PROVIDER_EXT, "WEBAUTHN_RP_ID": "example.com"}
        assert checks.E060 not in self._ids()
        settings.OIDC_PROVIDER_EXT = {**settings.OIDC_PROVIDER_EXT, "WEBAUTHN_RP_ID": "com"}
        assert checks.E060 in self._ids()  # a public suffix, not registrable

    def test_e061_origins_must_be_https(self, settings):
        base = {**settings.OIDC_PROVIDER_EXT, "ISSUER": "https://id.example.com"}
        settings.OIDC_PROVIDER_EXT = {**base, "WEBAUTHN_ORIGINS": ["http://id.example.com"]}
        assert checks.E061 in self._ids()
        settings.OIDC_PROVIDER_EXT = {**base, "WEBAUTHN_ORIGINS": ["https://id.example.com/path"]}
        assert checks.E061 in self._ids()
        settings.OIDC_PROVIDER_EXT = {**base, "WEBAUTHN_ORIGINS": "https://id.example.com"}
        assert checks.E061 in self._ids()
        settings.OIDC_PROVIDER_EXT = {**base, "ISSUER": "http://localhost:8000", "WEBAUTHN_ORIGINS": None}
        assert checks.E061 not in self._ids()

    def test_w060_ip_address_rp_id_on_deploy(self, settings):
        settings.OIDC_PROVIDER_EXT = {**settings.OIDC_PROVIDER_EXT, "ISSUER": "http://127.0.0.1:8000"}
        assert checks.W060 in self._ids()
        assert checks.W060 not in {m.id for m in run_checks()}
        settings.OIDC_PROVIDER_EXT = {**settings.OIDC_PROVIDER_EXT, "ISSUER": "http://localhost:8000"}
        assert checks.W060 not in self._ids()

    def test_settings_change_behaviour(self, settings, user):
        settings.OIDC_PROVIDER_EXT = {
            **settings.OIDC_PROVIDER_EXT,
            "WEBAUTHN_RP_ID": "example.org",
            "WEBAUTHN_RP_NAME": "Example IdP",
            "WEBAUTHN_ORIGINS": ["https://id.example.org"],
        }
        options = signed_in(user).post(REGISTER_OPTIONS).json()
        assert options["rp"] == {"id": "example.org", "name": "Example IdP"}
        authenticator = SoftAuthenticator("example.org", "https://id.example.org")
        browser = signed_in(user)
        assert register(browser, authenticator).status_code == 302


# --- removing a passkey (review 2, findings 1 and 7) -----------------------------------------------


def password_only_session(user) -> Client:
    """The attacker knows the password only: django.contrib.auth's login page (no second factor)."""
    browser = Client()
    response = browser.post("/accounts/login/", {"username": user.username, "password": USER_PASSWORD})
    assert response.status_code == 302, response.content[:300]
    (entry,) = browser.session["oidc_op_sessions"].values()
    assert entry["amr"] == ["pwd"] and entry["acr"] == acr.PASSWORD
    return browser


def _register_passkey(user) -> SoftAuthenticator:
    key = SoftAuthenticator(app_settings.WEBAUTHN_RP_ID, app_settings.WEBAUTHN_ORIGINS[0])
    owner = Client()
    owner.force_login(user)
    options = owner.post(reverse("oidc_provider_ext:passkey-registration-options")).json()
    response = owner.post(
        reverse("oidc_provider_ext:passkeys"), {"name": "k", "credential": key.create(options)}
    )
    assert response.status_code == 302
    return key


class TestPasskeyRemoval:
    def test_a_password_only_session_cannot_remove_the_users_passkey(self, user, confidential_app):
        """Victim protected by a passkey only: the password-only session removes it, and from then
        on the password alone gets codes."""
        _register_passkey(user)
        attacker = password_only_session(user)
        passkey = Passkey.objects.get(user=user)
        attacker.post(reverse("oidc_provider_ext:passkey-remove", args=[passkey.pk]))
        assert Passkey.objects.filter(user=user).exists(), "a password-only session removed the passkey"

    def test_this_browser_stops_counting_a_removed_passkey(self, user):
        """Low: removing the app drops this browser's acr (docs/mfa.md), removing a passkey does not
        (docs/passkeys.md keeps it): the browser stays phishing-resistant with no passkey left."""
        key = _register_passkey(user)
        browser = Client()
        options = browser.post(reverse("oidc_provider_ext:passkey-options")).json()
        browser.post(reverse("oidc_provider_ext:login"), {"credential": key.get(options)})
        browser.post(reverse("oidc_provider_ext:passkey-remove", args=[Passkey.objects.get().pk]))
        assert not Passkey.objects.exists()
        assert browser.session["oidc_op_sessions"][""]["acr"] != acr.PHISHING_RESISTANT

    def test_a_password_only_session_is_sent_to_confirm_before_adding_one(self, user):
        """The page script gets a 403 naming the account step-up page (not the password page)."""
        flow.enrol_totp(user)
        attacker = password_only_session(user)
        response = attacker.post(REGISTER_OPTIONS)
        assert response.status_code == 403
        assert response.json()["login_url"].startswith(reverse("oidc_provider_ext:account-step-up"))
