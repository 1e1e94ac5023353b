"""Ending OP sessions: revoke the tokens issued in them and tell the clients (Back-Channel Logout).

OIDC Core 11: tokens issued in a session end with it, except the refresh tokens of an
``offline_access`` grant, whose whole point is to outlive the session.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from importlib import import_module
from urllib.parse import urlencode

from django.conf import settings
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_refresh_token_model, revoke_access_token

from . import keys
from .conf import app_settings
from .models import AuthorizationGrant, BackchannelDelivery, ClientProfile, OPSession
from .sessions import SESSION_KEY
from .tokens import mint_logout_token, subject_for

log = logging.getLogger(__name__)
OFFLINE_ACCESS = "offline_access"


def end(op_sessions: list[OPSession]) -> None:
    """Mark sessions ended, revoke their tokens and deliver back-channel logout tokens."""
    now = timezone.now()
    live = [s for s in op_sessions if s.ended is None]
    if not live:
        return
    OPSession.objects.filter(pk__in=[s.pk for s in live]).update(ended=now)
    grants = list(AuthorizationGrant.objects.filter(op_session__in=live, redeemed__isnull=False))
    _revoke_session_tokens(grants)
    deliveries = _plan_deliveries(live, grants)
    deliver(deliveries)


def _revoke_session_tokens(grants: list[AuthorizationGrant]) -> None:
    for grant in grants:
        if OFFLINE_ACCESS in grant.scopes:
            continue  # OIDC Core 11: offline access survives the end of the session
        if grant.token_family:
            get_refresh_token_model().revoke_family(grant.token_family)
        if grant.access_token_id:
            access_token = get_access_token_model().objects.filter(pk=grant.access_token_id).first()
            if access_token is not None:
                revoke_access_token(access_token)


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
    return [
        BackchannelDelivery.objects.create(
            op_session_id=session_id, application_id=app_id, uri=profiles[app_id].backchannel_logout_uri
        )
        for session_id, app_id in sorted(pairs)
        if app_id in profiles
    ]


def deliver(deliveries: list[BackchannelDelivery]) -> None:
    """POST each logout token (in parallel, bounded by the timeout) and record the outcome.

    A failure never raises: the user's logout goes on; `manage.py oidc_backchannel_retry` retries.
    """
    if not deliveries:
        return
    deliveries = list(
        BackchannelDelivery.objects.filter(pk__in=[d.pk for d in deliveries]).select_related(
            "op_session__user", "application__oidc_profile"
        )
    )
    requests = [(delivery, _logout_token(delivery)) for delivery in deliveries]
    with ThreadPoolExecutor(max_workers=min(8, len(requests))) as pool:
        outcomes = list(pool.map(lambda item: _post(item[0].uri, item[1]), requests))
    now = timezone.now()
    for (delivery, _token), error in zip(requests, outcomes, strict=True):
        delivery.attempts += 1
        delivery.last_attempt = now
        delivery.status = BackchannelDelivery.Status.FAILED if error else BackchannelDelivery.Status.DELIVERED
        delivery.last_error = error or ""
        delivery.save(update_fields=["attempts", "last_attempt", "status", "last_error"])
        if error:
            log.warning("Back-channel logout to %s failed: %s", delivery.uri, error)


def _logout_token(delivery: BackchannelDelivery) -> str:
    op_session = delivery.op_session
    return mint_logout_token(
        client_id=delivery.application.client_id,
        subject=subject_for(op_session.user),
        sid=op_session.sid,
        alg=keys.alg_for_client(delivery.application),
    )


def _post(uri: str, logout_token: str) -> str | None:
    """The error, or None when the RP answered 200/204 (Back-Channel Logout 1.0 section 2.8)."""
    body = urlencode({"logout_token": logout_token}).encode()
    request = urllib.request.Request(
        uri, data=body, method="POST", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    try:
        with urllib.request.urlopen(
            request, timeout=app_settings.BACKCHANNEL_LOGOUT_TIMEOUT_SECONDS
        ) as response:
            return None if response.status in (200, 204) else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"


def forget_in_browser(op_session: OPSession) -> None:
    """Remove an ended OP session from the Django session that holds it (another device); when it
    was that browser's last OP session, the browser is signed out altogether."""
    if not op_session.session_key:
        return
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=op_session.session_key)
    entries = store.get(SESSION_KEY, {})
    remaining = {tenant: entry for tenant, entry in entries.items() if entry["id"] != op_session.pk}
    if remaining == entries:
        return
    if remaining:
        store[SESSION_KEY] = remaining
        store.save()
    else:
        store.delete()
