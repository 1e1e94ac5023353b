"""Consent that users understand, that is remembered, and that they can take back."""

from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.urls import reverse
from django.utils import timezone

from oidc_provider_ext.models import Consent

from .factories import REDIRECT_URI, ApplicationFactory, UserFactory
from .flow import (
    authorize_url,
    basic_auth,
    consent,
    continue_url,
    exchange,
    login,
    query_of,
    token_request,
    verify_jwt,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def app(db):
    return ApplicationFactory(
        name="Photo Printer",
        profile__logo_uri="https://printer.example/logo.png",
        profile__client_uri="https://printer.example/",
        profile__policy_uri="https://printer.example/privacy",
        profile__tos_uri="https://printer.example/terms",
    )


def consent_page(browser, app, **params):
    response = browser.get(authorize_url(app, **params))
    assert response.status_code == 200, response
    assert response.templates[0].name == "oidc_provider_ext/consent.html"
    return response


def redirected_code(response):
    assert response.status_code == 302 and response["Location"].startswith(REDIRECT_URI), response
    return query_of(response["Location"])["code"]


class TestConsentPage:
    def test_shows_client_user_scopes_and_links(self, browser, user, app):
        login(browser, user)
        page = consent_page(browser, app, scope="openid profile email")
        html = page.content.decode()
        assert "Photo Printer" in html
        assert 'src="https://printer.example/logo.png"' in html
        for link in (
            "https://printer.example/",
            "https://printer.example/privacy",
            "https://printer.example/terms",
        ):
            assert f'href="{link}"' in html
        assert user.username in html and "Not you?" in html
        assert "See your email address" in html and "email address" in html  # description and claims
        assert 'value="openid" id="scope-openid" checked disabled' in html  # openid cannot be unticked

    def test_not_you_link_switches_account(self, browser, user, app):
        login(browser, user)
        page = consent_page(browser, app)
        other = UserFactory()
        response = browser.post(
            page.context["switch_account_url"],
            {"username": other.username, "password": "correct horse battery staple"},
        )
        response = browser.get(response["Location"])
        assert response.status_code == 200 and response.context["user"] == other


class TestDecisions:
    def test_first_consent_is_remembered(self, browser, rp, user, app):
        login(browser, user)
        redirected_code(consent(browser, consent_page(browser, app, scope="openid email")))
        stored = Consent.objects.get(user=user, application=app)
        assert stored.scopes == {"openid", "email"} and stored.revoked is None
        redirected_code(browser.get(authorize_url(app, scope="openid email")))  # no page this time

    def test_no_code_no_remembered_consent(self, browser, user, app):
        """The code is issued first and the consent remembered after it (views/authorize.py, no
        transaction around both): an answer whose code is refused remembers nothing."""
        login(browser, user)
        page = consent_page(browser, app, scope="openid email")
        app.redirect_uris = "https://elsewhere.example/cb"  # changed while the page was open
        app.save()
        response = consent(browser, page)
        assert response.status_code == 400 and "code=" not in response.get("Location", "")
        assert not Consent.objects.filter(user=user, application=app).exists()

    def test_subset_is_covered(self, browser, user, app):
        login(browser, user)
        consent(browser, consent_page(browser, app, scope="openid profile email"))
        redirected_code(browser.get(authorize_url(app, scope="openid email")))

    def test_superset_asks_only_for_the_new_scopes(self, browser, user, app):
        login(browser, user)
        consent(browser, consent_page(browser, app, scope="openid email"))
        page = consent_page(browser, app, scope="openid email profile")
        assert [s["name"] for s in page.context["scopes"]] == ["profile"]
        assert {s["name"] for s in page.context["already_allowed"]} == {"openid", "email"}
        consent(browser, page)
        assert Consent.objects.get(user=user, application=app).scopes == {"openid", "email", "profile"}

    def test_partial_consent_tokens_carry_exactly_the_granted_scopes(self, browser, rp, user, app):
        login(browser, user)
        code = redirected_code(
            consent(browser, consent_page(browser, app, scope="openid profile email"), untick=("profile",))
        )
        body = exchange(rp, app, code).json()
        assert body["scope"] == "openid email"
        assert verify_jwt(body["access_token"], typ="at+jwt")["scope"] == "openid email"
        info = rp.get(
            reverse("oidc_provider_ext:userinfo"), HTTP_AUTHORIZATION=f"Bearer {body['access_token']}"
        ).json()
        assert "email" in info and "name" not in info
        assert Consent.objects.get(user=user, application=app).scopes == {"openid", "email"}

    def test_unticking_offline_access_means_no_refresh_token(self, browser, rp, user, app):
        login(browser, user)
        page = consent_page(browser, app, scope="openid offline_access")
        body = exchange(rp, app, redirected_code(consent(browser, page, untick=("offline_access",)))).json()
        assert "refresh_token" not in body and body["scope"] == "openid"

    def test_deny_redirects_with_access_denied_and_state(self, browser, user, app):
        login(browser, user)
        response = consent(browser, consent_page(browser, app), decision="deny")
        query = query_of(response["Location"])
        assert query["error"] == "access_denied" and query["state"] == "state-123" and "code" not in query
        assert not Consent.objects.exists()

    def test_prompt_consent_always_asks_everything(self, browser, user, app):
        login(browser, user)
        consent(browser, consent_page(browser, app, scope="openid email"))
        page = consent_page(browser, app, scope="openid email", prompt="consent")
        assert [s["name"] for s in page.context["scopes"]] == ["openid", "email"]

    def test_prompt_none_without_consent(self, browser, user, app):
        login(browser, user)
        query = query_of(browser.get(authorize_url(app, prompt="none"))["Location"])
        assert query["error"] == "consent_required" and query["state"] == "state-123"

    def test_prompt_none_with_consent(self, browser, user, app):
        login(browser, user)
        consent(browser, consent_page(browser, app))
        redirected_code(browser.get(authorize_url(app, prompt="none")))

    def test_offline_access_is_asked_every_time(self, browser, user, app):
        login(browser, user)
        consent(browser, consent_page(browser, app, scope="openid offline_access"))
        page = consent_page(browser, app, scope="openid offline_access")
        assert [s["name"] for s in page.context["scopes"]] == ["offline_access"]

    @pytest.mark.oidc_settings(CONSENT_LIFETIME_DAYS=30)
    def test_expired_consent_asks_again(self, browser, user, app):
        login(browser, user)
        consent(browser, consent_page(browser, app))
        stored = Consent.objects.get()
        assert timedelta(days=29) < stored.expires - timezone.now() <= timedelta(days=30)
        Consent.objects.update(expires=timezone.now() - timedelta(seconds=1))
        consent_page(browser, app)

    @pytest.mark.oidc_settings(CONSENT_LIFETIME_DAYS=30)
    def test_client_consent_lifetime_overrides_site_default(self, browser, user):
        short = ApplicationFactory(profile__consent_lifetime_days=1)
        login(browser, user)
        consent(browser, consent_page(browser, short))
        assert Consent.objects.get().expires - timezone.now() <= timedelta(days=1)


class TestPolicies:
    def test_skip_policy_never_shows_a_page(self, browser, user):
        first_party = ApplicationFactory(profile__consent_policy="skip")
        login(browser, user)
        redirected_code(browser.get(authorize_url(first_party, scope="openid email offline_access")))
        assert not Consent.objects.exists()

    def test_ask_policy_always_asks(self, browser, user):
        careful = ApplicationFactory(profile__consent_policy="ask")
        login(browser, user)
        consent(browser, consent_page(browser, careful))
        consent_page(browser, careful)
        assert not Consent.objects.exists()


class TestTamperedPosts:
    def test_scopes_not_requested_are_ignored(self, browser, rp, user, app):
        login(browser, user)
        page = consent_page(browser, app, scope="openid")
        response = browser.post(
            page.context["form_action"],
            {
                "request_id": page.context["form"].initial["request_id"],
                "decision": "allow",
                "scope": ["openid", "email", "offline_access"],
            },
        )
        body = exchange(rp, app, redirected_code(response)).json()
        assert body["scope"] == "openid" and "refresh_token" not in body

    def test_client_redirect_nonce_pkce_fields_are_ignored(self, browser, rp, user, app):
        login(browser, user)
        page = consent_page(browser, app)
        response = browser.post(
            page.context["form_action"],
            {
                "request_id": page.context["form"].initial["request_id"],
                "decision": "allow",
                "scope": ["profile", "email"],
                "client_id": "another",
                "redirect_uri": "https://evil.example/",
                "nonce": "forged",
                "code_challenge": "x" * 43,
                "tenant": "other",
            },
        )
        body = exchange(rp, app, redirected_code(response)).json()  # no verifier needed: no challenge stored
        assert verify_jwt(body["id_token"])["nonce"] == "nonce-456"

    def test_forged_or_reused_request_id(self, browser, user, app):
        login(browser, user)
        page = consent_page(browser, app)
        assert consent(browser, page).status_code == 302
        assert consent(browser, page).status_code == 400
        forged = browser.post(continue_url("x" * 32), {"request_id": "x" * 32, "decision": "allow"})
        assert forged.status_code == 400 and "Location" not in forged


class TestConnectedApps:
    @pytest.fixture
    def tokens(self, browser, rp, user, app):
        login(browser, user)
        page = consent_page(browser, app, scope="openid email offline_access")
        return exchange(rp, app, redirected_code(consent(browser, page))).json()

    def test_lists_consents_with_scopes_and_dates(self, browser, user, app, tokens):
        other_users_app = ApplicationFactory(name="Not mine")
        Consent.objects.create(
            user=UserFactory(), application=other_users_app, scope="openid", granted=timezone.now()
        )
        page = browser.get(reverse("oidc_provider_ext:connected-apps"))
        html = page.content.decode()
        assert page.status_code == 200
        assert "Photo Printer" in html and "See your email address" in html and "last used" in html
        assert "Not mine" not in html
        assert "offline" not in Consent.objects.get(user=user).scope  # never remembered

    def test_requires_sign_in(self, client):
        response = client.get(reverse("oidc_provider_ext:connected-apps"))
        assert response.status_code == 302 and response["Location"].startswith(
            reverse("oidc_provider_ext:login")
        )

    def test_revoke_confirms_then_revokes_consent_and_tokens(self, browser, rp, user, app, tokens):
        stored = Consent.objects.get(user=user)
        url = reverse("oidc_provider_ext:connected-app-revoke", args=[stored.pk])
        confirm = browser.get(url)
        assert confirm.status_code == 200 and "Revoke access" in confirm.content.decode()
        response = browser.post(url, follow=True)
        assert "can no longer access your account" in response.content.decode()
        stored.refresh_from_db()
        assert stored.revoked is not None
        # The tokens really stop working.
        userinfo = rp.get(
            reverse("oidc_provider_ext:userinfo"), HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}"
        )
        assert userinfo.status_code == 401
        introspection = rp.post(
            reverse("oidc_provider_ext:introspect"),
            urlencode({"token": tokens["refresh_token"]}),
            content_type="application/x-www-form-urlencoded",
            HTTP_AUTHORIZATION=basic_auth(app.client_id, app.raw_secret),
        )
        assert introspection.json() == {"active": False}
        refresh = token_request(
            rp,
            {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            auth=(app.client_id, app.raw_secret),
        )
        assert refresh.json()["error"] == "invalid_grant"
        consent_page(browser, app, scope="openid email")  # asked again next time

    def test_revoke_needs_post_with_csrf(self, user, app, tokens, browser):
        from django.test import Client

        strict = Client(enforce_csrf_checks=True)
        strict.force_login(user)
        stored = Consent.objects.get(user=user)
        assert (
            strict.post(reverse("oidc_provider_ext:connected-app-revoke", args=[stored.pk])).status_code
            == 403
        )
        stored.refresh_from_db()
        assert stored.revoked is None

    def test_cannot_revoke_another_users_consent(self, browser, app, tokens):
        theirs = Consent.objects.create(
            user=UserFactory(), application=app, scope="openid", granted=timezone.now()
        )
        assert (
            browser.post(reverse("oidc_provider_ext:connected-app-revoke", args=[theirs.pk])).status_code
            == 404
        )
        theirs.refresh_from_db()
        assert theirs.revoked is None


def test_admin_revoke_action(client, user, app, browser, rp):
    from django.contrib.auth import get_user_model

    login(browser, user)
    tokens = exchange(rp, app, redirected_code(consent(browser, consent_page(browser, app)))).json()
    admin_user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-123")
    client.force_login(admin_user)
    assert client.get("/admin/oidc_provider_ext/consent/").status_code == 200
    stored = Consent.objects.get(user=user)
    response = client.post(
        "/admin/oidc_provider_ext/consent/",
        {"action": "revoke_consents", "_selected_action": [stored.pk]},
        follow=True,
    )
    assert "Revoked 1 consent" in response.content.decode()
    assert (
        rp.get(
            reverse("oidc_provider_ext:userinfo"), HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}"
        ).status_code
        == 401
    )


