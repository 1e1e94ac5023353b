"""Issue 14 item 7: the example project releases every claim it advertises (idp_project.models.Profile
read by idp_project.adapter.ExampleAdapter, filled for the demo user by its oidc_demo), and
discovery advertises only scopes whose claims the configured adapter can release."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from idp_project.models import Profile
from oidc_provider_ext.adapter import SCOPE_CLAIMS, get_adapter
from oidc_provider_ext.views.discovery import PROTOCOL_CLAIMS

from . import presets
from .flow import exchange, get_code

pytestmark = pytest.mark.django_db

PROFILE_ONLY = {"address", "phone_number", "phone_number_verified"}


def tokens_for_scope(browser, rp, app, user, scope: str) -> dict:
    code, _ = get_code(browser, app, user, scope=scope)
    response = exchange(rp, app, code)
    assert response.status_code == 200, response.content
    return response.json()


def discovery(client) -> dict:
    return client.get("/.well-known/openid-configuration").json()


def demo_user():
    out = StringIO()
    call_command("oidc_demo", "--json", stdout=out)
    data = json.loads(out.getvalue())
    return get_user_model().objects.get(username=data["user"]["username"])


def test_the_example_releases_every_claim_of_every_scope_it_advertises(client):
    """The newcomer's relying party asks for every advertised scope and gets each one's claims
    (before: address and phone were advertised and released nothing)."""
    meta = discovery(client)
    user = demo_user()
    advertised_scopes = [scope for scope in meta["scopes_supported"] if scope in SCOPE_CLAIMS]
    assert {"address", "phone"} <= set(advertised_scopes)
    released = get_adapter().get_user_claims(user, advertised_scopes)
    for scope in advertised_scopes:
        assert set(SCOPE_CLAIMS[scope]) & set(released), f"scope {scope} is advertised but releases nothing"
    user_claims = set(meta["claims_supported"]) - set(PROTOCOL_CLAIMS)
    assert user_claims <= set(released), f"advertised, never released: {user_claims - set(released)}"
    assert released["address"]["locality"] == "Los Angeles"  # OIDC Core 5.1.1: a JSON object
    assert released["phone_number_verified"] is True  # OIDC Core 5.1: a boolean


@pytest.mark.oidc_settings(presets.DEFAULT_ADAPTER)
def test_the_default_adapter_does_not_advertise_what_it_cannot_release(client):
    """A site without address or phone data: discovery must not offer those scopes or claims."""
    meta = discovery(client)
    assert "address" not in meta["scopes_supported"] and "phone" not in meta["scopes_supported"]
    assert not PROFILE_ONLY & set(meta["claims_supported"])
    assert {"openid", "profile", "email", "offline_access"} <= set(meta["scopes_supported"])


@pytest.mark.oidc_settings(presets.DEFAULT_ADAPTER, SCOPES={"openid": "Sign in", "api:read": "Read the API"})
def test_scopes_that_are_not_claim_scopes_stay_advertised(client):
    assert discovery(client)["scopes_supported"] == ["openid", "api:read"]


def test_userinfo_releases_the_profile_through_the_example_adapter(browser, rp, user, confidential_app):
    Profile.objects.create(user=user, phone_number="+44 20 7946 0000", locality="London", country="GB")
    access_token = tokens_for_scope(browser, rp, confidential_app, user, "openid address phone")[
        "access_token"
    ]
    info = rp.get(reverse("oidc_provider_ext:userinfo"), HTTP_AUTHORIZATION=f"Bearer {access_token}").json()
    assert info["address"] == {"locality": "London", "country": "GB", "formatted": "London\nGB"}
    # Unverified stays unverified (OIDC Core 5.1): the profile says so, the claim says so.
    assert info["phone_number"] == "+44 20 7946 0000" and info["phone_number_verified"] is False
    assert "email" not in info and "name" not in info


def test_a_user_without_a_profile_gets_no_empty_claims(browser, rp, user, confidential_app):
    access_token = tokens_for_scope(browser, rp, confidential_app, user, "openid address phone")[
        "access_token"
    ]
    info = rp.get(reverse("oidc_provider_ext:userinfo"), HTTP_AUTHORIZATION=f"Bearer {access_token}").json()
    assert info == {"sub": str(user.pk)}


def test_profile_is_read_only_when_a_profile_claim_is_wanted(user, django_assert_num_queries):
    Profile.objects.create(user=user, phone_number="+1 555 0100")
    adapter = get_adapter()
    with django_assert_num_queries(0):
        assert "phone_number" not in adapter.get_user_claims(user, ["openid", "profile", "email"])
    with django_assert_num_queries(1):
        assert adapter.get_user_claims(user, ["openid", "phone"])["phone_number"] == "+1 555 0100"
