"""OP sessions: created on every sign-in, remembered in the browser's Django session, ended by
any sign-out (tokens revoked, clients told by Back-Channel Logout). Private: the public pieces are
``oidc_provider_ext.adapter.end_access`` and ``oidc_provider_ext.middleware``.

The Django session carries a small copy (sid, auth_time, acr, amr) per tenant so the
authorization endpoint decides ``prompt``/``max_age`` without reading the row; the ``OPSession``
row is the server-side record tokens and logout refer to, and the authority on whether the sign-in
still stands: once it is ended (sign-out on another device, an operator, the user's deactivation,
the end of a tenant membership) the browser's copy is dropped on its next request
(:func:`browser_entries`), and a browser left with none is signed out. A session for tenant A never
stands in for tenant B: each tenant has its own entry.

That check is one statement per request of a signed-in browser; with
``oidc_provider_ext.backends.ModelBackend`` it reads the user's row as well, which Django then loads
``request.user`` from (and verifies as its own), instead of a statement of its own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import logout as django_logout
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.core.exceptions import ValidationError
from django.db import connections, router, transaction
from django.db.models import BooleanField, ExpressionWrapper, Q
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils import timezone

from oidc_provider_ext import acr
from oidc_provider_ext.adapter import MemberHint, get_adapter
from oidc_provider_ext.models import AuthorizationGrant, BackchannelDelivery, ClientProfile, OPSession
from oidc_provider_ext.tokens import subject_for

from . import backchannel

SESSION_KEY = "oidc_op_sessions"
LOGIN_TENANT = "oidc_login_tenant"  # request attribute: the tenant a sign-in page was scoped to
NO_TENANT = ""
_VERIFIED = "_oidc_op_sessions"  # request attribute: this request's verified entries
_MEMBERS_READ = "_oidc_op_session_members"  # request attribute: (user pk, {tenant: member?})


@dataclass(frozen=True)
class CurrentSession:
    id: int
    sid: str
    auth_time: int
    acr: str
    amr: list[str]


def browser_entries(request: HttpRequest) -> dict[str, dict]:
    """This browser's live OP sessions by tenant code: one query per request, none without any.

    Entries whose OP session was ended elsewhere are dropped from the browser's session; when none
    is left, the browser is signed out of Django as well (that is what ending its session meant).

    When the session was signed in with ``oidc_provider_ext.backends.ModelBackend`` (or a subclass),
    that query reads the user's row too and hands it to the backend while ``request.user`` is
    loaded, so Django's own checks (session auth hash, ``is_active``) run on it: the request reads
    the user and its OP sessions in one statement instead of two (:func:`_read_with_user`).
    """
    verified = getattr(request, _VERIFIED, None)
    if verified is not None:
        return verified
    entries = request.session.get(SESSION_KEY, {})
    ids = [entry["id"] for entry in entries.values()]
    # With the user's row, request.user loaded from it, if the session's backend takes it.
    rows = _read_with_user(request, ids) if ids else None
    if ids and not request.user.is_authenticated:
        entries = {}
    elif ids:
        if rows is None:
            rows = _live_with_second_factor(ids, request.user.pk)
        if rows is None:
            rows = _live_by_orm(request.user, ids)
        # An entry is live while its row is, and still for the tenant the browser files it under:
        # a sign-in rescoped to another tenant meanwhile (two tabs at the tenant chooser, a replayed
        # signed cookie) is not a sign-in to the tenant the entry names.
        filed_under = {entry["id"]: tenant for tenant, entry in entries.items()}
        live = {pk for pk, _enrolled, _member, tenant in rows if filed_under.get(pk) == tenant}
        if rows and rows[0][1] is not None:
            # The same statement answered whether the user has a second factor (the authorization
            # endpoint asks next: adapter.minimum_acr): one round trip for both.
            from . import factors

            setattr(request, factors.SECOND_FACTOR_READ, (request.user.pk, rows[0][1]))
        # ... and whether the user is still a member of each live session's tenant (the default
        # adapter.is_member_of, which the authorization endpoint asks next: may_use_client()), filed
        # under the tenant the answer is about: the OP session row's, which is not always the one
        # the browser files the session under (two tabs rescoping one sign-in at once, a replayed
        # signed cookie).
        members = {tenant: member for _pk, _enrolled, member, tenant in rows if member is not None}
        setattr(request, _MEMBERS_READ, (request.user.pk, members))
        if len(live) < len(ids):
            entries = {tenant: entry for tenant, entry in entries.items() if entry["id"] in live}
            if entries:
                request.session[SESSION_KEY] = entries
            else:
                django_logout(request)
    setattr(request, _VERIFIED, entries)
    return entries


LiveRow = tuple[int, bool | None, bool | None, str]


def _read_with_user(request: HttpRequest, ids: list[int]) -> list[LiveRow] | None:
    """The OP-session rows of :func:`_live_with_second_factor` read in one statement with the row
    of the user the session names, ``request.user`` loaded while that row is handed to the backend
    (backends.handing_over: Django verifies it as any other). Only when the session's backend is
    ``oidc_provider_ext.backends.ModelBackend`` (or a subclass, and configured), the user model
    lives on the OP sessions' database and the SQL can be written; otherwise None and nothing read
    (the caller takes the two statements). None too when ``request.user`` is not that user."""
    from django.contrib.auth import BACKEND_SESSION_KEY, get_user_model, load_backend
    from django.contrib.auth import SESSION_KEY as USER_KEY

    from oidc_provider_ext import backends

    path = request.session.get(BACKEND_SESSION_KEY)
    if path not in settings.AUTHENTICATION_BACKENDS or not isinstance(
        load_backend(path), backends.ModelBackend
    ):
        return None
    user_model = get_user_model()
    if router.db_for_read(user_model) != router.db_for_read(OPSession):
        return None
    try:
        user_pk = user_model._meta.pk.to_python(request.session[USER_KEY])
    except (KeyError, ValidationError):
        return None
    read = _live_read(ids, user_pk, user_model)
    if read is None:
        return None
    user, rows = read
    with backends.handing_over(user):
        same = request.user.is_authenticated and request.user.pk == user_pk
    return rows if same else None


# SQL, the user's attnames and converters per vendor, factor registry, number of ids and user
# model; None where it cannot be written.
_live_sql: dict[tuple, tuple[str, list[str], list] | None] = {}


def _live_with_second_factor(ids: list[int], user_pk) -> list[LiveRow] | None:
    """``(id, the user has a second factor, the user is an active member of the session's tenant,
    active too, that tenant)`` of those of ``ids`` that are ``user_pk``'s, not ended and not
    expired: the ORM query of :func:`_live_by_orm` as SQL written once per vendor and factor
    registry (factors.enrolled_sql), None where that cannot be written (then the ORM). The
    membership is None for a session without a tenant."""
    read = _live_read(ids, user_pk)
    return None if read is None else read[1]


def _live_statement(connection, condition: str, count: int, user_model) -> tuple[str, list[str], list] | None:
    """The SQL of :func:`_live_read` for ``count`` ids, with the user's columns and their converters
    when ``user_model`` is given; None where it cannot be written (the user model's: multi-table
    inheritance, a key to another column)."""
    from oidc_provider_ext.models.grants import tenant_member_sql

    from .lookups import _converter, _fields, column, null_or_later

    user_fields: list = []
    if user_model is not None:
        found = _fields(user_model)
        if found is None or OPSession._meta.get_field("user").target_field != user_model._meta.pk:
            return None
        user_fields = found
    q = connection.ops.quote_name
    pk, user, ended, expires, tenant = (
        q(column(OPSession, name)) for name in ("pk", "user", "ended", "expires", "tenant")
    )
    member = tenant_member_sql(q, f"s.{user}", f"s.{tenant}")
    columns = (
        f"s.{pk}, CASE WHEN {condition} THEN 1 ELSE 0 END,"
        f" CASE WHEN s.{tenant} = %s THEN NULL WHEN {member} THEN 1 ELSE 0 END, s.{tenant}"
    )
    live = (
        f"s.{pk} IN ({', '.join(['%s'] * count)}) AND s.{ended} IS NULL AND {null_or_later(f's.{expires}')}"
    )
    sessions = q(OPSession._meta.db_table)
    if user_model is None:
        sql = f"SELECT {columns} FROM {sessions} s WHERE {live} AND s.{user} = %s"
    else:
        user_pk_column = f"u.{q(column(user_model, 'pk'))}"
        sql = (
            f"SELECT {', '.join(f'u.{q(column(user_model, f.name))}' for f in user_fields)}, {columns}"
            f" FROM {q(user_model._meta.db_table)} u LEFT JOIN {sessions} s"
            f" ON s.{user} = {user_pk_column} AND {live} WHERE {user_pk_column} = %s"
        )
    return sql, [field.attname for field in user_fields], [_converter(field) for field in user_fields]


def _live_read(ids: list[int], user_pk, user_model=None) -> tuple[Any, list[LiveRow]] | None:
    """:func:`_live_with_second_factor`'s statement; with ``user_model``, the same statement joined
    to the user's row (``FROM <users> u LEFT JOIN <OP sessions> s ON ... WHERE u.pk = %s``):
    ``(the user or None, the rows)``. None where the SQL cannot be written (the factors', the user
    model's: multi-table inheritance, a key to another column)."""
    from . import factors
    from .lookups import prep, reading_cursor

    alias = router.db_for_read(OPSession)
    connection = connections[alias]
    enrolled = factors.enrolled_sql(connection)
    if enrolled is None or not all(isinstance(pk, int) for pk in ids):
        return None
    condition, fields = enrolled
    key = (connection.vendor, condition, len(ids), user_model and user_model._meta.label)
    if key not in _live_sql:
        _live_sql[key] = _live_statement(connection, condition, len(ids), user_model)
    statement = _live_sql[key]
    if statement is None:
        return None
    sql, attnames, converters = statement
    params = [field.get_db_prep_value(user_pk, connection) for field in fields]
    params.append(NO_TENANT)
    params += ids
    params.append(prep(OPSession, "expires", timezone.now(), connection))
    params.append(prep(OPSession, "user", user_pk, connection))
    with reading_cursor(connection) as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    user_row = None
    if user_model is not None:
        # One row per live session, or one with NULLs for the session's columns when none is.
        if found:
            values = [
                value if convert is None else convert(value, connection)
                for value, convert in zip(found[0][: len(attnames)], converters, strict=True)
            ]
            user_row = user_model.from_db(alias, attnames, values)
        found = [row[len(attnames) :] for row in found if row[len(attnames)] is not None]
    rows: list[LiveRow] = [
        (row[0], bool(row[1]), None if row[2] is None else bool(row[2]), row[3]) for row in found
    ]
    return user_row, rows


def _live_by_orm(user, ids: list[int]) -> list[LiveRow]:
    """:func:`_live_with_second_factor` as an ORM query; the second-factor answer is None when no
    factor can say "enrolled" as a query (has_second_factor then asks the factors), and the
    membership is not read (adapter.is_member_of then asks)."""
    from . import factors

    query = OPSession.objects.filter(pk__in=ids, user=user.pk, ended__isnull=True).exclude(
        expires__lte=timezone.now()
    )
    condition = factors.enrolled_condition(user)
    if condition is None:
        return [(pk, None, None, tenant) for pk, tenant in query.values_list("pk", "tenant")]
    second_factor = ExpressionWrapper(condition, output_field=BooleanField())
    rows = query.annotate(second_factor=second_factor).values_list("pk", "second_factor", "tenant")
    return [(pk, bool(enrolled), None, tenant) for pk, enrolled, tenant in rows]


def may_use_client(request: HttpRequest, application, tenant: str) -> bool:
    """``adapter.may_use_client`` for the signed-in user of ``request``, handed as ``member_hint``
    the membership this request's OP-session check read for ``tenant`` (:func:`browser_entries`),
    if it did; otherwise ``adapter.is_member_of`` asks. Only the default ``is_member_of`` uses it."""
    user = request.user
    hint: dict[str, Any] = {}
    read = getattr(request, _MEMBERS_READ, None)
    if tenant and read is not None and read[0] == user.pk and tenant in read[1]:
        hint["member_hint"] = MemberHint(user.pk, tenant, read[1][tenant])
    return get_adapter().may_use_client(user, application, tenant, **hint)


def current(request: HttpRequest, tenant: str = NO_TENANT) -> CurrentSession | None:
    """The signed-in user's live OP session for ``tenant`` (a code, "" for none) in this browser."""
    entry = browser_entries(request).get(tenant)
    return CurrentSession(**entry) if entry else None


def _remember(request: HttpRequest, tenant: str, entry: CurrentSession) -> CurrentSession:
    sessions = {**request.session.get(SESSION_KEY, {}), tenant: asdict(entry)}
    request.session[SESSION_KEY] = sessions
    setattr(request, _VERIFIED, sessions)
    return entry


def start(request: HttpRequest, user, tenant: str = NO_TENANT) -> CurrentSession:
    """A new OP session for a sign-in that just happened."""
    acr, amr = get_adapter().get_authentication_context(request, user)
    from .lookups import insert

    op_session = OPSession(
        user=user,
        tenant=tenant,
        auth_time=timezone.now().replace(microsecond=0),
        acr=acr,
        amr=list(amr),
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:255],
        expires=request.session.get_expiry_date(),
    )
    insert(op_session)  # objects.create(), its INSERT written once
    entry = CurrentSession(
        id=op_session.pk,
        sid=op_session.sid,
        auth_time=int(op_session.auth_time.timestamp()),
        acr=op_session.acr,
        amr=list(op_session.amr),
    )
    return _remember(request, tenant, entry)


