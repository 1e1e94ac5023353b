"""internal/jws.py: compact JWS straight on cryptography keys, interchangeable with jwcrypto's."""

from __future__ import annotations

import json

import pytest
from jwcrypto import jwk, jwt

from oidc_provider_ext.internal import jws as jose

KEYS = {
    "RS256": lambda: jwk.JWK.generate(kty="RSA", size=2048),
    "PS256": lambda: jwk.JWK.generate(kty="RSA", size=2048),
    "ES256": lambda: jwk.JWK.generate(kty="EC", crv="P-256"),
    "ES384": lambda: jwk.JWK.generate(kty="EC", crv="P-384"),
}
CLAIMS = {"iss": "https://op.example", "sub": "ü-42", "aud": ["a", "b"], "exp": 2_000_000_000}


@pytest.fixture(scope="module")
def keys():
    return {alg: make() for alg, make in KEYS.items()}


@pytest.mark.parametrize("alg", sorted(KEYS))
def test_what_it_signs_jwcrypto_verifies_and_the_reverse(keys, alg):
    key = keys[alg]
    header = {"alg": alg, "typ": "at+jwt", "kid": "k1"}
    token = jose.sign(header, CLAIMS, key)
    parsed = jwt.JWT(jwt=token, key=key, algs=[alg], expected_type="JWS")
    assert json.loads(parsed.claims) == CLAIMS
    assert parsed.token.jose_header == header

    theirs = jwt.JWT(header=header, claims=CLAIMS)
    theirs.make_signed_token(key)
    assert json.loads(jose.verify(theirs.serialize(), key, alg)) == CLAIMS


def test_the_serialisation_is_jwcryptos(keys):
    """Relying parties see the same header and payload bytes as before (sorted, compact JSON)."""
    header = {"typ": "JWT", "kid": "k1", "alg": "RS256"}
    mine = jose.sign(header, CLAIMS, keys["RS256"]).split(".")[:2]
    theirs = jwt.JWT(header=header, claims=CLAIMS)
    theirs.make_signed_token(keys["RS256"])
    assert mine == theirs.serialize().split(".")[:2]


@pytest.mark.parametrize(
    ("alg", "other"),
    [
        ("ES256", "ES384"),  # RFC 7518 3.4: ES256 is P-256 only
        ("ES256", "RS256"),  # RFC 8725 3.1: an RSA key never verifies an ECDSA token
        ("RS256", "ES256"),
        ("PS256", "RS256"),  # PKCS#1 v1.5 and PSS are different algorithms over the same key
    ],
)
def test_a_token_verifies_only_with_its_own_algorithm_and_key(keys, alg, other):
    token = jose.sign({"alg": alg, "kid": "k"}, CLAIMS, keys[alg])
    with pytest.raises(ValueError):
        jose.verify(token, keys[other], alg)
    with pytest.raises(ValueError):
        jose.verify(token, keys[alg], other)


@pytest.mark.parametrize("alg", sorted(KEYS))
def test_tampering_is_refused(keys, alg):
    key = keys[alg]
    header, payload, signature = jose.sign({"alg": alg}, CLAIMS, key).split(".")
    other_payload = jose.b64url(json.dumps({**CLAIMS, "sub": "admin"}).encode())
    bad = [
        f"{header}.{other_payload}.{signature}",
        f"{header}.{payload}.",
        f"{header}.{payload}.{signature[:-4]}",  # an ECDSA signature of the wrong length too
        f"{header}.{payload}.{signature}==",
        f"{header}.{payload}.{signature}A",
        f"{header}.{payload}",
        f"{header}.{payload}.{signature}.x",
        # RFC 7515 2: base64url without padding, its alphabet only. A lenient decoder drops the
        # other characters, so one signature would verify under many spellings of the token.
        f"{header}.{payload}.{signature[:8]}!!!!{signature[8:]}",
        f"{header}.{payload}.{signature[:8]}\n\n\n\n{signature[8:]}",
        f"{header}.{payload}.{signature[:8]}+{signature[9:]}",
        f"{header}.{payload[:4]}****{payload[4:]}.{signature}",
    ]
    for token in bad:
        with pytest.raises((ValueError, TypeError)):
            jose.verify(token, key, alg)


def test_a_public_key_does_not_sign(keys):
    public = jwk.JWK(**keys["RS256"].export_public(as_dict=True))
    with pytest.raises(Exception):  # noqa: B017 - jwcrypto refuses the operation itself
        jose.sign({"alg": "RS256"}, CLAIMS, public)


def test_the_cryptography_key_is_taken_once_per_jwk_object(keys, monkeypatch):
    key = jwk.JWK(**keys["RS256"].export(as_dict=True))
    first = jose.op_key(key, "verify")
    assert jose.op_key(key, "verify") is first
    # Another object (a reloaded key store, a refetched JWKS) is another entry.
    again = jwk.JWK(**keys["RS256"].export(as_dict=True))
    assert jose.op_key(again, "verify") is not first
    # The cache is bounded.
    monkeypatch.setattr(jose, "_MAX_CACHED_KEYS", 2)
    for _ in range(5):
        jose.op_key(jwk.JWK(**keys["ES256"].export(as_dict=True)), "verify")
    assert len(jose._op_keys) <= 2


@pytest.mark.parametrize("length", range(0, 10))
def test_b64url_decode_is_base64url_without_padding(length):
    data = bytes(range(250, 250 - length, -1))  # bytes whose base64 uses "-" and "_"
    encoded = jose.b64url(data)
    assert jose.b64url_decode(encoded) == data
    # RFC 7515 2: the base64url alphabet, no padding, no whitespace; each refused, not skipped.
    for bad in ("=", "+", "/", " ", "\n", "!", "é", "\x00", "."):
        for where in (0, len(encoded) // 2, len(encoded)):
            with pytest.raises(ValueError):
                jose.b64url_decode(encoded[:where] + bad + encoded[where:])
    with pytest.raises(ValueError):  # no padding means no length of 4k + 1
        jose.b64url_decode("A" * (4 * length + 1))
