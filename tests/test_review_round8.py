"""Review round 8: the token's grant by two probes (COALESCE), psycopg's C timestamptz loader on
our raw reads, the pending request's fields without asdict, and the membership rule's answer read
with the grant at the token endpoint, attacked.

Each test fails if its attack works."""

# ruff: noqa: F811 (acme and globex: test_tenants' fixtures, imported for their names)

from __future__ import annotations

import datetime
import threading
import time

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections, transaction
from django.test import Client, RequestFactory
from oauth2_provider.models import get_access_token_model, get_refresh_token_model

from oidc_provider_ext import validator
from oidc_provider_ext.adapter import DefaultOIDCAdapter
from oidc_provider_ext.internal import lookups
from oidc_provider_ext.internal.authorization import SESSION_KEY, PendingAuthorization
from oidc_provider_ext.models import AuthorizationGrant, TenantMembership

from .conftest import oidc_settings
from .factories import TenantMembershipFactory, UserFactory
from .flow import exchange, get_code, introspect, refresh, token_request, userinfo
from .test_lookups import _orm
from .test_tenants import acme, code_from, globex, sign_in_through, tenant_url  # noqa: F401

pytestmark = pytest.mark.django_db

AccessToken = get_access_token_model()
RefreshToken = get_refresh_token_model()


def _tenant_tokens(browser, rp, user, app, code="acme"):
    url = tenant_url(app, code, scope="openid offline_access")
    response = exchange(rp, app, code_from(browser, sign_in_through(browser, url, user)))
    assert response.status_code == 200, response.content
    return response.json()


def _refused(response):
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant", response.content


# --- 1. the token's grant: COALESCE(by access_token, by token_family) -------------------------


class TestTheTokensGrant:
    def test_each_token_gets_its_own_grant_never_another_users(self, client, rp, user, confidential_app):
        """Two users, each with a code-exchanged token, a rotated one and a rotated-twice one: every
        token is answered with its own grant, by the lookup and by the ORM's with_grant alike."""
        other = UserFactory()
        expected = {}
        for who in (user, other):
            browser = Client()
            code, _ = get_code(browser, confidential_app, who, scope="openid offline_access")
            first = exchange(rp, confidential_app, code).json()
            grant = AuthorizationGrant.objects.get(code_checksum=validator.checksum(code))
            second = refresh(rp, confidential_app, first["refresh_token"]).json()
            third = refresh(rp, confidential_app, second["refresh_token"]).json()
            for tokens in (first, second, third):
                expected[tokens["access_token"]] = (grant.pk, who.pk, tokens is third)
        for token, (grant_pk, user_pk, live) in expected.items():
            if not AccessToken.objects.filter(token_checksum=validator.checksum(token)).exists():
                assert not live  # a rotated-out token is deleted: nothing to answer with
                continue
            fast, slow = validator.access_token_with_grant(token), _orm(token)
            assert fast.grant_pk == slow.grant_pk == grant_pk
            assert fast.user_id == user_pk
            assert (fast.grant_tenant, fast.grant_claims) == (slow.grant_tenant, slow.grant_claims)
            if live:
                assert userinfo(rp, token).status_code == 200

    def test_a_token_without_a_grant_finds_none(self, rp, confidential_app):
        """client_credentials: no grant, no source refresh token; grants whose token_family is NULL
        (codes never exchanged) must not be matched by a NULL family."""
        code_grant = AuthorizationGrant(
            code_checksum="f" * 64,
            application=confidential_app,
            user=UserFactory(),
            redirect_uri="https://rp.example/cb",
            auth_time=datetime.datetime.now(datetime.UTC),
            expires=datetime.datetime.now(datetime.UTC),
        )
        code_grant.save()
        confidential_app.authorization_grant_type = "client-credentials"
        confidential_app.save()
        response = token_request(
            rp,
            {"grant_type": "client_credentials"},
            auth=(confidential_app.client_id, confidential_app.raw_secret),
        )
        if response.status_code != 200:
            pytest.skip(f"client_credentials not available here: {response.content[:200]}")
        token = response.json()["access_token"]
        assert validator.access_token_with_grant(token).grant_pk is None
        assert _orm(token).grant_pk is None

    def test_a_rotated_token_of_a_revoked_family_is_dead(self, client, rp, user, confidential_app):
        """Revoking the grant (end_access: consent revoked, membership ended) stops a token found
        through its refresh-token family, not only the code-exchanged one."""
        code, _ = get_code(client, confidential_app, user, scope="openid offline_access")
        first = exchange(rp, confidential_app, code).json()
        rotated = refresh(rp, confidential_app, first["refresh_token"]).json()
        assert userinfo(rp, rotated["access_token"]).status_code == 200
        AuthorizationGrant.objects.filter(user=user).revoke_tokens()
        assert userinfo(rp, rotated["access_token"]).status_code == 401
        assert introspect(rp, confidential_app, rotated["access_token"])["active"] is False
        assert refresh(rp, confidential_app, rotated["refresh_token"]).status_code == 400

    def test_a_rotated_token_checks_the_membership_of_its_grants_tenant(
        self, browser, rp, user, confidential_app, acme, globex
    ):
        """The tenant of a rotated token is its family's grant's: ending that membership (without
        signals) stops userinfo and introspection, another tenant's membership does not count."""
        TenantMembershipFactory(tenant=globex, user=user)
        tokens = _tenant_tokens(browser, rp, user, confidential_app)
        rotated = refresh(rp, confidential_app, tokens["refresh_token"]).json()["access_token"]
        assert validator.access_token_with_grant(rotated).grant_tenant == "acme"
        assert userinfo(rp, rotated).status_code == 200
        TenantMembership.objects.filter(tenant=acme).update(is_active=False)
        assert userinfo(rp, rotated).status_code == 401
        assert introspect(rp, confidential_app, rotated)["active"] is False