def rescope(request: HttpRequest, tenant: str, source: CurrentSession) -> CurrentSession:
    """Give the unscoped sign-in that just happened for this request to ``tenant``.

    Used when the tenant is only known after the sign-in (the user's only organisation, or the one
    picked on the chooser page). One sign-in is one OP session: the session moves to the tenant
    rather than a second one being opened beside it, so one logout ends it.
    """
    OPSession.objects.filter(pk=source.id).update(tenant=tenant)
    sessions = {t: e for t, e in request.session.get(SESSION_KEY, {}).items() if e["id"] != source.id}
    request.session[SESSION_KEY] = sessions
    return _remember(request, tenant, source)


def step_up(request: HttpRequest, tenant: str, session: CurrentSession, added: list[str]) -> CurrentSession:
    """The user of ``session`` just passed another factor (adding the amr values ``added``): the
    same OP session (one sign-in, one sid, one logout) gains the methods, its acr is recomputed and
    its auth_time is now, the time of the last factor (OIDC Core 2: when the End-User
    authenticated; the step-up is an authentication)."""
    amr = acr.amr_with_mfa([*session.amr, *added])
    level = acr.acr_for(amr)
    auth_time = timezone.now().replace(microsecond=0)
    OPSession.objects.filter(pk=session.id, ended__isnull=True).update(
        acr=level, amr=amr, auth_time=auth_time
    )
    entry = CurrentSession(
        id=session.id, sid=session.sid, auth_time=int(auth_time.timestamp()), acr=level, amr=amr
    )
    return _remember(request, tenant, entry)


