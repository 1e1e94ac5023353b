"""Second factors (docs/mfa.md): the authenticator app (RFC 6238), recovery codes, the sign-in
challenge after a password, and the account pages. Attacked first: a second factor cannot be
skipped, replayed, guessed without limit, or outlived by a session after it was removed."""

from __future__ import annotations

import re
import sys
from urllib.parse import urlencode

import pyotp
import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from oidc_provider_ext import acr
from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.internal import factors, recovery_codes, totp
from oidc_provider_ext.models import OPSession, Passkey, RecoveryCode, TOTPDevice

from .conftest import oidc_settings
from .factories import USER_PASSWORD, UserFactory
from .flow import (
    authorize_url,
    enrol_totp,
    forget_used_codes,
    login,
    query_of,
    set_auth_time,
    sign_in_with_totp,
    totp_code,
)
from .soft_authenticator import SoftAuthenticator

pytestmark = pytest.mark.django_db

VERIFY = "/connect/login/verify"
SECURITY = "/connect/security"


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def live_sessions(user):
    return list(OPSession.objects.filter(user=user, ended__isnull=True))


# --- acr levels (the contract shared with the passkey factor) ------------------------------------


class TestAcrLevels:
    @pytest.mark.parametrize(
        ("amr", "level"),
        [
            (["pwd"], acr.PASSWORD),
            (["otp"], acr.PASSWORD),
            (["pwd", "otp"], acr.MFA),
            (["pwd", "hwk"], acr.PHISHING_RESISTANT),
            (["swk", "user"], acr.PHISHING_RESISTANT),
            (["hwk"], acr.PASSWORD),
            (["otp", "user"], acr.PASSWORD),  # "user" counts only with a key
            (["pwd", "otp", "swk", "user"], acr.PHISHING_RESISTANT),
        ],
    )
    def test_acr_for(self, amr, level):
        assert acr.acr_for(amr) == level

    def test_satisfies_ranks_levels_and_unknown_values_only_themselves(self):
        assert acr.satisfies(acr.PHISHING_RESISTANT, acr.MFA)
        assert acr.satisfies(acr.MFA, acr.PASSWORD)
        assert not acr.satisfies(acr.PASSWORD, acr.MFA)
        assert acr.satisfies("urn:x", "urn:x")
        assert not acr.satisfies(acr.PHISHING_RESISTANT, "urn:x")
        assert not acr.satisfies("urn:x", acr.PASSWORD)

    def test_amr_with_mfa(self):
        assert acr.amr_with_mfa(["pwd"]) == ["pwd"]
        assert acr.amr_with_mfa(["pwd", "otp", "otp", "mfa"]) == ["pwd", "otp", "mfa"]


# --- TOTP ----------------------------------------------------------------------------------------


class TestTOTPEnrolment:
    def enrol_page(self, browser, user):
        browser.force_login(user)
        response = browser.get("/connect/security/app")
        assert response.status_code == 200
        return response

    def test_qr_code_is_drawn_locally_and_the_key_is_shown(self, browser, user):
        response = self.enrol_page(browser, user)
        html = response.content.decode()
        # A data: URI (no external service sees the key), an SVG QR code.
        assert re.search(r'<img src="data:image/svg\+xml;base64,[A-Za-z0-9+/=]+"', html)
        assert "chart.googleapis" not in html and "https://api.qrserver" not in html
        secret = "".join(response.context["secret_groups"])
        assert len(secret) == 32 and pyotp.TOTP(secret).now()
        assert response["Cache-Control"] == "no-store" or "no-store" in response["Cache-Control"]

    def test_the_key_is_stored_encrypted(self, browser, user):
        response = self.enrol_page(browser, user)
        secret = "".join(response.context["secret_groups"])
        stored = TOTPDevice.objects.get(user=user).encrypted_secret
        assert secret not in stored and secret.lower() not in stored.lower()
        assert totp.secret_of(TOTPDevice.objects.get(user=user)) == secret

    def test_it_counts_only_once_confirmed_with_a_code(self, browser, user):
        response = self.enrol_page(browser, user)
        secret = "".join(response.context["secret_groups"])
        assert not factors.has_second_factor(user)
        response = browser.post(
            "/connect/security/app", {"code": "000000" if pyotp.TOTP(secret).now() != "000000" else "111111"}
        )
        assert response.status_code == 400 and 'role="alert"' in response.content.decode()
        assert not factors.has_second_factor(user)
        # Reloading the page keeps the same key (the app may already hold it).
        assert "".join(browser.get("/connect/security/app").context["secret_groups"]) == secret
        response = browser.post("/connect/security/app", {"code": pyotp.TOTP(secret).now()})
        assert response.status_code == 200
        assert factors.has_second_factor(user)
        codes = response.context["codes"]
        assert len(codes) == 10 and len(set(codes)) == 10
        assert all(re.fullmatch(r"[0-9a-z]{5}-[0-9a-z]{5}", code) for code in codes)
        # Stored as keyed hashes only.
        stored = set(RecoveryCode.objects.filter(user=user).values_list("code_hash", flat=True))
        assert len(stored) == 10
        assert not {code.replace("-", "") for code in codes} & stored

    def test_confirming_a_new_app_is_not_a_sign_in_with_it(self, browser, user):
        """A code from the app just given proves only that: the session keeps its acr, amr and
        auth_time (review 2, findings 2 and 3); the next sign-in or a step-up uses the app."""
        response = self.enrol_page(browser, user)
        before = browser.session["oidc_op_sessions"][""]
        secret = "".join(response.context["secret_groups"])
        browser.post("/connect/security/app", {"code": pyotp.TOTP(secret).now()})
        assert factors.has_second_factor(user)
        (op_session,) = live_sessions(user)
        assert op_session.acr == acr.PASSWORD and op_session.amr == ["pwd"]
        assert browser.session["oidc_op_sessions"][""] == before

    def test_a_second_app_needs_the_first_removed(self, browser, user):
        sign_in_with_totp(browser, user, enrol_totp(user))
        response = browser.get("/connect/security/app")
        assert response.status_code == 302 and response["Location"] == SECURITY

    @pytest.mark.parametrize("code", ["\x00", "1" * 1_000_000, "12345a", "１２３４５６", "123 456 7"])
    def test_bad_codes_are_refused_without_a_500(self, browser, user, code):
        self.enrol_page(browser, user)
        response = browser.post("/connect/security/app", {"code": code})
        assert response.status_code == 400
        assert not factors.has_second_factor(user)

    def test_anonymous_users_are_sent_to_sign_in(self, browser):
        for url in (SECURITY, "/connect/security/app", "/connect/security/recovery-codes"):
            response = browser.get(url)
            assert response.status_code == 302 and response["Location"].startswith("/connect/login")


