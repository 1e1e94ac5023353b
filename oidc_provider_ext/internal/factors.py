"""Second factors: the registry the sign-in challenge and the step-up page ask, and the one way to
take a user's factors away (:func:`reset_factors`).

A factor is any object with the :class:`Factor` shape. The authenticator app (:class:`TOTPFactor`)
and recovery codes (:class:`RecoveryCodeFactor`) are built in; another module adds its own with
:func:`register` (the passkey factor, ``internal/passkeys.py``) and, if it stores anything per user,
a function with :func:`register_reset` so that :func:`reset_factors` removes it too.

A challenge page POSTs ``factor=<key>`` plus the factor's own fields; the view calls ``verify`` on
the factor named (if it is enrolled and allowed there) and trusts nothing else the browser sends.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Iterable
from functools import reduce
from typing import Any, Protocol

from django.contrib.auth import get_user_model
from django.db import connections, router
from django.db.models import Exists, Model, Q, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from oidc_provider_ext import acr
from oidc_provider_ext.models import OPSession, TOTPDevice

from . import passkeys, recovery_codes, totp

log = logging.getLogger(__name__)


class Factor(Protocol):
    key: str  # "totp", "recovery", "passkey"
    label: str  # translated, e.g. _("Authenticator app")
    template_name: str  # partial included in the challenge page (form or JS widget)

    def enrolled(self, user) -> bool: ...

    # Optional: ``enrolled_query(user) -> QuerySet``, non-empty exactly when ``enrolled(user)``;
    # has_second_factor folds these into one query.

    def challenge_context(self, request: HttpRequest, user) -> dict: ...

    def verify(self, request: HttpRequest, user) -> list[str] | None: ...


# The amr values (RFC 8176) a factor adds when it succeeds, when it does not say so itself
# (an optional ``provides`` attribute): what decides whether it can reach a requested acr.
_PROVIDES: dict[str, tuple[str, ...]] = {
    "totp": ("otp",),
    "recovery": ("otp",),
    "passkey": ("hwk", "user"),
}


class TOTPFactor:
    key = "totp"
    label = _("Authenticator app")
    template_name = "oidc_provider_ext/factors/totp.html"
    provides = ("otp",)

    def enrolled(self, user) -> bool:
        return self.enrolled_query(user).exists()

    def enrolled_query(self, user) -> QuerySet:
        return TOTPDevice.objects.filter(user=user.pk, confirmed__isnull=False)

    def challenge_context(self, request: HttpRequest, user) -> dict:
        return {}

    def verify(self, request: HttpRequest, user) -> list[str] | None:
        device = totp.confirmed_device(user)
        if device is None or not totp.verify(device, request.POST.get("code", "")):
            return None
        return ["otp"]


class RecoveryCodeFactor:
    key = "recovery"
    label = _("Recovery code")
    template_name = "oidc_provider_ext/factors/recovery.html"
    provides = ("otp",)
    # Only a way back in when the real factor is lost: not a factor of its own (has_second_factor).
    backup = True

    def enrolled(self, user) -> bool:
        return recovery_codes.remaining(user) > 0

    def challenge_context(self, request: HttpRequest, user) -> dict:
        return {}

    def verify(self, request: HttpRequest, user) -> list[str] | None:
        return ["otp"] if recovery_codes.use(user, request.POST.get("code", "")) else None


_registry: dict[str, Any] = {}
_resets: list[Callable[[Any], bool]] = []


def register(factor: Any) -> None:
    """Add (or replace) the factor with ``factor.key``; the challenge page lists them in order."""
    _registry[factor.key] = factor


def register_reset(function: Callable[[Any], bool]) -> None:
    """``function(user)`` removes what a factor stores for ``user``; True if it removed anything."""
    if function not in _resets:
        _resets.append(function)


def _remove_passkeys(user) -> bool:
    return passkeys.delete_for(user) > 0


# In the order the challenge page offers them: the phishing-resistant one first.
register(passkeys.PasskeyFactor())
register(TOTPFactor())
register(RecoveryCodeFactor())
register_reset(_remove_passkeys)
register_reset(totp.remove)
register_reset(recovery_codes.remove)


def get(key: str) -> Any | None:
    return _registry.get(key) if isinstance(key, str) else None


def all_factors() -> list[Any]:
    return list(_registry.values())


def provides(factor: Any) -> tuple[str, ...]:
    return tuple(getattr(factor, "provides", None) or _PROVIDES.get(factor.key, ()))


def enrolled_factors(user) -> list[Any]:
    """The factors ``user`` can use now, in registry order."""
    if not getattr(user, "is_authenticated", False):
        return []
    return [factor for factor in _registry.values() if factor.enrolled(user)]


# Request attribute: (user pk, whether the query part of has_second_factor holds), answered by the
# OP session check of the same request (op_sessions.browser_entries) as part of its own query.
SECOND_FACTOR_READ = "oidc_second_factor_read"


def enrolled_condition(user) -> Q | None:
    """``EXISTS (…) OR EXISTS (…)`` over every factor (not a backup) that gives ``enrolled_query(user)``,
    as a condition any query can carry; None when no factor gives one."""
    queries = [
        factor.enrolled_query(user)
        for factor in _registry.values()
        if not getattr(factor, "backup", False) and hasattr(factor, "enrolled_query")
    ]
    return reduce(operator.or_, (Q(Exists(query)) for query in queries)) if queries else None


def _builtin_enrolled_sql(factor: Any, q: Callable[[str], str]) -> tuple[str, Any] | None:
    """A built-in factor's ``enrolled_query(user)`` as ``EXISTS (...)`` SQL with one ``%s`` (the
    user's key) and the foreign key that prepares it; None for any other class (a subclass may
    override ``enrolled_query``). tests/test_mfa.py compares both answers."""
    from .lookups import column

    model: type[Model]
    if type(factor) is TOTPFactor:
        model, extra = TOTPDevice, f" AND f.{q(column(TOTPDevice, 'confirmed'))} IS NOT NULL"
    elif type(factor) is passkeys.PasskeyFactor:
        model, extra = passkeys.Passkey, ""
    else:
        return None
    user_field = model._meta.get_field("user")
    sql = f"EXISTS (SELECT 1 FROM {q(model._meta.db_table)} f WHERE f.{q(user_field.column)} = %s{extra})"
    return sql, user_field


_enrolled_sql_cache: dict[tuple, Any] = {}


def enrolled_sql(connection) -> tuple[str, list[Any]] | None:
    """:func:`enrolled_condition` as plain SQL written once per vendor and registry (the ORM compiles
    its EXISTS subqueries again on every request): ``(sql, fields)``, one ``%s`` per field, each
    bound to the user's key prepared by that field. None when a factor that answers
    ``enrolled_query`` is not a built-in one, or on a vendor the lookups are not tested on: then
    the ORM's condition."""
    from .lookups import supported_vendor

    if not supported_vendor(connection.alias):
        return None
    factors = tuple(
        f for f in _registry.values() if not getattr(f, "backup", False) and hasattr(f, "enrolled_query")
    )
    key = (connection.vendor, factors)
    if key not in _enrolled_sql_cache:
        parts = [_builtin_enrolled_sql(factor, connection.ops.quote_name) for factor in factors]
        if not parts or any(part is None for part in parts):
            _enrolled_sql_cache[key] = None
        else:
            sql = " OR ".join(f"{part[0]}" for part in parts if part)
            _enrolled_sql_cache[key] = (f"({sql})", [part[1] for part in parts if part])
    return _enrolled_sql_cache[key]


