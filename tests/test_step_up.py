"""Step-up (OIDC Core 3.1.2.1 acr_values, 5.5.1.1 the acr claim request) and the minimum-acr
policies of tenants and clients (docs/mfa.md). A relying party asking for more than the session has
gets the missing factor asked for, not a new login; what cannot be met is an error or, voluntary,
the acr achieved; prompt=none never interacts."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from oidc_provider_ext import acr
from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.internal import factors, recovery_codes
from oidc_provider_ext.models import OPSession

from .factories import REDIRECT_URI, ApplicationFactory, TenantFactory, TenantMembershipFactory, UserFactory
from .flow import (
    authorize_url,
    consent,
    enrol_totp,
    exchange,
    forget_used_codes,
    login,
    query_of,
    refresh,
    sign_in_with_totp,
    totp_code,
    verify_jwt,
)
from .soft_authenticator import SoftAuthenticator

pytestmark = pytest.mark.django_db


def password_session(browser, user):
    """``user`` signed in with the password only (before setting up the app, or through a page
    that asks no second factor): an OP session with amr ["pwd"]."""
    browser.force_login(user)
    (entry,) = browser.session["oidc_op_sessions"].values()
    assert entry["amr"] == ["pwd"]
    return entry


def essential(*values):
    return json.dumps({"id_token": {"acr": {"essential": True, "values": list(values)}}})


def finish(browser, response):
    """Consent if asked; the redirect's query."""
    if response.status_code == 200 and "form_action" in (response.context or {}):
        response = consent(browser, response)
    assert response.status_code == 302, response.content[:400]
    assert response["Location"].startswith(REDIRECT_URI), response["Location"]
    return query_of(response["Location"])


def id_token_of(rp, app, query):
    tokens = exchange(rp, app, query["code"]).json()
    return verify_jwt(tokens["id_token"]), tokens


def step_up_with_totp(browser, user, app_totp, response):
    assert response.status_code == 302 and "/step-up/" in response["Location"], response
    page = browser.get(response["Location"])
    assert page.status_code == 200
    forget_used_codes(user)
    response = browser.post(response["Location"], {"factor": "totp", "code": totp_code(app_totp)})
    assert response.status_code == 302
    return browser.get(response["Location"])


class TestDiscovery:
    def test_levels_are_advertised(self, client):
        meta = client.get("/.well-known/openid-configuration").json()
        assert meta["acr_values_supported"] == [acr.PASSWORD, acr.MFA, acr.PHISHING_RESISTANT]


