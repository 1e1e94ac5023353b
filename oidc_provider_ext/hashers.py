"""A fast, keyed hasher for the client secrets this provider generates.

PBKDF2 exists to make guessing a human-chosen password expensive. A secret drawn from the OS
CSPRNG with at least 256 bits of entropy cannot be guessed whatever the hash costs, so one
HMAC-SHA-256 under a server-side key protects it as well as 1,000,000 PBKDF2 rounds do — and costs
microseconds instead of ~0.25 s per token request. Secrets that do not look generated (short, or
from a small alphabet) keep Django's default slow hasher. See docs/client-secrets.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import string

from django.contrib.auth.hashers import BasePasswordHasher, mask_hash
from django.utils.crypto import constant_time_compare, get_random_string

from .internal import crypto

ALGORITHM = "oidc_hmac_sha256"
MIN_GENERATED_BITS = 256
_CLASSES = (string.ascii_lowercase, string.ascii_uppercase, string.digits)


def looks_generated(secret: str) -> bool:
    """Whether ``secret`` has the shape of a CSPRNG secret of at least 256 bits: its length times
    the bits per character of the alphabet it draws from (at least letters of both cases and
    digits, as DOT's generator and ``secrets.token_urlsafe`` produce)."""
    classes = [alphabet for alphabet in _CLASSES if any(c in alphabet for c in secret)]
    if len(classes) < len(_CLASSES) or len(set(secret)) < 16:
        return False
    alphabet_size = sum(len(alphabet) for alphabet in classes)
    return len(secret) * math.log2(alphabet_size) >= MIN_GENERATED_BITS


def _keys() -> list[bytes]:
    return crypto.derived_keys(crypto.CLIENT_SECRET)


class ClientSecretHasher(BasePasswordHasher):
    """``oidc_hmac_sha256$<salt>$<HMAC-SHA-256(key, salt + secret)>``; the key derives from the first
    of ``SECRET_KEYS`` (every one of them when verifying, so the secret can be rotated)."""

    algorithm = ALGORITHM

    def salt(self):
        return get_random_string(16)

    def _digest(self, key: bytes, password: str, salt: str) -> str:
        mac = hmac.new(key, (salt + "$" + password).encode(), hashlib.sha256).digest()
        return base64.b64encode(mac).decode("ascii")

    def encode(self, password, salt):
        if password is None or not salt or "$" in salt:
            raise ValueError("A password and a salt without '$' are required.")
        return f"{self.algorithm}${salt}${self._digest(_keys()[0], password, salt)}"

    def decode(self, encoded):
        algorithm, salt, digest = encoded.split("$", 2)
        assert algorithm == self.algorithm
        return {"algorithm": algorithm, "hash": digest, "salt": salt}

    def verify(self, password, encoded):
        decoded = self.decode(encoded)
        return any(
            constant_time_compare(self._digest(key, password, decoded["salt"]), decoded["hash"])
            for key in _keys()
        )

    def verifies_under_current_key(self, password, encoded) -> bool:
        """Whether ``encoded`` was made with the current key (else it is re-hashed on use)."""
        decoded = self.decode(encoded)
        return constant_time_compare(self._digest(_keys()[0], password, decoded["salt"]), decoded["hash"])

    def safe_summary(self, encoded):
        decoded = self.decode(encoded)
        return {
            "algorithm": decoded["algorithm"],
            "salt": mask_hash(decoded["salt"]),
            "hash": mask_hash(decoded["hash"]),
        }

    def must_update(self, encoded):
        return False

    def harden_runtime(self, password, encoded):
        pass  # no work factor to equalise