def has_second_factor(user, request: HttpRequest | None = None) -> bool:
    """Whether ``user`` has set up a factor (recovery codes alone do not count: they are its
    backup). Such a user signs in with it every time (adapter.minimum_acr).

    With ``request``: if that request's OP session check already answered it for this user (one
    query for both, :func:`op_sessions.browser_entries`), that answer, read moments before."""
    if not getattr(user, "is_authenticated", False):
        return False
    read = getattr(request, SECOND_FACTOR_READ, None) if request is not None else None
    # Else one query for every factor that can say "enrolled" as a queryset (an optional
    # ``enrolled_query(user)``): EXISTS (...) OR EXISTS (...), not one round trip per factor on every
    # sign-in and authorize. A factor without it is asked with ``enrolled`` as before.
    enrolled = read[1] if read is not None and read[0] == user.pk else _enrolled(user)
    if enrolled:
        return True
    factors = [factor for factor in _registry.values() if not getattr(factor, "backup", False)]
    return any(factor.enrolled(user) for factor in factors if not hasattr(factor, "enrolled_query"))


def read_with_membership(request: HttpRequest, user, tenant_code: str):
    """At a sign-in to a tenant: whether ``user`` has a second factor and whether they are an active
    member of the active tenant ``tenant_code`` (the default ``adapter.is_member_of``), in one
    statement, since the sign-in asks both, one right after the other. The second-factor answer is
    kept on ``request`` for :func:`has_second_factor`; the membership is returned as the
    ``member_hint`` for ``is_member_of``. None, and nothing read, where that SQL cannot be written
    (then each is asked on its own)."""
    from oidc_provider_ext.adapter import MemberHint
    from oidc_provider_ext.models import TenantMembership
    from oidc_provider_ext.models.grants import tenant_member_sql

    from .lookups import prep

    alias = router.db_for_read(get_user_model())
    if router.db_for_read(TenantMembership) != alias:
        return None
    connection = connections[alias]
    prepared = enrolled_sql(connection)
    if prepared is None:
        return None
    condition, fields = prepared
    member = tenant_member_sql(connection.ops.quote_name, "%s", "%s")
    params = [field.get_db_prep_value(user.pk, connection) for field in fields]
    params += [prep(TenantMembership, "user", user.pk, connection), tenant_code]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT CASE WHEN {condition} THEN 1 ELSE 0 END, CASE WHEN {member} THEN 1 ELSE 0 END", params
        )
        enrolled, is_member = cursor.fetchone()
    setattr(request, SECOND_FACTOR_READ, (user.pk, bool(enrolled)))
    return MemberHint(user.pk, tenant_code, bool(is_member))


