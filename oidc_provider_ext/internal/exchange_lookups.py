"""The token endpoint's hottest statements (code exchange, refresh) as SQL written once per
process from ``Model._meta``, run with bound parameters on ``connections[alias].cursor()``.

Why: compiling these few statements through the ORM was the largest cost of a code exchange
(about 0.5 ms for the code's grant with its user and OP session, 0.15-0.2 ms for each INSERT and
UPDATE), several times the database's own work. Only documented Django APIs are used, so a new
Django cannot break them the way it broke the removed ``PreparedLookup``:

- SQL text from ``Model._meta`` (``concrete_fields``, ``Field.column``, ``db_table``) and
  ``connection.ops.quote_name``; cached per (database alias, model): immutable for the process.
- Rows become objects with ``Manager.raw()`` (Django converts the model's own columns) and
  ``Model.from_db()``; values go to the database through ``Field.pre_save()`` and
  ``Field.get_db_prep_save()``/``get_db_prep_value()``, as ``Model.save()`` and ``update()`` do.
- Values of *this app's* grant that arrive beside the user's row are converted by their field
  type (``Field.from_db_value()`` and ``to_python()``, documented; aware datetimes in the
  database's time zone, the DATABASES ``TIME_ZONE`` rule).

Only SQLite and PostgreSQL are served this way (:func:`supported`); on any other database every
function here answers through the ORM, with the same results.

Security: every value is a bound parameter (never formatted into SQL); the single-use UPDATEs keep
their conditions, so a code and a refresh token are still consumed by exactly one request.

Kept apart from ``internal/lookups.py`` (the access-token lookups) until the two are unified.
"""

from __future__ import annotations

import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connections, models, router
from django.db.models.signals import post_save, pre_save
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_refresh_token_model

from oidc_provider_ext.models import AuthorizationGrant, OPSession

_sql_cache: dict[tuple, Any] = {}
# Prefix of the grant's columns in the row that carries the grant's user: never a user column.
_GRANT = "oidc_grant__"
_LIVE = f"{_GRANT}op_session_live"


def supported(alias: str) -> bool:
    return connections[alias].vendor in ("sqlite", "postgresql")


def _q(connection, name: str | None) -> str:
    assert name, "a concrete column"
    return connection.ops.quote_name(name)


def _users():
    """The user model's default manager (only its ``raw()`` is used: no manager filtering)."""
    manager = get_user_model()._meta.default_manager
    assert manager is not None
    return manager


def _db_timezone(alias: str) -> datetime.tzinfo:
    # Django stores datetimes in UTC unless the database's TIME_ZONE setting says otherwise
    # (databases without time zone support, here SQLite).
    name = settings.DATABASES[alias].get("TIME_ZONE")
    return ZoneInfo(name) if name else datetime.UTC


_NO_CONVERTER = object()


def _converter(field: models.Field, alias: str):
    """How a value of ``field``, as the database driver returns it, becomes the Python value the
    ORM would give (the backends' own converters are not public API): None when it is already,
    ``_NO_CONVERTER`` for a field type not handled here (the caller then uses the ORM)."""
    connection = connections[alias]
    if isinstance(field, models.JSONField):
        return lambda value: field.from_db_value(value, None, connection)  # type: ignore[arg-type]
    if isinstance(field, models.DateTimeField):
        tz = _db_timezone(alias)

        def aware(value):
            if value is None:
                return None
            if isinstance(value, str):
                value = datetime.datetime.fromisoformat(value)
            if settings.USE_TZ and timezone.is_naive(value):
                value = timezone.make_aware(value, tz)
            return value

        return aware
    if isinstance(field, models.UUIDField | models.BooleanField):
        return field.to_python
    if isinstance(field, models.CharField | models.TextField | models.IntegerField | models.ForeignKey):
        return None  # the driver's value is the Python value
    return _NO_CONVERTER


