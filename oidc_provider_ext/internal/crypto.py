"""The provider's own secrets, apart from Django's SECRET_KEY. Private: used by keys.py and
hashers.py.

``OIDC_PROVIDER_EXT["SECRET_KEYS"]`` is a list, newest first. From each entry one key per purpose
is derived (HKDF-SHA256, the purpose as ``info``): the Fernet keys that encrypt signing keys and TOTP
secrets at rest and the HMAC keys of generated client secrets and recovery codes. The first entry
encrypts and hashes; every entry decrypts and verifies, so a secret is rotated by putting a new one
first, re-encrypting (``manage.py oidc_keys reencrypt``) and dropping the old one once nothing needs it
(docs/operations.md, "Secrets").

Unset, the list is ``[SECRET_KEY, *SECRET_KEY_FALLBACKS]``: convenient for development, and refused
by ``check --deploy`` (oidc_provider_ext.E020), because whoever knows SECRET_KEY (a default left in
settings, a leaked environment) could then decrypt the private keys from a database dump.
"""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from oidc_provider_ext.conf import app_settings

# HKDF info per purpose. The first two are the derivations used before SECRET_KEYS existed, so data
# stored then still decrypts and verifies.
KEY_ENCRYPTION = b"oidc-provider-ext key-encryption"
CLIENT_SECRET = b"oidc-provider-ext client-secret"
DEVICE_USER_CODE = b"oidc-provider-ext device-user-code"
TOTP_SECRET = b"oidc-provider-ext totp-secret"
RECOVERY_CODE = b"oidc-provider-ext recovery-code"


@lru_cache(maxsize=64)
def _derive(secret: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret.encode())


def derived_keys(purpose: bytes) -> list[bytes]:
    """One 32-byte key per configured secret, the current one first."""
    return [_derive(secret, purpose) for secret in app_settings.SECRET_KEYS]


def fernet(purpose: bytes = KEY_ENCRYPTION) -> MultiFernet:
    """Encrypts with the current secret's key, decrypts with any configured one."""
    return MultiFernet([Fernet(base64.urlsafe_b64encode(key)) for key in derived_keys(purpose)])