class TestTOTPVerification:
    def test_the_current_and_neighbouring_steps_pass_and_further_ones_do_not(self, user):
        app = enrol_totp(user)
        device = totp.confirmed_device(user)
        assert not totp.verify(device, totp_code(app, -2))
        assert not totp.verify(device, totp_code(app, 2))
        assert totp.verify(device, totp_code(app, -1))
        assert totp.verify(device, totp_code(app, 0))
        assert totp.verify(device, totp_code(app, 1))

    def test_a_code_is_accepted_once(self, user):
        app = enrol_totp(user)
        device = totp.confirmed_device(user)
        code = totp_code(app)
        assert totp.verify(device, code)
        assert not totp.verify(device, code)
        # and an older step after a newer one is a replay too
        assert not totp.verify(device, totp_code(app, -1))

    def test_spaces_as_apps_show_them_are_fine(self, user):
        app = enrol_totp(user)
        code = totp_code(app)
        assert totp.verify(totp.confirmed_device(user), f" {code[:3]} {code[3:]} ")

    def test_another_users_code_does_not_work(self, user):
        other = UserFactory()
        enrol_totp(user)
        other_app = enrol_totp(other)
        assert not totp.verify(totp.confirmed_device(user), totp_code(other_app))


# --- the sign-in challenge ----------------------------------------------------------------------


