"""Remove what has expired, in batches, so tables stay small. Safe to run from cron at any time.

What goes (and when):
- authorization grants whose code expired unredeemed, and redeemed grants older than the longest
  a token derived from them can live (refresh-token lifetime + access-token lifetime) whose
  refresh-token family has no usable token left (rotation can keep a family alive for ever);
- access tokens past their expiry; refresh tokens revoked or past REFRESH_TOKEN_EXPIRE_SECONDS;
- device authorizations (RFC 8628) past their expiry, answered or not (the grant an approved one
  created stays, like any grant);
- DOT's own Grant and IDToken rows (this app does not create them) once expired;
- self-registered clients never used for a code, REGISTRATION_UNUSED_EXPIRE_SECONDS after they
  registered (not those registered with an initial access token), and initial access tokens
  expired or revoked more than --keep-days ago;
- consents revoked or expired, OP sessions ended, and delivered back-channel logouts, older than
  --keep-days (default 30: the connected-apps and sessions pages and the admin keep some history);
- OP sessions whose browser session expired are ended first (their clients are told);
- expired browser sessions (``SessionStore.clear_expired()`` of SESSION_ENGINE, where the engine
  supports it), e.g. those an anonymous authorization request left behind.
"""

from __future__ import annotations

from datetime import timedelta
from importlib import import_module

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from oauth2_provider.models import (
    get_access_token_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
)

from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.internal import op_sessions, registration
from oidc_provider_ext.models import (
    AuthorizationGrant,
    BackchannelDelivery,
    Consent,
    DeviceAuthorization,
    InitialAccessToken,
    OPSession,
)


class Command(BaseCommand):
    help = "Delete expired codes, tokens, consents, sessions and deliveries in batches."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=1000)
        parser.add_argument(
            "--keep-days", type=int, default=30, help="History kept for ended/revoked records."
        )
        parser.add_argument("--dry-run", action="store_true", help="Count, delete nothing.")

    def handle(self, *args, batch_size, keep_days, dry_run, **options):
        now = timezone.now()
        history = now - timedelta(days=keep_days)
        token_horizon = now - timedelta(
            seconds=app_settings.REFRESH_TOKEN_EXPIRE_SECONDS + app_settings.ACCESS_TOKEN_EXPIRE_SECONDS
        )
        RefreshToken = get_refresh_token_model()
        plan = [
            ("access tokens", get_access_token_model().objects.filter(expires__lt=now)),
            (
                "refresh tokens",
                RefreshToken.objects.filter(
                    Q(revoked__lt=now - timedelta(minutes=5))
                    | Q(created__lt=now - timedelta(seconds=app_settings.REFRESH_TOKEN_EXPIRE_SECONDS))
                ),
            ),
            (
                "authorization grants",
                # A grant is the root of its refresh-token family (auth_time, acr, tenant, claims,
                # revocation): it stays while any refresh token of the family may still be used,
                # however long rotation has kept the family alive.
                AuthorizationGrant.objects.filter(
                    Q(redeemed__isnull=True, expires__lt=now) | Q(redeemed__lt=token_horizon)
                ).exclude(
                    token_family__in=RefreshToken.objects.filter(
                        revoked__isnull=True,
                        created__gte=now - timedelta(seconds=app_settings.REFRESH_TOKEN_EXPIRE_SECONDS),
                    ).values("token_family")
                ),
            ),
            ("device authorizations", DeviceAuthorization.objects.filter(expires__lt=now)),
            ("DOT grants", get_grant_model().objects.filter(expires__lt=now)),
            ("DOT ID tokens", get_id_token_model().objects.filter(expires__lt=now)),
            # Self-registered clients nobody used (docs/registration.md): anonymous registrations
            # are bounded and expire. Grants are deleted above first, so "unused" is judged after.
            ("unused self-registered clients", registration.unused_self_registered(now)),
            (
                "initial access tokens",
                InitialAccessToken.objects.filter(Q(expires__lt=history) | Q(revoked__lt=history)),
            ),
            ("consents", Consent.objects.filter(Q(revoked__lt=history) | Q(expires__lt=history))),
            ("OP sessions", OPSession.objects.filter(ended__lt=history)),
            (
                "back-channel deliveries",
                BackchannelDelivery.objects.filter(
                    status=BackchannelDelivery.Status.DELIVERED, created__lt=history
                ),
            ),
        ]
        expired_sessions = OPSession.objects.filter(ended__isnull=True, expires__lt=now)
        if dry_run:
            self.stdout.write(f"expired OP sessions: would end {expired_sessions.count()}")
        else:
            # The browser session is gone, so the sign-in is over: end them like a logout would
            # (tokens revoked, clients told), in batches.
            ended = 0
            while batch := list(expired_sessions[:batch_size]):
                op_sessions.end(batch)
                ended += len(batch)
            self.stdout.write(f"expired OP sessions: ended {ended}")
        for label, queryset in plan:
            removed = queryset.count() if dry_run else self._delete_in_batches(queryset, batch_size)
            self.stdout.write(f"{label}: {'would remove' if dry_run else 'removed'} {removed}")
        if not dry_run:
            self._clear_expired_sessions()

    def _clear_expired_sessions(self) -> None:
        store = import_module(settings.SESSION_ENGINE).SessionStore
        try:
            store.clear_expired()
        except NotImplementedError:  # e.g. signed cookies: nothing is stored
            self.stdout.write("expired sessions: not supported by the session engine")
        else:
            self.stdout.write("expired sessions: removed")

    @staticmethod
    def _delete_in_batches(queryset, batch_size: int) -> int:
        removed = 0
        while True:
            with transaction.atomic():
                pks = list(queryset.values_list("pk", flat=True)[:batch_size])
                if not pks:
                    return removed
                queryset.model.objects.filter(pk__in=pks).delete()
            removed += len(pks)
