"""Ending OP sessions: revoke the tokens issued in them and tell the clients (Back-Channel Logout).

OIDC Core 11: tokens issued in a session end with it, except the refresh tokens of an
``offline_access`` grant, whose whole point is to outlive the session.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from .internal import backchannel
from .models import AuthorizationGrant, BackchannelDelivery, ClientProfile, OPSession
from .tokens import subject_for


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
    by_id = {op_session.pk: op_session for op_session in op_sessions}
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