def test_consent_page_lists_only_claims_the_site_releases(browser, user, app):
    login(browser, user)
    page = consent_page(browser, app, scope="openid profile")
    (profile,) = [s for s in page.context["scopes"] if s["name"] == "profile"]
    assert "full name" in profile["claims"] and "username" in profile["claims"]
    assert "nickname" not in profile["claims"] and "birth date" not in profile["claims"]


class TestRememberAgainstTheConsentSeen:
    """consents.remember(seen=…): the consent page's answer widens the row it was shown against in
    one UPDATE only while that row is live and unchanged; otherwise it reads the row again, so
    nothing granted meanwhile is lost and a revoked consent is not brought back."""

    def _consent(self, user, app, scopes):
        from oidc_provider_ext.internal import consents

        consents.remember(user, app, "", scopes)
        return Consent.objects.get(user=user, application=app, revoked__isnull=True)

    def test_unchanged_row_is_widened_in_one_statement(self, django_assert_num_queries):
        from oidc_provider_ext.internal import consents

        user, app = UserFactory(), ApplicationFactory()
        seen = consents.seen(self._consent(user, app, ["openid", "email"]))
        with django_assert_num_queries(1):  # the UPDATE (inside the test's transaction: no BEGIN)
            consents.remember(user, app, "", ["openid", "profile"], seen=seen)
        consent = Consent.objects.get(user=user, application=app)
        assert consent.scope == "email openid profile"
        assert consent.resource == {"": ["email", "openid", "profile"]}

    def test_a_consent_widened_meanwhile_is_not_lost(self):
        from oidc_provider_ext.internal import consents

        user, app = UserFactory(), ApplicationFactory()
        seen = consents.seen(self._consent(user, app, ["openid", "email"]))
        consents.remember(user, app, "", ["openid", "phone"])  # another tab, meanwhile
        consents.remember(user, app, "", ["openid", "profile"], seen=seen)
        consent = Consent.objects.get(user=user, application=app)
        assert consent.resource == {"": ["email", "openid", "phone", "profile"]}

    def test_a_consent_revoked_meanwhile_stays_revoked(self):
        from oidc_provider_ext.internal import consents

        user, app = UserFactory(), ApplicationFactory()
        first = self._consent(user, app, ["openid", "email"])
        seen = consents.seen(first)
        consents.revoke(first)
        consents.remember(user, app, "", ["openid", "profile"], seen=seen)
        first.refresh_from_db()
        assert first.revoked is not None and first.resource == {"": ["email", "openid"]}
        live = Consent.objects.get(user=user, application=app, revoked__isnull=True)
        assert live.resource == {"": ["openid", "profile"]}  # a new consent: only what was allowed now


