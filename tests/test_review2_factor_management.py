"""Review 2: the account-security pages trust any recent sign-in, even one that skipped the second
factor. Someone who knows only the password of a user with a second factor signs in on a page that
asks no second factor (django.contrib.auth's /accounts/login/, the admin's login page, both mounted
by the example project and documented as "stepped up before any client gets a code"), then removes
the factor, reads new recovery codes or plants a passkey/app of their own, and from then on signs
in to every client with the password alone or with a multi-factor acr of their own making."""

from __future__ import annotations

import time

import pyotp
import pytest
from django.test import Client
from django.urls import reverse

from oidc_provider_ext import acr
from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.internal import factors
from oidc_provider_ext.models import OPSession, Passkey, TOTPDevice

from .factories import USER_PASSWORD
from .flow import authorize_url, enrol_totp, exchange, query_of, set_auth_time, verify_jwt
from .soft_authenticator import SoftAuthenticator

pytestmark = pytest.mark.django_db

ACCOUNTS_LOGIN = "/accounts/login/"


def password_only_session(user) -> Client:
    """The attacker knows the password only: django.contrib.auth's login page (no second factor)."""
    browser = Client()
    response = browser.post(ACCOUNTS_LOGIN, {"username": user.username, "password": USER_PASSWORD})
    assert response.status_code == 302, response.content[:300]
    (entry,) = browser.session["oidc_op_sessions"].values()
    assert entry["amr"] == ["pwd"] and entry["acr"] == acr.PASSWORD
    return browser


def code_for(browser, app, **params):
    response = browser.get(authorize_url(app, **params))
    if response.status_code == 200 and "form_action" in (response.context or {}):
        from .flow import consent

        response = consent(browser, response)
    return response


class TestPasswordOnlySessionManagesFactors:
    def test_removing_the_app_needs_the_second_factor(self, user, confidential_app, rp):
        enrol_totp(user)
        attacker = password_only_session(user)
        attacker.post(reverse("oidc_provider_ext:account-totp-remove"))
        # The second factor must survive a session that never passed it.
        assert TOTPDevice.objects.filter(user=user).exists(), (
            "a password-only session removed the authenticator app"
        )

    def test_password_only_then_remove_app_yields_a_code_without_mfa(self, user, confidential_app, rp):
        """End to end: after the removal, the password alone gets a code (acr password)."""
        enrol_totp(user)
        attacker = password_only_session(user)
        attacker.post(reverse("oidc_provider_ext:account-totp-remove"))
        response = code_for(attacker, confidential_app)
        location = response.get("Location", "")
        assert "/step-up/" in location or "/login" in location, (
            f"password-only sign-in got past the second factor: {response.status_code} {location}"
        )

    def test_new_recovery_codes_need_the_second_factor(self, user):
        enrol_totp(user)
        attacker = password_only_session(user)
        response = attacker.post(reverse("oidc_provider_ext:account-recovery-codes"))
        codes = (response.context or {}).get("codes") if response.status_code == 200 else None
        assert not codes, "a password-only session was shown ten fresh recovery codes"

    def test_recovery_codes_read_by_a_password_only_session_sign_in_with_mfa(self, user):
        enrol_totp(user)
        attacker = password_only_session(user)
        response = attacker.post(reverse("oidc_provider_ext:account-recovery-codes"))
        codes = (response.context or {}).get("codes") or []
        if not codes:
            return  # fixed: nothing to use
        fresh = Client()
        response = fresh.post(reverse("oidc_provider_ext:login"), {"username": user.username, "password": USER_PASSWORD})
        assert response["Location"] == reverse("oidc_provider_ext:login-verify")
        response = fresh.post(response["Location"], {"factor": "recovery", "code": codes[0]})
        assert response.status_code != 302, "the stolen recovery code finished a multi-factor sign-in"

    def test_adding_a_passkey_needs_the_second_factor(self, user):
        enrol_totp(user)
        attacker = password_only_session(user)
        options = attacker.post(reverse("oidc_provider_ext:passkey-registration-options"))
        if options.status_code == 200:
            key = SoftAuthenticator(app_settings.WEBAUTHN_RP_ID, app_settings.WEBAUTHN_ORIGINS[0])
            attacker.post(
                reverse("oidc_provider_ext:passkeys"), {"name": "mine", "credential": key.create(options.json())}
            )
        assert not Passkey.objects.filter(user=user).exists(), (
            "a password-only session planted a passkey (passwordless, phishing-resistant sign-in as the victim)"
        )

    def test_a_users_passkey_is_not_bypassed_by_an_app_of_the_attacker(self, user, confidential_app, rp):
        """Victim protected by a passkey only. The attacker signs in with the password on a page
        asking no factor, sets up an authenticator app of their own (no recent sign-in, no existing
        factor asked) and the browser's session counts it: MFA, a code and an ID token saying
        acr multi-factor / amr otp."""
        key = SoftAuthenticator(app_settings.WEBAUTHN_RP_ID, app_settings.WEBAUTHN_ORIGINS[0])
        owner = Client()
        owner.force_login(user)
        options = owner.post(reverse("oidc_provider_ext:passkey-registration-options")).json()
        assert owner.post(reverse("oidc_provider_ext:passkeys"), {"name": "k", "credential": key.create(options)}).status_code == 302
        assert factors.has_second_factor(user)

        attacker = password_only_session(user)
        page = attacker.get(reverse("oidc_provider_ext:account-totp"))
        if page.status_code == 200:
            secret = "".join(page.context["secret_groups"])
            attacker.post(reverse("oidc_provider_ext:account-totp"), {"code": pyotp.TOTP(secret).now()})
        response = code_for(attacker, confidential_app)
        location = response.get("Location", "")
        assert not location.startswith("https://rp.example") or "code=" not in location, (
            "the attacker's own authenticator app stood in for the victim's passkey: " + location
        )


