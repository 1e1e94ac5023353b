"""Ending OP sessions: revoke the tokens issued in them and tell the clients (Back-Channel Logout).

OIDC Core 11: tokens issued in a session end with it, except the refresh tokens of an
``offline_access`` grant, whose whole point is to outlive the session.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from .internal import backchannel
from .models import AuthorizationGrant, BackchannelDelivery, ClientProfile, OPSession


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
        grants = list(in_sessions.filter(redeemed__isnull=False))
        # Codes not yet redeemed die with the session; access tokens too; the refresh tokens of an
        # offline_access grant survive it (OIDC Core 11), everything else is revoked.
        in_sessions.revoke_tokens(keep_offline_access=True)
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
    return [
        BackchannelDelivery.objects.create(
            op_session_id=session_id, application_id=app_id, uri=profiles[app_id].backchannel_logout_uri
        )
        for session_id, app_id in sorted(pairs)
        if app_id in profiles
    ]
