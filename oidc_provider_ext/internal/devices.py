"""Device authorizations (RFC 8628): the codes, their storage and the user's answer. Private.

The device authorization endpoint creates one (:func:`start`), the code-entry page finds it by the
code the user typed (:func:`find_pending`), and the user's answer on the confirmation page approves
it, creating the :class:`AuthorizationGrant` the device's tokens derive from, or denies it
(:func:`approve`, :func:`deny`). Polling is the validator's (``validate_device_code``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.internal import crypto
from oidc_provider_ext.models import AuthorizationGrant, DeviceAuthorization

# RFC 8628 6.1: base-20 consonants (no vowels, so no words; no look-alike digits), 8 characters:
# 20**8 = 2.56e10, about 34.6 bits.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
_USER_CODE = re.compile(f"[{USER_CODE_ALPHABET}]{{{USER_CODE_LENGTH}}}")
# What a user may type around the characters: dashes and spaces are ignored (RFC 8628 6.1).
_SEPARATORS = re.compile(r"[\s\-‐‑‒–—]+")
MAX_TYPED_LENGTH = 64


class TooManyPending(Exception):
    """The cap of pending device authorizations (per client or in total) is reached."""


def new_user_code() -> str:
    return "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))


def display(user_code: str) -> str:
    """XXXX-XXXX, as the device shows it (RFC 8628 6.1)."""
    return f"{user_code[:4]}-{user_code[4:]}"


def normalise(typed: str) -> str | None:
    """The user code in what the user typed (case, dashes and spaces ignored), or None."""
    if not isinstance(typed, str) or len(typed) > MAX_TYPED_LENGTH:
        return None
    code = _SEPARATORS.sub("", typed).upper()
    return code if _USER_CODE.fullmatch(code) else None


def _user_code_hmacs(user_code: str) -> list[str]:
    """The code's HMAC under each configured secret, the current one first (a rotation of
    SECRET_KEYS does not orphan codes being entered right now)."""
    return [
        hmac.new(key, user_code.encode("ascii"), hashlib.sha256).hexdigest()
        for key in crypto.derived_keys(crypto.DEVICE_USER_CODE)
    ]


def device_code_checksum(device_code: str) -> str:
    return hashlib.sha256(device_code.encode("utf-8")).hexdigest()


def pending(queryset=None):
    """Device authorizations still waiting for the user."""
    queryset = DeviceAuthorization.objects.all() if queryset is None else queryset
    return queryset.filter(status=DeviceAuthorization.Status.PENDING, expires__gt=timezone.now())


def start(application, scopes: list[str], tenant: str, tenant_deferred: bool) -> tuple[str, str, int]:
    """A new device authorization: (device_code, user_code, expires_in). Raises TooManyPending.

    DESIGN.md "Anonymous requests": whoever holds a public client's id can call this, so the rows
    it creates are bounded (per client and in total) and expire (oidc_cleanup deletes them).
    """
    if pending().filter(application=application).count() >= app_settings.DEVICE_MAX_PENDING_PER_CLIENT:
        raise TooManyPending
    if pending().count() >= app_settings.DEVICE_MAX_PENDING:
        raise TooManyPending
    expires_in = app_settings.DEVICE_CODE_EXPIRE_SECONDS
    device_code = secrets.token_urlsafe(32)  # RFC 8628 5.2: high entropy; stored as a checksum
    for _attempt in range(5):
        user_code = new_user_code()
        try:
            with transaction.atomic():
                DeviceAuthorization.objects.create(
                    device_code_checksum=device_code_checksum(device_code),
                    user_code_hmac=_user_code_hmacs(user_code)[0],
                    application=application,
                    scope=" ".join(scopes),
                    tenant=tenant,
                    tenant_deferred=tenant_deferred,
                    interval=app_settings.DEVICE_POLL_INTERVAL_SECONDS,
                    expires=timezone.now() + timedelta(seconds=expires_in),
                )
        except IntegrityError:
            continue  # the user code of another pending request (unique); draw again
        return device_code, display(user_code), expires_in
    raise TooManyPending  # 5 collisions in a row: the code space is crowded


def find_pending(typed: str) -> DeviceAuthorization | None:
    """The pending, unexpired device authorization whose user code the user typed, or None."""
    user_code = normalise(typed)
    if user_code is None:
        return None
    return (
        pending(DeviceAuthorization.objects.select_related("application"))
        .filter(user_code_hmac__in=_user_code_hmacs(user_code))
        .first()
    )


def load_pending(device_id: int) -> DeviceAuthorization | None:
    return pending().filter(pk=device_id).first()


def approve(device_id: int, user, scopes: list[str], context: dict) -> bool:
    """The user approved: the grant every token of the device derives from, with the sign-in's
    ``auth_time``, ``acr``, ``amr``, ``sid`` and tenant (``PendingAuthorization.oidc_context``).
    Single use: False if the request was answered, or expired, meanwhile."""
    device = pending().select_for_update().filter(pk=device_id).first()
    if device is None:
        return False
    grant = AuthorizationGrant.objects.create(
        # Never handed out: the device redeems with its device_code (validator.validate_device_code),
        # so no authorization code can name this grant.
        code_checksum=hashlib.sha256(secrets.token_bytes(32)).hexdigest(),
        application_id=device.application_id,
        user=user,
        op_session_id=context["op_session_id"],
        tenant=context["tenant"],
        sid=context["sid"],
        auth_time=datetime.fromtimestamp(context["auth_time"], tz=UTC),
        acr=context["acr"],
        amr=context["amr"],
        redirect_uri="",
        scope=" ".join(scopes),
        expires=device.expires,
    )
    return bool(
        pending()
        .filter(pk=device.pk)
        .update(status=DeviceAuthorization.Status.APPROVED, user=user, grant=grant, scope=" ".join(scopes))
    )


def deny(device_id: int, user) -> bool:
    """The user denied: the device's next poll gets access_denied (RFC 8628 3.5)."""
    return bool(pending().filter(pk=device_id).update(status=DeviceAuthorization.Status.DENIED, user=user))