class _Columns:
    """The concrete columns of ``model`` (table alias ``table``) selected beside the user's row,
    each as ``<prefix><column>``, and how to take them back off the user as a ``model``."""

    def __init__(self, model, table: str, prefix: str, alias: str):
        connection = connections[alias]
        self.model, self.alias = model, alias
        fields = model._meta.concrete_fields
        self.sql = [
            f"{table}.{_q(connection, f.column)} AS {_q(connection, prefix + f.column)}" for f in fields
        ]
        self.fields = [(f.attname, prefix + f.column, _converter(f, alias)) for f in fields]
        self.complete = all(convert is not _NO_CONVERTER for _a, _c, convert in self.fields)
        self.attnames = [attname for attname, _c, _v in self.fields]
        self.pk_index = self.attnames.index(model._meta.pk.attname)

    def take(self, row: dict):
        """Pop this model's values off ``row`` (a raw() instance's ``vars()``): the instance, or None
        when its primary key is NULL (an outer join found nothing)."""
        values = []
        for _attname, column, convert in self.fields:
            value = row.pop(column)
            values.append(value if convert is None else convert(value))
        if values[self.pk_index] is None:
            return None
        return self.model.from_db(self.alias, self.attnames, values)


def _user_columns(connection) -> str:
    return ", ".join(f"u.{_q(connection, f.column)}" for f in get_user_model()._meta.concrete_fields)


def _user_pk(connection) -> str:
    return _q(connection, get_user_model()._meta.pk.column)


def _column(connection, model, name: str) -> str:
    return _q(connection, model._meta.get_field(name).column)


def _table(connection, model) -> str:
    return _q(connection, model._meta.db_table)


# --- the code's grant, with its user and whether its OP session is live ---------------------------


def _grant_by_code_sql(alias: str):
    user_model = get_user_model()
    key = ("grant_by_code", alias, user_model._meta.label)
    if key not in _sql_cache:
        connection = connections[alias]
        grants = _Columns(AuthorizationGrant, "g", _GRANT, alias)
        session_pk = _q(connection, OPSession._meta.pk.column)
        live = (
            f"CASE WHEN s.{session_pk} IS NOT NULL AND s.{_column(connection, OPSession, 'ended')} IS NULL"
            f" THEN 1 ELSE 0 END AS {_q(connection, _LIVE)}"
        )
        sql = (
            f"SELECT {_user_columns(connection)}, {', '.join(grants.sql)}, {live}"
            f" FROM {_table(connection, AuthorizationGrant)} g"
            f" INNER JOIN {_table(connection, user_model)} u"
            f" ON u.{_user_pk(connection)} = g.{_column(connection, AuthorizationGrant, 'user')}"
            f" LEFT OUTER JOIN {_table(connection, OPSession)} s"
            f" ON s.{session_pk} = g.{_column(connection, AuthorizationGrant, 'op_session')}"
            f" WHERE g.{_column(connection, AuthorizationGrant, 'code_checksum')} = %s"
        )
        _sql_cache[key] = (sql, grants) if grants.complete else None
    return _sql_cache[key]


def grant_by_code(code_checksum: str) -> tuple[AuthorizationGrant | None, bool]:
    """The grant whose code has ``code_checksum`` (its ``user`` loaded), and whether the OP
    session the code was issued in still exists and has not ended: one statement."""
    alias = router.db_for_read(AuthorizationGrant)
    prepared = _grant_by_code_sql(alias) if supported(alias) else None
    if prepared is None:
        grant = (
            AuthorizationGrant.objects.using(alias)
            .select_related("user", "op_session")
            .filter(code_checksum=code_checksum)
            .first()
        )
        if grant is None:
            return None, False
        return grant, grant.op_session is not None and grant.op_session.ended is None
    sql, grants = prepared
    user = next(iter(_users().raw(sql, [code_checksum], using=alias)), None)
    if user is None:
        return None, False
    # raw() left the grant's columns on the user as attributes: take them off.
    row = vars(user)
    live = bool(row.pop(_LIVE))
    grant = grants.take(row)
    grant.user = user
    return grant, live


