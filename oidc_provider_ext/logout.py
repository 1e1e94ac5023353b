"""Ending OP sessions: revoke the tokens issued in them and tell the clients (Back-Channel Logout).

OIDC Core 11: tokens issued in a session end with it, except the refresh tokens of an
``offline_access`` grant, whose whole point is to outlive the session.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

from django.utils import timezone

from . import keys
from .conf import app_settings
from .models import AuthorizationGrant, BackchannelDelivery, ClientProfile, OPSession
from .tokens import mint_logout_token, subject_for

log = logging.getLogger(__name__)


def end(op_sessions: list[OPSession]) -> None:
    """Mark sessions ended, revoke their tokens and deliver back-channel logout tokens."""
    now = timezone.now()
    live = [s for s in op_sessions if s.ended is None]
    if not live:
        return
    OPSession.objects.filter(pk__in=[s.pk for s in live]).update(ended=now)
    in_sessions = AuthorizationGrant.objects.filter(op_session__in=live)
    grants = list(in_sessions.filter(redeemed__isnull=False))
    # Codes not yet redeemed die with the session; access tokens too; the refresh tokens of an
    # offline_access grant survive it (OIDC Core 11), everything else is revoked.
    in_sessions.revoke_tokens(keep_offline_access=True)
    deliveries = _plan_deliveries(live, grants)
    deliver(deliveries)


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