class TestSignInChallenge:
    def test_password_alone_does_not_sign_in(self, browser, user):
        enrol_totp(user)
        response = login(browser, user, next_url="/connect/apps")
        assert response.status_code == 302 and response["Location"] == VERIFY
        assert not signed_in(browser)
        assert not OPSession.objects.filter(user=user).exists()
        page = browser.get(VERIFY)
        assert page.status_code == 200
        html = page.content.decode()
        assert 'autocomplete="one-time-code"' in html and 'inputmode="numeric"' in html
        assert 'name="password"' not in html

    def test_the_code_finishes_the_sign_in_with_both_methods(self, browser, user):
        app = enrol_totp(user)
        response = sign_in_with_totp(browser, user, app, next_url="/connect/apps")
        assert response.status_code == 302 and response["Location"] == "/connect/apps"
        assert signed_in(browser)
        (op_session,) = live_sessions(user)
        assert op_session.amr == ["pwd", "otp", "mfa"] and op_session.acr == acr.MFA

    def test_the_half_finished_sign_in_cannot_be_skipped(self, browser, user, confidential_app):
        enrol_totp(user)
        url = authorize_url(confidential_app)
        response = browser.get(url)
        login_page = response["Location"]
        response = browser.post(login_page, {"username": user.username, "password": USER_PASSWORD})
        assert response["Location"] == VERIFY
        next_url = query_of(login_page)["next"]
        # Straight on to the authorization request: still a sign-in to do.
        response = browser.get(next_url)
        assert response.status_code == 302 and response["Location"].startswith("/connect/login")
        # The account pages
        for page in ("/connect/apps", "/connect/sessions", SECURITY):
            assert browser.get(page)["Location"].startswith("/connect/login")
        # prompt=none answers login_required, not a code
        response = browser.get(authorize_url(confidential_app, prompt="none"))
        assert query_of(response["Location"])["error"] == "login_required"

    def test_the_half_finished_sign_in_is_used_once(self, browser, user):
        app = enrol_totp(user)
        sign_in_with_totp(browser, user, app)
        browser.logout()
        forget_used_codes(user)
        response = browser.post(VERIFY, {"factor": "totp", "code": totp_code(app, 1)})
        assert response.status_code == 302 and response["Location"] == "/connect/login"
        assert not signed_in(browser)

    def test_it_belongs_to_the_browser_that_typed_the_password(self, browser, user):
        app = enrol_totp(user)
        login(browser, user)
        thief = Client()
        response = thief.post(VERIFY, {"factor": "totp", "code": totp_code(app)})
        assert response.status_code == 302 and not signed_in(thief)
        assert not OPSession.objects.filter(user=user).exists()

    @pytest.mark.oidc_settings(MFA_LOGIN_TIMEOUT_SECONDS=60)
    def test_it_expires(self, browser, user):
        app = enrol_totp(user)
        login(browser, user)
        session = browser.session
        session["oidc_half_sign_in"]["started"] -= 61
        session.save()
        response = browser.post(VERIFY, {"factor": "totp", "code": totp_code(app)})
        assert response.status_code == 302 and not signed_in(browser)

    def test_a_password_change_in_between_voids_it(self, browser, user):
        app = enrol_totp(user)
        login(browser, user)
        user.set_password("another long passphrase")
        user.save()
        response = browser.post(VERIFY, {"factor": "totp", "code": totp_code(app)})
        assert response.status_code == 302 and not signed_in(browser)

    def test_a_deactivated_user_does_not_finish(self, browser, user):
        app = enrol_totp(user)
        login(browser, user)
        get_user_model().objects.filter(pk=user.pk).update(is_active=False)
        response = browser.post(VERIFY, {"factor": "totp", "code": totp_code(app)})
        assert response.status_code == 302 and not signed_in(browser)

    def test_a_wrong_code_is_announced(self, browser, user):
        app = enrol_totp(user)
        login(browser, user)
        wrong = "123456" if totp_code(app) != "123456" else "654321"
        response = browser.post(VERIFY, {"factor": "totp", "code": wrong})
        assert response.status_code == 400 and not signed_in(browser)
        html = response.content.decode()
        assert 'role="alert"' in html and 'aria-describedby="id_code_help factor-error"' in html

    @pytest.mark.parametrize(
        "data",
        [
            {"factor": "passkey", "code": "123456"},  # not enrolled
            {"factor": "nonsense"},
            {"factor": "", "code": ""},
            {"factor": "totp", "code": "\x01\x02"},
            {"factor": "totp", "code": "9" * 100_000},
            {"factor": "totp"},
        ],
    )
    def test_bad_posts_do_not_sign_in_and_never_500(self, browser, user, data):
        enrol_totp(user)
        login(browser, user)
        response = browser.post(VERIFY, data)
        assert response.status_code in (400, 302)
        assert not signed_in(browser)

    @pytest.mark.oidc_settings(MFA_FAILURE_LIMIT=3)
    def test_guessing_is_throttled_per_user_and_address(self, user):
        app = enrol_totp(user)
        attacker = Client(REMOTE_ADDR="203.0.113.9")
        wrong = "123456" if totp_code(app) != "123456" else "654321"
        for _ in range(3):
            login(attacker, user)
            attacker.post(VERIFY, {"factor": "totp", "code": wrong})
        # The attacker's next try from there is refused even with the right code...
        login(attacker, user)
        response = attacker.post(VERIFY, {"factor": "totp", "code": totp_code(app)})
        assert response.status_code == 400 and not signed_in(attacker)
        # ...while the user, elsewhere, is not locked out.
        victim = Client(REMOTE_ADDR="198.51.100.7")
        response = sign_in_with_totp(victim, user, app)
        assert response.status_code == 302 and signed_in(victim)

    @pytest.mark.oidc_settings(MFA_FAILURE_LIMIT=2)
    def test_one_password_buys_a_few_guesses_only(self, browser, user):
        app = enrol_totp(user)
        login(browser, user)
        wrong = "123456" if totp_code(app) != "123456" else "654321"
        assert browser.post(VERIFY, {"factor": "totp", "code": wrong}).status_code == 400
        response = browser.post(VERIFY, {"factor": "totp", "code": wrong})
        assert response.status_code == 302 and response["Location"].startswith("/connect/login")
        assert "oidc_half_sign_in" not in browser.session

    def test_users_without_a_factor_sign_in_with_the_password(self, browser, user):
        # An enrolment never confirmed does not count.
        TOTPDevice.objects.create(user=user, encrypted_secret=totp._encrypt(pyotp.random_base32()))
        response = login(browser, user, next_url="/connect/apps")
        assert response["Location"] == "/connect/apps" and signed_in(browser)
        (op_session,) = live_sessions(user)
        assert op_session.amr == ["pwd"] and op_session.acr == acr.PASSWORD

    def test_the_challenge_page_lists_the_other_factors(self, browser, user):
        enrol_totp(user)
        recovery_codes.regenerate(user)
        login(browser, user)
        page = browser.get(VERIFY).content.decode()
        assert 'data-factor="recovery"' in page
        page = browser.get(f"{VERIFY}?factor=recovery").content.decode()
        assert 'name="factor" value="recovery"' in page