def grant_of_family_for_update(family) -> AuthorizationGrant | None:
    """``AuthorizationGrant.objects.select_for_update().filter(token_family=family).first()``:
    the refresh-token family's grant, its row locked until the transaction ends (PostgreSQL;
    SQLite's ``BEGIN IMMEDIATE`` already serialises writers)."""
    alias = router.db_for_write(AuthorizationGrant)
    if not supported(alias):
        return AuthorizationGrant.objects.using(alias).select_for_update().filter(token_family=family).first()
    connection = connections[alias]
    key = ("grant_of_family", alias)
    if key not in _sql_cache:
        meta = AuthorizationGrant._meta
        columns = ", ".join(_q(connection, f.column) for f in meta.concrete_fields)
        pk = _q(connection, meta.pk.column)
        _sql_cache[key] = (
            f"SELECT {columns} FROM {_table(connection, AuthorizationGrant)}"
            f" WHERE {_column(connection, AuthorizationGrant, 'token_family')} = %s ORDER BY {pk} LIMIT 1"
            + (" FOR UPDATE" if connection.vendor == "postgresql" else "")
        )
    params = [_prep(AuthorizationGrant, "token_family", family, connection)]
    return next(iter(AuthorizationGrant.objects.raw(_sql_cache[key], params, using=alias)), None)


# --- a refresh token, with its user and access token ---------------------------------------------------


def _refresh_token_sql(alias: str):
    user_model = get_user_model()
    refresh_tokens, access_tokens = get_refresh_token_model(), get_access_token_model()
    key = (
        "refresh_token",
        alias,
        user_model._meta.label,
        refresh_tokens._meta.label,
        access_tokens._meta.label,
    )
    if key not in _sql_cache:
        connection = connections[alias]
        rt = _Columns(refresh_tokens, "r", "oidc_rt__", alias)
        at = _Columns(access_tokens, "a", "oidc_at__", alias)
        revoked = f"r.{_column(connection, refresh_tokens, 'revoked')}"
        sql = (
            f"SELECT {_user_columns(connection)}, {', '.join(rt.sql)}, {', '.join(at.sql)}"
            f" FROM {_table(connection, refresh_tokens)} r"
            f" INNER JOIN {_table(connection, user_model)} u"
            f" ON u.{_user_pk(connection)} = r.{_column(connection, refresh_tokens, 'user')}"
            f" LEFT OUTER JOIN {_table(connection, access_tokens)} a"
            f" ON a.{_q(connection, access_tokens._meta.pk.column)}"
            f" = r.{_column(connection, refresh_tokens, 'access_token')}"
            f" WHERE r.{_column(connection, refresh_tokens, 'token_checksum')} = %s"
            # The live row first (NULLS FIRST, written so every database reads it alike).
            f" ORDER BY CASE WHEN {revoked} IS NULL THEN 0 ELSE 1 END, {revoked} DESC LIMIT 1"
        )
        _sql_cache[key] = (sql, rt, at) if rt.complete and at.complete else None
    return _sql_cache[key]


def refresh_token_by_checksum(token_checksum: str):
    """The refresh token with ``token_checksum`` (the live row first: a used token keeps its
    checksum), its ``user`` and ``access_token`` loaded: one statement."""
    refresh_tokens = get_refresh_token_model()
    alias = router.db_for_read(refresh_tokens)
    prepared = _refresh_token_sql(alias) if supported(alias) else None
    if prepared is None:
        return (
            refresh_tokens.objects.using(alias)
            .filter(token_checksum=token_checksum)
            .select_related("user", "access_token")
            .order_by(models.F("revoked").desc(nulls_first=True))
            .first()
        )
    sql, rt_columns, at_columns = prepared
    user = next(iter(_users().raw(sql, [token_checksum], using=alias)), None)
    if user is None:
        return None
    row = vars(user)
    refresh_token = rt_columns.take(row)
    access_token = at_columns.take(row)
    refresh_token.user = user
    if access_token is not None:
        refresh_token.access_token = access_token
    return refresh_token


# --- conditional UPDATEs ---------------------------------------------------------------------------


def _prep(model, name: str, value, connection):
    return model._meta.get_field(name).get_db_prep_value(value, connection, prepared=False)


