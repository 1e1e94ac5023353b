"""Compact JWS (RFC 7515) signing and verification straight on ``cryptography`` key objects.

The hot paths (every token minted, every access token a resource server checks) used jwcrypto's
``JWT``/``JWS`` objects, which deep-copy their header registry for each token: more than half of an
offline access-token check. Keys are still parsed, stored and published as jwcrypto JWKs; this module
only takes each JWK's ``cryptography`` key once (:func:`op_key`) and does the RFC 7518 3 algorithm
itself. Only the algorithms of :data:`ALGORITHMS` are handled; callers refuse or fall back on
jwcrypto for anything else.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from jwcrypto import jwk


@dataclass(frozen=True)
class _Algorithm:
    kty: str
    hash: Callable[[], hashes.HashAlgorithm]
    pss: bool = False
    curve: str | None = None  # RFC 7518 3.4: ES256 is P-256 only, and so on
    size: int = 0  # bytes of r and of s in an ECDSA signature


# RFC 7518 3.1 (the ones this project signs with, and the ones a resource server may meet).
ALGORITHMS: dict[str, _Algorithm] = {
    "RS256": _Algorithm("RSA", hashes.SHA256),
    "RS384": _Algorithm("RSA", hashes.SHA384),
    "RS512": _Algorithm("RSA", hashes.SHA512),
    "PS256": _Algorithm("RSA", hashes.SHA256, pss=True),
    "PS384": _Algorithm("RSA", hashes.SHA384, pss=True),
    "PS512": _Algorithm("RSA", hashes.SHA512, pss=True),
    "ES256": _Algorithm("EC", hashes.SHA256, curve="secp256r1", size=32),
    "ES384": _Algorithm("EC", hashes.SHA384, curve="secp384r1", size=48),
    "ES512": _Algorithm("EC", hashes.SHA512, curve="secp521r1", size=66),
}


def _padding(algorithm: _Algorithm) -> padding.AsymmetricPadding:
    if algorithm.pss:
        # RFC 7518 3.5: MGF1 with the same hash, salt as long as the hash (as jwcrypto does).
        return padding.PSS(padding.MGF1(algorithm.hash()), algorithm.hash.digest_size)  # type: ignore[attr-defined]
    return padding.PKCS1v15()


# What ``public.verify`` takes after the signature and the data, per algorithm, built once: the
# padding, hash and ECDSA objects of ``cryptography`` hold only what their constructor was given
# and are never changed by a sign or verify, so one instance serves every call (and every thread).
_VERIFY_ARGS: dict[str, tuple[Any, ...]] = {
    name: (_padding(algorithm), algorithm.hash()) if algorithm.kty == "RSA" else (ec.ECDSA(algorithm.hash()),)
    for name, algorithm in ALGORITHMS.items()
}


def is_numeric_date(value: object) -> bool:
    """RFC 7519 2: a NumericDate is a JSON number and finite. For values json decoded (exact int
    and float; bool is its own type, not a number); json reads NaN, Infinity and 1e400, and an int
    past a float's range cannot be checked against a clock (math.isfinite raises on it)."""
    if type(value) is not int and type(value) is not float:
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
# RFC 4648 3.5: the bits of the last character beyond the data (4 of a segment of 4k+2 characters,
# 2 of one of 4k+3) are zero; a decoder that ignores them reads 16 (4) spellings of one segment.
_CANONICAL_LAST = {2: frozenset(b"AQgw"), 3: frozenset(b"AEIMQUYcgkosw048")}


def b64url_decode(segment: str) -> bytes:
    """Strict base64url without padding (RFC 7515 2); ValueError otherwise. Python's lenient
    decoder drops characters outside the alphabet, so one signature would verify under many
    spellings of a token: the standard alphabet's "+" and "/" and padding are taken out while the
    URL-safe one is mapped onto it (a changed length refuses the segment), and binascii's strict
    mode refuses anything else; a last character with unused bits set is not the one spelling.
    Non-ASCII text fails to encode (UnicodeEncodeError, a ValueError)."""
    raw = segment.encode("ascii")
    standard = raw.translate(_URLSAFE_TO_STANDARD, b"+/=")
    rest = len(raw) % 4
    if len(standard) != len(raw) or rest == 1 or (rest and raw[-1] not in _CANONICAL_LAST[rest]):
        raise ValueError("not base64url")
    return binascii.a2b_base64(standard + b"=" * (-len(raw) % 4), strict_mode=True)


# --- the cryptography key of a JWK, once --------------------------------------------------------

# One cache: per JWK object, its cryptography key for an operation ("sign", "verify"), and under
# an algorithm's name the public key once it was found to fit that algorithm (RFC 8725 3.1; an ABC
# isinstance, and the curve for ECDSA), so the fit is checked once per key, not per token.
_MAX_CACHED_KEYS = 64
_op_keys: dict[tuple[int, str], tuple[jwk.JWK, Any]] = {}
_op_keys_lock = threading.Lock()