class TestStepUp:
    def test_the_missing_factor_only(self, browser, rp, user, confidential_app):
        before = password_session(browser, user)
        app = enrol_totp(user)
        recovery_codes.regenerate(user)
        response = browser.get(authorize_url(confidential_app, acr_values=acr.MFA))
        assert "/step-up/" in response["Location"]
        page = browser.get(response["Location"])
        html = page.content.decode()
        assert 'name="password"' not in html  # not a new login
        assert {f.key for f in page.context["factors"]} == {"totp", "recovery"}
        query = finish(browser, step_up_with_totp(browser, user, app, response))
        claims, _tokens = id_token_of(rp, confidential_app, query)
        assert claims["acr"] == acr.MFA
        assert claims["amr"] == ["pwd", "otp", "mfa"]
        # The same OP session (one sid, one logout), its auth_time the time of the last factor.
        op_session = OPSession.objects.get(pk=before["id"])
        assert op_session.ended is None and claims["sid"] == op_session.sid
        assert claims["auth_time"] >= before["auth_time"]
        assert OPSession.objects.filter(user=user).count() == 1

    def test_claims_parameter_voluntary_acr_steps_up_too(self, browser, rp, user, confidential_app):
        password_session(browser, user)
        app = enrol_totp(user)
        claims = json.dumps({"id_token": {"acr": {"values": [acr.MFA]}}})
        response = browser.get(authorize_url(confidential_app, claims=claims))
        query = finish(browser, step_up_with_totp(browser, user, app, response))
        assert id_token_of(rp, confidential_app, query)[0]["acr"] == acr.MFA

    def test_a_session_that_has_it_is_not_asked_again(self, browser, rp, user, confidential_app):
        app = enrol_totp(user)
        sign_in_with_totp(browser, user, app)
        response = browser.get(authorize_url(confidential_app, acr_values=acr.MFA))
        claims, _ = id_token_of(rp, confidential_app, finish(browser, response))
        assert claims["acr"] == acr.MFA and "otp" in claims["amr"]

    def test_first_reachable_value_in_the_clients_order(self, browser, rp, user, confidential_app):
        # Phishing-resistant first (no passkey: unreachable), then multi-factor: the step-up
        # reaches the second.
        password_session(browser, user)
        app = enrol_totp(user)
        response = browser.get(
            authorize_url(confidential_app, acr_values=f"{acr.PHISHING_RESISTANT} {acr.MFA}")
        )
        query = finish(browser, step_up_with_totp(browser, user, app, response))
        assert id_token_of(rp, confidential_app, query)[0]["acr"] == acr.MFA

    def test_voluntary_value_nobody_can_reach_gives_the_acr_achieved(
        self, browser, rp, user, confidential_app
    ):
        password_session(browser, user)  # and no factor at all
        response = browser.get(authorize_url(confidential_app, acr_values=acr.MFA))
        claims, _ = id_token_of(rp, confidential_app, finish(browser, response))
        assert claims["acr"] == acr.PASSWORD and claims["amr"] == ["pwd"]

    def test_essential_acr_that_cannot_be_met(self, browser, user, confidential_app):
        password_session(browser, user)
        enrol_totp(user)  # multi-factor reachable, phishing-resistant not
        response = browser.get(authorize_url(confidential_app, claims=essential(acr.PHISHING_RESISTANT)))
        query = query_of(response["Location"])
        assert response["Location"].startswith(REDIRECT_URI)
        assert query["error"] == "unmet_authentication_requirements" and query["state"] == "state-123"

    def test_essential_acr_that_can_be_met_steps_up(self, browser, rp, user, confidential_app):
        password_session(browser, user)
        app = enrol_totp(user)
        response = browser.get(authorize_url(confidential_app, claims=essential(acr.MFA)))
        query = finish(browser, step_up_with_totp(browser, user, app, response))
        assert id_token_of(rp, confidential_app, query)[0]["acr"] == acr.MFA

    def test_prompt_none_answers_interaction_required(self, browser, user, confidential_app):
        password_session(browser, user)
        enrol_totp(user)
        response = browser.get(authorize_url(confidential_app, acr_values=acr.MFA, prompt="none"))
        query = query_of(response["Location"])
        assert query["error"] == "interaction_required" and query["state"] == "state-123"
        assert OPSession.objects.get(user=user).acr == acr.PASSWORD

    def test_refresh_keeps_the_acr_and_amr_of_the_sign_in(self, browser, rp, user, confidential_app):
        password_session(browser, user)
        app = enrol_totp(user)
        response = browser.get(
            authorize_url(confidential_app, acr_values=acr.MFA, scope="openid offline_access")
        )
        query = finish(browser, step_up_with_totp(browser, user, app, response))
        _claims, tokens = id_token_of(rp, confidential_app, query)
        refreshed = refresh(rp, confidential_app, tokens["refresh_token"]).json()
        claims = verify_jwt(refreshed["id_token"])
        assert claims["acr"] == acr.MFA and claims["amr"] == ["pwd", "otp", "mfa"]
        access = verify_jwt(refreshed["access_token"], typ="at+jwt")
        assert access["acr"] == acr.MFA

    def test_the_tenant_is_never_the_acr(self, browser, rp, user, confidential_app):
        tenant = TenantFactory(code="acme")
        TenantMembershipFactory(tenant=tenant, user=user)
        app = enrol_totp(user)
        response = browser.get(authorize_url(confidential_app, acr_values=f"tenant:acme {acr.MFA}"))
        login_page = response["Location"]
        response = browser.post(
            login_page, {"username": user.username, "password": "correct horse battery staple"}
        )
        forget_used_codes(user)
        response = browser.post(response["Location"], {"factor": "totp", "code": totp_code(app)})
        query = finish(browser, browser.get(response["Location"]))
        claims, _ = id_token_of(rp, confidential_app, query)
        assert claims["acr"] == acr.MFA and claims["tenant"] == "acme"