# --- recovery codes -------------------------------------------------------------------------------


class TestRecoveryCodes:
    def test_a_code_signs_in_once(self, browser, user):
        enrol_totp(user)
        codes = recovery_codes.regenerate(user)
        login(browser, user)
        response = browser.post(VERIFY, {"factor": "recovery", "code": codes[0]})
        assert response.status_code == 302 and signed_in(browser)
        (op_session,) = live_sessions(user)
        assert op_session.acr == acr.MFA and "otp" in op_session.amr
        assert recovery_codes.remaining(user) == 9
        other = Client()
        login(other, user)
        response = other.post(VERIFY, {"factor": "recovery", "code": codes[0]})
        assert response.status_code == 400 and not signed_in(other)

    def test_typing_is_forgiving(self, user):
        codes = recovery_codes.regenerate(user)
        code = codes[1]
        assert recovery_codes.use(user, f"  {code.upper().replace('-', ' ')} ")

    def test_another_users_code_is_nothing(self, user):
        codes = recovery_codes.regenerate(UserFactory())
        recovery_codes.regenerate(user)
        assert not recovery_codes.use(user, codes[0])

    def test_regenerating_kills_the_old_codes(self, browser, user):
        app = enrol_totp(user)
        old = recovery_codes.regenerate(user)
        sign_in_with_totp(browser, user, app)
        response = browser.post("/connect/security/recovery-codes")
        assert response.status_code == 200
        new = response.context["codes"]
        assert len(new) == 10 and not set(new) & set(old)
        assert not recovery_codes.use(user, old[0])
        assert recovery_codes.use(user, new[0])
        assert browser.get("/connect/security/recovery-codes").context["left"] == 9

    def test_regenerating_needs_a_recent_sign_in(self, browser, user):
        enrol_totp(user)
        old = recovery_codes.regenerate(user)
        browser.force_login(user)
        set_auth_time(browser, 3600)
        response = browser.post("/connect/security/recovery-codes")
        assert response.status_code == 302 and response["Location"].startswith("/connect/login")
        assert recovery_codes.use(user, old[0])

    def test_no_codes_without_a_factor(self, browser, user):
        browser.force_login(user)
        response = browser.post("/connect/security/recovery-codes")
        assert response.status_code == 302
        assert recovery_codes.remaining(user) == 0

    @pytest.mark.parametrize("code", ["", "\x00" * 10, "a" * 65, "abcde-fghij-k", None])
    def test_odd_input(self, user, code):
        recovery_codes.regenerate(user)
        assert not recovery_codes.use(user, code)


# --- removing a factor ---------------------------------------------------------------------------


class TestRemoval:
    def test_removal_needs_a_recent_sign_in(self, browser, user):
        app = enrol_totp(user)
        sign_in_with_totp(browser, user, app)
        set_auth_time(browser, 3600)
        response = browser.post("/connect/security/app/remove")
        assert response.status_code == 302 and response["Location"].startswith("/connect/login")
        assert factors.has_second_factor(user)

    @pytest.mark.oidc_settings(MFA_REAUTH_SECONDS=7200)
    def test_reauth_window_is_a_setting(self, browser, user):
        app = enrol_totp(user)
        sign_in_with_totp(browser, user, app)
        set_auth_time(browser, 3600)
        browser.post("/connect/security/app/remove")
        assert not factors.has_second_factor(user)

    def test_removal_downgrades_this_browser_and_ends_other_sessions_that_used_it(self, browser, user):
        app = enrol_totp(user)
        recovery_codes.regenerate(user)
        elsewhere = Client()
        sign_in_with_totp(elsewhere, user, app)
        password_only = Client()
        password_only.force_login(user)  # e.g. the admin's login page: no factor used
        sign_in_with_totp(browser, user, app)
        response = browser.post("/connect/security/app/remove")
        assert response.status_code == 302
        assert not factors.has_second_factor(user) and recovery_codes.remaining(user) == 0
        live = {s.pk: s for s in live_sessions(user)}
        here = browser.session["oidc_op_sessions"][""]
        assert here["acr"] == acr.PASSWORD and here["amr"] == ["pwd"]
        assert live[here["id"]].acr == acr.PASSWORD
        # the other browser that used the app is signed out, the password-only one is not
        assert elsewhere.get("/connect/apps").status_code == 302
        assert password_only.get("/connect/apps").status_code == 200