# --- 4. the membership rule's answer read with the grant (code exchange, refresh) ---------------

CALLS: list = []


class CountingMembershipAdapter(DefaultOIDCAdapter):
    """An override of is_member_of that refuses everyone the default rule admits, and counts."""

    def is_member_of(self, user, tenant_code, **kwargs):
        CALLS.append((user.pk, tenant_code))
        return tenant_code != "acme" and super().is_member_of(user, tenant_code, **kwargs)


class StaffTenantAdapter(DefaultOIDCAdapter):
    """Keeps the default rule and adds a second tenant to ask about with the same kwargs."""

    def may_use_client(self, user, application, tenant, **kwargs):
        return super().may_use_client(user, application, tenant, **kwargs) and (
            user is None or not tenant or self.is_member_of(user, "globex", **kwargs)
        )


class TestTheMembershipHintAtTheTokenEndpoint:
    def test_an_override_of_is_member_of_is_asked_at_exchange(
        self, settings, browser, rp, user, confidential_app, acme
    ):
        url = tenant_url(confidential_app, "acme", scope="openid offline_access")
        code = code_from(browser, sign_in_through(browser, url, user))  # signed in with the default
        oidc_settings(settings, ADAPTER=f"{__name__}.CountingMembershipAdapter")
        CALLS.clear()
        _refused(exchange(rp, confidential_app, code))
        assert (user.pk, "acme") in CALLS

    def test_an_override_of_is_member_of_is_asked_at_refresh(
        self, settings, browser, rp, user, confidential_app, acme
    ):
        tokens = _tenant_tokens(browser, rp, user, confidential_app)
        oidc_settings(settings, ADAPTER=f"{__name__}.CountingMembershipAdapter")
        CALLS.clear()
        _refused(refresh(rp, confidential_app, tokens["refresh_token"]))
        assert (user.pk, "acme") in CALLS

    def test_the_hint_does_not_answer_for_another_tenant(
        self, settings, browser, rp, user, confidential_app, acme, globex
    ):
        """An adapter asking about a second tenant with the same kwargs gets that tenant's answer
        (the user is in acme, not in globex): exchange and refresh are refused."""
        url = tenant_url(confidential_app, "acme", scope="openid offline_access")
        code = code_from(browser, sign_in_through(browser, url, user))
        tokens = exchange(rp, confidential_app, code).json()
        code2_browser = Client()
        code2 = code_from(code2_browser, sign_in_through(code2_browser, url, user))
        oidc_settings(settings, ADAPTER=f"{__name__}.StaffTenantAdapter")
        _refused(refresh(rp, confidential_app, tokens["refresh_token"]))
        _refused(exchange(rp, confidential_app, code2))

    def test_the_hint_does_not_answer_for_another_user(self, browser, rp, user, confidential_app, acme):
        """A refresh token whose user is not the grant's (a row rewritten in the database): the
        grant's user's membership is not taken for the token's user."""
        tokens = _tenant_tokens(browser, rp, user, confidential_app)
        outsider = UserFactory()
        RefreshToken.objects.filter(token_checksum=validator.checksum(tokens["refresh_token"])).update(
            user=outsider
        )
        _refused(refresh(rp, confidential_app, tokens["refresh_token"]))

    @pytest.mark.parametrize("change", ["membership", "tenant", "user"])
    def test_changes_without_signals_stop_exchange_and_refresh(
        self, browser, rp, user, confidential_app, acme, change
    ):
        tokens = _tenant_tokens(browser, rp, user, confidential_app)
        url = tenant_url(confidential_app, "acme", scope="openid offline_access")
        other_browser = Client()
        code = code_from(other_browser, sign_in_through(other_browser, url, user))
        if change == "membership":
            TenantMembership.objects.filter(user=user).update(is_active=False)
        elif change == "tenant":
            type(acme).objects.filter(pk=acme.pk).update(is_active=False)
        else:
            get_user_model().objects.filter(pk=user.pk).update(is_active=False)
        _refused(exchange(rp, confidential_app, code))
        _refused(refresh(rp, confidential_app, tokens["refresh_token"]))

    def test_a_grant_without_a_tenant_is_not_refused(self, client, rp, user, confidential_app):
        code, _ = get_code(client, confidential_app, user, scope="openid offline_access")
        tokens = exchange(rp, confidential_app, code).json()
        assert refresh(rp, confidential_app, tokens["refresh_token"]).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_membership_ended_while_the_refresh_waits_for_the_grant_lock(
    browser, rp, user, confidential_app, acme
):
    """PostgreSQL: the refresh's ``SELECT … FOR UPDATE`` now also answers the membership rule, in
    that statement's snapshot, taken before it waits for the grant's lock. A membership ended
    (without signals: a queryset update, as the adapter's docs allow) while the refresh waits was
    seen by the old code (its own query after the lock) and must still be."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks: PostgreSQL")
    tokens = _tenant_tokens(browser, rp, user, confidential_app)
    grant = AuthorizationGrant.objects.get(user=user)
    locked, release = threading.Event(), threading.Event()
    result = {}

    def hold_the_lock():
        from django.db import connections

        try:
            with transaction.atomic():
                list(AuthorizationGrant.objects.select_for_update().filter(pk=grant.pk))
                locked.set()
                release.wait(10)
        finally:
            connections.close_all()

    def refresh_now():
        from django.db import connections

        try:
            result["response"] = refresh(Client(), confidential_app, tokens["refresh_token"])
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert locked.wait(10)
    refresher = threading.Thread(target=refresh_now)
    refresher.start()
    time.sleep(1.0)  # the refresh is now waiting for the grant's lock
    TenantMembership.objects.filter(user=user).update(is_active=False)  # committed
    release.set()
    holder.join(10)
    refresher.join(20)
    _refused(result["response"])


# --- 2. psycopg's C timestamptz loader on our raw reads ------------------------------------------


@pytest.mark.parametrize(
    "moment",
    [
        datetime.datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=datetime.UTC),
        datetime.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=datetime.UTC),
        datetime.datetime(2024, 2, 29, 12, 30, 15, 123456, tzinfo=datetime.UTC),
        datetime.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=datetime.UTC),
    ],
)
@pytest.mark.parametrize("site_zone", ["UTC", "America/St_Johns", "Pacific/Kiritimati"])
def test_extreme_datetimes_read_as_the_orm_reads_them(
    client, user, confidential_app, settings, moment, site_zone
):
    """Any site TIME_ZONE (the connection stays in UTC), any representable instant: the lookup's
    value is the ORM's, same tzinfo."""
    settings.TIME_ZONE = site_zone
    get_user_model().objects.filter(pk=user.pk).update(last_login=moment, date_joined=moment)
    code, _ = get_code(client, confidential_app, user, scope="openid")
    token = exchange(client, confidential_app, code).json()["access_token"]
    get_user_model().objects.filter(pk=user.pk).update(last_login=moment, date_joined=moment)
    fast = validator.access_token_with_grant(token)
    slow = AccessToken.objects.select_related("user", "application").get(
        token_checksum=validator.checksum(token)
    )
    for ours, djangos in [
        (fast.user.last_login, slow.user.last_login),
        (fast.user.date_joined, slow.user.date_joined),
        (fast.expires, slow.expires),
        (fast.created, slow.created),
        (fast.application.created, slow.application.created),
    ]:
        assert ours == djangos
        assert ours.tzinfo is djangos.tzinfo
        assert ours.utcoffset() == datetime.timedelta(0)
    assert fast.user.last_login == moment


