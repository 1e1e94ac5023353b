"""The pending authorization request as an object: its storage and its transitions, without HTTP
(``oidc_provider_ext.internal.authorization``)."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory

from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.internal import consents, op_sessions
from oidc_provider_ext.internal.authorization import (
    MAX_PENDING,
    MAX_SIGNED_LENGTH,
    SESSION_KEY,
    AskConsent,
    AuthorizationError,
    ChooseTenant,
    Fail,
    Issue,
    Login,
    PendingAuthorization,
    for_login_page,
)

from .factories import TenantFactory, TenantMembershipFactory

pytestmark = pytest.mark.django_db


def browser_request(user=None):
    request = RequestFactory().get("/connect/authorize")
    request.session = SessionStore()
    request.user = user or AnonymousUser()
    return request


def signed_in(user, tenant=op_sessions.NO_TENANT):
    request = browser_request(user)
    op_sessions.start(request, user, tenant=tenant)
    return request


def pending_for(app, **overrides) -> PendingAuthorization:
    values = {
        "id": "req-1",
        "created": time.time(),
        "scopes": ["openid", "profile"],
        "credentials": {"client_id": app.client_id, "redirect_uri": "https://rp.example.com/cb"},
        "prompt": [],
        "max_age": None,
        "subject": None,
        "login_hint": "",
        "ui_locales": "",
        "tenant": op_sessions.NO_TENANT,
        "tenant_deferred": False,
        "idp": [],
    }
    values.update(overrides)
    return PendingAuthorization(**values)


class TestStorage:
    def test_round_trip_and_discard(self, confidential_app):
        request = browser_request()
        pending = pending_for(confidential_app, login_started=5)
        pending.save(request)
        loaded = PendingAuthorization.load(request, "req-1")
        assert loaded == pending
        loaded.discard(request)
        assert PendingAuthorization.load(request, "req-1") is None

    def test_a_new_request_travels_signed_and_nothing_is_stored(self, confidential_app):
        request = browser_request()
        pending = pending_for(confidential_app, login_started=5, resources=["https://api.example"])
        signed = pending.travelling_id(request)
        assert ":" in signed and len(signed) <= MAX_SIGNED_LENGTH
        assert not request.session.modified and SESSION_KEY not in request.session
        # Another browser (no session) loads it from the URL alone.
        loaded = PendingAuthorization.load(browser_request(), signed)
        assert loaded == pending and loaded.signed
        loaded.keep_after_sign_in(request)  # it travels in the URL: nothing to keep
        assert SESSION_KEY not in request.session

    def test_a_signed_request_carries_no_answer(self, user, confidential_app):
        """What a browser may answer (consent, tenant, step-up) is only ever set on a request waiting
        in the session: a signed one never answers anything, whatever it was before."""
        request = signed_in(user)
        pending = pending_for(
            confidential_app, user=str(user.pk), expects="consent", asked=["openid"], step_up_acr="x"
        )
        loaded = PendingAuthorization.load(request, pending.travelling_id(request))
        assert (loaded.user, loaded.expects, loaded.asked, loaded.step_up_acr) == (None, "", None, "")
        assert not loaded.answered_by(request, "consent")

    def test_a_forged_altered_or_foreign_signed_id_loads_nothing(self, confidential_app):
        from django.core import signing

        request = browser_request()
        signed = pending_for(confidential_app).travelling_id(request)
        value, signature = signed.rsplit(":", 1)
        data = signing.loads(signed, salt="oidc_provider_ext.pending-authorization")
        data["credentials"]["redirect_uri"] = "https://attacker.example/cb"
        for forged in (
            f"{value}:{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}",  # altered signature
            f"{value[:-2]}xx:{signature}",  # altered value
            signing.dumps(data),  # signed by this site, for another purpose (no salt)
            signing.dumps(data, salt="oidc_provider_ext.pending-authorization", key="another-key"),
            signing.dumps(["not", "a", "request"], salt="oidc_provider_ext.pending-authorization"),
            signing.dumps({**data, "device": 1}, salt="oidc_provider_ext.pending-authorization"),
            ":",
            "a:b:c",
        ):
            assert PendingAuthorization.load(request, forged) is None, forged

    def test_a_signed_request_expires_with_its_lifetime(self, confidential_app):
        request = browser_request()
        lifetime = app_settings.AUTHORIZE_REQUEST_MAX_AGE_SECONDS
        old = pending_for(confidential_app, created=time.time() - lifetime)
        assert PendingAuthorization.load(request, old.travelling_id(request)) is None

    def test_too_long_for_a_url_or_stored_before_it_waits_in_the_session(self, confidential_app):
        import secrets

        request = browser_request()
        # A long random state (incompressible) and claims: the signed form would not fit a URL.
        long = pending_for(
            confidential_app,
            credentials={"client_id": confidential_app.client_id, "state": secrets.token_urlsafe(1500)},
        )
        assert long.travelling_id(request) == "req-1"
        assert PendingAuthorization.load(request, "req-1") == long
        # A request stored earlier (a device request the code entry stored) keeps its id.
        stored = pending_for(confidential_app, id="req-2")
        stored.save(request)
        assert stored.travelling_id(request) == "req-2"

    def test_expires_with_its_lifetime(self, confidential_app):
        request = browser_request()
        pending_for(
            confidential_app, created=time.time() - app_settings.AUTHORIZE_REQUEST_MAX_AGE_SECONDS
        ).save(request)
        assert PendingAuthorization.load(request, "req-1") is None

    def test_at_most_max_pending_per_browser_oldest_first(self, confidential_app):
        request = browser_request()
        for n in range(MAX_PENDING + 2):
            pending_for(confidential_app, id=f"r{n}", created=time.time() + n).save(request)
        assert PendingAuthorization.load(request, "r0") is None
        assert PendingAuthorization.load(request, "r1") is None
        assert PendingAuthorization.load(request, f"r{MAX_PENDING + 1}") is not None

    def test_unknown_or_empty_id(self):
        request = browser_request()
        assert PendingAuthorization.load(request, "") is None
        assert PendingAuthorization.load(request, "nope") is None

    def test_the_login_page_finds_it_by_resolving_next(self, confidential_app):
        request = browser_request()
        pending_for(confidential_app).save(request)
        assert for_login_page(request, "/connect/authorize/continue/req-1").id == "req-1"
        assert for_login_page(request, "/connect/authorize/continue/req-1?x=1").id == "req-1"
        for other in ("", "/connect/apps", "/connect/authorize/continue/other", "https://evil.example/x"):
            assert for_login_page(request, other) is None


class TestFromRequest:
    def test_request_objects_are_refused(self, confidential_app):
        for name, error in (
            ("request", "request_not_supported"),
            ("request_uri", "request_uri_not_supported"),
        ):
            with pytest.raises(AuthorizationError) as caught:
                PendingAuthorization.from_request({name: "x"}, ["openid"], {}, confidential_app)
            assert caught.value.error == error

    @pytest.mark.parametrize("max_age", ["-1", "1.5", "1e3", "x"])
    def test_max_age_must_be_a_non_negative_integer(self, confidential_app, max_age):
        with pytest.raises(AuthorizationError):
            PendingAuthorization.from_request({"max_age": max_age}, ["openid"], {}, confidential_app)

    def test_keeps_only_what_the_code_needs(self, confidential_app):
        credentials = {
            "client_id": confidential_app.client_id,
            "redirect_uri": "https://rp/cb",
            "request": object(),
        }
        pending = PendingAuthorization.from_request({}, ["openid"], credentials, confidential_app)
        assert set(pending.credentials) == {"client_id", "redirect_uri"}
        assert len(pending.id) >= 32


class TestTransitions:
    def test_anonymous_browser_signs_in_and_the_request_is_kept(self, confidential_app):
        request = browser_request()
        pending = pending_for(confidential_app)
        assert isinstance(pending.next_step(request, confidential_app), Login)
        # The login round trip carries it signed; the session is not touched.
        assert not request.session.modified and SESSION_KEY not in request.session
        loaded = PendingAuthorization.load(request, pending.travelling_id(request))
        assert loaded.login_started is not None and loaded.id == "req-1"

    def test_prompt_none_without_a_session_fails_and_forgets(self, confidential_app):
        request = browser_request()
        step = pending_for(confidential_app, prompt=["none"]).next_step(request, confidential_app)
        assert step == Fail("login_required", "The user is not signed in.")
        assert PendingAuthorization.load(request, "req-1") is None

    def test_signed_in_user_is_asked_for_consent_then_issued(self, user, confidential_app):
        request = signed_in(user)
        pending = pending_for(confidential_app)
        assert isinstance(pending.next_step(request, confidential_app), AskConsent)
        stored = PendingAuthorization.load(request, "req-1")
        assert stored.asked == ["openid", "profile"] and stored.answered_by(request, "consent")
        assert not stored.answered_by(request, "tenant")
        consents.remember(user, confidential_app, "", ["openid", "profile"])
        assert isinstance(pending_for(confidential_app).next_step(request, confidential_app), Issue)

    def test_only_what_was_asked_can_be_unticked_and_never_openid(self, confidential_app):
        pending = pending_for(
            confidential_app, scopes=["openid", "profile", "email"], asked=["openid", "email"]
        )
        assert pending.granted_scopes(set()) == ["openid", "profile"]
        assert pending.granted_scopes({"email", "admin"}) == ["openid", "profile", "email"]

    def test_prompt_login_signs_in_again_once(self, user, confidential_app):
        request = signed_in(user)
        pending = pending_for(confidential_app, prompt=["login"])
        assert isinstance(pending.next_step(request, confidential_app), Login)
        op_sessions.start(request, user)  # signed in for this request
        assert pending.login_reason(request, op_sessions.current(request)) is None

    def test_another_subject_after_signing_in_for_the_request_fails(self, user, confidential_app):
        request = signed_in(user)
        pending = pending_for(confidential_app, subject="someone-else", login_started=int(time.time()) - 1)
        step = pending.next_step(request, confidential_app)
        assert isinstance(step, Fail) and step.error == "login_required"

    def test_the_only_tenant_is_chosen_and_the_sign_in_moves_to_it(self, user, confidential_app):
        TenantMembershipFactory(user=user, tenant=TenantFactory(code="solo"))
        request = browser_request(user)
        pending = pending_for(confidential_app, tenant_deferred=True, login_started=int(time.time()) - 1)
        op_sessions.start(request, user)
        pending.next_step(request, confidential_app)
        assert pending.tenant == "solo" and not pending.tenant_deferred
        assert set(op_sessions.browser_entries(request)) == {"solo"}

    def test_two_tenants_need_the_chooser(self, user, confidential_app):
        for code in ("a-org", "b-org"):
            TenantMembershipFactory(user=user, tenant=TenantFactory(code=code))
        request = signed_in(user)
        step = pending_for(confidential_app, tenant_deferred=True).next_step(request, confidential_app)
        assert isinstance(step, ChooseTenant) and {t.code for t in step.tenants} == {"a-org", "b-org"}
        assert PendingAuthorization.load(request, "req-1").answered_by(request, "tenant")
        silent = pending_for(confidential_app, id="req-2", tenant_deferred=True, prompt=["none"])
        assert silent.next_step(request, confidential_app).error == "interaction_required"