def _cached(slot: tuple[int, str], key: jwk.JWK, compute: Callable[[jwk.JWK, str], Any]) -> Any:
    """The value kept for ``slot`` of ``key``, or ``compute(key, slot[1])`` kept there (an
    exception is not).

    Keyed by the object's identity, and the JWK is held with its value so the identity cannot be
    reused while cached. The key store and the remote JWKS replace their JWK objects when keys
    change, so a changed key is a new entry; the bound keeps a churn of snapshots from growing it.
    """
    cached = _op_keys.get(slot)
    if cached is not None and cached[0] is key:
        return cached[1]
    value = compute(key, slot[1])
    with _op_keys_lock:
        if len(_op_keys) >= _MAX_CACHED_KEYS:
            _op_keys.clear()
        _op_keys[slot] = (key, value)
    return value


def op_key(key: jwk.JWK, operation: str) -> Any:
    """``key.get_op_key(operation)`` (the ``cryptography`` key), computed once per JWK object."""
    return _cached((id(key), operation), key, jwk.JWK.get_op_key)


def _check_key(algorithm: _Algorithm, crypto_key: Any, private: bool) -> None:
    # RFC 8725 3.1: a key is used with its own algorithm only.
    if algorithm.kty == "RSA":
        if not isinstance(crypto_key, rsa.RSAPrivateKey if private else rsa.RSAPublicKey):
            raise ValueError("the key does not fit the algorithm")
        return
    if not isinstance(crypto_key, ec.EllipticCurvePrivateKey if private else ec.EllipticCurvePublicKey):
        raise ValueError("the key does not fit the algorithm")
    if crypto_key.curve.name != algorithm.curve:
        raise ValueError("the key's curve does not fit the algorithm")


def _fitting_public_key(key: jwk.JWK, alg: str) -> Any:
    public = op_key(key, "verify")
    _check_key(ALGORITHMS[alg], public, private=False)  # raises: a misfit is never kept
    return public


def _verifier(key: jwk.JWK, alg: str) -> Any:
    """``op_key(key, "verify")`` once it fits ``alg`` (RFC 8725 3.1); ValueError otherwise."""
    return _cached((id(key), alg), key, _fitting_public_key)


# --- signing and verification -------------------------------------------------------------------


def _json(value: dict[str, Any]) -> bytes:
    # As jwcrypto serialises (compact, sorted keys): the bytes a relying party sees do not change.
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")


def sign(header: dict[str, Any], claims: dict[str, Any], key: jwk.JWK) -> str:
    """Compact JWS of ``claims`` under the protected ``header`` (whose ``alg`` names the algorithm)."""
    algorithm = ALGORITHMS[header["alg"]]
    private = op_key(key, "sign")
    _check_key(algorithm, private, private=True)
    signing_input = f"{b64url(_json(header))}.{b64url(_json(claims))}"
    data = signing_input.encode("ascii")
    if algorithm.kty == "RSA":
        signature = private.sign(data, _padding(algorithm), algorithm.hash())
    else:
        r, s = decode_dss_signature(private.sign(data, ec.ECDSA(algorithm.hash())))
        signature = r.to_bytes(algorithm.size, "big") + s.to_bytes(algorithm.size, "big")
    return f"{signing_input}.{b64url(signature)}"


def verify(token: str, key: jwk.JWK, alg: str) -> bytes:
    """The payload of the compact JWS ``token`` if its signature verifies with ``key`` under
    ``alg``; ValueError otherwise (bad form, wrong key type or curve, bad signature). The header is
    the caller's to check; only the signature over it is verified here."""
    header, payload, signature = token.split(".")
    check_signature(f"{header}.{payload}".encode("ascii"), b64url_decode(signature), key, alg)
    return b64url_decode(payload)


def check_signature(data: bytes, signature: bytes, key: jwk.JWK, alg: str) -> None:
    """ValueError unless ``signature`` (decoded from its segment) verifies the signing input
    ``data`` (RFC 7515 5.2: the header and payload segments as sent, joined by ".") with ``key``
    under ``alg``, a key that fits the algorithm."""
    algorithm = ALGORITHMS[alg]
    public = _verifier(key, alg)
    try:
        if algorithm.kty == "RSA":
            public.verify(signature, data, *_VERIFY_ARGS[alg])
        else:
            if len(signature) != 2 * algorithm.size:  # RFC 7518 3.4: R and S, each of fixed size
                raise ValueError("the ECDSA signature has the wrong length")
            der = encode_dss_signature(
                int.from_bytes(signature[: algorithm.size], "big"),
                int.from_bytes(signature[algorithm.size :], "big"),
            )
            public.verify(der, data, *_VERIFY_ARGS[alg])
    except InvalidSignature as exc:
        raise ValueError("the signature does not verify") from exc