def test_the_loader_is_not_left_on_the_connection(client, user, confidential_app):
    """Registered on our cursor only: the ORM's own cursors keep Django's loader."""
    if connection.vendor != "postgresql":
        pytest.skip("psycopg")
    from psycopg.postgres import types as pg_types

    code, _ = get_code(client, confidential_app, user, scope="openid")
    token = exchange(client, confidential_app, code).json()["access_token"]
    before = connection.connection.adapters.get_loader(pg_types["timestamptz"].oid, 0)
    validator.access_token_with_grant(token)
    assert connection.connection.adapters.get_loader(pg_types["timestamptz"].oid, 0) is before
    with connection.cursor() as cursor:
        assert cursor.cursor.adapters.get_loader(pg_types["timestamptz"].oid, 0) is before


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("db_zone", ["Europe/Paris", "Asia/Kolkata"])
def test_another_database_time_zone_keeps_djangos_loader(client, user, confidential_app, settings, db_zone):
    if connection.vendor != "postgresql":
        pytest.skip("DATABASES TIME_ZONE applies to the PostgreSQL connection")
    code, _ = get_code(client, confidential_app, user, scope="openid")
    token = exchange(client, confidential_app, code).json()["access_token"]
    connection.close()
    settings.DATABASES["default"]["TIME_ZONE"] = db_zone
    connection.settings_dict["TIME_ZONE"] = db_zone
    try:
        for name in ("timezone", "timezone_name"):
            connections["default"].__dict__.pop(name, None)
        fast = validator.access_token_with_grant(token)
        slow = AccessToken.objects.select_related("user").get(token_checksum=validator.checksum(token))
        assert fast.expires == slow.expires and fast.expires.tzinfo is slow.expires.tzinfo
        assert fast.user.date_joined == slow.user.date_joined
        with connection.cursor() as cursor:
            cursor.execute("SHOW TIME ZONE")
            session_zone = cursor.fetchone()[0]
        assert (session_zone, str(connection.timezone)) == (db_zone, db_zone)
        from psycopg.postgres import types as pg_types

        with lookups.reading_cursor(connection) as cursor:
            loader = cursor.cursor.adapters.get_loader(pg_types["timestamptz"].oid, 0)
        assert loader is not lookups._C_TIMESTAMPTZ
    finally:
        connection.close()
        connection.settings_dict["TIME_ZONE"] = None
        for name in ("timezone", "timezone_name"):
            connections["default"].__dict__.pop(name, None)