class TestAdminReset:
    def test_reset_removes_factors_ends_sessions_and_is_audited(self, admin_client, user):
        app = enrol_totp(user)
        recovery_codes.regenerate(user)
        victim_browser = Client()
        sign_in_with_totp(victim_browser, user, app)
        response = admin_client.post(
            reverse("admin:auth_user_changelist"),
            {"action": "reset_second_factors", "_selected_action": [user.pk]},
        )
        assert response.status_code == 302
        assert not TOTPDevice.objects.filter(user=user).exists()
        assert not RecoveryCode.objects.filter(user=user).exists()
        assert not live_sessions(user)
        assert victim_browser.get("/connect/apps").status_code == 302
        entry = LogEntry.objects.get(object_id=str(user.pk))
        assert "Second factors reset" in entry.get_change_message()

    def test_the_action_is_on_the_authenticator_app_list_too(self, admin_client, user):
        enrol_totp(user)
        device = TOTPDevice.objects.get(user=user)
        admin_client.post(
            reverse("admin:oidc_provider_ext_totpdevice_changelist"),
            {"action": "reset_second_factors", "_selected_action": [device.pk]},
        )
        assert not TOTPDevice.objects.filter(user=user).exists()

    def test_the_admin_never_shows_the_key(self, admin_client, user):
        enrol_totp(user)
        device = TOTPDevice.objects.get(user=user)
        page = admin_client.get(reverse("admin:oidc_provider_ext_totpdevice_change", args=[device.pk]))
        assert page.status_code == 200
        assert device.encrypted_secret not in page.content.decode()
        assert totp.secret_of(device) not in page.content.decode()

    def test_reset_hooks_of_other_factors_run(self, user):
        calls = []
        factors.register_reset(calls.append)
        try:
            factors.reset_factors(user)
        finally:
            factors._resets.remove(calls.append)
        assert calls == [user]


class TestSecurityPage:
    def test_page_shows_state_and_links(self, browser, user):
        browser.force_login(user)
        html = browser.get(SECURITY).content.decode()
        assert reverse("oidc_provider_ext:account-totp") in html
        enrol_totp(user)
        recovery_codes.regenerate(user)
        html = browser.get(SECURITY).content.decode()
        assert reverse("oidc_provider_ext:account-totp-remove") in html
        assert "10 unused recovery codes left." in html

    def test_next_must_be_ours(self, browser, user):
        browser.force_login(user)
        response = browser.get(f"{SECURITY}?{urlencode({'next': 'https://evil.example/'})}")
        assert "evil.example" not in response.content.decode()


@pytest.mark.oidc_settings(TOTP_ISSUER="Acme ID")
def test_totp_issuer_setting_names_the_account_in_apps(user):
    device = totp.start_enrolment(user)
    assert "issuer=Acme%20ID" in totp.provisioning_uri(device, user)


def test_totp_keys_follow_a_secret_keys_rotation(settings, user):
    from django.core.management import call_command

    oidc_settings(settings, SECRET_KEYS=["old-secret-0123456789-0123456789"])
    app = enrol_totp(user)
    oidc_settings(
        settings, SECRET_KEYS=["new-secret-0123456789-0123456789", "old-secret-0123456789-0123456789"]
    )
    assert totp.verify(totp.confirmed_device(user), totp_code(app, -1))  # the old secret still decrypts
    call_command("oidc_keys", "reencrypt")
    oidc_settings(settings, SECRET_KEYS=["new-secret-0123456789-0123456789"])
    assert totp.verify(totp.confirmed_device(user), totp_code(app))  # without the old secret now


class TestAnonymousState:
    @pytest.mark.oidc_settings(MFA_LOGIN_TIMEOUT_SECONDS=120)
    def test_a_half_finished_sign_in_expires_with_its_session(self, browser, user):
        """DESIGN.md "Anonymous requests": nobody is signed in yet, so the session holding the half
        sign-in lives no longer than it; the finished sign-in gets the site's session age back."""
        app = enrol_totp(user)
        login(browser, user)
        assert browser.session.get_expiry_age() <= 120
        forget_used_codes(user)
        browser.post(VERIFY, {"factor": "totp", "code": totp_code(app)})
        assert signed_in(browser)
        assert browser.session.get_expiry_age() > 120

    @pytest.mark.parametrize("factor", ["\x00", "recovery\x07", "x" * 5000])
    def test_odd_factor_names_in_the_query(self, browser, user, factor):
        enrol_totp(user)
        login(browser, user)
        response = browser.get(VERIFY, {"factor": factor})
        assert response.status_code in (200, 400)
        if response.status_code == 200:
            assert response.context["factor"].key == "totp"


