"""Device authorization grant (RFC 8628): the endpoint, the code-entry page, polling, and attacks."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import urlencode, urlsplit

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from oidc_provider_ext.internal import devices
from oidc_provider_ext.models import AuthorizationGrant, DeviceAuthorization, OPSession

from .factories import (
    USER_PASSWORD,
    ApplicationFactory,
    PublicApplicationFactory,
    TenantFactory,
    TenantMembershipFactory,
    UserFactory,
)
from .flow import basic_auth, consent, login, refresh, token_request, userinfo, verify_jwt

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
pytestmark = pytest.mark.django_db


# --- helpers -----------------------------------------------------------------------------------------


def device_authorize(client, app, secret: str | None = None, **data):
    """POST to the device authorization endpoint as ``app`` (Basic auth when a secret is given)."""
    extra = {}
    if secret is not None:
        extra["HTTP_AUTHORIZATION"] = basic_auth(app.client_id, secret)
    else:
        data.setdefault("client_id", app.client_id)
    return client.post(
        reverse("oidc_provider_ext:device-authorization"),
        urlencode(data, doseq=True),
        content_type="application/x-www-form-urlencoded",
        **extra,
    )


def start(client, app, **data) -> dict:
    response = device_authorize(client, app, **data)
    assert response.status_code == 200, response.content
    return response.json()


def poll(client, app, device_code: str, secret: str | None = None):
    data = {"grant_type": DEVICE_GRANT, "device_code": device_code}
    if secret is not None:
        return token_request(client, data, auth=(app.client_id, secret))
    return token_request(client, {**data, "client_id": app.client_id})


def allow_polling_now(device_code: str) -> None:
    """Pretend the device waited its interval since the last poll."""
    DeviceAuthorization.objects.filter(device_code_checksum=devices.device_code_checksum(device_code)).update(
        last_polled=timezone.now() - timedelta(seconds=3600)
    )


def enter_code(browser, user_code: str, **extra):
    return browser.post(reverse("oidc_provider_ext:device"), {"user_code": user_code}, **extra)


def sign_in_and_confirm(browser, user, user_code: str, decision: str = "allow", untick=()):
    """Enter the code, sign in on the page the IdP sends the browser to, confirm; the last page."""
    response = enter_code(browser, user_code)
    assert response.status_code == 302, response.content[:300]
    response = browser.get(response["Location"])
    if response.status_code == 302 and reverse("oidc_provider_ext:login") in response["Location"]:
        response = browser.post(response["Location"], {"username": user.username, "password": USER_PASSWORD})
        assert response.status_code == 302, response.content[:500]
        response = browser.get(response["Location"])
    assert response.status_code == 200, response.content[:500]
    assert response.context["device"] is True
    return consent(browser, response, decision=decision, untick=untick)


@pytest.fixture
def app(db):
    """A public CLI client the operator allowed to sign in with a device code."""
    return PublicApplicationFactory(profile__allow_device_flow=True)


@pytest.fixture
def cli(client):
    """The device's HTTP client (no cookies shared with the browser)."""
    return Client()


# --- the device authorization endpoint (RFC 8628 3.1, 3.2) -----------------------------------------------


@pytest.mark.oidc_settings(ISSUER="https://id.example.org")
def test_device_authorization_response(cli, app):
    response = device_authorize(cli, app, scope="openid profile")  # Host: testserver
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == {
        "device_code",
        "user_code",
        "verification_uri",
        "verification_uri_complete",
        "expires_in",
        "interval",
    }
    # From the configured issuer, never the Host header.
    assert body["verification_uri"] == "https://id.example.org/connect/device"
    assert body["verification_uri_complete"] == f"{body['verification_uri']}?user_code={body['user_code']}"
    assert body["expires_in"] == 600 and body["interval"] == 5
    # RFC 8628 6.1: 8 base-20 consonants shown as XXXX-XXXX.
    code = body["user_code"]
    assert len(code) == 9 and code[4] == "-"
    assert set(code.replace("-", "")) <= set(devices.USER_CODE_ALPHABET)
    assert len(body["device_code"]) >= 43


def test_codes_are_stored_hashed(cli, app):
    body = start(cli, app)
    row = DeviceAuthorization.objects.get()
    stored = json.dumps([str(v) for v in DeviceAuthorization.objects.values_list().get()])
    assert body["device_code"] not in stored
    assert body["user_code"] not in stored and body["user_code"].replace("-", "") not in stored
    assert row.device_code_checksum == devices.device_code_checksum(body["device_code"])
    assert row.scopes == ["openid"]  # DEFAULT_SCOPES when the request names none


@pytest.mark.oidc_settings(DEVICE_CODE_EXPIRE_SECONDS=120, DEVICE_POLL_INTERVAL_SECONDS=7)
def test_lifetime_and_interval_settings(cli, app):
    body = start(cli, app)
    assert body["expires_in"] == 120 and body["interval"] == 7
    row = DeviceAuthorization.objects.get()
    assert row.interval == 7
    assert 100 < (row.expires - timezone.now()).total_seconds() <= 120


