"""Review round 9: the view decorators applied once (decorated_view), the per-process copies of
client-cache entries (clients._local), the token's grant by two LEFT JOINs (grant_extras) and
joined rows cached with set_cached_value, attacked.

Each test fails if its attack works (or the property it pins stops holding)."""

# ruff: noqa: F811 (acme: test_tenants' fixture, imported for its name)

from __future__ import annotations

import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.urls import reverse
from oauth2_provider.models import get_access_token_model, get_application_model, get_refresh_token_model

from oidc_provider_ext import validator
from oidc_provider_ext.internal import clients, lookups
from oidc_provider_ext.models import AuthorizationGrant, ClientProfile, Tenant

from .factories import ApplicationFactory, TenantFactory, UserFactory
from .flow import authorize_url, exchange, get_code, refresh, signed_in, userinfo
from .test_lookups import _orm
from .test_tenants import acme, code_from, sign_in_through, tenant_url  # noqa: F401

pytestmark = pytest.mark.django_db

AccessToken = get_access_token_model()
RefreshToken = get_refresh_token_model()
Application = get_application_model()


# --- 1. decorated_view: the decorators once, on the view function --------------------------------


@pytest.mark.parametrize(
    ("endpoint", "data", "secrets"),
    [
        # RFC 7009 2.1: the client authenticates (client_secret) and names the token to revoke.
        (
            "revocation",
            {"client_id": "x", "client_secret": "s3cret", "token": "t0ken"},
            {"client_secret", "token"},
        ),
        # OIDC Core 5.3.1 / RFC 6750 2.2: the access token in a form body.
        ("userinfo", {"access_token": "t0ken"}, {"access_token"}),
    ],
)
def test_back_channel_secrets_are_hidden_from_error_reports(client, endpoint, data, secrets):
    """Token, introspection and device authorization mark their secrets sensitive; revocation
    (client_secret, the token) and userinfo (a form-body access token) do not: an exception there
    mails both to the admins (AdminEmailHandler) and shows them on a DEBUG page."""
    response = client.post(reverse(f"oidc_provider_ext:{endpoint}"), data)
    hidden = getattr(response.wsgi_request, "sensitive_post_parameters", None) or ()
    assert hidden == "__ALL__" or secrets <= set(hidden), (endpoint, hidden)


def _login_required_site(settings):
    settings.MIDDLEWARE = [
        name
        for name in settings.MIDDLEWARE
        if name != "oidc_provider_ext.middleware.BearerEndpointsMiddleware"
    ] + ["django.contrib.auth.middleware.LoginRequiredMiddleware"]


@pytest.mark.parametrize(
    "endpoint", ["login", "jwks", "discovery", "endsession", "password-reset", "device", "authorize"]
)
def test_public_pages_are_reachable_on_a_login_required_site(client, settings, confidential_app, endpoint):
    """A site with Django's LoginRequiredMiddleware: the back-channel endpoints are marked
    login_not_required (round 9), but the pages an anonymous browser or RP must reach are not, so
    the middleware answers them with a redirect to the login page, which redirects to itself."""
    _login_required_site(settings)
    url = reverse(f"oidc_provider_ext:{endpoint}")
    if endpoint == "authorize":
        url = authorize_url(confidential_app, prompt="none")  # must come back to the RP
    response = client.get(url)
    login = reverse("oidc_provider_ext:login")
    location = response.get("Location", "")
    redirected_by_middleware = response.status_code == 302 and location.startswith(f"{login}?next=")
    assert not redirected_by_middleware, (endpoint, response.status_code, location)


@pytest.mark.parametrize(
    "endpoint",
    ["connected-apps", "sessions", "passkeys", "account-security", "account-totp", "account-recovery-codes"],
)
def test_signed_in_pages_refuse_a_post_without_the_csrf_token(user, endpoint):
    browser = signed_in(user)
    browser.handler.enforce_csrf_checks = True
    response = browser.post(reverse(f"oidc_provider_ext:{endpoint}"), {"name": "x", "code": "123456"})
    assert response.status_code == 403, (endpoint, response.status_code)


def test_a_revoke_app_post_without_csrf_token_revokes_nothing(user, confidential_app):
    browser = signed_in(user)
    browser.handler.enforce_csrf_checks = True
    response = browser.post(reverse("oidc_provider_ext:connected-app-revoke", args=[confidential_app.pk]))
    assert response.status_code == 403


