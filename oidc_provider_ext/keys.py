"""Signing-key store: keys live in the database, private halves encrypted at rest.

Signing and verification read an in-process snapshot of the published keys, so minting a token
costs no query once warm. The snapshot is refreshed after ``SNAPSHOT_TTL_SECONDS`` and dropped at
once in the process that changes a key (signals below); other processes pick a change up within the
TTL, which is why a new key is published as ``next`` well before it becomes ``active``.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.db import IntegrityError, transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone
from jwcrypto import jwk, jwt

from .conf import app_settings
from .models import SigningKey

log = logging.getLogger(__name__)

SNAPSHOT_TTL_SECONDS = 60
UNKNOWN_KID_RELOAD_SECONDS = 5
_PUBLISHED_STATES = (SigningKey.State.NEXT, SigningKey.State.ACTIVE, SigningKey.State.RETIRED)


class KeyDecryptionError(Exception):
    """The private key cannot be decrypted: KEY_ENCRYPTION_SECRET (or SECRET_KEY) changed."""


def _fernet() -> Fernet:
    secret = app_settings.KEY_ENCRYPTION_SECRET.encode()
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"oidc-provider-ext key-encryption"
    ).derive(secret)
    return Fernet(base64.urlsafe_b64encode(derived))


def _generate(alg: str) -> jwk.JWK:
    if alg == SigningKey.Algorithm.ES256:
        return jwk.JWK.generate(kty="EC", crv="P-256")
    return jwk.JWK.generate(kty="RSA", size=2048)


def create_key(alg: str = "RS256", state: str = SigningKey.State.NEXT) -> SigningKey:
    """Generate a key pair and store it (private half encrypted)."""
    if alg not in SigningKey.Algorithm.values:
        raise ValueError(f"Unsupported signing algorithm {alg!r}; use one of {SigningKey.Algorithm.values}.")
    key = SigningKey(alg=alg, state=state)
    pair = _generate(alg)
    public = json.loads(pair.export_public())
    public.update(kid=key.kid, alg=alg, use="sig")
    key.public_jwk = public
    key.private_jwk_encrypted = _fernet().encrypt(pair.export_private().encode()).decode()
    if state == SigningKey.State.ACTIVE:
        key.activated = timezone.now()
    key.save()
    return key


@dataclass(frozen=True)
class _Snapshot:
    loaded_at: float
    signing: dict[str, tuple[str, jwk.JWK]]  # alg -> (kid, private JWK)
    verifying: dict[str, jwk.JWK]  # kid -> public JWK
    jwks: dict


_lock = threading.Lock()
_snapshot: _Snapshot | None = None


def _load_snapshot() -> _Snapshot:
    fernet = _fernet()
    signing: dict[str, tuple[str, jwk.JWK]] = {}
    verifying: dict[str, jwk.JWK] = {}
    published = []
    for key in SigningKey.objects.filter(state__in=_PUBLISHED_STATES).order_by("created"):
        verifying[key.kid] = jwk.JWK(**key.public_jwk)
        published.append(key.public_jwk)
        if key.state == SigningKey.State.ACTIVE:
            try:
                private = fernet.decrypt(key.private_jwk_encrypted.encode())
            except InvalidToken as exc:
                raise KeyDecryptionError(
                    f"Signing key {key.kid} cannot be decrypted: KEY_ENCRYPTION_SECRET or SECRET_KEY changed."
                ) from exc
            signing[key.alg] = (key.kid, jwk.JWK.from_json(private))
    return _Snapshot(time.monotonic(), signing, verifying, {"keys": published})


def _current() -> _Snapshot:
    global _snapshot
    snap = _snapshot
    if snap is None or time.monotonic() - snap.loaded_at > SNAPSHOT_TTL_SECONDS:
        with _lock:
            _snapshot = snap = _load_snapshot()
    return snap


def invalidate() -> None:
    """Drop this process's snapshot; the next use reloads from the database."""
    global _snapshot
    _snapshot = None


@receiver(post_save, sender=SigningKey)
@receiver(post_delete, sender=SigningKey)
def _key_changed(**kwargs) -> None:
    invalidate()


def signing_key(alg: str | None = None) -> tuple[str, jwk.JWK]:
    """``(kid, private JWK)`` of the active key for ``alg``; creates one on first use."""
    alg = alg or app_settings.SIGNING_ALG
    found = _current().signing.get(alg)
    if found:
        return found
    try:
        with transaction.atomic():
            create_key(alg, state=SigningKey.State.ACTIVE)
            log.warning(
                "No active %s signing key existed; created one. Manage keys with `manage.py oidc_keys`.", alg
            )
    except IntegrityError:
        pass  # another process created it at the same moment
    invalidate()
    return _current().signing[alg]


def verification_key(kid: str) -> jwk.JWK | None:
    """The published public key with ``kid``, or None."""
    snap = _current()
    key = snap.verifying.get(kid)
    if key is None and time.monotonic() - snap.loaded_at > UNKNOWN_KID_RELOAD_SECONDS:
        # Maybe a key another process published since our snapshot. Bounded so a flood of
        # made-up kids cannot turn into a flood of queries.
        invalidate()
        key = _current().verifying.get(kid)
    return key


def jwks() -> dict:
    """The JWK Set: every key that may verify a live token (next, active, retired)."""
    return _current().jwks


def sign(claims: dict, *, typ: str = "JWT", alg: str | None = None) -> str:
    """Compact JWS over ``claims`` with the active key; the header carries ``kid``."""
    kid, key = signing_key(alg)
    header = {"alg": alg or app_settings.SIGNING_ALG, "typ": typ, "kid": kid}
    token = jwt.JWT(header=header, claims=claims)
    token.make_signed_token(key)
    return token.serialize()
