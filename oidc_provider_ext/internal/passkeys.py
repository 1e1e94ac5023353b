"""Passkeys (WebAuthn Level 3) through py_webauthn: registration, passwordless sign-in and the
passkey second factor. Private: the views and the factor registry call it.

Ceremonies (WebAuthn L3 7.1 registration, 7.2 authentication) are verified by the library; this
module owns what the library leaves to the relying party:

- the challenge: random (the library's 64 bytes), stored in the browser's server-side session for
  one purpose ("register", "login", "factor") and, except for passwordless sign-in, one user;
  taken out before it is checked, so it is single use whatever the outcome; expires after
  :data:`CHALLENGE_SECONDS`. A challenge from another session is simply not there.
- which credential: the one the assertion names, looked up by its ID; for a second factor it must
  belong to the user who is signing in; ``userHandle``, when sent, must match (L3 7.2 step 6).
- the signature counter (L3 6.1.1): a counter that does not increase, when either value is
  non-zero, may mean a cloned authenticator: refused and logged. Backup state is updated at each
  use (L3 6.1.3).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import bytes_to_base64url, parse_authentication_credential_json
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.parse_registration_credential_json import parse_registration_credential_json
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.models import OPSession, Passkey

from . import op_sessions

log = logging.getLogger(__name__)

SESSION_KEY = "oidc_webauthn"
CHALLENGE_SECONDS = 300  # WebAuthn L3 15.1 recommends 300 s (up to 600 s) with user verification
REGISTER, LOGIN, FACTOR = "register", "login", "factor"
MAX_PASSKEYS = 20  # per user: each is listed in allowCredentials / excludeCredentials
NAME_LENGTH = 64


class PasskeyError(Exception):
    """A ceremony that failed; ``message`` is what the user is told (translated)."""

    def __init__(self, message):
        super().__init__(str(message))
        self.message = message


EXPIRED = _("The passkey request expired. Please try again.")
FAILED = _("That passkey could not be verified. Please try again or use another way to sign in.")
UNKNOWN = _("This passkey is not registered here. Use another passkey or sign in with your password.")
DUPLICATE = _("This passkey is already registered.")
TOO_MANY = _("You have too many passkeys. Remove one before adding another.")


def offered() -> bool:
    """Whether the hosted pages offer passkeys: browsers refuse an IP address as RP ID (the
    example project's http://127.0.0.1:8000), so no button that cannot work is shown there."""
    try:
        ipaddress.ip_address(app_settings.WEBAUTHN_RP_ID.strip("[]"))
    except ValueError:
        return True
    return False


def _descriptor(passkey: Passkey) -> PublicKeyCredentialDescriptor:
    transports = []
    for value in passkey.transports:
        try:
            transports.append(AuthenticatorTransport(value))
        except ValueError:
            continue  # a transport this library does not know: hints only
    return PublicKeyCredentialDescriptor(id=_bytes(passkey.credential_id), transports=transports or None)


def _bytes(b64: str) -> bytes:
    from webauthn import base64url_to_bytes

    return base64url_to_bytes(b64)


# --- the challenge ----------------------------------------------------------------------------------


def _store_challenge(request, purpose: str, challenge: bytes, user_pk: Any = None) -> None:
    session = request.session
    stored = dict(session.get(SESSION_KEY, {}))
    stored[purpose] = {
        "challenge": bytes_to_base64url(challenge),
        "user": str(user_pk) if user_pk is not None else None,
        "expires": time.time() + CHALLENGE_SECONDS,
    }
    session[SESSION_KEY] = stored
    # DESIGN.md "Anonymous requests": a session an anonymous browser holds only for a sign-in
    # expires with its pending requests (restored to the site's policy at sign-in).
    if not request.user.is_authenticated and set(session.keys()) <= op_sessions.PENDING_ONLY_KEYS:
        session[op_sessions.PENDING_ONLY_KEY] = True
        session.set_expiry(app_settings.AUTHORIZE_REQUEST_MAX_AGE_SECONDS)


def _take_challenge(request, purpose: str, user_pk: Any = None) -> bytes:
    """The challenge issued to this session for ``purpose`` (and user), removed: single use."""
    stored = dict(request.session.get(SESSION_KEY, {}))
    entry = stored.pop(purpose, None)
    if entry is not None:
        request.session[SESSION_KEY] = stored
    if (
        not isinstance(entry, dict)
        or entry.get("expires", 0) < time.time()
        or entry.get("user") != (str(user_pk) if user_pk is not None else None)
    ):
        raise PasskeyError(EXPIRED)
    return _bytes(entry["challenge"])


# --- registration (WebAuthn L3 7.1) --------------------------------------------------------------


def user_handle_for(user) -> str:
    """The user handle of ``user``'s passkeys: the one already in use, or a new random one."""
    existing = Passkey.objects.filter(user=user).values_list("user_handle", flat=True).first()
    return existing or bytes_to_base64url(secrets.token_bytes(32))


def registration_options(request, user) -> str:
    """Creation options (JSON) for a new discoverable passkey of ``user``; the challenge is kept."""
    if Passkey.objects.filter(user=user).count() >= MAX_PASSKEYS:
        raise PasskeyError(TOO_MANY)
    handle = user_handle_for(user)
    options = generate_registration_options(
        rp_id=app_settings.WEBAUTHN_RP_ID,
        rp_name=app_settings.WEBAUTHN_RP_NAME,
        user_name=user.get_username(),
        user_id=_bytes(handle),
        user_display_name=(getattr(user, "get_full_name", lambda: "")() or user.get_username()),
        timeout=CHALLENGE_SECONDS * 1000,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            require_resident_key=True,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=[_descriptor(passkey) for passkey in Passkey.objects.filter(user=user)],
    )
    _store_challenge(request, REGISTER, options.challenge, user.pk)
    request.session[SESSION_KEY] = {**request.session[SESSION_KEY], "handle": handle}
    return options_to_json(options)


def register(request, user, credential: str, name: str) -> Passkey:
    """Verify a ``navigator.credentials.create()`` response and store the passkey."""
    handle = request.session.get(SESSION_KEY, {}).get("handle")
    challenge = _take_challenge(request, REGISTER, user.pk)
    try:
        parsed = parse_registration_credential_json(credential)
        verified = verify_registration_response(
            credential=parsed,
            expected_challenge=challenge,
            expected_rp_id=app_settings.WEBAUTHN_RP_ID,
            expected_origin=app_settings.WEBAUTHN_ORIGINS,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
        log.info("Passkey registration refused for user %s: %s", user.pk, exc)
        raise PasskeyError(FAILED) from exc
    if len(verified.credential_id) > 1023:  # WebAuthn L3 7.1 step 24: "less than 1024 bytes"
        raise PasskeyError(FAILED)
    credential_id = bytes_to_base64url(verified.credential_id)
    if Passkey.objects.filter(credential_id=credential_id).exists():
        raise PasskeyError(DUPLICATE)
    transports = [str(getattr(t, "value", t)) for t in (parsed.response.transports or [])][:8]
    try:
        with transaction.atomic():
            return Passkey.objects.create(
                user=user,
                credential_id=credential_id,
                user_handle=handle or user_handle_for(user),
                public_key=verified.credential_public_key,
                sign_count=verified.sign_count,
                transports=transports,
                name=clean_name(name),
                aaguid=verified.aaguid if verified.aaguid != "00000000-0000-0000-0000-000000000000" else "",
                backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
                backed_up=verified.credential_backed_up,
            )
    except IntegrityError as exc:  # the same credential registered by a concurrent request
        raise PasskeyError(DUPLICATE) from exc


def clean_name(name: str) -> str:
    return " ".join(name.split())[:NAME_LENGTH] or str(_("Passkey"))


# --- authentication (WebAuthn L3 7.2) ------------------------------------------------------------


def authentication_options(request, *, user=None) -> str:
    """Request options (JSON). Without ``user``: passwordless sign-in with a discoverable
    credential, user verification required (the passkey is both factors). With ``user``: a second
    factor or step-up, only that user's passkeys allowed."""
    if user is None:
        options = generate_authentication_options(
            rp_id=app_settings.WEBAUTHN_RP_ID,
            timeout=CHALLENGE_SECONDS * 1000,
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        _store_challenge(request, LOGIN, options.challenge)
    else:
        options = generate_authentication_options(
            rp_id=app_settings.WEBAUTHN_RP_ID,
            timeout=CHALLENGE_SECONDS * 1000,
            allow_credentials=[_descriptor(passkey) for passkey in Passkey.objects.filter(user=user)],
            user_verification=UserVerificationRequirement.PREFERRED,
        )
        _store_challenge(request, FACTOR, options.challenge, user.pk)
    return options_to_json(options)


@dataclass(frozen=True)
class Assertion:
    passkey: Passkey
    amr: list[str]  # RFC 8176: "hwk" or "swk", plus "user" when the authenticator verified the user


def authenticate(request, credential: str, *, user=None) -> Assertion:
    """Verify a ``navigator.credentials.get()`` response against the challenge of this session.

    Without ``user`` (passwordless) the credential names the user; with ``user`` it must be one
    of theirs. Raises :class:`PasskeyError`."""
    challenge = _take_challenge(request, FACTOR if user is not None else LOGIN, user.pk if user else None)
    try:
        parsed = parse_authentication_credential_json(credential)
    except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
        raise PasskeyError(FAILED) from exc
    found = Passkey.objects.filter(credential_id=bytes_to_base64url(parsed.raw_id)).select_related("user")
    if user is not None:
        found = found.filter(user=user)  # another user's passkey is "not registered" for this one
    passkey = found.first()
    if passkey is None:
        raise PasskeyError(UNKNOWN)
    handle = parsed.response.user_handle
    if handle is not None and bytes_to_base64url(handle) != passkey.user_handle:
        log.warning("Passkey %s answered with another user handle: refused.", passkey.pk)
        raise PasskeyError(FAILED)
    try:
        verified = verify_authentication_response(
            credential=parsed,
            expected_challenge=challenge,
            expected_rp_id=app_settings.WEBAUTHN_RP_ID,
            expected_origin=app_settings.WEBAUTHN_ORIGINS,
            credential_public_key=bytes(passkey.public_key),
            credential_current_sign_count=passkey.sign_count,
            require_user_verification=user is None,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
        if "sign count" in str(exc):
            # WebAuthn L3 6.1.1: a possibly cloned authenticator. The operator should look.
            log.warning(
                "Passkey %s of user %s: signature counter did not increase (%s); possibly cloned, refused.",
                passkey.pk,
                passkey.user_id,
                exc,
            )
        else:
            log.info("Passkey assertion refused for passkey %s: %s", passkey.pk, exc)
        raise PasskeyError(FAILED) from exc
    # The counter only moves forward, also when two assertions race (one UPDATE, no read-modify-write).
    updated = Passkey.objects.filter(pk=passkey.pk, sign_count=passkey.sign_count).update(
        sign_count=verified.new_sign_count,
        backed_up=verified.credential_backed_up,
        last_used=timezone.now(),
    )
    if not updated:
        raise PasskeyError(FAILED)
    amr = ["swk" if passkey.backup_eligible else "hwk"]
    if verified.user_verified:
        amr.append("user")
    return Assertion(passkey=passkey, amr=amr)


# --- removal ---------------------------------------------------------------------------------------


def _end_passkey_sessions(user, *, keep=()) -> None:
    # The OP session does not record which passkey it used: every other sign-in of the user that
    # relied on a passkey ends (its tokens are revoked, its clients told).
    relied = OPSession.objects.filter(user=user, ended__isnull=True).exclude(pk__in=list(keep))
    op_sessions.end([s for s in relied if {"hwk", "swk"} & set(s.amr or [])])


def remove(request, passkey: Passkey) -> None:
    """Delete ``passkey``; other sign-ins that relied on a passkey end (this browser's stay: it
    just confirmed it's the user, internal/factor_changes.py). With the last one gone, this
    browser's sessions stop counting a passkey, as they stop counting a removed app."""
    here = [entry["id"] for entry in op_sessions.browser_entries(request).values()]
    passkey.delete()
    _end_passkey_sessions(passkey.user, keep=here)
    if not Passkey.objects.filter(user=passkey.user_id).exists():
        op_sessions.without_methods(request, {"hwk", "swk", "user"})


def delete_passkeys(queryset) -> int:
    """Delete the passkeys of ``queryset`` (an operator's action) and end every sign-in of their
    users that relied on a passkey. Returns how many were deleted."""
    users = {passkey.user for passkey in queryset.select_related("user")}
    deleted, _detail = queryset.delete()
    for user in users:
        _end_passkey_sessions(user)
    return deleted


def delete_for(user) -> int:
    """Delete every passkey of ``user`` and end the sign-ins that relied on one (an operator's
    "reset factors"). Returns how many passkeys were deleted."""
    return delete_passkeys(Passkey.objects.filter(user=user))


# --- the second factor / step-up factor (contract: internal/factors.py Factor) ---------------------


class PasskeyFactor:
    """A passkey as second factor after a password, or for step-up. The challenge page POSTs
    ``factor=passkey`` and ``credential`` (the assertion as JSON)."""

    key = "passkey"
    label = _("Passkey")
    template_name = "oidc_provider_ext/factors/passkey.html"

    def enrolled(self, user) -> bool:
        return self.enrolled_query(user).exists()

    def enrolled_query(self, user) -> QuerySet:
        return Passkey.objects.filter(user=user.pk)

    def challenge_context(self, request, user) -> dict:
        # A JSON object for the template's json_script (no inline script: CSP script-src 'self').
        return {"passkey_options": json.loads(authentication_options(request, user=user))}

    def verify(self, request, user) -> list[str] | None:
        credential = request.POST.get("credential", "")
        if not isinstance(credential, str) or not credential:
            return None
        try:
            return authenticate(request, credential, user=user).amr
        except PasskeyError:
            return None