@pytest.mark.parametrize(
    "endpoint",
    ["login", "password-reset", "device", "endsession", "sessions", "account-security", "passkeys"],
)
def test_hosted_pages_are_never_cached_and_vary_on_the_language(user, endpoint):
    browser = signed_in(user) if endpoint in ("sessions", "account-security", "passkeys") else Client()
    response = browser.get(reverse(f"oidc_provider_ext:{endpoint}") + "?ui_locales=de")
    assert response.status_code == 200, (endpoint, response.status_code)
    assert "Accept-Language" in response.get("Vary", ""), endpoint
    if endpoint != "password-reset":  # Django's page: never_cache was never ours there
        assert "no-store" in response.get("Cache-Control", ""), endpoint


def test_the_login_page_speaks_the_ui_locales_language(client):
    english = client.get(reverse("oidc_provider_ext:login")).content
    german = client.get(reverse("oidc_provider_ext:login") + "?ui_locales=de").content
    assert english != german


def test_decorated_view_keeps_the_decorators_of_a_subclass_without_its_own(rf):
    """A subclass of a decorated view that does not decorate itself still gets its parent's
    decorators (CSRF exemption, boundary): as_view() is inherited."""
    from oidc_provider_ext.views.token import TokenView

    class Sub(TokenView):
        pass

    view = Sub.as_view()
    assert view.csrf_exempt is True and view.login_required is False and view.oidc_request_boundary is True
    assert view.view_class is Sub


# --- 2. the client cache's per-process copies ----------------------------------------------------


def test_a_client_deleted_through_another_server_is_not_served(confidential_app):
    assert clients.get_client(confidential_app.client_id) is not None  # kept by this process
    with connection.cursor() as cursor:  # another server deletes it: no signal here
        cursor.execute(
            f"DELETE FROM {ClientProfile._meta.db_table} WHERE application_id = %s", [confidential_app.pk]
        )
        cursor.execute(f"DELETE FROM {Application._meta.db_table} WHERE id = %s", [confidential_app.pk])
    clients.bump_generation()  # what its post_delete publishes
    assert clients.get_client(confidential_app.client_id) is None


def test_a_profile_change_through_another_server_is_served_at_once(confidential_app):
    clients.get_client(confidential_app.client_id).oidc_profile  # noqa: B018
    ClientProfile.objects.filter(application=confidential_app).update(minimum_acr="tenant-strong")
    clients.bump_generation()
    assert clients.get_client(confidential_app.client_id).oidc_profile.minimum_acr == "tenant-strong"


def test_a_flushed_shared_cache_drops_the_kept_copies(confidential_app):
    from django.core.cache import cache

    clients.get_client(confidential_app.client_id)
    Application.objects.filter(pk=confidential_app.pk).update(name="Changed")
    cache.clear()  # FLUSHDB, or every key evicted: the generation goes with it
    assert clients.get_client(confidential_app.client_id).name == "Changed"


def test_a_kept_copy_of_an_evicted_entry_is_not_served_past_the_entrys_expiry(confidential_app, monkeypatch):
    """Redis evicted the entry (maxmemory) but not the generation: this process's copy is still
    served, but never past the lifetime the shared entry had."""
    from django.core.cache import cache

    clients.get_client(confidential_app.client_id)
    expires_at = clients._local[clients._key(confidential_app.client_id)][1]
    cache.delete(clients._key(confidential_app.client_id))
    Application.objects.filter(pk=confidential_app.pk).update(name="Changed")
    monkeypatch.setattr(clients.time, "time", lambda: expires_at)
    assert clients.get_client(confidential_app.client_id).name == "Changed"


def test_a_kept_entry_is_never_served_for_another_client_or_tenant(db):
    a, b = ApplicationFactory(client_id="alpha"), ApplicationFactory(client_id="ALPHA")
    TenantFactory(code="alpha")
    for _ in range(2):  # from the database, then from the kept copies
        assert clients.get_client("alpha").pk == a.pk
        assert clients.get_client("ALPHA").pk == b.pk
        assert clients.get_client("alpha\u0000") is None
        tenant = clients.tenant_by_code("alpha", lambda: Tenant.objects.filter(code="alpha").first())
        assert isinstance(tenant, Tenant) and tenant.code == "alpha"