def _update_sql(alias: str, model, assignments: tuple[str, ...], conditions: tuple[str, ...]) -> str:
    """``UPDATE <model> SET a = %s, ... WHERE pk = %s AND <conditions>``; each condition is
    ``"field"`` (= %s), ``"field__isnull"`` or ``"field__gt"`` (> %s)."""
    key = ("update", alias, model._meta.label, assignments, conditions)
    if key not in _sql_cache:
        connection = connections[alias]
        meta = model._meta
        where = [f"{_q(connection, meta.pk.column)} = %s"]
        for condition in conditions:
            name, _sep, lookup = condition.partition("__")
            operator = {"": "= %s", "isnull": "IS NULL", "gt": "> %s"}[lookup]
            where.append(f"{_q(connection, meta.get_field(name).column)} {operator}")
        sets = ", ".join(f"{_q(connection, meta.get_field(name).column)} = %s" for name in assignments)
        _sql_cache[key] = f"UPDATE {_q(connection, meta.db_table)} SET {sets} WHERE {' AND '.join(where)}"
    return _sql_cache[key]


def update(model, pk, values: dict[str, Any], **conditions) -> int:
    """``model.objects.filter(pk=pk, **conditions).update(**values)`` (conditions: ``name=value``,
    ``name__isnull=True``, ``name__gt=value``): the number of rows changed."""
    alias = router.db_for_write(model)
    if not supported(alias):
        return model._meta.default_manager.using(alias).filter(pk=pk, **conditions).update(**values)
    connection = connections[alias]
    for name, value in conditions.items():
        if name.endswith("__isnull") and value is not True:
            raise ValueError(name)
    sql = _update_sql(alias, model, tuple(values), tuple(conditions))
    params = [_prep(model, name, value, connection) for name, value in values.items()]
    params.append(_prep(model, model._meta.pk.name, pk, connection))
    params += [
        _prep(model, name.partition("__")[0], value, connection)
        for name, value in conditions.items()
        if not name.endswith("__isnull")
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


# --- INSERT of a new token ---------------------------------------------------------------------------


def _insert_sql(alias: str, model):
    key = ("insert", alias, model._meta.label)
    if key not in _sql_cache:
        connection = connections[alias]
        meta = model._meta
        fields = [f for f in meta.local_concrete_fields if not f.primary_key]
        simple = isinstance(meta.pk, models.AutoField) and all(
            f.db_default is models.NOT_PROVIDED and not isinstance(f, models.GeneratedField)
            for f in meta.concrete_fields
        )
        if not simple or meta.parents:
            _sql_cache[key] = None  # multi-table inheritance, database defaults: save() does it
        else:
            columns = ", ".join(_q(connection, f.column) for f in fields)
            placeholders = ", ".join(["%s"] * len(fields))
            sql = f"INSERT INTO {_q(connection, meta.db_table)} ({columns}) VALUES ({placeholders})"
            if connection.vendor == "postgresql":
                sql += f" RETURNING {_q(connection, meta.pk.column)}"
            _sql_cache[key] = (sql, fields)
    return _sql_cache[key]


def insert(instance: models.Model) -> None:
    """Save a new ``instance`` (a token row with an auto-increment key) with one INSERT, as
    ``save()`` does: ``pre_save``/``post_save`` sent, each field's ``pre_save()`` (``auto_now``,
    DOT's token checksum) applied, the new key set on ``instance``."""
    model = type(instance)
    alias = router.db_for_write(model, instance=instance)
    prepared = _insert_sql(alias, model) if supported(alias) and instance.pk is None else None
    if prepared is None:
        instance.save()
        return
    sql, fields = prepared
    connection = connections[alias]
    pre_save.send(sender=model, instance=instance, raw=False, using=alias, update_fields=None)
    params = [f.get_db_prep_save(f.pre_save(instance, True), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        pk = cursor.fetchone()[0] if connection.vendor == "postgresql" else cursor.lastrowid
    instance.pk = pk
    post_save.send(sender=model, instance=instance, created=True, update_fields=None, raw=False, using=alias)