def without_methods(request: HttpRequest, methods: set[str]) -> None:
    """This browser's sessions no longer count ``methods`` (a factor the user just removed): their
    acr is recomputed without it, here and in the database."""
    for tenant, current_entry in list(browser_entries(request).items()):
        session = CurrentSession(**current_entry)
        if not methods.intersection(session.amr):
            continue
        amr = acr.amr_with_mfa([method for method in session.amr if method not in methods])
        level = acr.acr_for(amr)
        OPSession.objects.filter(pk=session.id).update(acr=level, amr=amr)
        _remember(
            request,
            tenant,
            CurrentSession(id=session.id, sid=session.sid, auth_time=session.auth_time, acr=level, amr=amr),
        )


@receiver(user_logged_in)
def _on_login(sender, request, user, **kwargs):
    # Every sign-in path (our login page, the admin's, django.contrib.auth's) starts an OP
    # session, so auth_time is when the user really authenticated, never last_login. The browser
    # session's own expiry comes first: the OP session expires with it.
    if request is not None and hasattr(request, "session"):
        _restore_session_expiry(request.session)
        start(request, user, tenant=getattr(request, LOGIN_TENANT, NO_TENANT))


# Set by the authorization endpoint on a session that holds only pending authorization requests
# of an anonymous browser: it expires with them (AUTHORIZE_REQUEST_MAX_AGE_SECONDS).
PENDING_ONLY_KEY = "oidc_pending_only"
# "oidc_webauthn": a passkey sign-in's challenge (internal/passkeys.py).
PENDING_ONLY_KEYS = {"oidc_pending_authorizations", PENDING_ONLY_KEY, "_session_expiry", "oidc_webauthn"}


