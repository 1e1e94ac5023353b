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
"""

from __future__ import annotations

import datetime
import uuid
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connections, models
from django.utils.dateparse import parse_datetime

#: Vendors whose cursors, placeholders (``%s``) and type adapters the lookups are tested on.
VENDORS = frozenset({"sqlite", "postgresql"})

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


def _database_timezone(alias: str) -> datetime.tzinfo:
    # Django stores aware datetimes in UTC unless the database has its own TIME_ZONE (settings).
    name = settings.DATABASES[alias].get("TIME_ZONE") or "UTC"
    return datetime.UTC if name == "UTC" else zoneinfo.ZoneInfo(name)


def _converter(field: models.Field) -> Converter | None:
    """What turns the value the cursor gives for ``field`` into the one the ORM would give."""
    convert: Converter | None = None
    if isinstance(field, models.DateTimeField):

        def convert(value, connection):
            if isinstance(value, str):  # a driver without declared-type conversion
                value = parse_datetime(value)
            if value is not None and settings.USE_TZ and value.tzinfo is None:
                value = value.replace(tzinfo=_database_timezone(connection.alias))
            return value

    elif isinstance(field, models.UUIDField):

        def convert(value, connection):
            return value if value is None or isinstance(value, uuid.UUID) else field.to_python(value)

    elif isinstance(field, models.DecimalField):

        def convert(value, connection):
            return value if value is None or isinstance(value, Decimal) else field.to_python(value)

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
    its value is converted as ``output_field``'s and set on the base object as ``name``."""

    name: str
    sql: Callable[[Callable[[str], str], str], str]
    output_field: models.Field | None = None


@dataclass
class _Compiled:
    sql: str
    exists_sql: str
    attnames: list[list[str]]  # per model: the attnames of its columns, in select order
    converters: list[list[Converter | None]]
    extra_converters: list[Converter | None]


class Lookup:
    """``SELECT`` every column of ``model`` and of the models its foreign keys ``joins`` lead to
    (``LEFT JOIN``: a null key gives None), plus ``extras``, ``WHERE`` each of ``by`` equals a
    bound parameter; at most one row (the caller looks up a unique value). ``by`` names fields of
    ``model``, or ``join__field`` for a field of a joined model.

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
        extras: Sequence[Extra] = (),
    ) -> None:
        self.model = model
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
        self.extras = list(extras)
        self._fields = [_fields(m) for m in self.models]
        self._compiled: dict[str, _Compiled] = {}

    def supported(self, alias: str = "default") -> bool:
        """Whether :meth:`one` can answer on database ``alias``; if not, use the ORM."""
        if connections[alias].vendor not in VENDORS or any(f is None for f in self._fields):
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
            f"LEFT OUTER JOIN {q(_related(join)._meta.db_table)} {alias} "
            f"ON {aliases[0]}.{q(join.column)} = {alias}.{q(join.target_field.column)}"
            for join, alias in zip(self.joins, aliases[1:], strict=True)
        ]
        where = " AND ".join(f"{aliases[index]}.{q(field.column)} = %s" for index, field in self.by)
        rest = [f"FROM {q(self.model._meta.db_table)} {aliases[0]}", *joins, f"WHERE {where}", "LIMIT 1"]
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
            for (_index, field), value in zip(self.by, params, strict=True)
        ]
        with connection.cursor() as cursor:
            cursor.execute(sql, values)
            return cursor.fetchone()

    def exists(self, *params: Any, using: str = "default") -> bool:
        """Whether a row's ``by`` fields equal ``params``."""
        return self._fetch(self.compiled(using).exists_sql, params, connections[using]) is not None

    def one(self, *params: Any, using: str = "default") -> models.Model | None:
        """The row whose ``by`` fields equal ``params``, as objects, or None."""
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
            setattr(base, join.name, related)  # the forward descriptor caches it, as select_related
        for extra, value, convert in zip(self.extras, row[start:], compiled.extra_converters, strict=True):
            setattr(base, extra.name, value if convert is None else convert(value, connection))
        return base