class TestStaleSessionPlantsAFactor:
    def test_setting_up_an_app_needs_a_recent_sign_in(self, user):
        """A stolen, old session (the passkey pages refuse it: "a stolen, older session cannot
        plant or remove one") sets up an app of the attacker: the victim's next password sign-in
        asks for the attacker's codes (locked out), the attacker is shown the recovery codes."""
        browser = Client()
        browser.force_login(user)
        set_auth_time(browser, 7 * 24 * 3600)
        page = browser.get(reverse("oidc_provider_ext:account-totp"))
        if page.status_code == 200:
            secret = "".join(page.context["secret_groups"])
            browser.post(reverse("oidc_provider_ext:account-totp"), {"code": pyotp.TOTP(secret).now()})
        assert not TOTPDevice.objects.filter(user=user, confirmed__isnull=False).exists(), (
            "a week-old session set up an authenticator app without signing in again"
        )

    def test_setting_up_an_app_is_not_a_fresh_authentication(self, user, confidential_app):
        """Confirming a brand-new app proves only that the session holder has the app it was just
        given: it must not move auth_time to now (max_age, the recent-sign-in guards)."""
        browser = Client()
        browser.force_login(user)
        set_auth_time(browser, 7 * 24 * 3600)
        old = browser.session["oidc_op_sessions"][""]["auth_time"]
        page = browser.get(reverse("oidc_provider_ext:account-totp"))
        if page.status_code != 200:
            return
        secret = "".join(page.context["secret_groups"])
        browser.post(reverse("oidc_provider_ext:account-totp"), {"code": pyotp.TOTP(secret).now()})
        new = browser.session["oidc_op_sessions"][""]["auth_time"]
        assert new == old, "enrolling an app made a week-old session count as signed in just now"
        # ...which the passkey page then accepts as a recent sign-in:
        options = browser.post(reverse("oidc_provider_ext:passkey-registration-options"))
        assert options.status_code == 403
        # ...and max_age=60 is answered without asking for the password again.
        response = browser.get(authorize_url(confidential_app, max_age="60"))
        assert "/login" in response.get("Location", "")


def _register_passkey(user) -> SoftAuthenticator:
    key = SoftAuthenticator(app_settings.WEBAUTHN_RP_ID, app_settings.WEBAUTHN_ORIGINS[0])
    owner = Client()
    owner.force_login(user)
    options = owner.post(reverse("oidc_provider_ext:passkey-registration-options")).json()
    response = owner.post(reverse("oidc_provider_ext:passkeys"), {"name": "k", "credential": key.create(options)})
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