def _restore_session_expiry(session) -> None:
    # A signed-in session follows the site's own expiry policy again (SESSION_COOKIE_AGE, ...).
    if session.pop(PENDING_ONLY_KEY, False):
        session.set_expiry(None)


@receiver(user_logged_out)
def _on_logout(sender, request, user, **kwargs):
    # Any sign-out (end-session endpoint, the admin's, django.contrib.auth's) ends the browser's
    # OP sessions: their tokens are revoked and the clients are told (Back-Channel Logout).
    if request is None or not hasattr(request, "session"):
        return
    ids = [entry["id"] for entry in request.session.get(SESSION_KEY, {}).values()]
    if ids:
        end(list(OPSession.objects.filter(pk__in=ids)))


def forget(request: HttpRequest, op_session_id: int) -> None:
    """Drop one OP session from this browser (the others, for other tenants, stay)."""
    sessions = {t: e for t, e in request.session.get(SESSION_KEY, {}).items() if e["id"] != op_session_id}
    request.session[SESSION_KEY] = sessions
    setattr(request, _VERIFIED, sessions)


def end_access(*, user=None, tenant: str | None = None) -> None:
    """The user (or every member of ``tenant``, or one user in one tenant) may no longer use what
    they were given: end their OP sessions (their clients are told, Back-Channel Logout) and revoke
    every grant's tokens, offline access included. Called when a user is deactivated, a membership
    ends or a tenant is disabled (internal.receivers); a site whose adapter serves its own
    organisation model calls it when a membership ends there."""
    if user is None and tenant is None:
        raise ValueError("end_access needs a user, a tenant or both.")
    scope = Q()
    if user is not None:
        scope &= Q(user=user)
    if tenant is not None:
        scope &= Q(tenant=tenant)
    end(list(OPSession.objects.filter(scope, ended__isnull=True)))
    AuthorizationGrant.objects.filter(scope).revoke_tokens()