def test_a_kept_tenant_and_nested_json_are_each_callers_own(confidential_app):
    ClientProfile.objects.filter(application=confidential_app).update(
        registration_metadata={"contacts": ["a@rp.example"], "nested": {"list": [1]}}
    )
    clients.bump_generation()
    TenantFactory(code="acme2", name="Acme")

    def read():
        return Tenant.objects.filter(code="acme2").first()

    clients.tenant_by_code("acme2", read)
    clients.get_client(confidential_app.client_id)
    for _ in range(2):
        tenant = clients.tenant_by_code("acme2", read)
        tenant.name = "Mutated"
        first = clients.get_client(confidential_app.client_id)
        first.oidc_profile.registration_metadata["contacts"].append("evil@attacker.example")
        first.oidc_profile.registration_metadata["nested"]["list"].append(2)
        first.oidc_profile.application.name = "Mutated through the profile"
        assert first.oidc_profile.application is first  # the cycle stays a cycle
        second = clients.get_client(confidential_app.client_id)
        assert second.oidc_profile.registration_metadata == {
            "contacts": ["a@rp.example"],
            "nested": {"list": [1]},
        }
        assert second.name == confidential_app.name
        assert clients.tenant_by_code("acme2", read).name == "Acme"


def test_threads_each_get_their_own_copy(confidential_app):
    clients.get_client(confidential_app.client_id)
    seen, errors = [], []

    def worker():
        try:
            for _ in range(50):
                got = clients.get_client(confidential_app.client_id)
                got.name = f"thread {threading.get_ident()}"
                seen.append(got)
        except Exception as exc:  # pragma: no cover - the failure is reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len({id(got) for got in seen}) == len(seen)
    assert clients.get_client(confidential_app.client_id).name == confidential_app.name


def test_a_disabled_generation_key_never_stamps_entries_with_none(confidential_app, monkeypatch):
    """The shared cache answers nothing (down, IGNORE_EXCEPTIONS): no kept copy may be served,
    since no change can be published then."""
    clients.get_client(confidential_app.client_id)
    monkeypatch.setattr(clients.cache, "get", lambda *a, **k: None)
    monkeypatch.setattr(clients.cache, "add", lambda *a, **k: True)
    Application.objects.filter(pk=confidential_app.pk).update(name="Changed")
    assert clients.get_client(confidential_app.client_id).name == "Changed"


# --- 3. the token's grant by two LEFT JOINs ------------------------------------------------------


def _grant_for(code):
    return AuthorizationGrant.objects.get(code_checksum=validator.checksum(code))


def _tokens(rp, app, who, scope="openid offline_access"):
    code, _ = get_code(Client(), app, who, scope=scope)
    tokens = exchange(rp, app, code).json()
    return _grant_for(code), tokens  # read after the exchange: access_token and token_family set


def test_a_token_named_by_a_grant_uses_that_grant_not_its_source_family(rp, user, confidential_app):
    """A row both named by grant A and rotated from grant B's refresh token (a state no flow makes,
    forged here): the grant naming it wins, as in the ORM's COALESCE, for every column at once."""
    other = UserFactory()
    grant_a, tokens_a = _tokens(rp, confidential_app, user)
    grant_b, tokens_b = _tokens(rp, confidential_app, other)
    AuthorizationGrant.objects.filter(pk=grant_a.pk).update(
        tenant="acme", claims={"userinfo": {"email": None}}
    )
    AuthorizationGrant.objects.filter(pk=grant_b.pk).update(
        tenant="globex", claims={"userinfo": {"name": None}}
    )
    access_a = AccessToken.objects.get(token_checksum=validator.checksum(tokens_a["access_token"]))
    rt_b = RefreshToken.objects.get(token_checksum=validator.checksum(tokens_b["refresh_token"]))
    AccessToken.objects.filter(pk=access_a.pk).update(source_refresh_token=rt_b)
    fast, slow = validator.access_token_with_grant(tokens_a["access_token"]), _orm(tokens_a["access_token"])
    assert fast.grant_pk == slow.grant_pk == grant_a.pk
    assert (fast.grant_tenant, fast.grant_claims) == (slow.grant_tenant, slow.grant_claims)
    assert fast.grant_tenant == "acme" and fast.grant_claims == {"userinfo": {"email": None}}


def test_rotated_tokens_of_two_users_get_their_own_grants_with_tenant_membership(rp, user, confidential_app):
    other = UserFactory()
    acme_tenant = TenantFactory(code="acme-r9")
    from .factories import TenantMembershipFactory

    TenantMembershipFactory(tenant=acme_tenant, user=user)  # other is no member
    answers = {}
    for who in (user, other):
        grant, first = _tokens(rp, confidential_app, who)
        second = refresh(rp, confidential_app, first["refresh_token"]).json()
        third = refresh(rp, confidential_app, second["refresh_token"]).json()
        AuthorizationGrant.objects.filter(pk=grant.pk).update(
            tenant="acme-r9"
        )  # after: a non-member cannot refresh
        answers[who.pk] = (grant.pk, third["access_token"])
    for user_pk, (grant_pk, token) in answers.items():
        fast = validator.access_token_with_grant(token)
        assert fast.user_id == user_pk and fast.grant_pk == grant_pk and fast.grant_tenant == "acme-r9"
        assert bool(getattr(fast, lookups.TENANT_MEMBER)) is (user_pk == user.pk)


