"""A django-axes handler for ``AXES_HANDLER = "oidc_provider_ext.contrib.axes.AxesHandler"``:
axes' database handler (same tables, same lockouts), without its bookkeeping on a successful
sign-in when there is nothing to undo.

On every successful sign-in axes' handler deletes the expired failure records of everybody (the
cool-off clean-up) and, with ``AXES_RESET_ON_SUCCESS``, this (username, address) pair's records:
each a SELECT and a transaction (empty when there was nothing), four to six statements per
sign-in. This handler skips both when the same request already read the pair's failure count as 0
before the password was checked (axes' backend asks before any password is tried), and there is no
access log to write (``AXES_DISABLE_ACCESS_LOG``):

- nothing unexpired to reset: the lockout counts only records newer than the cool-off, and there
  were none. Expired ones are deleted by the clean-up every failed sign-in runs first (axes), and
  by ``axes_reset``;
- a failure of the same pair recorded by a concurrent request after that read stays counted (axes
  would have deleted it): never fewer failures than axes counts, so lockouts are not weakened.

In every other case (failures to reset, the count not read in this request, another username,
the access log on) it is axes' own handler.

The failure count itself (asked before every password is checked) is axes' query, written once:
for each of axes' lockout parameter sets (``get_client_parameters``, the same username, address and
user agent), ``SUM(failures_since_start)`` of the records matching every value (``IS NULL`` for a
missing one, as the ORM's ``filter(x=None)``) newer than axes' cool-off threshold
(``get_cool_off_threshold``), and the largest of those sums. The ORM compiles that aggregate again
on every sign-in: ~0.5–0.8 ms of CPU on PostgreSQL against ~0.15 ms for the same SQL on a cursor
(docs/performance.md). Values go through the fields' ``get_db_prep_value`` as the ORM's do, and
only as bound parameters. ``tests/test_throttle.py`` checks it against axes' own count for each
lockout setting. A database vendor the SQL is not tested on (internal/lookups.py), or a subclass
that chooses its attempts itself, gets axes' ORM query.
"""

from __future__ import annotations

import logging

from axes.attempts import get_cool_off_threshold
from axes.conf import settings as axes_settings
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_parameters, get_client_username, get_credentials
from axes.models import AccessAttempt
from django.db import connections, router

from oidc_provider_ext.internal import lookups

log = logging.getLogger(__name__)

# On the request: (username, failure count) as axes' lockout check last read them.
FAILURES_READ = "oidc_axes_failures_read"


_failures_sql: dict[tuple, str] = {}


def _failures_statement(alias: str, names: tuple[tuple[str, bool], ...], cool_off: bool) -> str:
    """``SELECT SUM(failures_since_start)`` of the attempts with each ``(name, is_null)`` equal to
    its ``%s`` (or NULL), newer than a ``%s`` threshold if ``cool_off``: axes' aggregate."""
    key = (alias, names, cool_off)
    if key not in _failures_sql:
        q = connections[alias].ops.quote_name
        where = [
            f"{q(lookups.column(AccessAttempt, name))} {'IS NULL' if is_null else '= %s'}"
            for name, is_null in names
        ]
        if cool_off:
            where.append(f"{q(lookups.column(AccessAttempt, 'attempt_time'))} >= %s")
        total = q(lookups.column(AccessAttempt, "failures_since_start"))
        table = q(AccessAttempt._meta.db_table)
        conditions = " AND ".join(where) or "1 = 1"
        _failures_sql[key] = f"SELECT SUM({total}) FROM {table} WHERE {conditions}"
    return _failures_sql[key]


class AxesHandler(AxesDatabaseHandler):
    def _count_failures(self, request, credentials: dict | None) -> int | None:
        """axes' ``get_failures`` as written-once SQL; None where it must be axes' own query."""
        alias = router.db_for_read(AccessAttempt)
        own_attempts = (
            type(self).get_user_attempts is AxesDatabaseHandler.get_user_attempts
            and type(self).filter_user_attempts is AxesDatabaseHandler.filter_user_attempts
        )
        if request is None or not own_attempts or not lookups.supported_vendor(alias):
            return None
        parameters = get_client_parameters(
            get_client_username(request, credentials),
            request.axes_ip_address,
            request.axes_user_agent,
            request,
            credentials,
        )
        if not parameters:
            return None  # axes' max() of nothing: its own error
        cool_off = axes_settings.AXES_COOLOFF_TIME is not None
        threshold = get_cool_off_threshold(request) if cool_off else None
        connection = connections[alias]
        counts = []
        with connection.cursor() as cursor:
            for filter_kwargs in parameters:
                names = tuple((name, value is None) for name, value in filter_kwargs.items())
                params = [
                    lookups.prep(AccessAttempt, name, value, connection)
                    for name, value in filter_kwargs.items()
                    if value is not None
                ]
                if cool_off:
                    params.append(lookups.prep(AccessAttempt, "attempt_time", threshold, connection))
                cursor.execute(_failures_statement(alias, names, cool_off), params)
                counts.append(cursor.fetchone()[0] or 0)
        return max(counts)

    def get_failures(self, request, credentials: dict | None = None) -> int:
        failures = self._count_failures(request, credentials)
        if failures is None:
            failures = super().get_failures(request, credentials)
        if request is not None:
            setattr(request, FAILURES_READ, (get_client_username(request, credentials), failures))
        return failures

    def user_logged_in(self, sender, request, user, **kwargs) -> None:
        read = getattr(request, FAILURES_READ, None)
        if (
            axes_settings.AXES_DISABLE_ACCESS_LOG
            and read is not None
            and read == (get_client_username(request, get_credentials(user.get_username())), 0)
        ):
            log.debug("AXES: no failed attempts to reset for this sign-in")
            return
        super().user_logged_in(sender, request, user, **kwargs)
