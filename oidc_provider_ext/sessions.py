"""OP sessions: created on every sign-in, remembered in the browser's Django session.

The Django session carries a small copy (sid, auth_time, acr, amr) per tenant so the
authorization endpoint decides ``prompt``/``max_age`` without a query; the ``OPSession`` row is the
server-side record tokens and logout refer to. A session for tenant A never stands in for tenant
B: each tenant has its own entry, and signing in to B leaves A's entry in place.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils import timezone

from .adapter import get_adapter
from .models import OPSession

SESSION_KEY = "oidc_op_sessions"
NO_TENANT = ""


@dataclass(frozen=True)
class CurrentSession:
    id: int
    sid: str
    auth_time: int
    acr: str
    amr: list[str]


def current(request: HttpRequest, tenant: str = NO_TENANT) -> CurrentSession | None:
    """The signed-in user's OP session for ``tenant`` (a code, "" for none) in this browser."""
    if not request.user.is_authenticated:
        return None
    entry = request.session.get(SESSION_KEY, {}).get(tenant)
    return CurrentSession(**entry) if entry else None


def _remember(request: HttpRequest, tenant: str, op_session: OPSession) -> CurrentSession:
    entry = CurrentSession(
        id=op_session.pk,
        sid=op_session.sid,
        auth_time=int(op_session.auth_time.timestamp()),
        acr=op_session.acr,
        amr=list(op_session.amr),
    )
    sessions = dict(request.session.get(SESSION_KEY, {}))
    sessions[tenant] = asdict(entry)
    request.session[SESSION_KEY] = sessions
    return entry


def start(request: HttpRequest, user, tenant: str = NO_TENANT) -> CurrentSession:
    """A new OP session for a sign-in that just happened."""
    acr, amr = get_adapter().get_authentication_context(request, user)
    if not request.session.session_key:
        request.session.save()
    key = request.session.session_key
    # login() cycled the session key: the browser's other OP sessions now live under the new one.
    earlier = [entry["id"] for entry in request.session.get(SESSION_KEY, {}).values()]
    if earlier:
        OPSession.objects.filter(pk__in=earlier).update(session_key=key)
    op_session = OPSession.objects.create(
        user=user,
        tenant=tenant,
        auth_time=timezone.now().replace(microsecond=0),
        acr=acr,
        amr=list(amr),
        session_key=key,
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:255],
    )
    return _remember(request, tenant, op_session)


def adopt(request: HttpRequest, tenant: str, source: CurrentSession) -> CurrentSession:
    """An OP session for ``tenant`` from the same authentication as ``source``.

    Used when the tenant is only known after an unscoped sign-in (the user's only organisation, or
    the one picked on the chooser page): the user authenticated once, for this very request.
    """
    op_session = OPSession.objects.create(
        user=request.user,
        tenant=tenant,
        auth_time=datetime.fromtimestamp(source.auth_time, tz=UTC),
        acr=source.acr,
        amr=list(source.amr),
        session_key=request.session.session_key or "",
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:255],
    )
    return _remember(request, tenant, op_session)


@receiver(user_logged_in)
def _on_login(sender, request, user, **kwargs):
    # Every sign-in path (our login page, the admin's, django.contrib.auth's) starts an OP
    # session, so auth_time is when the user really authenticated, never last_login.
    if request is not None and hasattr(request, "session"):
        start(request, user, tenant=getattr(request, "oidc_login_tenant", NO_TENANT))


# Set by the authorization endpoint on a session that holds only pending authorization requests
# of an anonymous browser: it expires with them (AUTHORIZE_REQUEST_MAX_AGE_SECONDS).
PENDING_ONLY_KEY = "oidc_pending_only"
PENDING_ONLY_KEYS = {"oidc_pending_authorizations", PENDING_ONLY_KEY, "_session_expiry"}


@receiver(user_logged_in)
def _restore_session_expiry(sender, request, user, **kwargs):
    # A signed-in session follows the site's own expiry policy again (SESSION_COOKIE_AGE, ...).
    session = getattr(request, "session", None)
    if session is not None and session.pop(PENDING_ONLY_KEY, False):
        session.set_expiry(None)


@receiver(user_logged_out)
def _on_logout(sender, request, user, **kwargs):
    # Any sign-out (end-session endpoint, the admin's, django.contrib.auth's) ends the browser's
    # OP sessions: their tokens are revoked and the clients are told (Back-Channel Logout).
    if request is None or not hasattr(request, "session"):
        return
    ids = [entry["id"] for entry in request.session.get(SESSION_KEY, {}).values()]
    if ids:
        from .logout import end

        end(list(OPSession.objects.filter(pk__in=ids)))


def forget(request: HttpRequest, op_session_id: int) -> None:
    """Drop one OP session from this browser (the others, for other tenants, stay)."""
    sessions = {t: e for t, e in request.session.get(SESSION_KEY, {}).items() if e["id"] != op_session_id}
    request.session[SESSION_KEY] = sessions
