"""Remembered consent: what a user allowed a client (per tenant), and taking it back."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.models import AuthorizationGrant, ClientProfile, Consent
from oidc_provider_ext.scopes import OFFLINE_ACCESS, OPENID  # noqa: F401 (OPENID: consents.OPENID)


def self_registered(application) -> bool:
    """Whether the client registered itself (RFC 7591, a client ID metadata document): nobody
    reviewed it, so its users are always asked (docs/registration.md)."""
    source = getattr(application, "registration_source", "manual")
    return source != application.RegistrationSource.MANUAL


def policy(application) -> str:
    if self_registered(application):
        # Whatever the profile says: no remembered consent, no operator "never ask".
        return ClientProfile.ConsentPolicy.ASK
    profile = getattr(application, "oidc_profile", None)
    return profile.consent_policy if profile is not None else ClientProfile.ConsentPolicy.REMEMBER


def live_consents(user):
    """The user's consents that are neither revoked nor expired."""
    return Consent.objects.filter(user=user, revoked__isnull=True).exclude(expires__lte=timezone.now())


def live_consent(user, application, tenant: str) -> Consent | None:
    return live_consents(user).filter(application=application, tenant=tenant).first()


def missing_scopes(
    user, application, tenant: str, scopes: list[str], resources: Sequence[str] = ()
) -> tuple[list[str], Consent | None]:
    """The requested scopes the user has not consented to (all of them when the client always asks),
    and the live consent, if any.

    OIDC Core 11: offline access needs explicit consent every time, so it is never "remembered".
    RFC 8707: a consent covers the APIs (``resources``) it named; the same scopes for an API the
    user has not seen named are asked again, all of them (the page names the API).
    """
    if policy(application) == ClientProfile.ConsentPolicy.ASK:
        return list(scopes), None
    consent = live_consent(user, application, tenant)
    granted = consent.scopes if consent is not None else set()
    if consent is not None and not set(resources) <= set(consent.resource or ()):
        return list(scopes), consent
    return [scope for scope in scopes if scope not in granted or scope == OFFLINE_ACCESS], consent


def remember(user, application, tenant: str, scopes: list[str], resources: Sequence[str] = ()) -> None:
    """Record (or widen) the user's consent, unless the client's policy is to always ask."""
    if policy(application) != ClientProfile.ConsentPolicy.REMEMBER:
        return
    now = timezone.now()
    profile = getattr(application, "oidc_profile", None)
    days = profile.consent_lifetime_days if profile and profile.consent_lifetime_days else None
    days = days or app_settings.CONSENT_LIFETIME_DAYS
    expires = now + timedelta(days=days) if days else None
    remembered = sorted(set(scopes) - {OFFLINE_ACCESS})
    with transaction.atomic():
        consent = live_consent(user, application, tenant)
        if consent is None:
            Consent.objects.create(
                user=user, application=application, tenant=tenant, scope=" ".join(remembered),
                resource=list(dict.fromkeys(resources)), granted=now, expires=expires, last_used=now,
            )  # fmt: skip
        else:
            consent.scope = " ".join(sorted(consent.scopes | set(remembered)))
            consent.resource = list(dict.fromkeys([*(consent.resource or []), *resources]))
            consent.granted, consent.expires, consent.last_used = now, expires, now
            consent.save(update_fields=["scope", "resource", "granted", "expires", "last_used"])


LAST_USED_RESOLUTION = timedelta(hours=1)


def touch(consent: Consent | None) -> None:
    """Note that a remembered consent was used (the connected-apps page shows it). To the hour:
    a sign-in within the hour after the last recorded one costs no write."""
    now = timezone.now()
    if consent is not None and (consent.last_used is None or now - consent.last_used >= LAST_USED_RESOLUTION):
        Consent.objects.filter(pk=consent.pk).update(last_used=now)


def revoke(consent: Consent) -> None:
    """Take consent back and revoke what the client got under it for that user and tenant, so it
    stops working at once (userinfo, introspection, refresh) and codes not yet redeemed die."""
    with transaction.atomic():
        Consent.objects.filter(pk=consent.pk).update(revoked=timezone.now())
        AuthorizationGrant.objects.filter(
            user_id=consent.user_id, application_id=consent.application_id, tenant=consent.tenant
        ).revoke_tokens()