# --- 3. the pending request's fields without asdict ----------------------------------------------


def _pending(**changes):
    values = {
        "id": "r" * 22,
        "created": time.time(),
        "scopes": ["openid", "email"],
        "credentials": {
            "client_id": "c",
            "redirect_uri": "https://rp.example/cb",
            "claims": {"userinfo": {"email": None}},
        },
        "prompt": ["consent"],
        "max_age": None,
        "subject": None,
        "login_hint": "",
        "ui_locales": "",
        "tenant": "",
        "tenant_deferred": False,
        "idp": [],
        "resources": ["https://api.example/"],
        "acr_requested": ["urn:a"],
    }
    values.update(changes)
    return PendingAuthorization(**values)


def _request_with_session():
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth.models import AnonymousUser

    request = RequestFactory().get("/authorize")
    request.session = import_module(settings.SESSION_ENGINE).SessionStore()
    request.user = AnonymousUser()
    return request


def test_the_stored_copy_does_not_change_with_the_object():
    request = _request_with_session()
    pending = _pending()
    pending.save(request)
    stored = request.session[SESSION_KEY][pending.id]
    snapshot = {k: (list(v) if isinstance(v, list) else v) for k, v in stored.items()}
    pending.scopes.append("phone")
    pending.prompt.append("login")
    pending.credentials["claims"]["userinfo"]["phone_number"] = None
    pending.credentials["nonce"] = "x"
    pending.resources.append("https://evil.example/")
    pending.acr_requested.clear()
    pending.asked = ["openid"]
    assert request.session[SESSION_KEY][pending.id]["scopes"] == snapshot["scopes"] == ["openid", "email"]
    assert stored["prompt"] == ["consent"]
    assert stored["credentials"] == {
        "client_id": "c",
        "redirect_uri": "https://rp.example/cb",
        "claims": {"userinfo": {"email": None}},
    }
    assert stored["resources"] == ["https://api.example/"] and stored["acr_requested"] == ["urn:a"]
    assert stored["asked"] is None
    # keep_after_sign_in stores its own copy too
    pending2 = _pending(id="s" * 22)
    pending2.keep_after_sign_in(request)
    pending2.scopes.append("phone")
    assert request.session[SESSION_KEY][pending2.id]["scopes"] == ["openid", "email"]


def test_a_saved_and_loaded_request_equals_the_original():
    request = _request_with_session()
    pending = _pending(consent_seen=[1, "x"], login_started=5, device=None)
    pending.save(request)
    request.session.save()
    loaded = PendingAuthorization.load(request, pending.id)
    assert loaded == pending


def test_the_signed_request_carries_the_values_and_leaves_the_object_alone():
    request = _request_with_session()
    pending = _pending(prompt=[])
    travelling = pending.travelling_id(request)
    if ":" not in travelling:
        pytest.skip("stored in the session here")
    pending.scopes.append("phone")
    loaded = PendingAuthorization.load(request, travelling)
    assert loaded.scopes == ["openid", "email"]
    assert loaded.credentials == pending.credentials
    assert loaded.resources == ["https://api.example/"]
