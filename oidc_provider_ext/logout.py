"""Ending OP sessions: revoke the tokens issued in them and tell the clients (Back-Channel Logout).

OIDC Core 11: tokens issued in a session end with it, except the refresh tokens of an
``offline_access`` grant, whose whole point is to outlive the session.
"""

from __future__ import annotations

from importlib import import_module

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_refresh_token_model, revoke_access_token

from .internal import backchannel
from .models import AuthorizationGrant, BackchannelDelivery, ClientProfile, OPSession
from .sessions import SESSION_KEY

OFFLINE_ACCESS = "offline_access"


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
        grants = list(AuthorizationGrant.objects.filter(op_session__in=live, redeemed__isnull=False))
        _revoke_session_tokens(grants)
        backchannel.record(_plan_deliveries(live, grants))


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
