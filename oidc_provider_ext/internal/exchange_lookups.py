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

from oidc_provider_ext.models import AuthorizationGrant, OPSession

_sql_cache: dict[tuple, Any] = {}
# Prefix of the grant's columns in the row that carries the grant's user: never a user column.
_GRANT = "oidc_grant__"
_LIVE = f"{_GRANT}op_session_live"


def supported(alias: str) -> bool:
    return connections[alias].vendor in ("sqlite", "postgresql")


def _q(connection, name: str) -> str:
    return connection.ops.quote_name(name)


def _db_timezone(alias: str) -> datetime.tzinfo:
    # Django stores datetimes in UTC unless the database's TIME_ZONE setting says otherwise
    # (databases without time zone support, here SQLite).
    name = settings.DATABASES[alias].get("TIME_ZONE")
    return ZoneInfo(name) if name else datetime.UTC


def _converter(field: models.Field, alias: str):
    """How a value of one of this app's fields, as the database driver returns it, becomes the
    Python value the ORM would give (the backends' own converters are not public API)."""
    connection = connections[alias]
    if isinstance(field, models.JSONField):
        return lambda value: field.from_db_value(value, None, connection)
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
    raise TypeError(f"no converter for {field!r}")  # a new field type here: write one


# --- the code's grant, with its user and whether its OP session is live ---------------------------


def _grant_by_code_sql(alias: str):
    user_model = get_user_model()
    key = ("grant_by_code", alias, user_model._meta.label)
    if key not in _sql_cache:
        connection = connections[alias]
        grant_fields = AuthorizationGrant._meta.concrete_fields
        users, grants, sessions = user_model._meta, AuthorizationGrant._meta, OPSession._meta

        def column(meta, name: str) -> str:
            return _q(connection, meta.get_field(name).column)

        columns = [f"u.{_q(connection, f.column)}" for f in users.concrete_fields]
        columns += [
            f"g.{_q(connection, f.column)} AS {_q(connection, _GRANT + f.column)}" for f in grant_fields
        ]
        session_pk = _q(connection, sessions.pk.column)
        columns.append(
            f"CASE WHEN s.{session_pk} IS NOT NULL AND s.{column(sessions, 'ended')} IS NULL"
            f" THEN 1 ELSE 0 END AS {_q(connection, _LIVE)}"
        )
        sql = (
            f"SELECT {', '.join(columns)} FROM {_q(connection, grants.db_table)} g"
            f" INNER JOIN {_q(connection, users.db_table)} u"
            f" ON u.{_q(connection, users.pk.column)} = g.{column(grants, 'user')}"
            f" LEFT OUTER JOIN {_q(connection, sessions.db_table)} s"
            f" ON s.{session_pk} = g.{column(grants, 'op_session')}"
            f" WHERE g.{column(grants, 'code_checksum')} = %s"
        )
        fields = [(f.attname, _GRANT + f.column, _converter(f, alias)) for f in grant_fields]
        _sql_cache[key] = (sql, fields)
    return _sql_cache[key]


def grant_by_code(code_checksum: str) -> tuple[AuthorizationGrant | None, bool]:
    """The grant whose code has ``code_checksum`` (its ``user`` loaded), and whether the OP
    session the code was issued in still exists and has not ended: one statement."""
    alias = router.db_for_read(AuthorizationGrant)
    if not supported(alias):
        grant = (
            AuthorizationGrant.objects.using(alias)
            .select_related("user", "op_session")
            .filter(code_checksum=code_checksum)
            .first()
        )
        if grant is None:
            return None, False
        return grant, grant.op_session is not None and grant.op_session.ended is None
    sql, fields = _grant_by_code_sql(alias)
    users = get_user_model()._meta.default_manager
    user = next(iter(users.raw(sql, [code_checksum], using=alias)), None)
    if user is None:
        return None, False
    # raw() left the grant's columns on the user as attributes: take them off.
    row = vars(user)
    live = bool(row.pop(_LIVE))
    values = []
    for _attname, column, convert in fields:
        value = row.pop(column)
        values.append(value if convert is None else convert(value))
    grant = AuthorizationGrant.from_db(alias, [attname for attname, _c, _v in fields], values)
    grant.user = user
    return grant, live


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