def test_the_challenge_page_speaks_the_requests_ui_locales(browser, user, confidential_app):
    enrol_totp(user)
    response = browser.get(authorize_url(confidential_app, ui_locales="de"))
    response = browser.post(response["Location"], {"username": user.username, "password": USER_PASSWORD})
    page = browser.get(response["Location"])
    assert '<html lang="de"' in page.content.decode()


def test_the_password_step_gives_the_browser_a_new_session_key(browser, user):
    enrol_totp(user)
    browser.get(reverse("oidc_provider_ext:login"))  # any page that starts a session
    session = browser.session
    session["planted"] = True
    session.save()
    planted = session.session_key
    login(browser, user)
    assert browser.session.session_key != planted
    assert "oidc_half_sign_in" in browser.session


# --- changing factors needs the second factor (review 2) -------------------------------------------

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
    """The answer of the authorization endpoint, after consent if asked."""
    response = browser.get(authorize_url(app, **params))
    if response.status_code == 200 and "form_action" in (response.context or {}):
        from .flow import consent

        response = consent(browser, response)
    return response


class TestFactorChangesNeedTheSecondFactor:
    """Review 2, finding 1 and 2 (critical): the account-security pages trust any recent sign-in,
    even one that skipped the second factor. Someone who knows only the password signs in on a page
    that asks no second factor (django.contrib.auth's /accounts/login/, the admin's login page),
    then removes the factor, reads new recovery codes or plants a passkey/app of their own."""

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
        response = fresh.post(
            reverse("oidc_provider_ext:login"), {"username": user.username, "password": USER_PASSWORD}
        )
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
                reverse("oidc_provider_ext:passkeys"),
                {"name": "mine", "credential": key.create(options.json())},
            )
        assert not Passkey.objects.filter(user=user).exists(), (
            "a password-only session planted a passkey "
            "(passwordless, phishing-resistant sign-in as the victim)"
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
        assert (
            owner.post(
                reverse("oidc_provider_ext:passkeys"), {"name": "k", "credential": key.create(options)}
            ).status_code
            == 302
        )
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
    """Review 2, finding 3."""

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


class TestAccountStepUp:
    """The confirmation page the guard sends a recent, too-weak session to (views/security.py)."""

    def test_a_password_only_session_steps_up_and_then_may_remove_the_app(self, user):
        """The owner on a page that asked no factor: sent to confirm with the app (not the password
        page), comes back to the page they wanted, and the change goes ahead."""
        app = enrol_totp(user)
        browser = password_only_session(user)
        remove = reverse("oidc_provider_ext:account-totp-remove")
        response = browser.post(remove)
        confirm = reverse("oidc_provider_ext:account-step-up")
        assert (
            response.status_code == 302 and response["Location"] == f"{confirm}?{urlencode({'next': remove})}"
        )
        page = browser.get(response["Location"])
        assert page.status_code == 200 and page.context["step"] == "account"
        assert f'name="next" value="{remove}"' in page.content.decode()
        forget_used_codes(user)
        done = browser.post(confirm, {"factor": "totp", "code": totp_code(app), "next": remove})
        assert done.status_code == 302 and done["Location"] == remove
        entry = browser.session["oidc_op_sessions"][""]
        assert entry["acr"] == acr.MFA and "otp" in entry["amr"]
        browser.post(remove)
        assert not factors.has_second_factor(user)

    @pytest.mark.parametrize("next_url", ["https://evil.example/", "//evil.example/x", "javascript:alert(1)"])
    def test_the_account_step_up_goes_back_only_to_this_site(self, user, next_url):
        app = enrol_totp(user)
        browser = password_only_session(user)
        confirm = reverse("oidc_provider_ext:account-step-up")
        forget_used_codes(user)
        done = browser.post(confirm, {"factor": "totp", "code": totp_code(app), "next": next_url})
        assert done.status_code == 302 and done["Location"] == SECURITY

    def test_wrong_codes_on_the_account_step_up_end_the_session(self, user):
        app = enrol_totp(user)
        browser = password_only_session(user)
        confirm = reverse("oidc_provider_ext:account-step-up")
        wrong = "000000" if totp_code(app) != "000000" else "111111"
        for _ in range(5):
            response = browser.post(confirm, {"factor": "totp", "code": wrong})
        assert response.status_code == 302 and response["Location"] == reverse("oidc_provider_ext:login")
        assert not signed_in(browser)
        assert not live_sessions(user)

    def test_an_old_session_signs_in_again_rather_than_stepping_up(self, user):
        enrol_totp(user)
        browser = password_only_session(user)
        set_auth_time(browser, 3600)
        response = browser.post(reverse("oidc_provider_ext:account-recovery-codes"))
        assert response.status_code == 302 and response["Location"].startswith(
            reverse("oidc_provider_ext:login")
        )

    def test_a_user_without_a_factor_sets_up_the_first_with_the_password(self, user):
        browser = password_only_session(user)
        page = browser.get(reverse("oidc_provider_ext:account-totp"))
        assert page.status_code == 200
        secret = "".join(page.context["secret_groups"])
        browser.post(reverse("oidc_provider_ext:account-totp"), {"code": pyotp.TOTP(secret).now()})
        assert factors.has_second_factor(user)


# --- the operator's reset (review 2, finding 4) ----------------------------------------------------


def view_only_staff(*codenames) -> Client:
    staff = UserFactory(is_staff=True)
    for codename in codenames:
        staff.user_permissions.add(Permission.objects.get(codename=codename))
    browser = Client()
    browser.force_login(staff)
    return browser


def victim():
    admin = UserFactory(is_staff=True, is_superuser=True)
    enrol_totp(admin)
    recovery_codes.regenerate(admin)
    assert factors.has_second_factor(admin)
    return admin


@pytest.mark.parametrize(
    ("codename", "url", "pk_of"),
    [
        (
            "view_totpdevice",
            "/admin/oidc_provider_ext/totpdevice/",
            lambda u: TOTPDevice.objects.get(user=u).pk,
        ),
        ("view_user", "/admin/auth/user/", lambda u: u.pk),
    ],
    ids=["totp-list", "user-list"],
)
def test_a_view_only_staff_member_cannot_reset_anyones_second_factors(codename, url, pk_of):
    target = victim()
    browser = view_only_staff(codename)
    assert browser.get(url).status_code == 200  # may look
    response = browser.post(url, {"action": "reset_second_factors", "_selected_action": [pk_of(target)]})
    assert factors.has_second_factor(target), (
        f"a staff member with only {codename} reset a superuser's second factors ({response.status_code})"
    )


def test_only_a_superuser_resets_a_superusers_second_factors():
    target = victim()
    operator = UserFactory(is_staff=True)
    operator.user_permissions.add(*Permission.objects.filter(codename__in=["view_user", "change_user"]))
    browser = Client()
    browser.force_login(operator)
    ordinary = UserFactory()
    enrol_totp(ordinary)
    browser.post(
        "/admin/auth/user/", {"action": "reset_second_factors", "_selected_action": [target.pk, ordinary.pk]}
    )
    assert factors.has_second_factor(target)
    assert not factors.has_second_factor(ordinary)


@pytest.mark.parametrize(
    ("codename", "url", "action", "still"),
    [
        ("view_consent", "/admin/oidc_provider_ext/consent/", "revoke_consents", "consent"),
        ("view_initialaccesstoken", "/admin/oidc_provider_ext/initialaccesstoken/", "revoke", "token"),
    ],
)
def test_view_only_staff_cannot_run_the_revoke_actions(user, confidential_app, codename, url, action, still):
    from datetime import timedelta

    from django.utils import timezone

    from oidc_provider_ext.models import Consent, InitialAccessToken

    if still == "consent":
        row = Consent.objects.create(
            user=user, application=confidential_app, scope="openid", granted=timezone.now()
        )
    else:
        row = InitialAccessToken.objects.create(
            description="x", token_hash="x" * 64, expires=timezone.now() + timedelta(days=1)
        )
    browser = view_only_staff(codename)
    assert browser.get(url).status_code == 200
    browser.post(url, {"action": action, "_selected_action": [row.pk]})
    row.refresh_from_db()
    assert row.revoked is None


# --- guessing codes (review 2, findings 5 and 6) ---------------------------------------------------

WRONG = "Check the code and try again"
THROTTLED = "Too many wrong codes"


def test_guesses_from_many_addresses_have_a_ceiling_per_account(user):
    app = enrol_totp(user)
    limit = app_settings.MFA_FAILURE_LIMIT
    evaluated = 0
    for n in range(40):  # 40 /64s of one attacker's /48
        address = f"2001:db8:1:{n:x}::1"
        browser = Client(REMOTE_ADDR=address)
        response = browser.post(
            reverse("oidc_provider_ext:login"), {"username": user.username, "password": USER_PASSWORD}
        )
        assert response.status_code == 302 and response["Location"] == reverse(
            "oidc_provider_ext:login-verify"
        )
        for _ in range(limit):
            wrong = "000000" if totp_code(app) != "000000" else "111111"
            page = browser.post(reverse("oidc_provider_ext:login-verify"), {"factor": "totp", "code": wrong})
            text = page.content.decode() if page.status_code == 400 else ""
            if WRONG in text or (
                page.status_code == 302 and "/login" in page["Location"] and THROTTLED not in text
            ):
                evaluated += 1
    # 200 wrong codes checked against one account in one window, none refused for the account.
    assert evaluated <= 4 * limit, f"{evaluated} wrong codes were checked for one account without a ceiling"


def test_concurrent_guesses_are_counted_before_they_are_checked(user, monkeypatch):
    """Check-then-count: ``factor_allowed`` reads the counter, the code is verified, and only then
    the failure counter adds to it; the half sign-in's own failure count lives in the session, saved
    when the request ends. Requests in flight at the same time all pass both limits. Simulated here
    without threads: 12 requests from the same browser (the same half sign-in, the same address),
    each arriving while the previous ones are still being verified."""
    from oidc_provider_ext.internal import totp

    app = enrol_totp(user)
    browser = Client()
    response = browser.post(
        reverse("oidc_provider_ext:login"), {"username": user.username, "password": USER_PASSWORD}
    )
    assert response["Location"] == reverse("oidc_provider_ext:login-verify")
    wrong = "000000" if totp_code(app) != "000000" else "111111"
    real_verify = totp.verify
    verified = []
    in_flight = []

    def verify(device, code, **kwargs):
        verified.append(code)
        if len(in_flight) < 11:  # the next request arrives while this one is still being checked
            in_flight.append(True)
            browser.post(reverse("oidc_provider_ext:login-verify"), {"factor": "totp", "code": wrong})
        return real_verify(device, code, **kwargs)

    monkeypatch.setattr(totp, "verify", verify)
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old_limit, 20000))  # nested requests stand in for parallel ones
    try:
        browser.post(reverse("oidc_provider_ext:login-verify"), {"factor": "totp", "code": wrong})
    finally:
        sys.setrecursionlimit(old_limit)
    limit = app_settings.MFA_FAILURE_LIMIT
    assert len(verified) <= limit, (
        f"{len(verified)} codes checked for one half sign-in from one address (limit {limit})"
    )