def test_two_grants_naming_one_token_give_one_row_from_one_grant(rp, user, confidential_app):
    """access_token is a plain ForeignKey: two grants may name one token (forged). The lookup
    returns a single row whose columns all come from the same grant."""
    grant_a, tokens = _tokens(rp, confidential_app, user)
    access = AccessToken.objects.get(token_checksum=validator.checksum(tokens["access_token"]))
    grant_b, _other = _tokens(rp, confidential_app, UserFactory())
    AuthorizationGrant.objects.filter(pk=grant_a.pk).update(tenant="ta", claims={"a": 1})
    AuthorizationGrant.objects.filter(pk=grant_b.pk).update(tenant="tb", claims={"b": 1}, access_token=access)
    fast = validator.access_token_with_grant(tokens["access_token"])
    assert (fast.grant_pk, fast.grant_tenant, fast.grant_claims) in [
        (grant_a.pk, "ta", {"a": 1}),
        (grant_b.pk, "tb", {"b": 1}),
    ]


def test_two_grants_of_one_family_give_one_row_from_one_grant(rp, user, confidential_app):
    grant_a, first = _tokens(rp, confidential_app, user)
    rotated = refresh(rp, confidential_app, first["refresh_token"]).json()
    grant_b, _ = _tokens(rp, confidential_app, UserFactory())
    AuthorizationGrant.objects.filter(pk=grant_a.pk).update(tenant="ta")
    assert grant_a.token_family is not None
    AuthorizationGrant.objects.filter(pk=grant_b.pk).update(tenant="tb", token_family=grant_a.token_family)
    fast = validator.access_token_with_grant(rotated["access_token"])
    assert (fast.grant_pk, fast.grant_tenant) in {(grant_a.pk, "ta"), (grant_b.pk, "tb")}


def test_a_rotated_token_whose_refresh_token_is_gone_has_no_grant(rp, user, confidential_app):
    _grant, first = _tokens(rp, confidential_app, user)
    second = refresh(rp, confidential_app, first["refresh_token"]).json()
    access = AccessToken.objects.get(token_checksum=validator.checksum(second["access_token"]))
    AccessToken.objects.filter(pk=access.pk).update(source_refresh_token=None)
    fast, slow = validator.access_token_with_grant(second["access_token"]), _orm(second["access_token"])
    assert fast.grant_pk is None and slow.grant_pk is None


def test_a_revoked_family_answers_nothing(rp, user, confidential_app):
    grant, first = _tokens(rp, confidential_app, user)
    second = refresh(rp, confidential_app, first["refresh_token"]).json()
    assert grant.token_family is not None
    RefreshToken.revoke_family(grant.token_family)
    token = second["access_token"]
    fast, slow = validator.access_token_with_grant(token), _orm(token)
    assert (fast is None) == (slow is None)
    if fast is not None:
        assert fast.grant_pk == slow.grant_pk
    assert userinfo(rp, token).status_code == 401


# --- 4. joined rows cached as select_related caches them -----------------------------------------


def test_joined_rows_are_cached_without_a_query(rp, user, confidential_app, django_assert_num_queries):
    _grant, first = _tokens(rp, confidential_app, user)
    second = refresh(rp, confidential_app, first["refresh_token"]).json()
    with django_assert_num_queries(1):
        token = validator.access_token_with_grant(second["access_token"])
        assert token.user.pk == token.user_id == user.pk
        assert token.application.pk == token.application_id == confidential_app.pk
    with django_assert_num_queries(1):
        rt = lookups.refresh_token_by_checksum(validator.checksum(second["refresh_token"]))
        assert rt.user.pk == user.pk and rt.access_token.pk == rt.access_token_id
        assert rt.access_token.refresh_token is rt  # the one-to-one's reverse cache
    assert get_user_model().objects.filter(pk=token.user_id).exists()


def test_a_refresh_token_without_an_access_token_caches_none(
    rp, user, confidential_app, django_assert_num_queries
):
    _grant, first = _tokens(rp, confidential_app, user)
    RefreshToken.objects.filter(token_checksum=validator.checksum(first["refresh_token"])).update(
        access_token=None
    )
    with django_assert_num_queries(1):
        rt = lookups.refresh_token_by_checksum(validator.checksum(first["refresh_token"]))
        assert rt.access_token is None and rt.access_token_id is None