# --- ending OP sessions ------------------------------------------------------------------------
# OIDC Core 11: tokens issued in a session end with it, except the refresh tokens of an
# ``offline_access`` grant, whose whole point is to outlive the session.


def end(op_sessions: list[OPSession]) -> None:
    """Mark sessions ended, revoke their tokens and queue back-channel logout tokens.

    The deliveries are recorded in the same transaction and sent after it commits, by a worker
    pool or the retry command (internal/backchannel.py): the user's request never waits for an RP.
    """
    now = timezone.now()
    live = [s for s in op_sessions if s.ended is None]
    if not live:
        return
    with transaction.atomic():
        OPSession.objects.filter(pk__in=[s.pk for s in live]).update(ended=now)
        in_sessions = AuthorizationGrant.objects.filter(op_session__in=live)
        # Codes not yet redeemed die with the session; access tokens too; the refresh tokens of an
        # offline_access grant survive it (OIDC Core 11), everything else is revoked. A code being
        # redeemed right now either loses to this (its row is expired first) or wins, and then it
        # is redeemed before the clients to tell are read below.
        in_sessions.revoke_tokens(keep_offline_access=True)
        grants = list(in_sessions.filter(redeemed__isnull=False))
        backchannel.record(_plan_deliveries(live, grants))


def _plan_deliveries(
    op_sessions: list[OPSession], grants: list[AuthorizationGrant]
) -> list[BackchannelDelivery]:
    """One delivery per (session, client that received tokens in it, with a back-channel URI)."""
    pairs = {(grant.op_session_id, grant.application_id) for grant in grants}
    profiles = {
        profile.application_id: profile
        for profile in ClientProfile.objects.filter(
            application_id__in={app for _session, app in pairs}
        ).exclude(backchannel_logout_uri="")
    }
    by_id: dict[Any, OPSession] = {op_session.pk: op_session for op_session in op_sessions}
    return [
        BackchannelDelivery.objects.create(
            op_session_id=session_id,
            application_id=app_id,
            uri=profiles[app_id].backchannel_logout_uri,
            subject=subject_for(by_id[session_id].user),
            sid=by_id[session_id].sid,
        )
        for session_id, app_id in sorted(pairs)
        if app_id in profiles
    ]