@pytest.mark.oidc_settings(MFA_ACCOUNT_FAILURE_LIMIT=3)
def test_right_codes_give_their_count_back(user):
    app = enrol_totp(user)
    for n in range(6):
        browser = Client(REMOTE_ADDR=f"2001:db8:2:{n:x}::1")
        response = sign_in_with_totp(browser, user, app)
        assert response.status_code == 302 and signed_in(browser)


@pytest.mark.oidc_settings(MFA_ACCOUNT_FAILURE_LIMIT=3)
def test_over_the_account_ceiling_even_the_right_code_is_not_checked(user):
    app = enrol_totp(user)
    wrong = "000000" if totp_code(app) != "000000" else "111111"
    for n in range(3):
        browser = Client(REMOTE_ADDR=f"2001:db8:3:{n:x}::1")
        login(browser, user)
        assert browser.post(VERIFY, {"factor": "totp", "code": wrong}).status_code == 400
    browser = Client(REMOTE_ADDR="2001:db8:3:ff::1")
    response = sign_in_with_totp(browser, user, app)
    assert response.status_code == 400 and THROTTLED in response.content.decode()
    assert not signed_in(browser)


def test_second_factor_sql_answers_as_the_orm(db):
    """factors.enrolled_sql (the EXISTS written once, used by has_second_factor and the OP session
    check) says what enrolled_condition's ORM query says, for every kind of user; the OP session
    check's SQL keeps the same sessions as its ORM query (ended, expired, another user's)."""
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from oidc_provider_ext.internal import op_sessions

    assert factors.enrolled_sql(connection) is not None  # the built-in factors: the SQL is used
    nothing, unconfirmed, confirmed, with_passkey = (UserFactory() for _ in range(4))
    TOTPDevice.objects.create(user=unconfirmed, encrypted_secret=totp._encrypt(pyotp.random_base32()))
    TOTPDevice.objects.create(
        user=confirmed, encrypted_secret=totp._encrypt(pyotp.random_base32()), confirmed=timezone.now()
    )
    Passkey.objects.create(
        user=with_passkey, credential_id="cred-1", user_handle="h", public_key=b"k", name="key"
    )
    users = get_user_model()._default_manager
    for user in (nothing, unconfirmed, confirmed, with_passkey):
        expected = users.filter(pk=user.pk).filter(factors.enrolled_condition(user)).exists()
        assert factors._enrolled(user) is expected
        assert expected is (user in (confirmed, with_passkey))

    now = timezone.now()
    sessions = [
        OPSession.objects.create(user=with_passkey, auth_time=now, expires=expires, ended=ended)
        for expires, ended in [
            (None, None),
            (now + timedelta(hours=1), None),
            (now - timedelta(seconds=1), None),
            (now + timedelta(hours=1), now),
        ]
    ]
    sessions.append(OPSession.objects.create(user=nothing, auth_time=now))
    ids = [s.pk for s in sessions]
    for user in (with_passkey, nothing):
        by_orm = op_sessions._live_by_orm(user, ids)
        rows = op_sessions._live_with_second_factor(ids, user.pk)
        assert sorted(rows) == sorted(by_orm)
        assert all(enrolled is (user == with_passkey) for _, enrolled, _, _ in rows)
        assert all(member is None for _, _, member, _ in rows)  # no tenant: the rule is not asked
        live = [sessions[0], sessions[1]] if user == with_passkey else [sessions[4]]
        assert {pk for pk, _, _, _ in by_orm} == {s.pk for s in live}
