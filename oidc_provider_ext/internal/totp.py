"""Authenticator apps (TOTP, RFC 6238): the maths is pyotp's, the storage ours.

Why not django-otp: it stores the TOTP key and its static (recovery) tokens in clear, and our rule
is "no bearer secret in clear" (DESIGN.md). pyotp does the RFC 6238 / RFC 4226 computation; the key
is kept encrypted with the provider's own rotatable key (internal/crypto.py), a replayed code is
refused through the last accepted time step (an atomic UPDATE), and the window is one step either
side (RFC 6238 5.2 recommends at most one step of network delay).
"""

from __future__ import annotations

import base64
import hmac
import io
import time

import pyotp
import segno
from django.db.models import Q
from django.utils import timezone

from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.models import TOTPDevice

from . import crypto

DIGITS = 6
STEP_SECONDS = 30
WINDOW = 1  # time steps accepted either side of now


def _encrypt(secret: str) -> str:
    return crypto.fernet(crypto.TOTP_SECRET).encrypt(secret.encode()).decode()


def secret_of(device: TOTPDevice) -> str:
    return crypto.fernet(crypto.TOTP_SECRET).decrypt(device.encrypted_secret.encode()).decode()


def confirmed_device(user) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user.pk, confirmed__isnull=False).first()


def start_enrolment(user) -> TOTPDevice | None:
    """The unconfirmed device of ``user`` (a new 160-bit key, RFC 4226 4), or None when an app is
    already set up (it must be removed first)."""
    device = TOTPDevice.objects.filter(user=user.pk).first()
    if device is not None and device.confirmed is not None:
        return None
    if device is None:
        device = TOTPDevice.objects.create(user=user, encrypted_secret=_encrypt(pyotp.random_base32(32)))
    return device


def provisioning_uri(device: TOTPDevice, user) -> str:
    return pyotp.TOTP(secret_of(device), digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=user.get_username(), issuer_name=app_settings.TOTP_ISSUER
    )


def qr_data_uri(uri: str) -> str:
    """The provisioning URI as an SVG QR code in a ``data:`` URI: drawn here, no external service
    (the example CSP allows ``img-src data:``)."""
    out = io.BytesIO()
    segno.make(uri, error="m").save(out, kind="svg", scale=5, border=2, xmldecl=False, svgns=True)
    return "data:image/svg+xml;base64," + base64.b64encode(out.getvalue()).decode()


def normalise(code: str) -> str | None:
    """The digits of ``code`` (spaces allowed, as apps show them), or None if it cannot be one."""
    digits = "".join(code.split()) if isinstance(code, str) and len(code) <= 32 else ""
    return digits if len(digits) == DIGITS and digits.isascii() and digits.isdigit() else None


def verify(device: TOTPDevice, code: str, *, confirming: bool = False) -> bool:
    """Whether ``code`` is valid now for ``device``, and not a time step already used: the step is
    recorded in the same UPDATE that checks it, so two requests with one code cannot both pass."""
    digits = normalise(code)
    if digits is None:
        return False
    totp = pyotp.TOTP(secret_of(device), digits=DIGITS, interval=STEP_SECONDS)
    now = int(time.time()) // STEP_SECONDS
    for counter in range(now - WINDOW, now + WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(counter), digits):
            rows = TOTPDevice.objects.filter(pk=device.pk, confirmed__isnull=confirming).filter(
                Q(last_counter__isnull=True) | Q(last_counter__lt=counter)
            )
            now_dt = timezone.now()
            changes = {"last_counter": counter, "last_used": now_dt}
            if confirming:
                changes["confirmed"] = now_dt
            return rows.update(**changes) == 1
    return False


def remove(user) -> bool:
    return TOTPDevice.objects.filter(user=user.pk).delete()[0] > 0


def reencrypt() -> int:
    """Encrypt every stored key under the first of SECRET_KEYS (``oidc_keys reencrypt``)."""
    box = crypto.fernet(crypto.TOTP_SECRET)
    count = 0
    for device in TOTPDevice.objects.all().iterator():
        rotated = box.rotate(device.encrypted_secret.encode()).decode()
        TOTPDevice.objects.filter(pk=device.pk).update(encrypted_secret=rotated)
        count += 1
    return count
