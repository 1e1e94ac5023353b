"""Review 2: "Reset second factors" is an admin action with no permission of its own. Django offers
an action without ``allowed_permissions`` to everyone who can see the changelist, so a view-only
staff member (docs/security.md: "an insider with partial access") strips any user's second factors,
a superuser's included, and the password alone signs in from then on."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from oidc_provider_ext.internal import factors, recovery_codes
from oidc_provider_ext.models import TOTPDevice

from .factories import UserFactory
from .flow import enrol_totp

pytestmark = pytest.mark.django_db


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
        ("view_totpdevice", "/admin/oidc_provider_ext/totpdevice/", lambda u: TOTPDevice.objects.get(user=u).pk),
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
