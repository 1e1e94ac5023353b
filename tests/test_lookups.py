"""internal/lookups.py: plain SQL over explicit columns, answering exactly what the ORM answers.

Runs on SQLite and, with DATABASE_URL=postgres://..., on PostgreSQL. The models below have their
own table and column names (mixed case, spaces), a UUID key, and every kind of value the
converters handle; their tables are created for each test with the schema editor.
"""

from __future__ import annotations

import datetime
import json
import uuid
from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, models
from django.utils import timezone
from oauth2_provider.models import get_access_token_model

from oidc_provider_ext import validator
from oidc_provider_ext.internal.lookups import Extra, Lookup
from oidc_provider_ext.models import AuthorizationGrant
from oidc_provider_ext.models.grants import with_grant

from .factories import TenantFactory, TenantMembershipFactory
from .flow import exchange, get_code, refresh


class Owner(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, db_column="OwnerKey")
    name = models.CharField(max_length=50, db_column="display name")
    joined = models.DateTimeField(db_column="Joined At")
    profile = models.JSONField(default=dict)
    balance = models.DecimalField(max_digits=8, decimal_places=2)
    active = models.BooleanField(default=True)
    birthday = models.DateField(null=True)

    class Meta:
        app_label = "oidc_lookups_tests"
        db_table = "Lookup Owners"

    def __str__(self):
        return self.name


class Item(models.Model):
    code = models.CharField(max_length=20, unique=True, db_column="ItemCode")
    owner = models.ForeignKey(Owner, null=True, on_delete=models.CASCADE, db_column="owner ref")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    tags = models.JSONField(default=list)

    class Meta:
        app_label = "oidc_lookups_tests"
        db_table = "lookup_Items"

    def __str__(self):
        return self.code


class SpecialOwner(Owner):  # multi-table inheritance: columns in two tables
    title = models.CharField(max_length=20)

    class Meta:
        app_label = "oidc_lookups_tests"


@pytest.fixture
def tables(transactional_db):
    with connection.schema_editor() as editor:
        editor.create_model(Owner)
        editor.create_model(Item)
    yield
    with connection.schema_editor() as editor:
        editor.delete_model(Item)
        editor.delete_model(Owner)


def _values(obj) -> dict:
    return {field.attname: getattr(obj, field.attname) for field in obj._meta.concrete_fields}


def _user():
    return get_user_model().objects.create_user(username="lookup-user", password="x" * 12)


ITEMS = Lookup(Item, by=["code"], joins=["owner", "user"])


def test_the_row_is_what_the_orm_gives(tables):
    owner = Owner.objects.create(
        name="Ann", joined=timezone.now(), profile={"a": [1, "b"]}, balance=Decimal("12.50"), birthday=None
    )
    Item.objects.create(code="one", owner=owner, user=_user(), tags=["x"])
    expected = Item.objects.select_related("owner", "user").get(code="one")

    item = ITEMS.one("one", using="default")

    assert _values(item) == _values(expected)
    assert _values(item.owner) == _values(expected.owner)
    assert _values(item.user) == _values(expected.user)
    assert item.owner.joined.tzinfo is not None and item.owner.joined == expected.owner.joined
    assert isinstance(item.owner.id, uuid.UUID) and isinstance(item.owner.balance, Decimal)
    assert item.owner.profile == {"a": [1, "b"]} and item.tags == ["x"]
    assert item.owner.active is True
    # Objects as the ORM loads them: saved state, the right database, no extra query for relations.
    assert not item._state.adding and item._state.db == "default"


def test_no_row_and_a_null_foreign_key(tables, django_assert_num_queries):
    Item.objects.create(code="orphan", owner=None, user=_user())
    with django_assert_num_queries(1):
        item = ITEMS.one("orphan")
        assert item.owner is None and item.owner_id is None
        assert item.user.username == "lookup-user"
    assert ITEMS.one("missing") is None


def test_values_are_bound_parameters(tables):
    Item.objects.create(code="one", user=_user())
    # A value that would break out of a formatted string is just a value that matches nothing.
    assert ITEMS.one("x' OR '1'='1") is None
    assert ITEMS.one('x" OR 1=1 --') is None
    assert "%s" in ITEMS.compiled().sql and "one" not in ITEMS.compiled().sql


