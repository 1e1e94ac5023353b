"""manage.py oidc_cleanup removes exactly what has expired, in batches."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from oauth2_provider.models import AccessToken, RefreshToken

from oidc_provider_ext.models import AuthorizationGrant, Consent, OPSession

from .flow import exchange, get_code

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command("oidc_cleanup", *args, stdout=out)
    return out.getvalue()


def test_removes_only_what_expired(browser, rp, user, confidential_app):
    live = []
    for _ in range(3):
        code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
        live.append(exchange(rp, confidential_app, code).json())
    old_at = AccessToken.objects.order_by("pk").first()
    AccessToken.objects.filter(pk=old_at.pk).update(expires=timezone.now() - timedelta(seconds=1))
    RefreshToken.objects.filter(access_token=old_at).update(revoked=timezone.now() - timedelta(hours=1))
    code, _ = get_code(browser, confidential_app, user)  # issued, never redeemed ...
    AuthorizationGrant.objects.filter(redeemed__isnull=True).update(
        expires=timezone.now() - timedelta(seconds=1)
    )
    Consent.objects.update(revoked=timezone.now() - timedelta(days=31))
    OPSession.objects.update(ended=timezone.now() - timedelta(days=31))

    dry = run("--dry-run")
    assert "access tokens: would remove 1" in dry and AccessToken.objects.count() == 3
    out = run("--batch-size", "1")
    assert "access tokens: removed 1" in out
    assert "refresh tokens: removed 1" in out
    assert "authorization grants: removed 1" in out
    assert "consents: removed 1" in out and "OP sessions: removed" in out
    assert AccessToken.objects.count() == 2 and RefreshToken.objects.count() == 2
    assert AuthorizationGrant.objects.count() == 3  # the redeemed ones stay while their tokens may live
    assert not Consent.objects.exists() and not OPSession.objects.exists()
    assert "access tokens: removed 0" in run()  # idempotent


def test_keeps_recent_history(browser, rp, user, confidential_app):
    code, _ = get_code(browser, confidential_app, user)
    exchange(rp, confidential_app, code)
    Consent.objects.update(revoked=timezone.now() - timedelta(days=2))
    run()
    assert Consent.objects.count() == 1
    run("--keep-days", "1")
    assert Consent.objects.count() == 0