def _enrolled(user) -> bool:
    """Whether the query part of :func:`has_second_factor` holds: one statement."""
    users = get_user_model()
    alias = router.db_for_read(users)
    connection = connections[alias]
    prepared = enrolled_sql(connection)
    if prepared is None:
        condition = enrolled_condition(user)
        return (
            condition is not None
            and users._default_manager.using(alias).filter(pk=user.pk).filter(condition).exists()
        )
    sql, fields = prepared
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT CASE WHEN {sql} THEN 1 ELSE 0 END",
            [field.get_db_prep_value(user.pk, connection) for field in fields],
        )
        return bool(cursor.fetchone()[0])


def factors_reaching(factors: Iterable[Any], amr: Iterable[str], required: str) -> list[Any]:
    """Those of ``factors`` that, added to a sign-in with ``amr``, reach ``required``."""
    have = list(amr)
    return [factor for factor in factors if acr.satisfies(acr.acr_for([*have, *provides(factor)]), required)]


# --- taking factors away ---------------------------------------------------------------------------


def end_sessions_relying_on(user, methods: Iterable[str], *, keep: Iterable[int] = ()) -> int:
    """End ``user``'s OP sessions whose sign-in used one of ``methods`` (amr values): a session is no
    stronger than its factors, and one that relied on a factor that was just removed (lost, stolen,
    reset by an operator) must not keep satisfying a multi-factor request. Their clients are told
    (Back-Channel Logout); the browsers holding them are signed out on their next request."""
    from . import op_sessions  # op_sessions imports the adapter, which imports this module

    methods = set(methods)
    # In Python: JSON containment is not a lookup every database has (SQLite), and a user has few.
    stale = [
        op_session
        for op_session in OPSession.objects.filter(user=user.pk, ended__isnull=True).exclude(
            pk__in=list(keep)
        )
        if methods.intersection(op_session.amr or ())
    ]
    op_sessions.end(stale)
    return len(stale)


def reset_factors(user) -> bool:
    """Remove every second factor of ``user`` (authenticator app, recovery codes and whatever other
    factors registered a reset) and end the sessions that relied on one. True if anything was
    removed. Callers audit it (the admin action writes a LogEntry)."""
    removed = False
    for function in _resets:
        removed = bool(function(user)) or removed
    methods = {method for factor in _registry.values() for method in provides(factor)}
    ended = end_sessions_relying_on(user, methods)
    log.warning("Second factors of user %s reset; %d session(s) that relied on them ended.", user.pk, ended)
    return removed