def test_by_a_joined_field_and_exists(tables):
    owner = Owner.objects.create(name="Bo", joined=timezone.now(), balance=1)
    Item.objects.create(code="one", owner=owner, user=_user())
    by_owner = Lookup(Item, by=["owner__name", "owner__active"], joins=["owner"])
    assert by_owner.one("Bo", True).code == "one"
    assert by_owner.exists("Bo", True)
    assert not by_owner.exists("Bo", False)
    assert not by_owner.exists("Cy", True)


def test_extras_are_converted_as_their_field(tables):
    owner = Owner.objects.create(name="Di", joined=timezone.now(), balance=1, profile={"k": 1})
    Item.objects.create(code="one", owner=owner, user=_user())
    profile = Owner._meta.get_field("profile")

    def owner_profile(q, outer):
        return (
            f"SELECT o.{q(profile.column)} FROM {q(Owner._meta.db_table)} o "
            f"WHERE o.{q('OwnerKey')} = {outer}.{q('owner ref')}"
        )

    lookup = Lookup(Item, by=["code"], extras=[Extra("owner_profile", owner_profile, output_field=profile)])
    assert lookup.one("one").owner_profile == {"k": 1}


def test_what_it_cannot_describe_is_left_to_the_orm(tables):
    assert ITEMS.supported("default")
    assert not Lookup(SpecialOwner, by=["title"]).supported("default")
    with pytest.raises(ValueError):
        Lookup(Item, by=["code"], joins=["code"])
    with pytest.raises(ValueError):
        Lookup(Item, by=["nothing__code"], joins=["owner"])


def test_naive_datetimes_follow_the_database_time_zone(tables, settings):
    moment = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    owner = Owner.objects.create(name="Ed", joined=moment, balance=1)
    Item.objects.create(code="one", owner=owner, user=_user())
    assert ITEMS.one("one").owner.joined == moment


# --- the access-token lookup (validator.access_token_with_grant) ---------------------------------


def _orm(token: str):
    return (
        with_grant(
            get_access_token_model()
            .objects.select_related("application", "user")
            .filter(token_checksum=validator.checksum(token)),
            "claims",
            "tenant",
        )
        .order_by()
        .first()
    )


def _same(fast, slow):
    assert _values(fast) == _values(slow)
    assert _values(fast.application) == _values(slow.application)
    assert (fast.user is None) == (slow.user is None)
    if slow.user is not None:
        assert _values(fast.user) == _values(slow.user)
    for name in ("grant_pk", "grant_claims", "grant_tenant"):
        assert getattr(fast, name) == getattr(slow, name), name


@pytest.mark.django_db
def test_access_token_with_grant_matches_the_orm(client, user, confidential_app):
    tenant = TenantFactory(code="acme")
    TenantMembershipFactory(tenant=tenant, user=user)
    claims = '{"userinfo": {"email": null}}'
    code, _ = get_code(client, confidential_app, user, scope="openid offline_access", claims=claims)
    tokens = exchange(client, confidential_app, code).json()
    first = validator.access_token_with_grant(tokens["access_token"])
    _same(first, _orm(tokens["access_token"]))
    assert first.grant_claims == {"userinfo": {"email": None}}
    # A rotated token finds its grant through the refresh-token family.
    rotated = refresh(client, confidential_app, tokens["refresh_token"]).json()["access_token"]
    second = validator.access_token_with_grant(rotated)
    _same(second, _orm(rotated))
    assert second.grant_pk == first.grant_pk == AuthorizationGrant.objects.get().pk
    assert validator.access_token_with_grant("not a token") is None


@pytest.mark.django_db
def test_the_membership_hint_is_the_membership_rule(client, user, confidential_app):
    from oidc_provider_ext.adapter import get_adapter

    tenant = TenantFactory(code="acme")
    membership = TenantMembershipFactory(tenant=tenant, user=user)
    code, _ = get_code(client, confidential_app, user, scope="openid", acr_values="tenant:acme")
    token = exchange(client, confidential_app, code).json()["access_token"]
    for change in (None, "membership", "tenant"):
        if change == "membership":
            membership.is_active = False
            membership.save()
        elif change == "tenant":
            membership.is_active = True
            membership.save()
            tenant.is_active = False
            tenant.save()
        stored = validator.access_token_with_grant(token)
        assert stored.grant_tenant == "acme"
        assert bool(stored.grant_tenant_member) == get_adapter().is_member_of(user, "acme"), change