class TestStepUpPageAttacked:
    def start(self, browser, user, app):
        password_session(browser, user)
        response = browser.get(authorize_url(app, acr_values=acr.MFA))
        return response["Location"]

    def test_a_factor_not_offered_is_refused(self, browser, user, confidential_app):
        enrol_totp(user)
        url = self.start(browser, user, confidential_app)
        for data in (
            {"factor": "recovery", "code": "abcde-fghij"},
            {"factor": "passkey"},
            {"factor": "x" * 5000},
        ):
            response = browser.post(url, data)
            assert response.status_code == 400
        assert OPSession.objects.get(user=user).acr == acr.PASSWORD

    def test_a_wrong_code_does_not_step_up(self, browser, user, confidential_app):
        app = enrol_totp(user)
        url = self.start(browser, user, confidential_app)
        wrong = "123456" if totp_code(app) != "123456" else "654321"
        assert browser.post(url, {"factor": "totp", "code": wrong}).status_code == 400
        assert OPSession.objects.get(user=user).acr == acr.PASSWORD

    def test_another_browser_or_user_cannot_use_the_page(self, browser, user, confidential_app):
        app = enrol_totp(user)
        url = self.start(browser, user, confidential_app)
        mallory = UserFactory()
        other = Client()
        other.force_login(mallory)
        assert other.get(url).status_code == 400
        assert other.post(url, {"factor": "totp", "code": totp_code(app)}).status_code == 400
        assert Client().get(url).status_code == 400

    def test_a_stale_session_after_the_factor_was_removed_cannot_satisfy_mfa(
        self, browser, user, confidential_app
    ):
        app = enrol_totp(user)
        sign_in_with_totp(browser, user, app)
        factors.reset_factors(user)  # an operator (or the user, elsewhere) removed it
        response = browser.get(authorize_url(confidential_app, acr_values=acr.MFA))
        # The session that relied on the app is over: sign in again, and with the password only
        # now the acr achieved is the password's.
        assert response.status_code == 302 and response["Location"].startswith("/connect/login")

    def test_a_password_only_sign_in_elsewhere_does_not_skip_the_factor(
        self, browser, rp, user, confidential_app
    ):
        # The admin's (or django.contrib.auth's) login page asks no second factor: a user who has
        # one is still asked for it before any client gets a code.
        app = enrol_totp(user)
        browser.force_login(user)
        response = browser.get(authorize_url(confidential_app))
        query = finish(browser, step_up_with_totp(browser, user, app, response))
        assert id_token_of(rp, confidential_app, query)[0]["acr"] == acr.MFA