@pytest.mark.oidc_settings(DEVICE_CODE_EXPIRE_SECONDS=86400)
def test_lifetime_is_capped(cli, app):
    assert start(cli, app)["expires_in"] == 1800


def test_confidential_client_authenticates_with_basic(cli):
    app = ApplicationFactory(profile__allow_device_flow=True)
    response = device_authorize(cli, app, secret=app.raw_secret, scope="openid")
    assert response.status_code == 200, response.content
    wrong = device_authorize(cli, app, secret="wrong", scope="openid")
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client", wrong.content
    # Without credentials a confidential client is not authenticated (RFC 8628 3.1).
    anonymous = device_authorize(cli, app)
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_client"
    assert DeviceAuthorization.objects.count() == 1


def test_client_must_be_allowed_the_device_flow(cli):
    app = PublicApplicationFactory()  # allow_device_flow defaults to False
    response = device_authorize(cli, app)
    assert response.status_code == 400
    assert response.json()["error"] == "unauthorized_client"
    machine = ApplicationFactory(
        authorization_grant_type="client-credentials", profile__allow_device_flow=True
    )
    response = device_authorize(cli, machine, secret=machine.raw_secret, scope="openid")
    assert response.json()["error"] == "unauthorized_client"
    assert not DeviceAuthorization.objects.exists()


