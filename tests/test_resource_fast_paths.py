"""The cheaper paths of offline access-token validation refuse exactly what the plain ones did.

validate_access_token scans a payload that is exactly one JSON object straight with the C scanner
(anything else goes through the whole decoder), reads its settings under one look-up, checks each
key once per algorithm (internal/jws.py) and tests claim types by identity. Each test here breaks
one rule with a token carrying a real signature, so only the rule can refuse it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from types import MappingProxyType

import pytest
from django.core.exceptions import ImproperlyConfigured
from jwcrypto import jwk

from oidc_provider_ext import keys
from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.internal import jws as jose
from oidc_provider_ext.resource import AccessTokenClaims, InvalidToken, validate_access_token

from .conftest import oidc_settings
from .resource_views import AUDIENCE
from .test_resource import access_claims, b64

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.resource_views")]


@pytest.fixture(autouse=True)
def _no_revocation_check(settings):
    # Tokens made here have no DOT row; the rules under test must be what refuses them.
    oidc_settings(settings, RESOURCE_SERVER_CHECK_REVOCATION=False)


def claims_text(**overrides: object) -> str:
    """The members of a valid payload as JSON text, without the braces (to add more by hand)."""
    return json.dumps(access_claims(**overrides), separators=(",", ":"))[1:-1]


def signed(payload: str) -> str:
    """``payload`` byte for byte under a real RS256 signature of the provider's active key; "<C>"
    in it stands for the members of a valid payload (made now, so that it has not expired)."""
    kid, key = keys.signing_key()
    header = b64(json.dumps({"alg": "RS256", "kid": kid, "typ": "at+jwt"}))
    signing_input = f"{header}.{b64(payload.replace('<C>', claims_text()))}"
    algorithm = jose.ALGORITHMS["RS256"]
    raw = key.get_op_key("sign").sign(signing_input.encode(), jose._padding(algorithm), algorithm.hash())
    return f"{signing_input}.{b64(raw)}"


def refused(payload: str, complaint: str) -> None:
    with pytest.raises(InvalidToken) as raised:
        validate_access_token(signed(payload), audience=AUDIENCE)
    assert complaint.lower() in raised.value.description.lower(), raised.value.description


def test_the_helpers_make_a_valid_token():
    claims = validate_access_token(signed("{<C>}"), audience=AUDIENCE)
    assert claims.sub == "42" and claims.scopes == ("openid", "profile")


# --- RFC 7515 4 / RFC 7519 4: duplicate member names in the payload ------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        # A parser keeping the last aud would accept these; one keeping the first, the reverse.
        '{"aud":"someone-else",<C>}',
        '{<C>,"aud":"someone-else"}',
        f'{{<C>,"aud":"{AUDIENCE}"}}',  # the same value twice is a duplicate too
        # The same name spelled with an escape: JSON names compare after unescaping.
        '{"\\u0061ud":"someone-else",<C>}',
        '{<C>,"\\u0061\\u0075\\u0064":"someone-else"}',
        '{"s\\u0063ope":"admin",<C>}',
        # Inside a nested object, at any depth, and in an object inside a list.
        '{<C>,"cnf":{"jkt":"a","jkt":"b"}}',
        '{<C>,"cnf":{"x":{"y":1,"\\u0079":2}}}',
        '{<C>,"authorization_details":[{"type":"a","type":"b"}]}',
        # Whitespace around the payload or its members, which the fast scan leaves to json.
        ' {"aud":"someone-else",<C>} ',
        '{"aud" : "someone-else", <C>}',
        '{"aud"\n:"someone-else",\t<C>}\n',
    ],
)
def test_duplicate_payload_names_are_refused(payload):
    refused(payload, "payload is not a JSON object")


@pytest.mark.parametrize(
    "payload",
    [
        " {<C>}",  # JSON allows whitespace around the value: decoded as before
        "{<C>}\n",
        '{<C>,"aud2":"x","a\\u0075d3":{"aud":"nested is another object"}}',
    ],
)
def test_payloads_json_accepts_still_pass(payload):
    assert validate_access_token(signed(payload), audience=AUDIENCE).sub == "42"


@pytest.mark.parametrize(
    "payload",
    [
        "{<C>}{}",  # trailing data after the object
        "{<C>} x",
        "{<C>",  # unterminated
        "{<C>,}",
        "[{<C>}]",
        '"{}"',
        '{<C>,"x":NaN}',
        '{<C>,"x":[Infinity]}',
        '{<C>,"x":{"y":-Infinity}}',
        '{<C>,"exp":Infinity}',
    ],
)
def test_payloads_that_are_not_one_json_object_are_refused(payload):
    refused(payload, "payload is not a JSON object")


# --- RFC 9068 4 / RFC 7519 2: the claims' types ---------------------------------------------------


@pytest.mark.parametrize(
    ("claim", "value", "complaint"),
    [
        ("exp", True, "exp claim is missing or not a number"),
        ("exp", False, "exp claim is missing or not a number"),
        ("iat", True, "iat claim is missing or not a number"),
        ("nbf", True, "nbf claim is missing or not a number"),
        ("nbf", "0", "nbf claim is missing or not a number"),
        ("nbf", None, "nbf claim is missing or not a number"),
        ("exp", None, "exp claim is missing or not a number"),
        ("exp", [2_000_000_000], "exp claim is missing or not a number"),
        ("iss", "", "iss claim is missing or not a string"),
        ("iss", 1, "iss claim is missing or not a string"),
        ("sub", "", "sub claim is missing or not a string"),
        ("sub", ["42"], "sub claim is missing or not a string"),
        ("client_id", 7, "client_id claim is missing or not a string"),
        ("client_id", "", "client_id claim is missing or not a string"),
        ("jti", "", "jti claim is missing or not a string"),
        ("jti", None, "jti claim is missing or not a string"),
        ("aud", None, "aud claim is missing or malformed"),
        ("aud", {"a": AUDIENCE}, "aud claim is missing or malformed"),
        ("aud", [AUDIENCE, None], "aud claim is missing or malformed"),
        ("aud", [[AUDIENCE]], "aud claim is missing or malformed"),
        ("aud", "", "not meant for this resource server"),
        ("aud", ["x", "y"], "not meant for this resource server"),
        ("scope", None, "scope claim is not a string"),
        ("scope", 1, "scope claim is not a string"),
    ],
)
def test_claim_types(claim, value, complaint):
    refused("{" + claims_text(**{claim: value}) + "}", complaint)


@pytest.mark.parametrize("literal", ["1e400", "-1e400"])
def test_a_number_too_large_for_a_float_is_not_finite(literal):
    # json reads 1e400 as float("inf"): RFC 7519 2 NumericDate is finite.
    payload = "{" + claims_text(exp="EXP") + "}"
    refused(payload.replace('"EXP"', literal), "exp claim is missing or not a number")


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("literal", ["1" + "0" * 400, "-" + "9" * 400])
def test_an_integer_too_large_for_a_float_is_refused_not_raised(claim, literal):
    # JSON integers have no bound (RFC 8259 6); math.isfinite() raises OverflowError on one past a
    # float's range. A NumericDate no clock can reach is refused like any other bad number.
    payload = "{" + claims_text(**{claim: "N"}) + "}"
    refused(payload.replace('"N"', literal), f"{claim} claim is missing or not a number")


def test_the_checks_keep_their_order():
    # Several rules broken at once: the first in RFC 9068 4's order is the one named.
    now = int(time.time())
    refused("{" + claims_text(iss="x", exp=True, sub="") + "}", "not issued by the issuer")
    refused("{" + claims_text(exp=now - 600, iat=True, sub="") + "}", "expired")
    refused("{" + claims_text(iat=now + 600, aud=7) + "}", "issued in the future")
    refused("{" + claims_text(aud=["x"], scope=1) + "}", "not meant for this resource server")
    refused("{" + claims_text(scope=1, sub="") + "}", "scope claim")
    refused("{" + claims_text(sub="", client_id="", jti="") + "}", "sub claim")
    refused("{" + claims_text(client_id="", jti="") + "}", "client_id claim")


def test_the_returned_claims():
    now = int(time.time())
    payload = "{" + claims_text(aud=["x", AUDIENCE], scope=" openid  profile ", exp=now + 60.5) + "}"
    claims = validate_access_token(signed(payload), audience=AUDIENCE)
    assert type(claims) is AccessTokenClaims
    assert claims.audience == ("x", AUDIENCE) and type(claims.audience) is tuple
    assert claims.scopes == ("openid", "profile")
    assert claims.expires_at == now + 60.5 and claims.issued_at == now
    assert claims.issuer == app_settings.ISSUER and claims.jti and claims.client_id == AUDIENCE
    assert dict(claims.claims) == json.loads(payload)
    with pytest.raises(TypeError):
        claims.claims["sub"] = "root"  # type: ignore[index]
    assert math.isfinite(claims.expires_at)


def test_the_returned_claims_are_what_the_dataclass_makes():
    # _check_claims fills the frozen dataclass's __dict__ at once rather than through __init__.
    claims = validate_access_token(signed("{<C>}"), audience=AUDIENCE)
    names = [field.name for field in dataclasses.fields(AccessTokenClaims)]
    assert list(vars(claims)) == names  # every field, and nothing else
    made = AccessTokenClaims(**{name: getattr(claims, name) for name in names})
    assert made == claims and repr(made) == repr(claims)
    assert not hasattr(AccessTokenClaims, "__post_init__") and not hasattr(AccessTokenClaims, "__slots__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        claims.sub = "root"  # type: ignore[misc]
    assert isinstance(claims.claims, MappingProxyType)
    assert claims.has_scopes("openid") and not claims.has_scopes("admin") and claims.has_resource_owner


# --- the settings, read under one look-up ---------------------------------------------------------


def test_settings_that_fail_are_still_reported_after_the_token_form(settings):
    token = signed("{<C>}")
    oidc_settings(settings, RESOURCE_SERVER_AUDIENCE=AUDIENCE, RESOURCE_SERVER_JWKS_URL="http://evil.example")
    # A malformed token is refused for its form first, as before the look-ups were merged...
    with pytest.raises(InvalidToken):
        validate_access_token("not-a-token")
    # ...and a well-formed one meets the configuration error, every time (never kept).
    for _ in range(2):
        with pytest.raises(ImproperlyConfigured, match="RESOURCE_SERVER_JWKS_URL"):
            validate_access_token(token)
    oidc_settings(settings, RESOURCE_SERVER_JWKS_URL=None)
    assert validate_access_token(token).sub == "42"


def test_a_settings_change_is_seen_at_once(settings):
    token = signed("{<C>}")
    oidc_settings(settings, RESOURCE_SERVER_AUDIENCE=AUDIENCE)
    assert validate_access_token(token).sub == "42"
    oidc_settings(settings, RESOURCE_SERVER_AUDIENCE="someone-else")
    with pytest.raises(InvalidToken, match="not meant for this resource server"):
        validate_access_token(token)
    oidc_settings(settings, RESOURCE_SERVER_AUDIENCE=AUDIENCE, RESOURCE_SERVER_ISSUER="https://other.example")
    with pytest.raises(InvalidToken, match="not issued by the issuer"):
        validate_access_token(token)


# --- the token's form -----------------------------------------------------------------------------


def signed_segments(header: str, payload: str) -> str:
    """``header.payload`` exactly as given, with a real RS256 signature over that text."""
    _, key = keys.signing_key()
    algorithm = jose.ALGORITHMS["RS256"]
    signing_input = f"{header}.{payload}"
    raw = key.get_op_key("sign").sign(signing_input.encode(), jose._padding(algorithm), algorithm.hash())
    return f"{signing_input}.{b64(raw)}"


def _other_spellings(segment: str) -> list[str]:
    # RFC 7515 2: base64url without padding. Each of these decodes to the same bytes under a lenient
    # decoder (base64.urlsafe_b64decode drops what is outside its alphabet and reads padding).
    standard = segment.replace("-", "+").replace("_", "/")
    return [
        segment + "=" * (-len(segment) % 4 or 4),
        segment + "==",
        f"{segment[:4]} {segment[4:]}",
        f"{segment[:4]}\n{segment[4:]}",
        f"{segment[:4]}\x00{segment[4:]}",
        f"{segment[:4]}!{segment[4:]}",
        *([standard] if standard != segment else []),
    ]


def test_a_real_signature_over_another_spelling_of_the_payload_is_refused():
    # The form is checked where each segment is decoded (no regex over the whole token first): a
    # signature made over the odd text itself must not carry it through.
    kid, _ = keys.signing_key()
    header = b64(json.dumps({"alg": "RS256", "kid": kid, "typ": "at+jwt"}))
    # Six "?" hold an aligned "???" (base64 "Pz8/"), six "~" an aligned "~~~" ("fn5+"): the
    # payload has both "_" and "-", which other spellings turn into "/" and "+".
    payload = b64("{" + claims_text(sub="??????~~~~~~") + "}")
    assert validate_access_token(signed_segments(header, payload), audience=AUDIENCE).sub == "??????~~~~~~"
    assert "-" in payload and "_" in payload
    for spelling in _other_spellings(payload):
        with pytest.raises(InvalidToken):
            validate_access_token(signed_segments(header, spelling), audience=AUDIENCE)
    for spelling in _other_spellings(header):
        with pytest.raises(InvalidToken):
            validate_access_token(signed_segments(spelling, payload), audience=AUDIENCE)


def test_an_eddsa_signature_over_another_spelling_of_the_payload_is_refused(monkeypatch):
    # EdDSA (met through a remote JWKS) is verified by jwcrypto, whose base64url decoder is lenient
    # (it pads and drops what is outside the alphabet): the payload is decoded strictly here too.
    from oidc_provider_ext import resource

    private = jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="ed")
    public = jwk.JWK(**private.export_public(as_dict=True))
    monkeypatch.setattr(resource, "_verification_key", lambda kid, url: public if kid == "ed" else None)
    header = b64(json.dumps({"alg": "EdDSA", "kid": "ed", "typ": "at+jwt"}))
    payload = b64("{" + claims_text(sub="??????~~~~~~") + "}")

    def ed_signed(header: str, payload: str) -> str:
        signing_input = f"{header}.{payload}"
        return f"{signing_input}.{b64(private.get_op_key('sign').sign(signing_input.encode()))}"

    assert validate_access_token(ed_signed(header, payload), audience=AUDIENCE).sub == "??????~~~~~~"
    for spelling in _other_spellings(payload):
        with pytest.raises(InvalidToken):
            validate_access_token(ed_signed(header, spelling), audience=AUDIENCE)


def test_another_spelling_of_a_real_signature_is_refused():
    token = signed("{<C>}")
    header, payload, signature = token.split(".")
    assert validate_access_token(token, audience=AUDIENCE).sub == "42"
    for spelling in _other_spellings(signature):
        with pytest.raises(InvalidToken):
            validate_access_token(f"{header}.{payload}.{spelling}", audience=AUDIENCE)


@pytest.mark.parametrize(
    "token", ["a.b.c.d", "..", "a..c", ".b.c", "abc", "", "a.b", "é.e30.c2ln", "e30.é.c2ln"]
)
def test_what_is_not_three_segments_of_ascii_is_not_a_jwt(token):
    with pytest.raises(InvalidToken, match="not a signed JWT"):
        validate_access_token(token, audience=AUDIENCE)


def test_the_length_bound_comes_before_the_form():
    with pytest.raises(InvalidToken, match="longer than 8192"):
        validate_access_token("é" * 9000, audience=AUDIENCE)
    with pytest.raises(InvalidToken, match="not a signed JWT"):
        validate_access_token("é.e30.c2ln", audience=AUDIENCE)


# --- internal/jws.py: a key's fit is checked once per algorithm, and a misfit is never kept ---------


def test_a_key_checked_for_one_algorithm_is_not_taken_for_another():
    rsa = jwk.JWK.generate(kty="RSA", size=2048)
    p256 = jwk.JWK.generate(kty="EC", crv="P-256")
    rs_token = jose.sign({"alg": "RS256"}, {"a": 1}, rsa)
    es_token = jose.sign({"alg": "ES256"}, {"a": 1}, p256)
    assert json.loads(jose.verify(rs_token, rsa, "RS256")) == {"a": 1}
    assert json.loads(jose.verify(es_token, p256, "ES256")) == {"a": 1}
    for _ in range(2):  # the first refusal is not cached as a pass, nor the pass reused
        with pytest.raises(ValueError, match="does not fit"):
            jose.verify(es_token, rsa, "ES256")
        with pytest.raises(ValueError, match="does not fit"):
            jose.verify(rs_token, p256, "RS256")
        with pytest.raises(ValueError, match="curve"):
            jose.verify(es_token, p256, "ES384")


def test_a_new_jwk_object_is_checked_anew():
    # The cache is by JWK object: the same kid's new key (a new object) is checked on its own.
    rsa = jwk.JWK.generate(kty="RSA", size=2048)
    token = jose.sign({"alg": "RS256"}, {"a": 1}, rsa)
    jose.verify(token, jwk.JWK(**rsa.export_public(as_dict=True)), "RS256")
    other = jwk.JWK(**jwk.JWK.generate(kty="EC", crv="P-256").export_public(as_dict=True))
    with pytest.raises(ValueError, match="does not fit"):
        jose.verify(token, other, "RS256")
