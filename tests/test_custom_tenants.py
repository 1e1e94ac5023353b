"""A site's own organisation model, end to end, through the adapter alone (issue: tenant contract).

The adapter below serves organisations and seats from plain dicts; no built-in ``Tenant`` or
``TenantMembership`` row exists in any of these tests. It overrides exactly the tenant hooks
docs/tenants.md tells a site to override, and nothing else, so a site that follows the docs gets
sign-in, tokens, refresh, userinfo and introspection, and loses them when a seat ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from oidc_provider_ext.adapter import DefaultOIDCAdapter
from oidc_provider_ext.models import ClientProfile, Tenant, TenantMembership

from .conftest import oidc_settings
from .factories import REDIRECT_URI, UserFactory
from .flow import authorize_url, consent, exchange, introspect, query_of, refresh, userinfo, verify_jwt

pytestmark = pytest.mark.django_db


@dataclass
class Organisation:
    code: str
    name: str
    is_active: bool = True
    logo_url: str = ""
    brand_colour: str = ""
    support_url: str = ""


ORGANISATIONS: dict[str, Organisation] = {}
SEATS: set[tuple[int, str]] = set()  # (user pk, organisation code): an active seat


class OrganisationAdapter(DefaultOIDCAdapter):
    """The docs' custom-model example, backed by dicts instead of the site's own tables."""

    def has_tenants(self, **kwargs):
        return bool(ORGANISATIONS)

    def get_tenant(self, code, **kwargs):
        return ORGANISATIONS.get(code.lower())

    def get_user_tenants(self, user, **kwargs):
        return sorted(
            (org for org in ORGANISATIONS.values() if self.is_member_of(user, org.code)),
            key=lambda org: org.name,
        )

    def is_member_of(self, user, tenant_code, **kwargs):
        org = ORGANISATIONS.get(tenant_code)
        return org is not None and org.is_active and (user.pk, tenant_code) in SEATS


class NoTenantsAdapter(OrganisationAdapter):
    def has_tenants(self, **kwargs):
        return False


@pytest.fixture(autouse=True)
def organisations(settings):
    oidc_settings(settings, ADAPTER=f"{__name__}.OrganisationAdapter")
    ORGANISATIONS.update(
        acme=Organisation("acme", "Acme Organisation"), globex=Organisation("globex", "Globex Organisation")
    )
    yield ORGANISATIONS
    ORGANISATIONS.clear()
    SEATS.clear()
    assert not Tenant.objects.exists() and not TenantMembership.objects.exists()


@pytest.fixture
def member(user):
    SEATS.add((user.pk, "acme"))
    return user


def _sign_in(browser, url, user):
    response = browser.get(url)
    assert response.status_code == 302 and reverse("oidc_provider_ext:login") in response["Location"], (
        response
    )
    response = browser.post(
        response["Location"], {"username": user.username, "password": "correct horse battery staple"}
    )
    if response.status_code != 302:
        return response
    response = browser.get(response["Location"])
    if response.status_code == 200 and response.templates[0].name == "oidc_provider_ext/consent.html":
        response = consent(browser, response)
    return response


def _tokens(browser, rp, app, user, **params):
    response = _sign_in(browser, authorize_url(app, scope="openid offline_access", **params), user)
    assert response.status_code == 302 and response["Location"].startswith(REDIRECT_URI), response
    body = exchange(rp, app, query_of(response["Location"])["code"])
    assert body.status_code == 200, body.content
    return body.json()


class TestOwnOrganisationModel:
    def test_member_signs_in_and_every_token_path_names_the_tenant(
        self, browser, rp, member, confidential_app
    ):
        page = browser.get(authorize_url(confidential_app, acr_values="tenant:ACME"), follow=True)
        assert "Acme Organisation" in page.content.decode()  # branded from the site's own model
        tokens = _tokens(browser, rp, confidential_app, member, acr_values="tenant:acme")
        assert verify_jwt(tokens["id_token"])["tenant"] == "acme"
        assert verify_jwt(tokens["access_token"], typ="at+jwt")["tenant"] == "acme"
        assert userinfo(rp, tokens["access_token"]).json()["tenant"] == "acme"
        for token in (tokens["access_token"], tokens["refresh_token"]):
            assert introspect(rp, confidential_app, token)["tenant"] == "acme"
        refreshed = refresh(rp, confidential_app, tokens["refresh_token"])
        assert refreshed.status_code == 200, refreshed.content  # was invalid_grant: built-in table asked
        assert verify_jwt(refreshed.json()["id_token"])["tenant"] == "acme"

    def test_non_member_gets_the_wrong_password_answer(self, browser, member, confidential_app):
        outsider = UserFactory()
        response = _sign_in(browser, authorize_url(confidential_app, acr_values="tenant:acme"), outsider)
        assert response.status_code == 400
        assert "The username or password is not correct" in response.content.decode()
        assert "_auth_user_id" not in browser.session

    def test_member_of_another_organisation_is_refused(self, browser, member, confidential_app):
        response = _sign_in(browser, authorize_url(confidential_app, acr_values="tenant:globex"), member)
        assert response.status_code == 400 and "_auth_user_id" not in browser.session

    def test_ending_a_seat_stops_refresh_userinfo_and_introspection(
        self, browser, rp, member, confidential_app
    ):
        tokens = _tokens(browser, rp, confidential_app, member, acr_values="tenant:acme")
        SEATS.discard((member.pk, "acme"))  # no end_access() call: refused at the next use
        response = refresh(rp, confidential_app, tokens["refresh_token"])
        assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
        assert userinfo(rp, tokens["access_token"]).status_code == 401
        assert introspect(rp, confidential_app, tokens["access_token"]) == {"active": False}

    def test_disabling_the_organisation_stops_refresh(self, browser, rp, member, confidential_app):
        tokens = _tokens(browser, rp, confidential_app, member, acr_values="tenant:acme")
        ORGANISATIONS["acme"].is_active = False
        assert refresh(rp, confidential_app, tokens["refresh_token"]).json()["error"] == "invalid_grant"

    def test_unknown_organisation_is_a_400_page(self, browser, confidential_app):
        response = browser.get(authorize_url(confidential_app, acr_values="tenant:initech"))
        assert response.status_code == 400 and "Unknown organisation" in response.content.decode()

    def test_users_only_organisation_when_none_is_named(self, browser, rp, member, confidential_app):
        tokens = _tokens(browser, rp, confidential_app, member)
        assert verify_jwt(tokens["id_token"])["tenant"] == "acme"


class TestClientsNameTenantsByCode:
    def test_allowed_codes_restrict_the_client(self, browser, member, confidential_app):
        ClientProfile.objects.filter(application=confidential_app).update(allowed_tenant_codes="globex")
        response = browser.get(authorize_url(confidential_app, acr_values="tenant:acme"))
        assert response.status_code == 400 and "does not accept" in response.content.decode()
        assert browser.get(authorize_url(confidential_app, acr_values="tenant:globex")).status_code == 302

    def test_client_restricted_to_organisations_the_user_is_not_in(self, browser, member, confidential_app):
        ClientProfile.objects.filter(application=confidential_app).update(allowed_tenant_codes="globex")
        response = _sign_in(browser, authorize_url(confidential_app), member)
        assert response.status_code == 400 and "Location" not in response
        assert "No organisation for this application" in response.content.decode()

    def test_default_tenant_code(self, browser, rp, member, confidential_app):
        SEATS.add((member.pk, "globex"))  # several: without the default a chooser would be shown
        ClientProfile.objects.filter(application=confidential_app).update(default_tenant_code="globex")
        tokens = _tokens(browser, rp, confidential_app, member)
        assert verify_jwt(tokens["id_token"])["tenant"] == "globex"

    def test_a_refresh_outside_the_allowed_codes_is_refused(self, browser, rp, member, confidential_app):
        tokens = _tokens(browser, rp, confidential_app, member, acr_values="tenant:acme")
        profile = ClientProfile.objects.get(application=confidential_app)
        profile.allowed_tenant_codes = "globex"
        profile.save()  # (signals drop the cached client; update() would wait for its expiry)
        assert refresh(rp, confidential_app, tokens["refresh_token"]).json()["error"] == "invalid_grant"

    def test_a_restricted_client_gets_no_tenantless_code_when_the_site_says_it_has_no_tenants(
        self, browser, member, confidential_app, settings
    ):
        # A custom-model site that leaves has_tenants() at its default (the built-in table: empty)
        # never defers the tenant: the request goes on without one. A client restricted to some
        # tenants must still not get a code that names none (the account-state rule).
        # (Over the module's autouse adapter, so not a marker: markers apply before fixtures.)
        oidc_settings(settings, ADAPTER=f"{__name__}.NoTenantsAdapter")
        ClientProfile.objects.filter(application=confidential_app).update(allowed_tenant_codes="acme")
        response = _sign_in(browser, authorize_url(confidential_app), member)
        assert not (response.status_code == 302 and "code=" in response["Location"])

    def test_profile_validation_asks_the_adapter(self, confidential_app):
        profile = confidential_app.oidc_profile
        profile.allowed_tenant_codes = "ACME  globex"
        profile.default_tenant_code = "Globex"
        profile.full_clean()  # codes the adapter knows, any case
        profile.save()
        profile.refresh_from_db()
        assert profile.tenant_codes == ["acme", "globex"] and profile.default_tenant_code == "globex"

        profile.allowed_tenant_codes = "acme initech"
        with pytest.raises(ValidationError) as error:
            profile.full_clean()
        assert "initech" in str(error.value.message_dict["allowed_tenant_codes"])

        profile.allowed_tenant_codes = "acme"
        profile.default_tenant_code = "globex"  # not one of the allowed ones
        with pytest.raises(ValidationError) as error:
            profile.full_clean()
        assert "globex" in str(error.value.message_dict["default_tenant_code"])


def test_the_docs_example_overrides_exactly_the_tenant_hooks_that_exist():
    """The split contract came from docs naming a hook the code did not ask (issue: tenants)."""
    import re
    from pathlib import Path

    docs = (Path(__file__).resolve().parent.parent / "docs" / "tenants.md").read_text()
    example = docs[docs.index("## Your own organisation model") :]
    example = example[example.index("```python") : example.index("```", example.index("```python") + 3)]
    overridden = set(re.findall(r"^    def (\w+)\(", example, re.MULTILINE))
    assert overridden <= set(dir(DefaultOIDCAdapter)), overridden - set(dir(DefaultOIDCAdapter))
    tenant_hooks = {"has_tenants", "get_tenant", "get_user_tenants", "is_member_of"}
    assert tenant_hooks <= overridden
    assert tenant_hooks <= {name for name in vars(OrganisationAdapter) if not name.startswith("_")}
    assert not hasattr(DefaultOIDCAdapter, "is_tenant_member")  # one membership hook