def _rows_read(plan: dict) -> int:
    """Rows a PostgreSQL plan node and its children read: those they returned and those their
    filters threw away, over every loop."""
    loops = plan.get("Actual Loops", 1)
    read = (plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)) * loops
    return read + sum(_rows_read(child) for child in plan.get("Plans", ()))


def _reads_of(plan: dict, table: str) -> int:
    """Plan nodes that read ``table`` (scans of it), in a PostgreSQL plan and its subplans."""
    own = 1 if plan.get("Relation Name") == table else 0
    return own + sum(_reads_of(child, table) for child in plan.get("Plans", ()))


@pytest.mark.django_db
def test_the_grant_of_a_token_is_read_through_indexes(client, user, confidential_app):
    """Userinfo, introspection and the resource check read the token's grant on every call: an
    ``access_token_id = … OR token_family = …`` condition made PostgreSQL read the whole grants
    table for each of the four grant columns whenever it planned with a small table's statistics
    (1,000+ rows per userinfo call in the benchmark, growing with the table). Each branch is now
    its own indexed probe, and the grant is found once for all its columns (a correlated subquery
    per column found it four times: 12 index probes for a rotated token)."""
    now = timezone.now()
    AuthorizationGrant.objects.bulk_create(
        AuthorizationGrant(
            code_checksum=f"{n:064x}",
            application=confidential_app,
            user=user,
            redirect_uri="https://rp.example/cb",
            auth_time=now,
            expires=now,
            token_family=uuid.uuid4(),
        )
        for n in range(400)
    )  # other grants, before the token's own: a scan reads them all
    code, _ = get_code(client, confidential_app, user, scope="openid offline_access")
    tokens = exchange(client, confidential_app, code).json()
    rotated = refresh(client, confidential_app, tokens["refresh_token"]).json()["access_token"]
    grant = AuthorizationGrant.objects.order_by("pk").last()
    lookup = validator._access_token_lookup()
    sql = lookup.compiled("default").sql
    with connection.cursor() as cursor:
        for token in (tokens["access_token"], rotated):  # by the token itself; by its family
            params = [validator.checksum(token)]
            if connection.vendor == "postgresql":
                # Without bitmap scans (what a plan made while the table was small, or before its
                # statistics caught up, amounts to) an OR of two columns can only be a full scan.
                cursor.execute("SET LOCAL enable_bitmapscan = off")
                cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params)
                plan = cursor.fetchone()[0]
                plan = (plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]
                assert _rows_read(plan) < 40, plan
                assert _reads_of(plan, AuthorizationGrant._meta.db_table) == 2, plan
            else:
                cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
                steps = [row[-1] for row in cursor.fetchall()]
                assert not [step for step in steps if step.startswith("SCAN")], steps
                grant_reads = [step for step in steps if step.startswith("SEARCH grant_by_")]
                assert len(grant_reads) == 2, steps
            assert lookup.one(validator.checksum(token)).grant_pk == grant.pk


def _datetimes(token) -> list[datetime.datetime | None]:
    return [
        token.expires,
        token.created,
        token.application.created,
        token.user.date_joined,
        token.user.last_login,
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("use_tz", [True, False])
def test_datetimes_are_read_as_djangos_own(client, user, confidential_app, settings, use_tz):
    """On PostgreSQL in UTC the lookups read ``timestamptz`` with psycopg's C loader instead of
    Django's: the same aware UTC datetimes, down to the tzinfo object. Without USE_TZ (or another
    database time zone) Django's loader stays, naive values and all."""
    from psycopg.postgres import types as pg_types  # noqa: PLC0415 (psycopg is optional)

    from oidc_provider_ext.internal import lookups

    user.last_login = timezone.now()
    user.save()
    code, _ = get_code(client, confidential_app, user, scope="openid")
    token = exchange(client, confidential_app, code).json()["access_token"]
    settings.USE_TZ = use_tz
    fast, slow = validator.access_token_with_grant(token), _orm(token)
    for ours, djangos in zip(_datetimes(fast), _datetimes(slow), strict=True):
        assert ours == djangos
        assert ours.tzinfo is djangos.tzinfo
        assert (ours.tzinfo is datetime.UTC) is use_tz
    if connection.vendor == "postgresql":
        with lookups.reading_cursor(connection) as cursor:
            loader = cursor.cursor.adapters.get_loader(pg_types["timestamptz"].oid, 0)
        assert (loader is lookups._C_TIMESTAMPTZ) is (use_tz and lookups._C_TIMESTAMPTZ is not None)