class TestPolicies:
    def test_tenant_minimum_is_enforced_whatever_the_client_asks(self, browser, rp, user, confidential_app):
        strict = TenantFactory(code="acme", minimum_acr=acr.MFA)
        relaxed = TenantFactory(code="globex")
        TenantMembershipFactory(tenant=strict, user=user)
        TenantMembershipFactory(tenant=relaxed, user=user)

        def sign_in_to(code):
            response = browser.get(
                authorize_url(confidential_app, acr_values=f"tenant:{code} {acr.PASSWORD}")
            )
            response = browser.post(
                response["Location"], {"username": user.username, "password": "correct horse battery staple"}
            )
            return browser.get(response["Location"])

        # The user has no second factor: globex lets them in with the password...
        claims, _ = id_token_of(rp, confidential_app, finish(browser, sign_in_to("globex")))
        assert claims["acr"] == acr.PASSWORD and claims["tenant"] == "globex"
        # ...acme does not, though the client asked for a password sign-in only.
        response = sign_in_to("acme")
        assert response.status_code == 403 and "enrol_url" in response.context
        # With the app set up, acme's sign-in asks for it and reaches multi-factor.
        app = enrol_totp(user)
        response = browser.get(authorize_url(confidential_app, acr_values="tenant:acme"))
        claims, _ = id_token_of(
            rp, confidential_app, finish(browser, step_up_with_totp(browser, user, app, response))
        )
        assert claims["acr"] == acr.MFA and claims["tenant"] == "acme"

    def test_user_without_a_factor_is_asked_to_set_one_up_and_comes_back(self, browser, rp, user):
        client_app = ApplicationFactory(profile__minimum_acr=acr.MFA)
        password_session(browser, user)
        response = browser.get(authorize_url(client_app, acr_values=acr.PASSWORD))
        assert response.status_code == 403
        html = response.content.decode()
        enrol_url = response.context["enrol_url"]
        assert enrol_url.startswith(
            reverse("oidc_provider_ext:account-security")
        ) and enrol_url in html.replace("&amp;", "&")
        next_url = query_of(enrol_url)["next"]
        page = browser.get(f"/connect/security/app?next={next_url}")
        secret = "".join(page.context["secret_groups"])
        import pyotp

        app = pyotp.TOTP(secret)
        response = browser.post("/connect/security/app", {"code": app.now(), "next": next_url})
        assert response.status_code == 200 and response.context["next"] == next_url  # the recovery codes
        # Setting the app up did not sign in with it (review 2): back at the request, the step-up
        # page asks for a code from the new app, and then the sign-in is multi-factor.
        response = browser.get(next_url)
        assert response.status_code == 302 and "/authorize/step-up/" in response["Location"]
        query = finish(browser, step_up_with_totp(browser, user, app, response))
        assert id_token_of(rp, client_app, query)[0]["acr"] == acr.MFA

    def test_policy_with_prompt_none(self, browser, user):
        client_app = ApplicationFactory(profile__minimum_acr=acr.MFA)
        password_session(browser, user)
        response = browser.get(authorize_url(client_app, prompt="none"))
        assert query_of(response["Location"])["error"] == "interaction_required"

    def test_strongest_policy_wins(self, browser, user):
        tenant = TenantFactory(code="acme", minimum_acr=acr.MFA)
        TenantMembershipFactory(tenant=tenant, user=user)
        client_app = ApplicationFactory(profile__minimum_acr=acr.PHISHING_RESISTANT)
        app = enrol_totp(user)
        response = browser.get(authorize_url(client_app, acr_values="tenant:acme"))
        response = browser.post(
            response["Location"], {"username": user.username, "password": "correct horse battery staple"}
        )
        forget_used_codes(user)
        response = browser.post(response["Location"], {"factor": "totp", "code": totp_code(app)})
        # multi-factor (the tenant's) is there; phishing-resistant (the client's) needs a passkey.
        response = browser.get(response["Location"])
        assert response.status_code == 403 and "enrol_url" in response.context
        assert factors.has_second_factor(user)

    def test_no_policy_no_step_up(self, browser, rp, user, confidential_app):
        password_session(browser, user)
        query = finish(browser, browser.get(authorize_url(confidential_app)))
        assert id_token_of(rp, confidential_app, query)[0]["acr"] == acr.PASSWORD

    def test_policy_fields_in_the_admin(self, admin_client):
        page = admin_client.get(reverse("admin:oidc_provider_ext_tenant_add")).content.decode()
        assert 'name="minimum_acr"' in page and acr.PHISHING_RESISTANT in page
        page = admin_client.get("/admin/oauth2_provider/application/add/").content.decode()
        assert 'name="oidc_profile-0-minimum_acr"' in page


def test_essential_acr_unknown_value_is_refused_upfront(browser, user, confidential_app):
    login(browser, user)
    response = browser.get(authorize_url(confidential_app, claims=essential("urn:example:unknown")))
    assert query_of(response["Location"])["error"] == "unmet_authentication_requirements"


