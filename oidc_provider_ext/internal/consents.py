"""Remembered consent: what a user allowed a client (per tenant), and taking it back."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db import router, transaction
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


@functools.cache
def _live_consent_lookup():
    from .lookups import Lookup, column, null_or_later

    pk, revoked, expires = (column(Consent, name) for name in ("pk", "revoked", "expires"))

    def live(q, outer: str) -> str:  # live_consents(): not revoked, and no expiry or a later one
        return f"{outer}.{q(revoked)} IS NULL AND {null_or_later(f'{outer}.{q(expires)}')}"

    return Lookup(
        Consent,
        by=["user", "application", "tenant"],
        where=live,
        where_fields=["expires"],
        order_by=lambda q, outer: f"{outer}.{q(pk)}",  # first(): by primary key
    )


def live_consent(user, application, tenant: str) -> Consent | None:
    """``live_consents(user).filter(application=application, tenant=tenant).first()``, its SQL
    written once (internal/lookups.py) rather than compiled on every authorization request."""
    alias = router.db_for_read(Consent)
    lookup = _live_consent_lookup()
    if not lookup.supported(alias):
        return live_consents(user).using(alias).filter(application=application, tenant=tenant).first()
    user_pk = getattr(user, "pk", user)
    return lookup.one(user_pk, application.pk, tenant, timezone.now(), using=alias)


NO_RESOURCE = ""  # the key of a consent's scopes for requests that name no API


def granted_by_resource(consent: Consent | None) -> dict[str, set[str]]:
    """What ``consent`` allowed, per API: ``{resource identifier: scopes}``, ``""`` for requests
    that named no resource (RFC 8707). Anything else stored there (a row of an older version not
    migrated, a hand edit) allows nothing: fail closed, the user is asked again."""
    return _allowed(consent.resource if consent is not None else None)


def _allowed(stored) -> dict[str, set[str]]:
    """:func:`granted_by_resource` of a consent's stored ``resource``."""
    if not isinstance(stored, dict):
        return {}
    return {
        str(key): {scope for scope in value if isinstance(scope, str)}
        for key, value in stored.items()
        if isinstance(value, list)
    }


def missing_scopes(
    user, application, tenant: str, scopes: list[str], resources: Sequence[str] = ()
) -> tuple[list[str], Consent | None]:
    """The requested scopes the user has not consented to (all of them when the client always asks),
    and the live consent, if any.

    OIDC Core 11: offline access needs explicit consent every time, so it is never "remembered".
    RFC 8707: consent is given per API (resource); a scope allowed for one API (or for no API)
    covers no other: every API the request names must have every requested scope allowed for it.
    """
    if policy(application) == ClientProfile.ConsentPolicy.ASK:
        return list(scopes), None
    consent = live_consent(user, application, tenant)
    allowed = granted_by_resource(consent)
    named = list(dict.fromkeys(resources)) or [NO_RESOURCE]
    return [
        scope
        for scope in scopes
        if scope == OFFLINE_ACCESS or any(scope not in allowed.get(resource, ()) for resource in named)
    ], consent


def seen(consent: Consent | None) -> list | None:
    """What :func:`remember` needs to know of the live consent a consent page was decided against
    (kept in the pending request, which the browser's session holds): its id, when it was granted
    (it changes on every widening) and what it allowed."""
    if consent is None:
        return None
    return [consent.pk, consent.granted.isoformat(), consent.resource]


def _widened(stored, named: list[str], remembered: set[str]) -> tuple[str, dict[str, list[str]]]:
    """The consent's ``scope`` (the union, for the connected-apps page and the admin) and
    ``resource`` once ``remembered`` is allowed for every API in ``named``."""
    allowed = _allowed(stored)
    for resource in named:
        allowed[resource] = allowed.get(resource, set()) | remembered
    by_resource = {resource: sorted(granted) for resource, granted in allowed.items()}
    return " ".join(sorted(set().union(*allowed.values()))), by_resource


def remember(
    user,
    application,
    tenant: str,
    scopes: list[str],
    resources: Sequence[str] = (),
    *,
    seen: list | None = None,
) -> None:
    """Record (or widen) the user's consent, unless the client's policy is to always ask: the
    scopes granted now, for the APIs named now (``""`` when none), nothing for any other.

    ``seen`` (:func:`seen`): the consent the page was shown against. If that row is still live and
    unchanged (same id, same ``granted``), one conditional UPDATE widens it; otherwise (revoked,
    expired or widened meanwhile, or none seen) it is read again and written."""
    if policy(application) != ClientProfile.ConsentPolicy.REMEMBER:
        return
    now = timezone.now()
    profile = getattr(application, "oidc_profile", None)
    days = profile.consent_lifetime_days if profile and profile.consent_lifetime_days else None
    days = days or app_settings.CONSENT_LIFETIME_DAYS
    expires = now + timedelta(days=days) if days else None
    remembered = set(scopes) - {OFFLINE_ACCESS}
    named = list(dict.fromkeys(resources)) or [NO_RESOURCE]
    # The consent the page was shown against, widened in one statement (no transaction needed)...
    if _update_seen(user, application, tenant, seen, named, remembered, now, expires):
        return
    # ... or, changed meanwhile (or none seen), read again and written in one transaction.
    with transaction.atomic(savepoint=False):
        consent = live_consent(user, application, tenant)
        scope, by_resource = _widened(consent.resource if consent is not None else None, named, remembered)
        if consent is None:
            Consent.objects.create(
                user=user, application=application, tenant=tenant, scope=scope,
                resource=by_resource, granted=now, expires=expires, last_used=now,
            )  # fmt: skip
        else:
            consent.scope, consent.resource = scope, by_resource
            consent.granted, consent.expires, consent.last_used = now, expires, now
            consent.save(update_fields=["scope", "resource", "granted", "expires", "last_used"])


def _update_seen(user, application, tenant: str, seen, named, remembered, now, expires) -> bool:
    """Widen the consent ``seen`` in one UPDATE if it is still live and as seen; whether it was."""
    try:
        pk, granted, stored = seen
        granted = datetime.fromisoformat(granted)
    except (TypeError, ValueError):
        return False
    scope, by_resource = _widened(stored, named, remembered)
    from .lookups import update  # live_consents(user).filter(...).update(...), its SQL written once

    return bool(
        update(
            Consent,
            pk,
            {"scope": scope, "resource": by_resource, "granted": now, "expires": expires, "last_used": now},
            user=getattr(user, "pk", user),
            revoked__isnull=True,
            expires__nullorgt=timezone.now(),
            application=application.pk,
            tenant=tenant,
            granted=granted,
        )
    )


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