def test_unknown_client_and_missing_client_id(cli):
    response = cli.post(
        reverse("oidc_provider_ext:device-authorization"),
        "client_id=nobody",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    response = cli.post(
        reverse("oidc_provider_ext:device-authorization"),
        "scope=openid",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code in (400, 401) and response.json()["error"] in (
        "invalid_request",
        "invalid_client",
    )


def test_invalid_scope(cli, app):
    response = device_authorize(cli, app, scope="openid admin:everything")
    assert response.status_code == 400 and response.json()["error"] == "invalid_scope"


@pytest.mark.parametrize(
    "data",
    [
        {"scope": "openid\x00"},
        {"scope": "x" * (1024 * 1024)},
        {"acr_values": "tenant:\x01"},
        {"client_id": "\x00"},
        {"scope": ["openid", "profile"]},  # repeated
    ],
)
def test_hostile_inputs_are_json_errors(cli, app, data):
    response = device_authorize(cli, app, **data)
    assert 400 <= response.status_code < 500
    assert response.json()["error"] in ("invalid_request", "invalid_client")
    assert not DeviceAuthorization.objects.exists()


def test_get_and_wrong_content_type(cli, app):
    url = reverse("oidc_provider_ext:device-authorization")
    assert cli.get(url).status_code == 405
    response = cli.post(url, {"client_id": app.client_id})  # multipart
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_unknown_tenant_is_invalid_request(cli, app):
    response = device_authorize(cli, app, acr_values="tenant:nope")
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


@pytest.mark.oidc_settings(DEVICE_MAX_PENDING_PER_CLIENT=3, DEVICE_MAX_PENDING=5)
def test_pending_authorizations_are_capped(app):
    # Devices at different addresses (one address has its own, smaller, share).
    devices_ = (Client(REMOTE_ADDR=f"198.51.100.{n}") for n in range(1, 100))
    for _ in range(3):
        start(next(devices_), app)
    response = device_authorize(next(devices_), app)
    assert response.status_code == 429
    assert response.json()["error"] == "temporarily_unavailable"
    assert response["Retry-After"]
    # Another client still has room, until the total cap.
    other = PublicApplicationFactory(profile__allow_device_flow=True)
    start(next(devices_), other)
    start(next(devices_), other)
    assert device_authorize(next(devices_), other).status_code == 429
    assert DeviceAuthorization.objects.count() == 5
    # Expired ones do not count.
    DeviceAuthorization.objects.update(expires=timezone.now())
    start(next(devices_), app)


# --- the whole flow ----------------------------------------------------------------------------------


def test_device_flow_issues_tokens_like_a_code_exchange(cli, browser, app):
    user = UserFactory()
    body = start(cli, app, scope="openid profile offline_access")
    pending = poll(cli, app, body["device_code"])
    assert pending.status_code == 400 and pending.json()["error"] == "authorization_pending"
    allow_polling_now(body["device_code"])

    page = sign_in_and_confirm(browser, user, body["user_code"])
    assert page.status_code == 200
    assert b'data-device-result="approved"' in page.content

    response = poll(cli, app, body["device_code"])
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    tokens = response.json()
    assert tokens["token_type"] == "Bearer" and tokens["refresh_token"]
    id_token = verify_jwt(tokens["id_token"])
    op_session = OPSession.objects.get(user=user)
    assert id_token["aud"] == app.client_id
    assert id_token["sid"] == op_session.sid
    assert id_token["auth_time"] == int(op_session.auth_time.timestamp())
    assert "nonce" not in id_token
    access = verify_jwt(tokens["access_token"], typ="at+jwt")
    assert access["sid"] == op_session.sid and access["client_id"] == app.client_id
    assert userinfo(cli, tokens["access_token"]).json()["sub"] == id_token["sub"]
    grant = AuthorizationGrant.objects.get()
    assert grant.op_session_id == op_session.pk and grant.redeemed is not None

    # Single use: a second poll after success is invalid_grant and revokes what was issued.
    allow_polling_now(body["device_code"])
    again = poll(cli, app, body["device_code"])
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert userinfo(cli, tokens["access_token"]).status_code == 401


def test_the_confirmation_checks_the_acr_again(cli, browser, app):
    """As the code flow's consent answer does: the sign-in must still meet the client's minimum
    level when the user confirms (an operator raised it, or a factor was removed in another tab,
    while the page was open); otherwise no approval, and the device gets no tokens."""
    from oidc_provider_ext import acr

    user = UserFactory()
    body = start(cli, app, scope="openid profile")
    response = enter_code(browser, body["user_code"])
    response = browser.get(response["Location"])
    response = browser.post(response["Location"], {"username": user.username, "password": USER_PASSWORD})
    page = browser.get(response["Location"])
    assert page.status_code == 200 and page.context["device"] is True
    app.oidc_profile.minimum_acr = acr.MFA  # the operator, meanwhile
    app.oidc_profile.save()
    answer = consent(browser, page)
    assert b'data-device-result="approved"' not in answer.content
    allow_polling_now(body["device_code"])
    assert poll(cli, app, body["device_code"]).json()["error"] == "authorization_pending"


def test_refresh_token_only_with_offline_access_and_refresh_works(cli, browser, app):
    user = UserFactory()
    body = start(cli, app, scope="openid profile")
    sign_in_and_confirm(browser, user, body["user_code"])
    tokens = poll(cli, app, body["device_code"]).json()
    assert "refresh_token" not in tokens

    confidential = ApplicationFactory(profile__allow_device_flow=True)
    body = start(cli, confidential, secret=confidential.raw_secret, scope="openid offline_access")
    sign_in_and_confirm(browser, user, body["user_code"])
    tokens = poll(cli, confidential, body["device_code"], secret=confidential.raw_secret).json()
    refreshed = refresh(cli, confidential, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.content
    claims = verify_jwt(refreshed.json()["id_token"])
    assert claims["auth_time"] == verify_jwt(tokens["id_token"])["auth_time"]


def test_deny_gives_access_denied(cli, browser, app):
    user = UserFactory()
    body = start(cli, app)
    page = sign_in_and_confirm(browser, user, body["user_code"], decision="deny")
    assert b'data-device-result="denied"' in page.content
    response = poll(cli, app, body["device_code"])
    assert response.status_code == 400 and response.json()["error"] == "access_denied"
    # Answered: the code cannot be entered again.
    assert enter_code(browser, body["user_code"]).status_code == 400


def test_unticked_scope_is_not_granted(cli, browser, app):
    user = UserFactory()
    body = start(cli, app, scope="openid profile email")
    sign_in_and_confirm(browser, user, body["user_code"], untick=("email",))
    tokens = poll(cli, app, body["device_code"]).json()
    assert tokens["scope"].split() == ["openid", "profile"]


def test_expired_token(cli, browser, app):
    body = start(cli, app)
    DeviceAuthorization.objects.update(expires=timezone.now() - timedelta(seconds=1))
    response = poll(cli, app, body["device_code"])
    assert response.status_code == 400 and response.json()["error"] == "expired_token"
    # The user can no longer enter it either.
    assert enter_code(browser, body["user_code"]).status_code == 400


def test_slow_down_increases_the_interval_by_five_seconds(cli, app):
    body = start(cli, app)
    assert poll(cli, app, body["device_code"]).json()["error"] == "authorization_pending"
    fast = poll(cli, app, body["device_code"])
    assert fast.status_code == 400 and fast.json()["error"] == "slow_down"
    assert DeviceAuthorization.objects.get().interval == 10  # RFC 8628 3.5, stored
    assert poll(cli, app, body["device_code"]).json()["error"] == "slow_down"
    assert DeviceAuthorization.objects.get().interval == 15
    allow_polling_now(body["device_code"])
    assert poll(cli, app, body["device_code"]).json()["error"] == "authorization_pending"


def test_another_clients_device_code_is_invalid_grant(cli, browser, app):
    user = UserFactory()
    body = start(cli, app)
    sign_in_and_confirm(browser, user, body["user_code"])
    thief = PublicApplicationFactory(profile__allow_device_flow=True)
    response = poll(cli, thief, body["device_code"])
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    assert poll(cli, app, body["device_code"]).status_code == 200  # the owner is unaffected


@pytest.mark.parametrize("device_code", ["", "nope", "\x00", "x" * 5000, "é" * 10])
def test_garbage_device_codes(cli, app, device_code):
    response = poll(cli, app, device_code)
    assert response.status_code in (400, 401)
    assert response.json()["error"] in ("invalid_request", "invalid_grant")


def test_device_grant_refused_for_clients_not_allowed(cli, browser, app):
    user = UserFactory()
    body = start(cli, app)
    sign_in_and_confirm(browser, user, body["user_code"])
    app.oidc_profile.allow_device_flow = False
    app.oidc_profile.save()
    response = poll(cli, app, body["device_code"])
    assert response.status_code == 400 and response.json()["error"] == "unauthorized_client"


def test_user_deactivated_between_approval_and_poll(cli, browser, app):
    user = UserFactory()
    body = start(cli, app)
    sign_in_and_confirm(browser, user, body["user_code"])
    user.is_active = False
    user.save()
    response = poll(cli, app, body["device_code"])
    assert response.status_code == 400
    assert response.json()["error"] in ("access_denied", "expired_token")
    assert "access_token" not in response.json()


def test_logout_before_the_poll_kills_the_approval(cli, browser, app):
    user = UserFactory()
    body = start(cli, app)
    sign_in_and_confirm(browser, user, body["user_code"])
    from oidc_provider_ext.internal import op_sessions

    op_sessions.end(list(OPSession.objects.all()))
    response = poll(cli, app, body["device_code"])
    assert response.status_code == 400 and response.json()["error"] == "expired_token"


def test_consent_revocation_revokes_device_tokens(cli, browser, app):
    from oidc_provider_ext.internal import consents
    from oidc_provider_ext.models import Consent

    user = UserFactory()
    body = start(cli, app, scope="openid profile")
    sign_in_and_confirm(browser, user, body["user_code"])
    tokens = poll(cli, app, body["device_code"]).json()
    consents.revoke(Consent.objects.get(user=user, application=app))
    assert userinfo(cli, tokens["access_token"]).status_code == 401


# --- the code-entry page (RFC 8628 3.3) --------------------------------------------------------------------


def test_entry_page_is_easy_to_type_and_translated(browser):
    page = browser.get(reverse("oidc_provider_ext:device"))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'autocapitalize="characters"' in html and 'inputmode="text"' in html
    assert '<label class="form-label" for="id_user_code">' in html
    assert 'name="viewport"' in html
    german = browser.get(reverse("oidc_provider_ext:device"), HTTP_ACCEPT_LANGUAGE="de")
    assert german.content.decode() != html


@pytest.mark.parametrize(
    "transform", [str.lower, lambda c: c.replace("-", ""), lambda c: " " + c.replace("-", " ") + " "]
)
def test_code_is_case_and_dash_insensitive(cli, browser, app, transform):
    body = start(cli, app)
    response = enter_code(browser, transform(body["user_code"]))
    assert response.status_code == 302
    assert reverse("oidc_provider_ext:device-continue", args=["x"])[:-1] in response["Location"]


def test_verification_uri_complete_prefills_but_requires_confirmation(cli, browser, app):
    user = UserFactory()
    login(browser, user)
    body = start(cli, app)
    complete = urlsplit(body["verification_uri_complete"])
    page = browser.get(f"{complete.path}?{complete.query}")
    assert page.status_code == 200
    assert page.context["form"].initial["user_code"] == body["user_code"]
    # Nothing was approved by opening the link.
    assert DeviceAuthorization.objects.get().status == "pending"
    response = browser.get(enter_code(browser, body["user_code"])["Location"])
    assert response.status_code == 200 and response.context["device"] is True
    assert b"data-device-warning" in response.content
    assert DeviceAuthorization.objects.get().status == "pending"


def test_first_party_client_and_remembered_consent_still_confirm(cli, browser):
    """RFC 8628 5.4: no silent approval, whatever the consent policy or earlier consent."""
    user = UserFactory()
    app = PublicApplicationFactory(profile__allow_device_flow=True, profile__consent_policy="skip")
    body = start(cli, app, scope="openid profile")
    sign_in_and_confirm(browser, user, body["user_code"])
    body = start(cli, app, scope="openid profile")
    response = browser.get(enter_code(browser, body["user_code"])["Location"])
    assert response.status_code == 200 and response.context["device"] is True
    assert response.context["scopes"] == []  # nothing new to tick
    assert {s["name"] for s in response.context["already_allowed"]} == {"openid", "profile"}


def test_entry_needs_csrf(cli, app):
    body = start(cli, app)
    strict = Client(enforce_csrf_checks=True)
    assert enter_code(strict, body["user_code"]).status_code == 403


@pytest.mark.parametrize(
    "typed", ["", "\x00ABC", "B" * 65, "x" * 100_000, "AAAA-AAAA", "BCDF-GHJ", "БCDF-GHJK"]
)
def test_garbage_user_codes(browser, typed):
    response = enter_code(browser, typed)
    assert response.status_code == 400
    assert response.status_code != 500


def test_tenant_sign_in_and_chooser(cli, browser, app):
    acme = TenantFactory(code="acme", name="Acme")
    other = TenantFactory(code="other", name="Other")
    user = UserFactory()
    TenantMembershipFactory(user=user, tenant=acme)
    TenantMembershipFactory(user=user, tenant=other)

    # A named tenant: the login page is scoped to it, and the tokens carry it.
    body = start(cli, app, acr_values="tenant:acme")
    page = browser.get(enter_code(browser, body["user_code"])["Location"])
    assert page.status_code == 302
    login_page = browser.get(page["Location"])
    assert login_page.context["tenant"].code == "acme"
    assert login_page.context["application"].client_id == app.client_id
    response = browser.post(page["Location"], {"username": user.username, "password": USER_PASSWORD})
    confirm = browser.get(response["Location"])
    consent(browser, confirm)
    tokens = poll(cli, app, body["device_code"]).json()
    assert AuthorizationGrant.objects.get().tenant == "acme"
    assert OPSession.objects.get(user=user).tenant == "acme"
    assert "access_token" in tokens

    # No tenant named, two memberships: the chooser, posting back to the device flow.
    fresh = Client()
    body = start(cli, app)
    response = fresh.get(enter_code(fresh, body["user_code"])["Location"])
    response = fresh.post(response["Location"], {"username": user.username, "password": USER_PASSWORD})
    chooser = fresh.get(response["Location"])
    assert chooser.status_code == 200 and {t.code for t in chooser.context["tenants"]} == {"acme", "other"}
    form_action = chooser.context["form_action"]
    assert "device/continue" in form_action
    confirm = fresh.post(form_action, {"tenant": "other"})
    consent(fresh, confirm)
    poll(cli, app, body["device_code"])
    assert AuthorizationGrant.objects.filter(tenant="other").count() == 1


def test_non_member_cannot_sign_in_to_the_tenant(cli, browser, app):
    TenantFactory(code="acme")
    outsider = UserFactory()
    body = start(cli, app, acr_values="tenant:acme")
    page = browser.get(enter_code(browser, body["user_code"])["Location"])
    response = browser.post(page["Location"], {"username": outsider.username, "password": USER_PASSWORD})
    assert response.status_code == 400  # the login form refuses a non-member like a wrong password
    assert DeviceAuthorization.objects.get().status == "pending"


def test_another_users_pending_confirmation_cannot_be_answered(cli, browser, app):
    alice, mallory = UserFactory(), UserFactory()
    body = start(cli, app)
    response = enter_code(browser, body["user_code"])
    continue_url = response["Location"]
    response = browser.get(continue_url)
    browser.post(response["Location"], {"username": alice.username, "password": USER_PASSWORD})
    confirm = browser.get(continue_url)
    request_id = confirm.context["form"].initial["request_id"]
    attacker = Client()
    login(attacker, mallory)
    answer = attacker.post(continue_url, {"request_id": request_id, "decision": "allow"})
    assert answer.status_code == 400
    assert DeviceAuthorization.objects.get().status == "pending"


# --- brute force (RFC 8628 5.1) ------------------------------------------------------------------------


@pytest.mark.oidc_settings(DEVICE_USER_CODE_FAILURE_LIMIT=3)
def test_wrong_codes_lock_out_the_address_not_the_victim(cli, app):
    body = start(cli, app)
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    for _ in range(3):
        assert enter_code(attacker, "BBBB-BBBB").status_code == 400
    # Locked: even the right code is refused from there, so guessing stops.
    locked = enter_code(attacker, body["user_code"])
    assert locked.status_code == 429
    assert 'role="alert"' in locked.content.decode()
    # The victim at another address is not locked out.
    victim = Client(REMOTE_ADDR="198.51.100.1")
    assert enter_code(victim, body["user_code"]).status_code == 302
    # A victim signed in behind the attacker's address (a NAT) is counted per account.
    same_address = Client(REMOTE_ADDR="203.0.113.7")
    login(same_address, UserFactory())
    assert enter_code(same_address, body["user_code"]).status_code == 302


@pytest.mark.oidc_settings(DEVICE_USER_CODE_FAILURE_LIMIT=3)
def test_wrong_codes_lock_out_the_user_everywhere(cli, app):
    body = start(cli, app)
    mallory = UserFactory()
    for address in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        browser = Client(REMOTE_ADDR=address)
        login(browser, mallory)
        assert enter_code(browser, "CCCC-CCCC").status_code == 400
    fresh_address = Client(REMOTE_ADDR="192.0.2.99")
    login(fresh_address, mallory)
    assert enter_code(fresh_address, body["user_code"]).status_code == 429
    # Another user is not affected.
    bob = Client(REMOTE_ADDR="192.0.2.99")
    login(bob, UserFactory())
    assert enter_code(bob, body["user_code"]).status_code == 302


def test_user_code_entropy_and_alphabet():
    codes = {devices.new_user_code() for _ in range(2000)}
    assert len(codes) == 2000
    assert all(len(c) == 8 and set(c) <= set("BCDFGHJKLMNPQRSTVWXZ") for c in codes)
    assert devices.normalise("bcdf ghjk") == "BCDFGHJK"
    assert devices.normalise("BCDF-GHJKL") is None
    assert devices.normalise("AEIO-UBCD") is None


# --- discovery, cleanup ----------------------------------------------------------------------------------


def test_discovery_advertises_the_device_grant(client):
    metadata = client.get(reverse("oidc_provider_ext:discovery")).json()
    assert metadata["device_authorization_endpoint"].endswith("/connect/device_authorization")
    assert metadata["device_authorization_endpoint"].startswith(metadata["issuer"].split("/connect")[0])
    assert DEVICE_GRANT in metadata["grant_types_supported"]


def test_cleanup_prunes_expired_device_authorizations(cli, app):
    from django.core.management import call_command

    start(cli, app)
    start(cli, app)
    DeviceAuthorization.objects.filter(pk=DeviceAuthorization.objects.first().pk).update(
        expires=timezone.now() - timedelta(seconds=1)
    )
    call_command("oidc_cleanup", stdout=__import__("io").StringIO())
    assert DeviceAuthorization.objects.count() == 1


# --- operator: system checks, admin, oidc_createclient ---------------------------------------------------


class TestChecks:
    def _ids(self):
        from django.core.checks import run_checks

        return {m.id for m in run_checks() if m.id and m.id.startswith("oidc_provider_ext.E08")}

    def test_defaults_are_clean(self):
        assert self._ids() == set()

    @pytest.mark.parametrize("value", [0, 1801, "600", None, True])
    @pytest.mark.oidc_settings()
    def test_e080_device_code_lifetime(self, settings, value):
        from oidc_provider_ext import checks

        from .conftest import oidc_settings

        oidc_settings(settings, DEVICE_CODE_EXPIRE_SECONDS=value)
        assert self._ids() == {checks.E080}

    @pytest.mark.parametrize("value", [0, 61, 2.5])
    def test_e081_poll_interval(self, settings, value):
        from oidc_provider_ext import checks

        from .conftest import oidc_settings

        oidc_settings(settings, DEVICE_POLL_INTERVAL_SECONDS=value)
        assert self._ids() == {checks.E081}

    @pytest.mark.parametrize(
        "name", ["DEVICE_MAX_PENDING_PER_CLIENT", "DEVICE_MAX_PENDING", "DEVICE_MAX_PENDING_PER_ADDRESS"]
    )
    def test_e082_caps(self, settings, name):
        from oidc_provider_ext import checks

        from .conftest import oidc_settings

        oidc_settings(settings, **{name: None})
        assert self._ids() == {checks.E082}
        oidc_settings(settings, **{name: 0})
        assert self._ids() == {checks.E082}

    def test_e083_failure_limit(self, settings):
        from oidc_provider_ext import checks

        from .conftest import oidc_settings

        oidc_settings(settings, DEVICE_USER_CODE_FAILURE_LIMIT=0)
        assert self._ids() == {checks.E083}


def test_admin_shows_no_code_material(cli, app, admin_client):
    body = start(cli, app)
    row = DeviceAuthorization.objects.get()
    page = admin_client.get(f"/admin/oidc_provider_ext/deviceauthorization/{row.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert row.device_code_checksum not in html and row.user_code_hmac not in html
    assert body["user_code"] not in html
    profile_page = admin_client.get(f"/admin/oauth2_provider/application/{app.pk}/change/")
    assert "allow_device_flow" in profile_page.content.decode()


def test_createclient_can_allow_the_device_flow(cli):
    from io import StringIO

    from django.core.management import CommandError, call_command
    from oauth2_provider.models import Application

    out = StringIO()
    call_command(
        "oidc_createclient",
        "public",
        "authorization-code",
        "--allow-device-flow",
        "--name",
        "CLI",
        "--redirect-uris",
        "http://127.0.0.1/callback",
        stdout=out,
    )
    client = Application.objects.get(name="CLI")
    assert client.oidc_profile.allow_device_flow
    assert start(cli, client)["user_code"]
    with pytest.raises(CommandError, match="authorization-code"):
        call_command(
            "oidc_createclient", "confidential", "client-credentials", "--allow-device-flow", stdout=out
        )


# --- more attacks and edges ----------------------------------------------------------------------------


def test_tenant_the_client_may_not_use_is_refused(cli):
    TenantFactory(code="acme")
    TenantFactory(code="other")
    app = PublicApplicationFactory(profile__allow_device_flow=True, profile__allowed_tenant_codes="acme")
    response = device_authorize(cli, app, acr_values="tenant:other")
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    response = device_authorize(cli, app, acr_values="tenant:acme tenant:other")
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    assert start(cli, app, acr_values="tenant:acme")
    assert DeviceAuthorization.objects.get().tenant == "acme"


def test_confidential_client_must_authenticate_to_poll(cli, browser):
    app = ApplicationFactory(profile__allow_device_flow=True)
    body = start(cli, app, secret=app.raw_secret, scope="openid")
    sign_in_and_confirm(browser, UserFactory(), body["user_code"])
    anonymous = token_request(
        cli, {"grant_type": DEVICE_GRANT, "device_code": body["device_code"], "client_id": app.client_id}
    )
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_client"
    wrong = poll(cli, app, body["device_code"], secret="wrong")
    assert wrong.status_code == 401
    tokens = poll(cli, app, body["device_code"], secret=app.raw_secret).json()
    assert verify_jwt(tokens["id_token"])["aud"] == app.client_id


def test_ended_op_session_without_revocation_kills_the_approval(cli, browser, app):
    """An OP session ended by any path (even one that did not expire the grant) ends the approval."""
    body = start(cli, app)
    sign_in_and_confirm(browser, UserFactory(), body["user_code"])
    OPSession.objects.update(ended=timezone.now())
    response = poll(cli, app, body["device_code"])
    assert response.status_code == 400 and response.json()["error"] == "expired_token"


def test_poll_query_counts(cli, browser, app, django_assert_max_num_queries):
    body = start(cli, app, scope="openid profile")
    with django_assert_max_num_queries(6):
        assert poll(cli, app, body["device_code"]).json()["error"] == "authorization_pending"
    sign_in_and_confirm(browser, UserFactory(), body["user_code"])
    allow_polling_now(body["device_code"])
    with django_assert_max_num_queries(14):
        assert poll(cli, app, body["device_code"]).status_code == 200


def test_every_device_setting_is_documented():
    from pathlib import Path

    from oidc_provider_ext.conf import _SETTINGS

    documented = (Path(__file__).resolve().parent.parent / "docs" / "settings.md").read_text()
    for name in _SETTINGS:
        if name.startswith("DEVICE_"):
            assert f"`{name}`" in documented, name


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_polls_after_approval_have_exactly_one_winner(browser):
    from .test_concurrency import CONCURRENCY, _race, _requires_postgres

    _requires_postgres()
    app = PublicApplicationFactory(profile__allow_device_flow=True)
    body = start(Client(), app, scope="openid offline_access")
    sign_in_and_confirm(browser, UserFactory(), body["user_code"])
    statuses = _race(lambda: poll(Client(), app, body["device_code"]))
    assert len(statuses) == CONCURRENCY
    assert statuses.count(200) == 1, statuses
    assert AuthorizationGrant.objects.get().redeemed is not None


def test_account_state_hook_is_asked_at_issue_time(cli, browser, app, monkeypatch):
    """A user the adapter no longer lets use the client (without any revocation having happened:
    a site's own membership model) gets no tokens: the hook is asked when the device polls."""
    from oidc_provider_ext.adapter import get_adapter

    body = start(cli, app)
    sign_in_and_confirm(browser, UserFactory(), body["user_code"])
    monkeypatch.setattr(type(get_adapter()), "may_use_client", lambda self, *args, **kwargs: False)
    response = poll(cli, app, body["device_code"])
    assert response.status_code == 400 and response.json()["error"] == "access_denied"


@pytest.mark.parametrize("query", ["user_code=%00", "user_code=" + "B" * 9000, "user_code=a&user_code=b"])
def test_garbage_in_verification_uri_complete(browser, query):
    response = browser.get(f"{reverse('oidc_provider_ext:device')}?{query}")
    assert response.status_code == 400  # the request boundary's page, never a 500


def test_answer_after_the_device_request_expired(cli, browser, app):
    body = start(cli, app)
    response = browser.get(enter_code(browser, body["user_code"])["Location"])
    response = browser.post(
        response["Location"], {"username": UserFactory().username, "password": USER_PASSWORD}
    )
    confirm = browser.get(response["Location"])
    DeviceAuthorization.objects.update(expires=timezone.now())
    assert consent(browser, confirm).status_code == 400
    assert consent(browser, confirm, decision="deny").status_code == 400
    assert DeviceAuthorization.objects.get().status == "pending"
    assert not AuthorizationGrant.objects.exists()


def test_a_resource_the_approval_did_not_name_is_invalid_target_and_costs_nothing(cli, browser, app):
    """RFC 8707 2.2 at the device grant: the approval named no resource, so a poll naming one gets
    invalid_target (never a token for another audience), and the approval is not used up."""
    user = UserFactory()
    body = start(cli, app, scope="openid")
    sign_in_and_confirm(browser, user, body["user_code"])
    refused = token_request(
        cli,
        {
            "grant_type": DEVICE_GRANT,
            "device_code": body["device_code"],
            "client_id": app.client_id,
            "resource": "https://api.example.com",
        },
    )
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_target"
    allow_polling_now(body["device_code"])
    tokens = poll(cli, app, body["device_code"]).json()
    assert verify_jwt(tokens["access_token"], typ="at+jwt")["aud"] == app.client_id


# --- found by review 3 --------------------------------------------------------------------------------


@pytest.mark.parametrize("decision", ["allow", "deny"])
def test_device_request_at_the_code_flow_continue_url_is_no_500(user, decision):
    """A device sign-in's pending request lives in the same session store as the code flow's; at
    the code flow's continue URL it is sent to its own view (which shows the RFC 8628 5.4 warning)
    and never answered there (that view's answer would need a redirect_uri: HTTP 500)."""
    app = PublicApplicationFactory(profile__allow_device_flow=True)
    body = start(Client(), app, scope="openid profile")
    browser = Client(raise_request_exception=False)
    response = browser.post(reverse("oidc_provider_ext:device"), {"user_code": body["user_code"]})
    assert response.status_code == 302
    request_id = response["Location"].rstrip("/").rsplit("/", 1)[-1]
    response = browser.get(response["Location"])
    browser.post(response["Location"], {"username": user.username, "password": USER_PASSWORD})
    page = browser.get(reverse("oidc_provider_ext:authorize-continue", args=[request_id]))
    if page.status_code == 200:
        warned = page.context.get("device") is True
        response = consent(browser, page, decision=decision)
        assert response.status_code < 500, response.status_code
        assert warned, "device sign-in confirmed without the RFC 8628 5.4 warning"
    assert page.status_code == 302
    assert page["Location"] == reverse("oidc_provider_ext:device-continue", args=[request_id])
    # A consent answer posted to the code flow's URL: expired there, and nothing approved.
    device_page = browser.get(page["Location"])
    answer = browser.post(
        reverse("oidc_provider_ext:authorize-continue", args=[request_id]),
        {"request_id": device_page.context["form"].initial["request_id"], "decision": decision},
    )
    assert answer.status_code == 400
    assert DeviceAuthorization.objects.get().status == DeviceAuthorization.Status.PENDING


@pytest.mark.oidc_settings(DEVICE_MAX_PENDING_PER_CLIENT=5)
def test_one_address_cannot_use_up_a_clients_device_sign_ins():
    """A public client's id is no secret: one address may hold only its share of the client's
    pending device authorizations, so a user elsewhere still signs in."""
    app = PublicApplicationFactory(profile__allow_device_flow=True)
    attacker = Client(REMOTE_ADDR="198.51.100.7")
    for _ in range(5):
        device_authorize(attacker, app, scope="openid")
    victim = device_authorize(Client(REMOTE_ADDR="203.0.113.9"), app, scope="openid")
    assert victim.status_code == 200, (victim.status_code, victim.content)


@pytest.mark.oidc_settings(DEVICE_MAX_PENDING_PER_ADDRESS=2)
def test_device_authorizations_per_address(app):
    same = Client(REMOTE_ADDR="2001:db8:1:2::1")
    start(same, app)
    start(Client(REMOTE_ADDR="2001:db8:1:2::99"), app)  # the same /64
    refused = device_authorize(same, app)
    assert refused.status_code == 429 and refused.json()["error"] == "temporarily_unavailable"
    assert refused["Retry-After"]
    start(Client(REMOTE_ADDR="2001:db8:1:3::1"), app)  # another /64


@pytest.mark.oidc_settings(DEVICE_USER_CODE_FAILURE_LIMIT=5)
def test_parallel_user_code_guesses_respect_the_limit(transactional_db, monkeypatch):
    """RFC 8628 5.1: each attempt is counted before the code is looked up, so guesses sent in
    parallel (40 at once, each lookup taking 100 ms) cannot pass a limit of 5."""
    import threading
    import time

    looked_up = []
    real = devices.find_pending

    def slow_lookup(typed):
        looked_up.append(typed)
        time.sleep(0.1)
        return real(typed)

    monkeypatch.setattr(devices, "find_pending", slow_lookup)
    url = reverse("oidc_provider_ext:device")

    def guess(n):
        Client(REMOTE_ADDR="198.51.100.7").post(
            url, {"user_code": f"BCDF-GH{'JKLMNPQRSTVWXZ'[n % 14]}{'BCDFGHJKLM'[n % 10]}"}
        )

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(looked_up) <= 5, f"{len(looked_up)} codes tried from one address with a limit of 5"


def test_right_user_codes_do_not_use_up_the_limit(browser, app, settings):
    """A right code takes its attempt back: a user entering their codes is never locked out."""
    from .conftest import oidc_settings

    oidc_settings(settings, DEVICE_USER_CODE_FAILURE_LIMIT=2)
    for _ in range(4):
        body = start(Client(REMOTE_ADDR=f"198.51.100.{_ + 1}"), app)
        response = browser.post(reverse("oidc_provider_ext:device"), {"user_code": body["user_code"]})
        assert response.status_code == 302


def test_mismatched_client_id_is_invalid_request():
    """Basic credentials of one client and another client_id in the body: RFC 6749 5.2
    invalid_request, not oauthlib's server_error ("Discrepency found")."""
    confidential = ApplicationFactory(profile__allow_device_flow=True)
    other = PublicApplicationFactory(profile__allow_device_flow=True)
    response = Client().post(
        reverse("oidc_provider_ext:device-authorization"),
        urlencode({"client_id": other.client_id, "scope": "openid"}),
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=basic_auth(confidential.client_id, confidential.raw_secret),
    )
    assert response.status_code in (400, 401)
    assert response.json()["error"] in ("invalid_request", "invalid_client"), response.content


def test_mismatched_client_id_when_polling_is_invalid_request(cli):
    confidential = ApplicationFactory(profile__allow_device_flow=True)
    other = PublicApplicationFactory(profile__allow_device_flow=True)
    body = start(cli, confidential, secret=confidential.raw_secret, scope="openid")
    response = token_request(
        cli,
        {"grant_type": DEVICE_GRANT, "device_code": body["device_code"], "client_id": other.client_id},
        auth=(confidential.client_id, confidential.raw_secret),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request", response.content
