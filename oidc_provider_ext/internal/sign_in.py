"""Finishing a sign-in, and the half-finished one that waits for its second factor.

A user with a second factor is not signed in after the password: no ``login()``, no OP session.
The password page stores a half-finished sign-in in the browser's session (user, the amr so far,
when, the tenant and where to go next) and sends the browser to the challenge page. It lasts
``MFA_LOGIN_TIMEOUT_SECONDS``, may check ``MFA_FAILURE_LIMIT`` codes (counted in the cache), is
used once, and belongs to the browser session that typed the password: nothing in a URL or a form
names it.
"""

from __future__ import annotations

import secrets
import time
import weakref
from dataclasses import asdict, dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth import login as auth_login
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.models import OPSession

from . import op_sessions

SESSION_KEY = "oidc_half_sign_in"


def finish(
    request: HttpRequest, user, *, backend: str | None, tenant: str, amr: list[str], pending=None
) -> None:
    """Sign ``user`` in (Django's login, which starts the OP session for ``tenant`` with ``amr``)."""
    previous = request.user
    if previous.is_authenticated and previous.pk != user.pk:
        # Another account signs in on this browser: Django flushes the session without a
        # logout, so end the previous user's OP sessions here (their clients are told).
        ids = [entry["id"] for entry in op_sessions.browser_entries(request).values()]
        op_sessions.end(list(OPSession.objects.filter(pk__in=ids)))
    # The OP session this sign-in starts belongs to the tenant it was scoped to, with the methods
    # the user passed (adapter.get_authentication_context reads them).
    setattr(request, op_sessions.LOGIN_TENANT, tenant)
    request.oidc_amr = list(amr)  # type: ignore[attr-defined]
    auth_login(request, user, backend=backend)
    if pending is not None:
        # Signing in as a different user flushes the session; the authorization request being
        # completed must survive that (prompt=select_account).
        pending.keep_after_sign_in(request)


@dataclass
class HalfSignIn:
    user: str
    backend: str
    amr: list[str]
    started: float
    tenant: str
    next_url: str
    session_hash: str  # the user's session auth hash: a password change in between voids it
    # Names this half sign-in's count of codes in the cache (throttle.attempt), not in the browser's
    # session: that is saved when the request ends, after requests in flight have all been checked.
    nonce: str = ""

    @classmethod
    def begin(cls, request: HttpRequest, user, *, tenant: str, next_url: str) -> HalfSignIn:
        half = cls(
            user=str(user.pk),
            backend=getattr(user, "backend", "") or "",
            amr=["pwd"],
            started=time.time(),
            tenant=tenant,
            next_url=next_url,
            session_hash=user.get_session_auth_hash(),
            nonce=secrets.token_urlsafe(16),
        )
        session = request.session
        if not request.user.is_authenticated:
            # A new session key once the password is right: a session id planted before (session
            # fixation) does not hold the half sign-in (login() cycles it again at the end).
            session.cycle_key()
        half.save(request)
        if not request.user.is_authenticated and not session.get(op_sessions.PENDING_ONLY_KEY):
            # DESIGN.md "Anonymous requests": not signed in yet, so it expires with the half
            # sign-in (op_sessions restores the site's expiry at login()).
            session[op_sessions.PENDING_ONLY_KEY] = True
            session.set_expiry(app_settings.MFA_LOGIN_TIMEOUT_SECONDS)
        return half

    @classmethod
    def load(cls, request: HttpRequest) -> tuple[HalfSignIn, object] | None:
        """The browser's half-finished sign-in and its user, if it still stands."""
        stored = request.session.get(SESSION_KEY)
        if not isinstance(stored, dict):
            return None
        try:
            half = cls(**stored)
        except TypeError:
            cls.discard(request)
            return None
        if not half.nonce:
            cls.discard(request)
            return None
        if time.time() - half.started >= app_settings.MFA_LOGIN_TIMEOUT_SECONDS:
            cls.discard(request)
            return None
        user = get_user_model()._default_manager.filter(pk=half.user).first()
        if (
            user is None
            or not getattr(user, "is_active", True)
            or not constant_time_compare(user.get_session_auth_hash(), half.session_hash)
        ):
            cls.discard(request)
            return None
        return half, user

    def save(self, request: HttpRequest) -> None:
        request.session[SESSION_KEY] = asdict(self)

    @staticmethod
    def discard(request: HttpRequest) -> None:
        request.session.pop(SESSION_KEY, None)

    def complete(self, request: HttpRequest, user, added: list[str], pending=None) -> None:
        """Single use: the half sign-in is gone before the user is signed in."""
        self.discard(request)
        finish(
            request,
            user,
            backend=self.backend or None,
            tenant=self.tenant,
            amr=[*self.amr, *added],
            pending=pending,
        )


def update_last_login(sender, user, **kwargs) -> None:
    """Django's ``update_last_login`` receiver of ``user_logged_in`` (django.contrib.auth.models):
    the same ``save(update_fields=["last_login"])``, its UPDATE written once (lookups.save_fields:
    the same signals; ``save()`` itself wherever it could differ). apps.py puts it in place of
    Django's, under Django's ``dispatch_uid``, only where Django connected its own."""
    from . import lookups

    user.last_login = timezone.now()
    lookups.save_fields(user, ("last_login",))


def djangos_last_login_receiver_connected() -> bool:
    """Whether ``user_logged_in`` has Django's own ``update_last_login`` as a receiver (under any
    ``dispatch_uid``): only then is it replaced (apps.py)."""
    from django.contrib.auth.models import update_last_login as djangos
    from django.contrib.auth.signals import user_logged_in

    try:
        with user_logged_in.lock:  # each entry: (lookup key, the receiver or a weak reference to it, ...)
            refs = [entry[1] for entry in user_logged_in.receivers]
    except (AttributeError, IndexError, TypeError):  # another Django's shape: leave Django's receiver
        return False
    return any((ref() if isinstance(ref, weakref.ref) else ref) is djangos for ref in refs)
