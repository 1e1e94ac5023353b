"""Recovery codes: ten single-use codes, shown once, stored as keyed hashes.

Each code is 10 characters of Crockford's base32 (50 bits; no I, L, O or U to misread), written as
two groups of five. What the user types is normalised (case, spaces, dashes, O for 0, I/L for 1)
before it is hashed with HMAC-SHA-256 under the provider's own key (internal/crypto.py) and the
user's id, so a database dump holds nothing that can be typed, and a code of one user is nothing
for another. Using one is a single UPDATE, so a code is accepted at most once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.db import transaction
from django.utils import timezone

from oidc_provider_ext.models import RecoveryCode

from . import crypto

COUNT = 10
ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base32
LENGTH = 10
_TYPOS = str.maketrans({"o": "0", "i": "1", "l": "1"})


def _digest(key: bytes, user, code: str) -> str:
    return hmac.new(key, f"{user.pk}:{code}".encode(), hashlib.sha256).hexdigest()


def normalise(code: str) -> str | None:
    if not isinstance(code, str) or len(code) > 64:
        return None
    cleaned = "".join(code.split()).replace("-", "").lower().translate(_TYPOS)
    if len(cleaned) != LENGTH or any(char not in ALPHABET for char in cleaned):
        return None
    return cleaned


def regenerate(user) -> list[str]:
    """Ten new codes for ``user`` (shown once); every older code stops working."""
    codes = ["".join(secrets.choice(ALPHABET) for _ in range(LENGTH)) for _ in range(COUNT)]
    key = crypto.derived_keys(crypto.RECOVERY_CODE)[0]
    with transaction.atomic():
        RecoveryCode.objects.filter(user=user.pk).delete()
        RecoveryCode.objects.bulk_create(
            RecoveryCode(user=user, code_hash=_digest(key, user, code)) for code in codes
        )
    return [f"{code[:5]}-{code[5:]}" for code in codes]


def remaining(user) -> int:
    return RecoveryCode.objects.filter(user=user.pk, used__isnull=True).count()


def use(user, code: str) -> bool:
    """Whether ``code`` is an unused recovery code of ``user``; it is used up if so."""
    cleaned = normalise(code)
    if cleaned is None:
        return False
    digests = [_digest(key, user, cleaned) for key in crypto.derived_keys(crypto.RECOVERY_CODE)]
    return (
        RecoveryCode.objects.filter(user=user.pk, code_hash__in=digests, used__isnull=True).update(
            used=timezone.now()
        )
        == 1
    )


def remove(user) -> bool:
    return RecoveryCode.objects.filter(user=user.pk).delete()[0] > 0
