"""Review 2: guessing TOTP codes has no per-account ceiling. The throttle counts per (user, address)
and a half sign-in allows MFA_FAILURE_LIMIT failures; someone who knows the password starts a new
half sign-in for free (a right password is never a failure) from the next address. An IPv6 /48
holds 65,536 /64s (each one "address"): 327,680 guesses per 15-minute window against 3 valid codes
in 10**6, an expected break in about one window. The step-up page's per-session ceiling does not
help either: a password-only session from /accounts/login/ is free too."""

from __future__ import annotations

import sys

import pytest
from django.test import Client
from django.urls import reverse

from oidc_provider_ext.conf import app_settings

from .factories import USER_PASSWORD
from .flow import enrol_totp, totp_code

pytestmark = pytest.mark.django_db

WRONG = "Check the code and try again"
THROTTLED = "Too many wrong codes"


def test_guesses_from_many_addresses_have_a_ceiling_per_account(user):
    app = enrol_totp(user)
    limit = app_settings.MFA_FAILURE_LIMIT
    evaluated = 0
    for n in range(40):  # 40 /64s of one attacker's /48
        address = f"2001:db8:1:{n:x}::1"
        browser = Client(REMOTE_ADDR=address)
        response = browser.post(reverse("oidc_provider_ext:login"), {"username": user.username, "password": USER_PASSWORD})
        assert response.status_code == 302 and response["Location"] == reverse("oidc_provider_ext:login-verify")
        for _ in range(limit):
            wrong = "000000" if totp_code(app) != "000000" else "111111"
            page = browser.post(reverse("oidc_provider_ext:login-verify"), {"factor": "totp", "code": wrong})
            text = page.content.decode() if page.status_code == 400 else ""
            if WRONG in text or (page.status_code == 302 and "/login" in page["Location"] and THROTTLED not in text):
                evaluated += 1
    # 200 wrong codes checked against one account in one window, none refused for the account.
    assert evaluated <= 4 * limit, f"{evaluated} wrong codes were checked for one account without a ceiling"


def test_concurrent_guesses_are_counted_before_they_are_checked(user, monkeypatch):
    """Check-then-count: ``factor_allowed`` reads the counter, the code is verified, and only then
    ``factor_failed`` adds to it; the half sign-in's own failure count lives in the session, saved
    when the request ends. Requests in flight at the same time all pass both limits. Simulated here
    without threads: 12 requests from the same browser (the same half sign-in, the same address),
    each arriving while the previous ones are still being verified."""
    from oidc_provider_ext.internal import totp

    app = enrol_totp(user)
    browser = Client()
    response = browser.post(reverse("oidc_provider_ext:login"), {"username": user.username, "password": USER_PASSWORD})
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
    assert len(verified) <= limit, f"{len(verified)} codes checked for one half sign-in from one address (limit {limit})"
