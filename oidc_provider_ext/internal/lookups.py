"""Hot lookups as plain SQL over explicit columns, built once per process and database vendor.

The ORM compiles every query again on every call: for a token lookup by checksum with two joins
that is ~0.4–0.5 ms of CPU, against ~20 µs for the same SQL on a cursor (docs/performance.md).
A :class:`Lookup` writes that SQL once from the models' documented ``_meta`` (``concrete_fields``,
``column``, ``attname``, ``db_table``) and the backend's ``quote_name``, runs it on
``connections[alias].cursor()`` with bound parameters only, and turns the row into model objects
with ``Model.from_db()`` (the documented hook the ORM itself calls), related objects assigned
through their foreign keys as ``select_related`` would.

Nothing here uses Django's query internals, so a new Django version cannot break it silently;
``tests/test_lookups.py`` runs it against the ORM's answer on SQLite and PostgreSQL. A model this
cannot describe exactly (multi-table inheritance, a composite key) or a vendor it was not tested
on is reported by :meth:`Lookup.supported`, and callers then use the ORM query they had before.

The token endpoint's statements (code exchange, refresh) live here too: its SELECTs are
:class:`Lookup` objects (:func:`grant_by_code`, :func:`refresh_token_by_checksum`,
:func:`grant_of_family_for_update`), and :func:`update` and :func:`insert` write its conditional
UPDATEs and token INSERTs the same way (SQL from ``_meta``, values through ``Field.pre_save()`` and
``get_db_prep_save()``/``get_db_prep_value()`` as ``save()`` and ``update()`` do). Security: every
value is a bound parameter, never formatted into SQL; the single-use UPDATEs keep their conditions,
so a code and a refresh token are still consumed by exactly one request.

A sign-in uses them as well: the session row (oidc_provider_ext.sessions: :class:`Lookup` by key,
:func:`save`, :func:`delete_by_key`), the tenant by code, the live consent and its conditional
UPDATE (internal/consents.py), the OP session and grant INSERTs; the OP session check (joined to
the user's row for oidc_provider_ext.backends.ModelBackend) and the second-factor EXISTS are written
the same way in internal/op_sessions.py and internal/factors.py.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import uuid
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.core.exceptions import FieldDoesNotExist
from django.db import DatabaseError, connections, models, router, transaction
from django.db.models.lookups import Exact
from django.db.models.signals import post_delete, post_save, pre_delete, pre_save
from django.utils.dateparse import parse_datetime
from oauth2_provider.models import get_refresh_token_model

from oidc_provider_ext.models import AuthorizationGrant, OPSession

#: Vendors whose cursors, placeholders (``%s``) and type adapters the lookups are tested on.
VENDORS = frozenset({"sqlite", "postgresql"})


def supported_vendor(alias: str) -> bool:
    """Whether database ``alias`` is one the SQL written here is tested on (else: the ORM)."""
    return connections[alias].vendor in VENDORS


Converter = Callable[[Any, Any], Any]  # (value, connection) -> value


def _fields(model: type[models.Model]) -> list[models.Field] | None:
    """The columns of ``model``'s own table, or None when some of its concrete fields live in
    another table (multi-table inheritance) or have no single column (a composite key)."""
    fields = list(model._meta.concrete_fields)
    concrete = model._meta.concrete_model
    for field in fields:
        if field.column is None or field.model._meta.concrete_model is not concrete:
            return None
    return fields


def _related(join: models.ForeignKey) -> type[models.Model]:
    return join.related_model


def column_field(model: type[models.Model], name: str) -> models.Field:
    """``model``'s field ``name``, which has a column of ``model``'s table (ValueError if not)."""
    field = model._meta.get_field(name)
    if not isinstance(field, models.Field) or field.column is None:
        raise ValueError(f"{model.__name__}.{name} is not a column")
    return field


def column(model: type[models.Model], name: str) -> str:
    """The column name of ``model``'s field ``name`` (``"pk"``: the primary key's)."""
    field = model._meta.pk if name == "pk" else column_field(model, name)
    assert field is not None and field.column is not None, f"{model.__name__}.{name}"
    return field.column


def _database_timezone(alias: str) -> datetime.tzinfo:
    # Django stores aware datetimes in UTC unless the database has its own TIME_ZONE (settings).
    name = settings.DATABASES[alias].get("TIME_ZONE") or "UTC"
    return datetime.UTC if name == "UTC" else zoneinfo.ZoneInfo(name)


def _c_timestamptz_loader() -> type | None:
    """psycopg's own loader for ``timestamptz`` text, where it is its C implementation (psycopg's
    ``binary`` or ``c`` package), else None."""
    try:
        import psycopg
        from psycopg.postgres import types
    except ImportError:
        return None
    loader = psycopg.adapters.get_loader(types["timestamptz"].oid, psycopg.pq.Format.TEXT)
    compiled = loader is not None and loader.__module__.startswith(("psycopg_binary", "psycopg_c"))
    return loader if compiled else None


_C_TIMESTAMPTZ = _c_timestamptz_loader()


@contextlib.contextmanager
def reading_cursor(connection):
    """``connection.cursor()`` for the reads written here. On PostgreSQL with ``USE_TZ`` and the
    connection in UTC (Django's default), a ``timestamptz`` column is read by psycopg's C loader:
    the same aware UTC datetime as Django's loader, which parses the text in Python to replace a
    time zone that is already UTC (~5 µs a column; a token with its client and user has seven).
    Any other time zone keeps Django's loader."""
    with connection.cursor() as cursor:
        if (
            _C_TIMESTAMPTZ is not None
            and connection.vendor == "postgresql"
            and settings.USE_TZ
            and _database_timezone(connection.alias) is datetime.UTC
        ):
            # The DB-API cursor under Django's wrapper; registering on it copies only its own
            # adapter map (as Django does itself when a cursor's time zone differs).
            cursor.cursor.adapters.register_loader("timestamptz", _C_TIMESTAMPTZ)
        yield cursor


def _converter(field: models.Field) -> Converter | None:
    """What turns the value the cursor gives for ``field`` into the one the ORM would give."""
    target = getattr(field, "target_field", None)
    if field.is_relation and field.concrete and target is not None:
        # A foreign key's column holds its target's value, which the ORM converts as the target
        # field (ForeignKey.get_col): a key to a UUID primary key is a UUID, not SQLite's hex text.
        return _converter(target)
    convert: Converter | None = None
    if isinstance(field, models.DateTimeField):

        def convert(value, connection):
            if isinstance(value, str):  # a driver without declared-type conversion
                value = parse_datetime(value)
            if value is not None and value.tzinfo is None and settings.USE_TZ:
                value = value.replace(tzinfo=_database_timezone(connection.alias))
            return value

    elif isinstance(field, models.UUIDField):

        def convert(value, connection):
            return value if value is None or isinstance(value, uuid.UUID) else field.to_python(value)

    elif isinstance(field, models.DecimalField):

        def convert(value, connection):
            return value if value is None or isinstance(value, Decimal) else field.to_python(value)

    elif isinstance(field, models.BooleanField):

        def convert(value, connection):
            return value if value is None or isinstance(value, bool) else field.to_python(value)

    from_db_value = getattr(field, "from_db_value", None)  # documented for custom fields
    if from_db_value is None:
        return convert
    if convert is None:
        return lambda value, connection: from_db_value(value, None, connection)
    first = convert
    return lambda value, connection: from_db_value(first(value, connection), None, connection)


@dataclass(frozen=True)
class Extra:
    """A computed column: ``sql(q, outer)`` returns a scalar SQL expression (a correlated subquery,
    say) given ``q`` (the vendor's ``quote_name``) and ``outer`` (the base table's alias, quoted);
    its value is converted as ``output_field``'s and set on the base object as ``name``.

    ``joins(q, outer)``, if given, returns ``LEFT OUTER JOIN`` clauses whose tables ``sql`` reads
    (under aliases of its own, not ``t<n>``): written once however many extras name the same
    clauses, so several columns of one joined row cost one probe. Each must match at most one row
    per base row (the lookup's ``LIMIT 1`` would otherwise pick one)."""

    name: str
    sql: Callable[[Callable[[str], str], str], str]
    output_field: models.Field | None = None
    joins: Callable[[Callable[[str], str], str], str] | None = None


@dataclass
class _Compiled:
    sql: str
    exists_sql: str
    attnames: list[list[str]]  # per model: the attnames of its columns, in select order
    converters: list[list[Converter | None]]
    extra_converters: list[Converter | None]


class Lookup:
    """``SELECT`` every column of ``model`` and of the models its foreign keys ``joins`` lead to
    (``LEFT JOIN``: a null key gives None; ``INNER JOIN`` for those also named in ``inner``), plus
    ``extras``, ``WHERE`` each of ``by`` equals a bound parameter (and ``where(q, outer)`` holds, if
    given: SQL as for :class:`Extra` with one ``%s`` per field of ``model`` named in ``where_fields``,
    bound to the parameters after those of ``by``), ``ORDER BY order_by(q, outer)`` if given,
    ``LIMIT 1``, then ``FOR UPDATE`` if ``for_update`` on
    PostgreSQL (SQLite's ``BEGIN IMMEDIATE`` already serialises writers, as the ORM's
    ``select_for_update()`` there); at most one row. ``by`` names fields of ``model``, or
    ``join__field`` for a field of a joined model.

    :meth:`one` returns the ``model`` instance with the joined objects assigned and each extra set
    as an attribute, or None; :meth:`exists` only says whether there is such a row. Build it once
    (module level, or cached per model) and call it per request: the SQL is written once per
    database vendor.
    """

    def __init__(
        self,
        model: type[models.Model],
        *,
        by: Sequence[str],
        joins: Sequence[str] = (),
        inner: Sequence[str] = (),
        extras: Sequence[Extra] = (),
        order_by: Callable[[Callable[[str], str], str], str] | None = None,
        for_update: bool = False,
        where: Callable[[Callable[[str], str], str], str] | None = None,
        where_fields: Sequence[str] = (),
    ) -> None:
        self.model = model
        if not set(inner) <= set(joins):
            raise ValueError(f"inner joins {inner} are not all in {joins}")
        self.inner = frozenset(inner)
        self.order_by = order_by
        self.for_update = for_update
        self.joins: list[models.ForeignKey] = []
        for name in joins:
            join = model._meta.get_field(name)
            if not isinstance(join, models.ForeignKey):  # OneToOneField is one too
                raise ValueError(f"{model.__name__}.{name} is not a foreign key")
            self.joins.append(join)
        self.models: list[type[models.Model]] = [model, *(_related(join) for join in self.joins)]
        # (index of the table: 0 the base, i the i-th join; the field)
        self.by: list[tuple[int, models.Field]] = []
        for name in by:
            join_name, _sep, field_name = name.rpartition("__")
            index = 0
            if join_name:
                found = [i for i, join in enumerate(self.joins, 1) if join.name == join_name]
                if not found:
                    raise ValueError(f"{name}: {join_name} is not one of the joins")
                index = found[0]
            self.by.append((index, column_field(self.models[index], field_name if join_name else name)))
        self.where = where
        # the fields that prepare every bound parameter, in order: by's, then where's
        self.params: list[models.Field] = [field for _index, field in self.by]
        self.params += [column_field(model, name) for name in where_fields]
        self.extras = list(extras)
        self._fields = [_fields(m) for m in self.models]
        self._compiled: dict[str, _Compiled] = {}

    def supported(self, alias: str = "default") -> bool:
        """Whether :meth:`one` can answer on database ``alias``; if not, use the ORM."""
        if not supported_vendor(alias) or any(f is None for f in self._fields):
            return False
        # A foreign key to a column other than the target's primary key (to_field) would need
        # another join condition; none of ours does.
        return all(join.target_field.primary_key for join in self.joins)

    def _compile(self, connection) -> _Compiled:
        q = connection.ops.quote_name
        aliases = [f"t{index}" for index in range(len(self.models))]
        columns: list[str] = []
        attnames: list[list[str]] = []
        converters: list[list[Converter | None]] = []
        for alias, fields in zip(aliases, self._fields, strict=True):
            assert fields is not None
            columns += [f"{alias}.{q(field.column)}" for field in fields]
            attnames.append([field.attname for field in fields])
            converters.append([_converter(field) for field in fields])
        columns += [f"({extra.sql(q, aliases[0])})" for extra in self.extras]
        joins = [
            f"{'INNER' if join.name in self.inner else 'LEFT OUTER'} JOIN "
            f"{q(_related(join)._meta.db_table)} {alias} "
            f"ON {aliases[0]}.{q(join.column)} = {alias}.{q(join.target_field.column)}"
            for join, alias in zip(self.joins, aliases[1:], strict=True)
        ]
        for extra in self.extras:
            clauses = extra.joins(q, aliases[0]) if extra.joins is not None else None
            if clauses and clauses not in joins:
                joins.append(clauses)
        where = " AND ".join(f"{aliases[index]}.{q(field.column)} = %s" for index, field in self.by)
        if self.where is not None:
            where += f" AND ({self.where(q, aliases[0])})"
        rest = [f"FROM {q(self.model._meta.db_table)} {aliases[0]}", *joins, f"WHERE {where}"]
        if self.order_by is not None:
            rest.append(f"ORDER BY {self.order_by(q, aliases[0])}")
        rest.append("LIMIT 1")
        if self.for_update and connection.vendor == "postgresql":
            rest.append("FOR UPDATE")
        sql = " ".join([f"SELECT {', '.join(columns)}", *rest])
        exists_sql = " ".join(["SELECT 1", *rest])
        extra_converters = [
            _converter(extra.output_field) if extra.output_field is not None else None
            for extra in self.extras
        ]
        return _Compiled(sql, exists_sql, attnames, converters, extra_converters)

    def compiled(self, alias: str = "default") -> _Compiled:
        connection = connections[alias]
        compiled = self._compiled.get(connection.vendor)
        if compiled is None:
            compiled = self._compiled[connection.vendor] = self._compile(connection)
        return compiled

    def _fetch(self, sql: str, params: Sequence[Any], connection) -> tuple | None:
        # Bound parameters only, prepared by each field as the ORM would (get_db_prep_value).
        values = [
            field.get_db_prep_value(value, connection)
            for field, value in zip(self.params, params, strict=True)
        ]
        with reading_cursor(connection) as cursor:
            cursor.execute(sql, values)
            return cursor.fetchone()

    def exists(self, *params: Any, using: str = "default") -> bool:
        """Whether a row's ``by`` fields equal ``params`` (and ``where`` holds for the rest)."""
        return self._fetch(self.compiled(using).exists_sql, params, connections[using]) is not None

    def one(self, *params: Any, using: str = "default") -> models.Model | None:
        """The row whose ``by`` fields equal ``params`` (and ``where`` holds for the rest), as
        objects, or None."""
        compiled = self.compiled(using)
        connection = connections[using]
        row = self._fetch(compiled.sql, params, connection)
        if row is None:
            return None
        objects = []
        start = 0
        tables = zip(self.models, compiled.attnames, compiled.converters, strict=True)
        for model, attnames, converters in tables:
            end = start + len(attnames)
            values = [
                value if convert is None else convert(value, connection)
                for value, convert in zip(row[start:end], converters, strict=True)
            ]
            start = end
            objects.append(model.from_db(using, attnames, values))
        base = objects[0]
        for join, joined in zip(self.joins, objects[1:], strict=True):
            # The joined row's primary key is NULL when the foreign key was: nothing joined.
            related = joined if getattr(joined, _related(join)._meta.pk.attname) is not None else None
            # Cached as select_related caches it (RelatedPopulator): on the row, and on the related
            # object for a one-to-one; the descriptor's __set__ would ask the routers first.
            join.set_cached_value(base, related)
            if join.unique and related is not None:
                join.remote_field.set_cached_value(related, base)
        for extra, value, convert in zip(self.extras, row[start:], compiled.extra_converters, strict=True):
            setattr(base, extra.name, value if convert is None else convert(value, connection))
        return base


# --- the token endpoint: code exchange and refresh ----------------------------------------------------

#: The SQL of :func:`update` and :func:`insert`, written once per (database alias, model, shape).
_sql_cache: dict[tuple, Any] = {}
_LIVE = "oidc_op_session_live"


def _op_session_live(q: Callable[[str], str], outer: str) -> str:
    # Whether the grant's OP session exists and has not ended (1 or 0), as a correlated subquery.
    pk = q(column(OPSession, "pk"))
    ended = q(column(OPSession, "ended"))
    op_session = q(column(AuthorizationGrant, "op_session"))
    return (
        f"CASE WHEN EXISTS (SELECT 1 FROM {q(OPSession._meta.db_table)} s"
        f" WHERE s.{pk} = {outer}.{op_session} AND s.{ended} IS NULL) THEN 1 ELSE 0 END"
    )


#: Set on the grants :func:`grant_by_code` loads (and on the access tokens of
#: ``validator.access_token_with_grant``): the membership rule's answer for the row's user and
#: tenant, read in the row's own statement (``validator.member_hint``).
TENANT_MEMBER = "grant_tenant_member"


def _grant_tenant_member(q: Callable[[str], str], outer: str) -> str:
    # The default adapter.is_member_of query for the grant's user and tenant, as the access
    # token's grant_tenant_member_extra asks it (a grant without a tenant: false, and the rule is
    # not asked).
    from oidc_provider_ext.models.grants import tenant_member_sql

    user, tenant = q(column(AuthorizationGrant, "user")), q(column(AuthorizationGrant, "tenant"))
    return tenant_member_sql(q, f"{outer}.{user}", f"{outer}.{tenant}")


@functools.cache
def _grant_by_code_lookup() -> Lookup:
    return Lookup(
        AuthorizationGrant,
        by=["code_checksum"],
        joins=["user"],
        inner=["user"],
        extras=[Extra(_LIVE, _op_session_live), Extra(TENANT_MEMBER, _grant_tenant_member)],
    )


def grant_by_code(code_checksum: str) -> tuple[AuthorizationGrant | None, bool]:
    """The grant whose code has ``code_checksum`` (its ``user`` loaded), and whether the OP
    session the code was issued in still exists and has not ended: one statement, which also
    reads the membership rule's answer for the grant's user and tenant (:data:`TENANT_MEMBER`)."""
    alias = router.db_for_read(AuthorizationGrant)
    lookup = _grant_by_code_lookup()
    if not lookup.supported(alias):
        grant = (
            AuthorizationGrant.objects.using(alias)
            .select_related("user", "op_session")
            .filter(code_checksum=code_checksum)
            .first()
        )
        if grant is None:
            return None, False
        return grant, grant.op_session is not None and grant.op_session.ended is None
    found = lookup.one(code_checksum, using=alias)
    if found is None:
        return None, False
    assert isinstance(found, AuthorizationGrant)
    return found, bool(vars(found).pop(_LIVE))


@functools.cache
def _grant_of_family_lookup() -> Lookup:
    pk = column(AuthorizationGrant, "pk")
    return Lookup(
        AuthorizationGrant,
        by=["token_family"],
        order_by=lambda q, outer: f"{outer}.{q(pk)}",
        for_update=True,
    )


def grant_of_family_for_update(family) -> AuthorizationGrant | None:
    """``AuthorizationGrant.objects.select_for_update().filter(token_family=family).first()``:
    the refresh-token family's grant, its row locked until the transaction ends (PostgreSQL;
    SQLite's ``BEGIN IMMEDIATE`` already serialises writers). Without :data:`TENANT_MEMBER`: on
    PostgreSQL the statement reads in a snapshot taken before it waited for the lock, so a
    membership ended meanwhile would not be seen; the refresh asks the rule after the lock."""
    alias = router.db_for_write(AuthorizationGrant)
    lookup = _grant_of_family_lookup()
    if not lookup.supported(alias):
        return AuthorizationGrant.objects.using(alias).select_for_update().filter(token_family=family).first()
    return lookup.one(family, using=alias)  # type: ignore[return-value]


@functools.cache
def _refresh_token_lookup(model: type[models.Model]) -> Lookup:
    revoked = column(model, "revoked")

    def live_first(q: Callable[[str], str], outer: str) -> str:
        # The live row first (NULLS FIRST, written so every database reads it alike).
        return f"CASE WHEN {outer}.{q(revoked)} IS NULL THEN 0 ELSE 1 END, {outer}.{q(revoked)} DESC"

    return Lookup(
        model, by=["token_checksum"], joins=["user", "access_token"], inner=["user"], order_by=live_first
    )


def refresh_token_by_checksum(token_checksum: str):
    """The refresh token with ``token_checksum`` (the live row first: a used token keeps its
    checksum), its ``user`` and ``access_token`` loaded: one statement."""
    refresh_tokens = get_refresh_token_model()
    alias = router.db_for_read(refresh_tokens)
    lookup = _refresh_token_lookup(refresh_tokens)
    if not lookup.supported(alias):
        return (
            refresh_tokens.objects.using(alias)
            .filter(token_checksum=token_checksum)
            .select_related("user", "access_token")
            .order_by(models.F("revoked").desc(nulls_first=True))
            .first()
        )
    return lookup.one(token_checksum, using=alias)


def prep(model, name: str, value, connection):
    """``value`` for ``model``'s field ``name`` as a bound parameter, as the ORM prepares a filter's."""
    return model._meta.get_field(name).get_db_prep_value(value, connection, prepared=False)


def null_or_later(column_sql: str) -> str:
    """SQL for the ORM's ``exclude(<column>__lte=%s)`` on a nullable column: no value, or a later
    one (a consent or OP session without expiry, or one expiring after ``%s``)."""
    return f"({column_sql} IS NULL OR {column_sql} > %s)"


def _update_sql(alias: str, model, assignments: tuple[str, ...], conditions: tuple[str, ...]) -> str:
    """``UPDATE <model> SET a = %s, ... WHERE pk = %s AND <conditions>``; each condition is
    ``"field"`` (= %s), ``"field__isnull"``, ``"field__gt"`` (> %s) or ``"field__nullorgt"`` (NULL
    or > %s: the ORM's ``exclude(field__lte=...)`` on a nullable column)."""
    key = ("update", alias, model._meta.label, assignments, conditions)
    if key not in _sql_cache:
        q = connections[alias].ops.quote_name
        meta = model._meta
        where = [f"{q(meta.pk.column)} = %s"]
        for condition in conditions:
            name, _sep, lookup = condition.partition("__")
            name_sql = q(column(model, name))
            if lookup == "nullorgt":
                where.append(null_or_later(name_sql))
                continue
            operator = {"": "= %s", "isnull": "IS NULL", "gt": "> %s"}[lookup]
            where.append(f"{name_sql} {operator}")
        sets = ", ".join(f"{q(column(model, name))} = %s" for name in assignments)
        _sql_cache[key] = f"UPDATE {q(meta.db_table)} SET {sets} WHERE {' AND '.join(where)}"
    return _sql_cache[key]


def update(model, pk, values: dict[str, Any], **conditions) -> int:
    """``model.objects.filter(pk=pk, **conditions).update(**values)`` (conditions: ``name=value``,
    ``name__isnull=True``, ``name__gt=value``, ``name__nullorgt=value``: ``exclude(name__lte=value)``):
    the number of rows changed."""
    alias = router.db_for_write(model)
    if not supported_vendor(alias):
        query = model._meta.default_manager.using(alias).filter(pk=pk)
        for name, value in conditions.items():
            field, _sep, lookup = name.partition("__")
            if lookup == "nullorgt":
                query = query.exclude(**{f"{field}__lte": value})
            else:
                query = query.filter(**{name: value})
        return query.update(**values)
    connection = connections[alias]
    for name, value in conditions.items():
        if name.endswith("__isnull") and value is not True:
            raise ValueError(name)
    sql = _update_sql(alias, model, tuple(values), tuple(conditions))
    params = [prep(model, name, value, connection) for name, value in values.items()]
    params.append(prep(model, model._meta.pk.name, pk, connection))
    params += [
        prep(model, name.partition("__")[0], value, connection)
        for name, value in conditions.items()
        if not name.endswith("__isnull")
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


# What save() runs under it, which a library may wrap on a model class (django-model-utils'
# FieldTracker wraps save_base, django-concurrency _do_update): any of them not Django's, save().
_SAVE_STEPS = ("save_base", "_save_parents", "_save_table", "_do_update", "_do_insert")
# AbstractBaseUser.save() adds to Model.save() only the report of a password set on the object and
# not yet saved (``_password``), which :func:`save_fields` checks before it writes.
_USER_SAVE = frozenset({models.Model.save, AbstractBaseUser.save})


def saves_as_django(model: type[models.Model], saves: frozenset = frozenset({models.Model.save})) -> bool:
    """Whether a row of ``model`` is saved exactly as ``Model.save()`` saves it: its ``save()`` is
    one of ``saves``, no save step is the site's own (a library may wrap one), and its base manager
    is Django's (the UPDATE filters through it). Else :func:`insert`, :func:`save` and
    :func:`save_fields` call ``save()``, so whatever the site's code does still happens. Asked on
    each call: a class can change (patched)."""
    return (
        model.save in saves
        and all(getattr(model, step, None) is getattr(models.Model, step) for step in _SAVE_STEPS)
        and _djangos_manager(model._base_manager)
    )


def _plain_columns(model) -> list[models.Field] | None:
    """The columns of ``model``'s one table when a row of it can be written with a plain INSERT or
    UPDATE of them; None for multi-table inheritance, a database default or a generated column
    (those are the ORM's)."""
    fields = _fields(model)
    if fields is None or model._meta.parents:
        return None
    if any(f.db_default is not models.NOT_PROVIDED or isinstance(f, models.GeneratedField) for f in fields):
        return None
    return fields


@contextlib.contextmanager
def _saving(
    instance: models.Model, using: str, *, created: bool, update_fields: frozenset[str] | None = None
):
    """What ``Model.save_base()`` does around its INSERT or UPDATE: ``pre_save`` before, then the
    instance marked as saved in ``using`` (documented in "Customizing model loading") and
    ``post_save``; nothing after a write that raised."""
    model = type(instance)
    pre_save.send(sender=model, instance=instance, raw=False, using=using, update_fields=update_fields)
    yield connections[using]
    instance._state.db = using
    instance._state.adding = False
    post_save.send(
        sender=model, instance=instance, created=created, update_fields=update_fields, raw=False, using=using
    )


def _insert_sql(alias: str, model):
    key = ("insert", alias, model._meta.label)
    if key not in _sql_cache:
        q = connections[alias].ops.quote_name
        meta = model._meta
        plain = _plain_columns(model)
        if plain is None or not isinstance(meta.pk, models.AutoField):
            _sql_cache[key] = None  # multi-table inheritance, database defaults: the ORM
        else:
            fields = [f for f in plain if not f.primary_key]
            columns = ", ".join(q(column(model, f.name)) for f in fields)
            placeholders = ", ".join(["%s"] * len(fields))
            sql = f"INSERT INTO {q(meta.db_table)} ({columns}) VALUES ({placeholders})"
            if connections[alias].vendor == "postgresql":
                sql += f" RETURNING {q(column(model, 'pk'))}"
            _sql_cache[key] = (sql, fields)
    return _sql_cache[key]


def _save_sql(alias: str, model, create: bool):
    """``INSERT`` of every column (``create``) or ``UPDATE`` of every column but the key, by key;
    None when ``model`` is not one table of plain columns (the ORM then)."""
    key = ("save", alias, model._meta.label, create)
    if key not in _sql_cache:
        q = connections[alias].ops.quote_name
        meta = model._meta
        fields = _plain_columns(model)
        if fields is None:
            _sql_cache[key] = None
        elif create:
            columns = ", ".join(q(column(model, f.name)) for f in fields)
            placeholders = ", ".join(["%s"] * len(fields))
            _sql_cache[key] = (f"INSERT INTO {q(meta.db_table)} ({columns}) VALUES ({placeholders})", fields)
        else:
            fields = [f for f in fields if not f.primary_key] + [meta.pk]
            sets = ", ".join(f"{q(column(model, f.name))} = %s" for f in fields[:-1])
            sql = f"UPDATE {q(meta.db_table)} SET {sets} WHERE {q(column(model, 'pk'))} = %s"
            _sql_cache[key] = (sql, fields)
    return _sql_cache[key]


def save(instance: models.Model, *, create: bool, using: str) -> None:
    """``instance.save(force_insert=create, force_update=not create, using=using)`` for a model whose
    primary key is set by its caller (a session row): one INSERT of every column, or one UPDATE of
    every column by key, with ``pre_save``/``post_save`` sent and each field's ``pre_save()``
    applied as ``save()`` does. Raises what ``save()`` raises: IntegrityError for a taken key,
    DatabaseError when an UPDATE found no row. A model not saved as Django saves it
    (:func:`saves_as_django`) is saved by its ``save()``."""
    model = type(instance)
    prepared = _save_sql(using, model, create) if supported_vendor(using) else None
    if prepared is None or not saves_as_django(model) or instance.pk is None:
        instance.save(force_insert=create, force_update=not create, using=using)
        return
    sql, fields = prepared
    with (
        _saving(instance, using, created=create) as connection,
        transaction.mark_for_rollback_on_error(using),  # as save_base()
    ):
        params = [
            f.get_db_prep_save(instance.pk if f.primary_key else f.pre_save(instance, create), connection)
            for f in fields
        ]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            if not create and cursor.rowcount == 0:
                raise _not_updated(model, "Forced update did not affect any rows.")  # as Model.save()


# --- Django's part of a sign-in: the user by name, and its last_login --------------------------------


@functools.cache
def _user_by_name_lookup(model: type[models.Model]) -> Lookup | None:
    """A :class:`Lookup` of ``model`` by its ``USERNAME_FIELD``, or None where it might not answer
    as ``model._default_manager.get_by_natural_key()`` (``get()``, one row or DoesNotExist): a
    username field that is not unique (``get()`` raises on two rows, ``LIMIT 1`` would pick one), or
    a manager, queryset or natural-key lookup of the site's own (a soft-delete filter, say)."""
    manager: Any = model._default_manager
    if getattr(
        type(manager), "get_by_natural_key", None
    ) is not BaseUserManager.get_by_natural_key or not _djangos_manager(manager):
        return None
    try:
        field = column_field(model, model.USERNAME_FIELD)  # type: ignore[attr-defined]
    except (ValueError, FieldDoesNotExist):
        return None
    # The ORM's "=" is the field's exact lookup: an integer field's (a number out of range finds no
    # row), a foreign key's (takes an instance) or one a site registered are not a plain "= %s".
    if not field.unique or field.get_lookup("exact") is not Exact or _fields(model) is None:
        return None
    return Lookup(model, by=[field.name])


def _djangos_manager(manager: Any) -> bool:
    """Whether ``manager`` reads rows as Django's ``Manager`` does: no ``get_queryset()``, ``get()``
    or queryset class of a site's own (a soft-delete filter, say)."""
    return (
        type(manager).get_queryset is models.Manager.get_queryset
        and type(manager).get is models.Manager.get
        and manager._queryset_class is models.QuerySet
    )


def user_by_name_lookup(model: type[models.Model], alias: str) -> Lookup | None:
    """The :class:`Lookup` that reads ``model``'s user by name on database ``alias`` exactly as its
    manager's ``get_by_natural_key()`` would (None: ask the manager)."""
    lookup = _user_by_name_lookup(model)
    return lookup if lookup is not None and lookup.supported(alias) else None


def _not_updated(model: type[models.Model], message: str) -> DatabaseError:
    """What ``save()`` raises when its UPDATE found no row: the model's ``NotUpdated`` (Django 6.1,
    a DatabaseError), else DatabaseError."""
    return getattr(model, "NotUpdated", DatabaseError)(message)


def save_fields(instance: models.Model, names: tuple[str, ...]) -> None:
    """``instance.save(update_fields=names)`` for a row that exists: one ``UPDATE`` of those columns
    by key, written once, with ``pre_save``/``post_save`` sent with ``update_fields`` as ``save()``
    sends them, each field's ``pre_save()`` applied, and DatabaseError when no row was updated (as
    ``save()``). ``save()`` itself where this could differ from it: a model whose ``save()`` is its
    own, a proxy or multi-table model, a password set and not yet saved, a deferred or unknown
    field, an expression as a value, or a vendor the SQL is not tested on."""
    model = type(instance)
    using = router.db_for_write(model, instance=instance)
    meta = model._meta
    fields = _plain_columns(model) if supported_vendor(using) and not meta.proxy else None
    by_name = {f.name: f for f in fields or () if not f.primary_key}
    if (
        fields is None
        or not saves_as_django(model, _USER_SAVE)
        or getattr(instance, "_password", None) is not None
        or instance.pk is None
        or not names
        or any(name not in by_name for name in names)
        or not instance.get_deferred_fields().isdisjoint(by_name[name].attname for name in names)
        or any(hasattr(getattr(instance, by_name[name].attname), "resolve_expression") for name in names)
    ):
        instance.save(update_fields=names)
        return
    with (
        _saving(instance, using, created=False, update_fields=frozenset(names)) as connection,
        transaction.mark_for_rollback_on_error(using),  # as save_base(), around the fields' work too
    ):
        params = [
            by_name[name].get_db_prep_save(by_name[name].pre_save(instance, False), connection)
            for name in names
        ]
        params.append(prep(model, meta.pk.name, instance.pk, connection))
        with connection.cursor() as cursor:
            cursor.execute(_update_sql(using, model, names, ()), params)
            if cursor.rowcount == 0:
                raise _not_updated(model, "Save with update_fields did not affect any rows.")


def delete_by_key(model, pk, *, using: str) -> None:
    """``model(pk=pk).delete(using=using)`` for a model nothing refers to: one DELETE by key written
    once, with ``pre_delete``/``post_delete`` sent as Django's collector sends them for the row. A
    model other rows refer to (a cascade to collect) or that is not one table is deleted by the
    ORM."""
    instance = model(pk=pk)
    # Any relation without a column of this table: a reverse one (include_hidden: a
    # related_name="+" one is cascaded by the collector too), a many-to-many or a GenericRelation
    # (rows the collector deletes with this one).
    referred_to = any(f.is_relation and not f.concrete for f in model._meta.get_fields(include_hidden=True))
    if not supported_vendor(using) or referred_to or _fields(model) is None or model._meta.parents:
        instance.delete(using=using)
        return
    key = ("delete", using, model._meta.label)
    if key not in _sql_cache:
        q = connections[using].ops.quote_name
        _sql_cache[key] = f"DELETE FROM {q(model._meta.db_table)} WHERE {q(model._meta.pk.column)} = %s"
    connection = connections[using]
    pre_delete.send(sender=model, instance=instance, using=using, origin=instance)
    with connection.cursor() as cursor:
        cursor.execute(_sql_cache[key], [model._meta.pk.get_db_prep_value(pk, connection)])
    post_delete.send(sender=model, instance=instance, using=using, origin=instance)


def insert(instance: models.Model) -> None:
    """Save a new ``instance`` (a token row with an auto-increment key) with one INSERT, as
    ``save()`` does: ``pre_save``/``post_save`` sent, each field's ``pre_save()`` (``auto_now``,
    DOT's token checksum) applied, the new key set on ``instance``, which then counts as saved
    (a later ``save()`` is an UPDATE). A model not saved as Django saves it
    (:func:`saves_as_django`) is saved by its ``save()``."""
    model = type(instance)
    alias = router.db_for_write(model, instance=instance)
    prepared = _insert_sql(alias, model) if supported_vendor(alias) and instance.pk is None else None
    if prepared is None or not saves_as_django(model):
        instance.save()
        return
    sql, fields = prepared
    with (
        _saving(instance, alias, created=True) as connection,
        transaction.mark_for_rollback_on_error(alias),  # as save_base()
    ):
        params = [f.get_db_prep_save(f.pre_save(instance, True), connection) for f in fields]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            instance.pk = cursor.fetchone()[0] if connection.vendor == "postgresql" else cursor.lastrowid