@pytest.mark.oidc_settings(MFA_FAILURE_LIMIT=3)
def test_guessing_on_the_step_up_page_from_many_addresses_ends_the_session(user, confidential_app):
    """A stolen session cookie used from many addresses (each under the per-address limit) gets
    MFA_FAILURE_LIMIT guesses in all, then the session is over."""
    app = enrol_totp(user)
    browser = Client()
    before = password_session(browser, user)
    url = browser.get(authorize_url(confidential_app, acr_values=acr.MFA))["Location"]
    wrong = "123456" if totp_code(app) != "123456" else "654321"
    for n in range(2):
        response = browser.post(url, {"factor": "totp", "code": wrong}, REMOTE_ADDR=f"203.0.113.{n}")
        assert response.status_code == 400
    response = browser.post(url, {"factor": "totp", "code": wrong}, REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 302 and response["Location"] == "/connect/login"
    assert OPSession.objects.get(pk=before["id"]).ended is not None
    assert "_auth_user_id" not in browser.session


# --- OIDC Core 5.5.1.1 (review 2, finding 8) -------------------------------------------------------


def passkey_user_browser(user) -> Client:
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
    browser = Client()
    options = browser.post(reverse("oidc_provider_ext:passkey-options")).json()
    response = browser.post(reverse("oidc_provider_ext:login"), {"credential": key.get(options)})
    assert response.status_code == 302
    (entry,) = browser.session["oidc_op_sessions"].values()
    assert entry["acr"] == acr.PHISHING_RESISTANT
    return browser


def test_essential_acr_returns_one_of_the_requested_values(user, confidential_app, rp):
    browser = passkey_user_browser(user)
    response = browser.get(authorize_url(confidential_app, claims=essential(acr.MFA)))
    if response.status_code == 200:
        response = consent(browser, response)
    query = query_of(response["Location"])
    assert "code" in query, query
    id_token = verify_jwt(exchange(rp, confidential_app, query["code"]).json()["id_token"])
    assert id_token["acr"] in [acr.MFA], (
        f"essential acr [{acr.MFA}] answered with acr {id_token['acr']} (OIDC Core 5.5.1.1: MUST match)"
    )


def test_an_essential_acr_request_with_malformed_values_is_not_silently_dropped(user, confidential_app):
    """``values`` as a string (a common RP mistake) or an object: the essential requirement is
    ignored and a password-only sign-in gets a code, rather than invalid_request (OIDC Core 5.5:
    "values" is a JSON array) or unmet_authentication_requirements."""
    browser = Client()
    browser.force_login(user)
    for values in (acr.MFA, {"0": acr.MFA}):
        claims = json.dumps({"id_token": {"acr": {"essential": True, "values": values}}})
        response = browser.get(authorize_url(confidential_app, claims=claims))
        if response.status_code == 200:
            response = consent(browser, response)
        query = query_of(response["Location"])
        assert "code" not in query, f"essential acr with values={values!r}: a password-only code was issued"


@pytest.mark.parametrize("member", ['"essential"', "true", "[1]", '{"essential": true, "value": 1}'])
def test_an_acr_member_that_is_not_a_claim_request_is_invalid(user, confidential_app, member):
    """OIDC Core 5.5.1: a claim's member is null or an object."""
    browser = Client()
    browser.force_login(user)
    claims = '{"id_token": {"acr": ' + member + "}}"
    response = browser.get(authorize_url(confidential_app, claims=claims))
    assert query_of(response["Location"])["error"] == "invalid_request"


def test_the_consent_answer_checks_the_acr_again(browser, user):
    """A factor removed in another tab while the consent page was open: the answer gets no code
    with the weaker sign-in (review 2, unconfirmed item)."""
    client_app = ApplicationFactory(profile__minimum_acr=acr.MFA)
    sign_in_with_totp(browser, user, enrol_totp(user))
    page = browser.get(authorize_url(client_app))
    assert page.status_code == 200 and "form_action" in page.context
    browser.post(reverse("oidc_provider_ext:account-totp-remove"))  # the other tab
    assert not factors.has_second_factor(user)
    response = consent(browser, page)
    assert "code=" not in response.get("Location", "")
