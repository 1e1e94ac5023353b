"""Hot unique lookups compiled to SQL once, then run with new parameters (issue 15).

Building the SQL of a query with joins and subqueries costs Django's ORM ~1–4 ms of CPU per
request (the access token with its client, user and grant: most of a userinfo call), while the
statement itself takes microseconds. A :class:`PreparedLookup` compiles its queryset once per
database connection with a marker in place of the looked-up value, then for each lookup puts the
value in the marker's place, runs the same SQL through the connection's cursor (so the query is
counted and logged like any other) and builds the objects exactly as Django's ``ModelIterable``
does: the model, its ``select_related`` objects and its annotations, with the backend's converters
(JSON, dates).

The memo holds SQL text and the compiler's column map per connection object (one per thread and
database alias), never a row: it is a pure function of the query's shape and the connection.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from django.db import connections, router
from django.db.models import QuerySet
from django.db.models.query import get_related_populators

_MARKER = "\x00oidc-provider-ext-prepared-lookup\x00"


class PreparedLookup:
    """``PreparedLookup(model, build)``: ``build(value)`` returns the queryset of ``model`` for one
    lookup (a filter on ``value`` that does not depend on anything else, such as the time; sliced
    ``[:1]``; no ``prefetch_related``); ``.one(value)`` returns its first object or None, as
    ``next(iter(build(value)), None)`` would."""

    def __init__(self, model, build: Callable[[Any], QuerySet]):
        self._model = model
        self._build = build
        # connection wrapper -> (sql, params, marker position, compiler, populators): one per
        # thread and alias, gone with the connection object
        self._compiled: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _compile(self, connection):
        compiler = self._build(_MARKER).query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()
        positions = [i for i, param in enumerate(params) if param == _MARKER]
        if len(positions) != 1:  # the value must be a parameter, exactly once
            raise ValueError("PreparedLookup: the queryset must use the looked-up value once")
        klass_info, select = compiler.klass_info, compiler.select
        # (django-stubs describe a newer Django; 5.2 takes these three)
        populators = get_related_populators(klass_info, select, connection.alias)  # type: ignore[call-arg]
        return sql, tuple(params), positions[0], compiler, populators

    def one(self, value: str):
        connection = connections[router.db_for_read(self._model)]
        compiled = self._compiled.get(connection)
        if compiled is None:
            compiled = self._compiled[connection] = self._compile(connection)
        sql, params, position, compiler, populators = compiled
        params = params[:position] + (value,) + params[position + 1 :]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        # Django's ModelIterable.__iter__ for one row: converters, the model, select_related
        # objects, annotations.
        (row,) = compiler.results_iter(results=[[row]])
        select, klass_info = compiler.select, compiler.klass_info
        start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        init_list = [column[0].target.attname for column in select[start:end]]
        obj = klass_info["model"].from_db(connection.alias, init_list, row[start:end])
        for populator in populators:
            populator.populate(row, obj)
        for name, index in (compiler.annotation_col_map or {}).items():
            setattr(obj, name, row[index])
        return obj