def test_live_consent_sql_is_the_orm_query(app, user):
    """consents.live_consent (SQL written once) and consents.remember's conditional UPDATE answer
    as the ORM queries they replace: revoked and expired rows are not live, the first live row by
    key wins, another tenant's or client's row is not it."""
    from oidc_provider_ext.internal import consents

    def orm(tenant=""):
        return consents.live_consents(user).filter(application=app, tenant=tenant).first()

    now = timezone.now()
    assert consents.live_consent(user, app, "") is None
    rows = {
        "revoked": {"revoked": now},
        "expired": {"expires": now - timedelta(seconds=1)},
        "live": {"expires": now + timedelta(days=1)},
        "live, no expiry": {},
    }
    made = {
        name: Consent.objects.create(user=user, application=app, scope="openid", granted=now, **extra)
        for name, extra in rows.items()
    }
    Consent.objects.create(user=user, application=ApplicationFactory(), scope="openid", granted=now)
    Consent.objects.create(user=user, application=app, tenant="acme", scope="openid", granted=now)
    found = consents.live_consent(user, app, "")
    assert found == orm() == made["live"]
    assert found.granted == made["live"].granted and found.resource == {}
    assert consents.live_consent(user, app, "acme") == orm("acme")
    made["live"].delete()
    assert consents.live_consent(user, app, "") == orm() == made["live, no expiry"]

    # the UPDATE widens only a live row still as seen
    for name in ("revoked", "expired"):
        seen = consents.seen(made[name])
        assert not consents._update_seen(user, app, "", seen, [""], {"email"}, now, None)
    seen = consents.seen(made["live, no expiry"])
    assert not consents._update_seen(user, app, "acme", seen, [""], {"email"}, now, None)
    later = now + timedelta(seconds=1)
    assert consents._update_seen(user, app, "", seen, [""], {"email"}, later, None)
    widened = Consent.objects.get(pk=made["live, no expiry"].pk)
    assert widened.resource == {"": ["email"]} and widened.scope == "email" and widened.granted == later
    # what the page saw has changed since (granted): no longer this row
    assert not consents._update_seen(user, app, "", seen, [""], {"email"}, later, None)
