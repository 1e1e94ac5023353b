"""Review round 10: attacks on the faster offline access-token validation.

Each test tries to make a cheaper path (the C-scanner JSON fast path, the settings read under one
look-up, the per-(key, alg) verifier cache, the claims object filled through ``__dict__``) accept
what the plain path refused, or refuse/raise where it did not.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import gc
import json
import pickle
import threading
import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from jwcrypto import jwk

from oidc_provider_ext import keys
from oidc_provider_ext.internal import jws as jose
from oidc_provider_ext.resource import (
    _JSON,
    AccessTokenClaims,
    InsufficientScope,
    InvalidToken,
    _decode_json,
    validate_access_token,
)

from .conftest import oidc_settings
from .resource_views import AUDIENCE
from .test_resource import b64
from .test_resource_fast_paths import claims_text, refused, signed

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.resource_views")]


@pytest.fixture(autouse=True)
def _no_revocation_check(settings):
    oidc_settings(settings, RESOURCE_SERVER_CHECK_REVOCATION=False)


def _sign_segments(header_segment: str, payload_segment: str) -> str:
    """A real RS256 signature of the active key over the two segments exactly as given."""
    _, key = keys.signing_key()
    signing_input = f"{header_segment}.{payload_segment}"
    algorithm = jose.ALGORITHMS["RS256"]
    raw = key.get_op_key("sign").sign(signing_input.encode(), jose._padding(algorithm), algorithm.hash())
    return f"{signing_input}.{b64(raw)}"


def signed_raw(header_text: str, payload: bytes | str) -> str:
    """``header_text`` ("<KID>" stands for the active kid) and ``payload`` (bytes as they are,
    "<C>" in a str for a valid payload's members) under a real signature."""
    kid, _ = keys.signing_key()
    header = b64(header_text.replace("<KID>", kid))
    body = payload if isinstance(payload, bytes) else payload.replace("<C>", claims_text()).encode()
    return _sign_segments(header, b64(body))


HEADER = '{"alg":"RS256","kid":"<KID>","typ":"at+jwt"}'


def invalid(token: str, complaint: str = "", **kwargs: object) -> None:
    with pytest.raises(InvalidToken) as raised:
        validate_access_token(token, audience=AUDIENCE, **kwargs)
    assert complaint.lower() in raised.value.description.lower(), raised.value.description


# --- the C-scanner fast path decides exactly like the whole decoder --------------------------------


def _verdict(decode, text):
    try:
        return ("ok", decode(text))
    except RecursionError:
        return ("error", "recursion")
    except ValueError:
        return ("error", "value")


@pytest.mark.parametrize(
    "text",
    [
        "\ufeff{}",  # BOM first: neither whitespace nor a value
        "{}\ufeff",
        "\u00a0{}",  # a no-break space is not JSON whitespace
        "{}\u2028",
        "\x0c{}",  # form feed is not JSON whitespace either
        " {} ",
        "\t{}\r\n",
        "{}",
        "",
        " ",
        "{} {}",
        '{"a":1}garbage',
        '{"a":"\\ud800"}',  # a lone surrogate escape: JSON text allows it
        '{"a":"\ud800"}',  # a lone surrogate character
        '{"\\u0000":1,"\\u0000":2}',
        '{"a\\u0000":1,"a":2}',
        '{"a":"\x00"}',  # a raw control character in a string (strict)
        '{"a":"\x1f"}',
        '{"a":NaN}',
        '{"a":-Infinity}',
        '{"a":1e999}',
        '{"a":-0}',
        '{"a":1.0}',
        '{"a":01}',
        '{"a":1.}',
        '{"a":.5}',
        '{"a":+1}',
        '{"a":0x10}',
        '{"a":"' + "1" * 5000 + '"}',
        '{"a":' + "1" * 4301 + "}",  # past int's max str digits: ValueError, not a crash
        '{"a":' + "1" * 5000 + ".0}",
        "[" * 5000 + "]" * 5000,
        '{"a":' * 3000 + "1" + "}" * 3000,
        "1",
        '"{}"',
        "null",
        "-",
        "-Infinity",
        "{'a':1}",
        '{"a":1,}',
        "[1,]",
        '{"a" 1}',
    ],
)
def test_the_fast_path_gives_the_whole_decoders_verdict(text):
    assert _verdict(_decode_json, text) == _verdict(_JSON.decode, text)


@pytest.mark.parametrize(
    "payload",
    [
        b"\xef\xbb\xbf{<C>}",  # a UTF-8 BOM before the object
        b"\xff{<C>}",  # invalid UTF-8
        b'{<C>,"x":"\xed\xa0\x80"}',  # a surrogate encoded in UTF-8 (invalid UTF-8)
        b'{<C>,"x":"\xc0\xaf"}',  # an overlong encoding
        b"{<C>}\x00",
        b"\x00{<C>}",
        b"{<C>}\xc2\xa0",  # a trailing no-break space
    ],
)
def test_payload_bytes_that_are_not_json_text_are_refused(payload):
    raw = payload.replace(b"<C>", claims_text().encode())
    invalid(signed_raw(HEADER, raw), "payload is not a JSON object")


@pytest.mark.parametrize(
    "payload",
    [
        '{"\\u0000":1,<C>,"\\u0000":2}',  # duplicate names made of NUL
        '{"aud\\u0000":"x",<C>,"aud\\u0000":"y"}',
        '{<C>,"sub":"42"}',  # the same sub twice, same value
        '{<C>,"x":[{"a":1,"\\u0061":1}]}',
    ],
)
def test_duplicate_names_with_escapes_and_nuls_are_refused(payload):
    refused(payload, "payload is not a JSON object")


def test_names_that_differ_only_by_a_nul_are_not_duplicates():
    claims = validate_access_token(signed('{<C>,"aud\\u0000":"x","\\u0000":1}'), audience=AUDIENCE)
    assert claims.claims["aud\x00"] == "x" and claims.audience == (AUDIENCE,)


def test_a_lone_surrogate_in_a_claim_is_taken_as_json_takes_it():
    # As before the change: JSON text may escape a lone surrogate; it is only a string here.
    claims = validate_access_token(signed('{<C>,"x":"\\ud800"}'), audience=AUDIENCE)
    assert claims.claims["x"] == "\ud800"


def _outcome(token: str) -> str:
    """What validation made of ``token``: "valid", or InvalidToken's description. Anything else
    (RecursionError, a 500 at a view) fails the test."""
    try:
        validate_access_token(token, audience=AUDIENCE)
    except InvalidToken as exc:
        return exc.description
    return "valid"


# How deep json nests before RecursionError depends on the Python: 3.11 stops well before 1,000
# levels, 3.12+ (a C stack limit) reads these. Either way: refused as a token or read, never raised.
@pytest.mark.parametrize(
    "payload",
    [
        '{<C>,"x":' + "[" * 2500 + "]" * 2500 + "}",
        '{<C>,"x":' + '{"":' * 1050 + "1" + "}" * 1050 + "}",
    ],
)
def test_deep_nesting_in_the_payload_is_refused_or_read_never_raised(payload):
    token = signed(payload)
    assert len(token) <= 8192
    assert _outcome(token) in ("valid", "The access token's payload is not a JSON object.")


def test_a_deeply_nested_list_is_not_a_payload():
    refused("[" * 2500 + "]" * 2500, "payload is not a JSON object")


def test_deep_nesting_in_the_header_is_refused_or_read_never_raised():
    header = '{"alg":"RS256","kid":"<KID>","typ":"at+jwt","x":' + "[" * 2500 + "]" * 2500 + "}"
    token = signed_raw(header, "{<C>}")
    assert len(token) <= 8192
    first = _outcome(token)
    assert first in ("valid", "The access token's header is not a JSON object.")
    assert _outcome(token) == first  # a header that failed is not kept as checked, nor one read


@pytest.mark.parametrize(
    "header",
    [
        '{"alg":"none","alg":"RS256","kid":"<KID>","typ":"at+jwt"}',
        '{"alg":"RS256","kid":"<KID>","typ":"at+jwt","typ":"JWT"}',
        '{"alg":"RS256","kid":"<KID>","typ":"at+jwt","\\u0074yp":"at+jwt"}',
        '{"alg":"RS256","kid":"<KID>","kid":"<KID>","typ":"at+jwt"}',
        ' {"alg":"RS256","kid":"<KID>","typ":"at+jwt","alg":"RS256"}',  # whitespace: slow path
        '{"alg":"RS256","kid":"<KID>","typ":"at+jwt"}{}',
        '{"alg":"RS256","kid":"<KID>","typ":"at+jwt"} x',
        '\ufeff{"alg":"RS256","kid":"<KID>","typ":"at+jwt"}',
        '{"alg":"RS256","kid":"<KID>","typ":"at+jwt","x":NaN}',
        '{"alg":"RS256","kid":"<KID>","typ":"at+jwt","x":' + "9" * 4400 + "}",
    ],
)
def test_headers_the_whole_decoder_refuses_are_refused(header):
    invalid(signed_raw(header, "{<C>}"), "header is not a JSON object")


def test_a_header_with_whitespace_around_it_still_passes():
    assert validate_access_token(signed_raw(" " + HEADER + "\n", "{<C>}"), audience=AUDIENCE).sub == "42"


# --- numbers --------------------------------------------------------------------------------------


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
def test_an_integer_past_the_max_str_digits_is_refused_not_raised(claim):
    # Python refuses to parse an int of more than 4300 digits (ValueError, inside the scanner).
    payload = "{" + claims_text(**{claim: "N"}) + "}"
    refused(payload.replace('"N"', "9" * 4400), "payload is not a JSON object")


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("literal", ["1e999", "-1e999", "1" * 400 + ".5"])
def test_floats_that_overflow_are_not_numbers(claim, literal):
    payload = "{" + claims_text(**{claim: "N"}) + "}"
    refused(payload.replace('"N"', literal), f"{claim} claim is missing or not a number")


def test_minus_zero_and_float_forms_of_numeric_dates():
    refused(("{" + claims_text(exp="N") + "}").replace('"N"', "-0"), "expired")
    refused(("{" + claims_text(exp="N") + "}").replace('"N"', "-0.0"), "expired")
    refused(("{" + claims_text(exp="N") + "}").replace('"N"', "0e5"), "expired")
    now = int(time.time())
    text = ("{" + claims_text(exp="N", iat="I", nbf="B") + "}").replace('"N"', f"{now + 300}.0")
    text = text.replace('"I"', f"{now}e0").replace('"B"', f"{now - 10}.0")
    claims = validate_access_token(signed(text), audience=AUDIENCE)
    assert claims.expires_at == now + 300 and type(claims.expires_at) is float
    assert claims.issued_at == now and type(claims.issued_at) is float


def test_a_far_but_finite_integer_exp_is_taken_as_before():
    # 10**308 is still a float's range: math.isfinite() takes it, as the old _number did.
    payload = ("{" + claims_text(exp="N") + "}").replace('"N"', "1" + "0" * 308)
    assert validate_access_token(signed(payload), audience=AUDIENCE).expires_at == 10**308


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("value", [True, False, "1", [1], {"a": 1}, None])
def test_numeric_dates_of_other_json_types_are_refused(claim, value):
    refused("{" + claims_text(**{claim: value}) + "}", f"{claim} claim is missing or not a number")


def test_leeway_applies_to_exp_iat_and_nbf(settings):
    now = int(time.time())
    expired = signed("{" + claims_text(exp=now - 30) + "}")
    future_iat = signed("{" + claims_text(iat=now + 30) + "}")
    future_nbf = signed("{" + claims_text(nbf=now + 30) + "}")
    oidc_settings(settings, RESOURCE_SERVER_AUDIENCE=AUDIENCE, RESOURCE_SERVER_LEEWAY_SECONDS=0)
    invalid(expired, "expired")
    invalid(future_iat, "issued in the future")
    invalid(future_nbf, "not valid yet")
    oidc_settings(settings, RESOURCE_SERVER_LEEWAY_SECONDS=120)  # seen at once
    for token in (expired, future_iat, future_nbf):
        assert validate_access_token(token, audience=AUDIENCE).sub == "42"
        assert validate_access_token(token).sub == "42"  # the settings' own audience path too
    oidc_settings(settings, RESOURCE_SERVER_LEEWAY_SECONDS=0)
    invalid(expired, "expired")
    with pytest.raises(InvalidToken, match="expired"):
        validate_access_token(expired)


# --- the token's form -------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, b"a.b.c", 1, ["a", "b", "c"], object()])
def test_a_token_that_is_not_a_string_is_invalid(token):
    invalid(token, "not a signed JWT")  # type: ignore[arg-type]


def test_a_megabyte_token_is_refused_by_its_length(settings):
    oidc_settings(settings, RESOURCE_SERVER_AUDIENCE=AUDIENCE)
    token = signed("{<C>}")
    huge = token + "A" * (1 << 20)
    invalid(huge, "longer than 8192")
    with pytest.raises(InvalidToken, match="longer than 8192"):
        validate_access_token(huge)


def test_a_payload_spelled_with_unused_bits_set_is_refused():
    # A signature over the other spelling is real: only strict base64url refuses it.
    kid, _ = keys.signing_key()
    header = b64(HEADER.replace("<KID>", kid))
    body = b64("{" + claims_text() + "}")
    assert len(body) % 4 in (2, 3)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    index = alphabet.index(body[-1])
    other = body[:-1] + alphabet[index + 1]  # the last character's unused low bit set
    assert base64.urlsafe_b64decode(other + "=" * (-len(other) % 4)) == base64.urlsafe_b64decode(
        body + "=" * (-len(body) % 4)
    )
    assert validate_access_token(_sign_segments(header, body), audience=AUDIENCE).sub == "42"
    invalid(_sign_segments(header, other))


def test_a_signature_spelled_with_unused_bits_set_is_refused():
    token = signed("{<C>}")
    head, _, signature = token.rpartition(".")
    assert len(signature) % 4 in (2, 3)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    other = signature[:-1] + alphabet[alphabet.index(signature[-1]) + 1]
    invalid(f"{head}.{other}", "signature is invalid")


# --- the settings, read under one look-up ------------------------------------------------------------


def test_a_bad_leeway_raises_and_is_never_replaced_by_a_default(settings):
    token = signed("{<C>}")
    oidc_settings(settings, RESOURCE_SERVER_AUDIENCE=AUDIENCE, RESOURCE_SERVER_LEEWAY_SECONDS="ten")
    for _ in range(2):
        with pytest.raises(ValueError):
            validate_access_token(token)
        with pytest.raises(ValueError):
            validate_access_token(token, audience=AUDIENCE)


def test_a_missing_issuer_raises_every_time(settings):
    token = signed("{<C>}")
    oidc_settings(settings, RESOURCE_SERVER_AUDIENCE=AUDIENCE)
    assert validate_access_token(token).sub == "42"
    settings.OIDC_PROVIDER_EXT = {
        name: value for name, value in settings.OIDC_PROVIDER_EXT.items() if name != "ISSUER"
    } | {"RESOURCE_SERVER_ISSUER": None}
    for _ in range(2):
        with pytest.raises(ImproperlyConfigured, match="ISSUER"):
            validate_access_token(token)
        with pytest.raises(ImproperlyConfigured, match="ISSUER"):
            validate_access_token(token, audience=AUDIENCE)


def test_a_bad_audience_setting_raises_before_the_token_is_read(settings):
    oidc_settings(settings, RESOURCE_SERVER_AUDIENCE="*")
    for token in ("not-a-token", signed("{<C>}")):
        with pytest.raises(ImproperlyConfigured, match="wildcard"):
            validate_access_token(token)


def test_a_bad_jwks_url_raises_with_an_explicit_audience_too(settings):
    token = signed("{<C>}")
    oidc_settings(settings, RESOURCE_SERVER_JWKS_URL="ftp://keys.example")
    for _ in range(2):
        with pytest.raises(ImproperlyConfigured, match="RESOURCE_SERVER_JWKS_URL"):
            validate_access_token(token, audience=AUDIENCE)
        with pytest.raises(ImproperlyConfigured, match="RESOURCE_SERVER_JWKS_URL"):
            validate_access_token(token, resource="https://api.example")


def test_the_trusted_issuer_is_exact_and_follows_the_settings(settings):
    token = signed("{<C>}")
    oidc_settings(settings, RESOURCE_SERVER_AUDIENCE=AUDIENCE)
    issuer = validate_access_token(token).issuer
    for other in (issuer.upper(), issuer + "/x", issuer + ".", " " + issuer):
        oidc_settings(settings, RESOURCE_SERVER_ISSUER=other)
        with pytest.raises(InvalidToken, match="not issued by the issuer"):
            validate_access_token(token)
        invalid(token, "not issued by the issuer")
    oidc_settings(settings, RESOURCE_SERVER_ISSUER=issuer + "/")  # normalised like ISSUER
    assert validate_access_token(token).issuer == issuer


def test_the_audience_setting_and_explicit_audiences_do_not_mix(settings):
    token = signed("{" + claims_text(aud=["someone-else", AUDIENCE]) + "}")
    oidc_settings(settings, RESOURCE_SERVER_AUDIENCE="api-z")
    with pytest.raises(InvalidToken, match="not meant for this resource server"):
        validate_access_token(token)  # the settings' audience only
    assert validate_access_token(token, audience=[AUDIENCE, "api-q"]).audience == ("someone-else", AUDIENCE)
    with pytest.raises(InvalidToken, match="not meant for this resource server"):
        validate_access_token(token, resource="https://api.example")
    with pytest.raises(InvalidToken, match="not meant for this resource server"):
        validate_access_token(token, audience="api-z")
    # An audience that is a prefix or substring of the token's is not it.
    with pytest.raises(InvalidToken, match="not meant for this resource server"):
        validate_access_token(signed("{" + claims_text(aud=AUDIENCE[:-1]) + "}"), audience=AUDIENCE)
    with pytest.raises(InvalidToken, match="not meant for this resource server"):
        validate_access_token(signed("{" + claims_text(aud=AUDIENCE + "x") + "}"), audience=AUDIENCE)
    for bad in ("*", "", [], [""]):
        with pytest.raises(ImproperlyConfigured):
            validate_access_token(token, audience=bad)


@pytest.mark.parametrize("aud", [[], [AUDIENCE, 1], [AUDIENCE, [AUDIENCE]], 1, True, {"x": 1}])
def test_malformed_aud_is_refused_even_when_it_contains_ours(aud):
    refused("{" + claims_text(aud=aud) + "}", "aud claim is missing or malformed")


# --- required scopes ---------------------------------------------------------------------------------


def test_required_scopes_forms():
    token = signed("{<C>}")
    assert validate_access_token(token, audience=AUDIENCE, required_scopes=()).sub == "42"
    assert validate_access_token(token, audience=AUDIENCE, required_scopes=[]).sub == "42"
    assert validate_access_token(token, audience=AUDIENCE, required_scopes=iter(["openid"])).sub == "42"
    assert validate_access_token(token, audience=AUDIENCE, required_scopes=("openid", "profile")).sub == "42"
    for required in (("admin",), ("openid", "admin"), ("",), (" openid",)):
        with pytest.raises(InsufficientScope) as raised:
            validate_access_token(token, audience=AUDIENCE, required_scopes=required)
        assert raised.value.scope == required
    # A token without scope: an empty requirement passes, any scope is missing.
    bare = signed("{" + claims_text(scope="") + "}")
    assert validate_access_token(bare, audience=AUDIENCE).scopes == ()
    with pytest.raises(InsufficientScope):
        validate_access_token(bare, audience=AUDIENCE, required_scopes=["openid"])


def test_an_invalid_token_is_invalid_before_its_scope_is_looked_at():
    now = int(time.time())
    with pytest.raises(InvalidToken, match="expired"):
        validate_access_token(
            signed("{" + claims_text(exp=now - 600) + "}"), audience=AUDIENCE, required_scopes=["admin"]
        )


# --- the claims object --------------------------------------------------------------------------------


def test_the_claims_object_behaves_like_one_built_by_init():
    claims = validate_access_token(signed("{<C>}"), audience=AUDIENCE)
    names = [field.name for field in dataclasses.fields(AccessTokenClaims)]
    made = AccessTokenClaims(**{name: getattr(claims, name) for name in names})
    assert made == claims and claims == made
    assert not claims.__ne__(made)
    # Hashing: both fail alike (the claims mapping is not hashable), or both agree.
    outcomes = []
    for value in (claims, made):
        try:
            outcomes.append(("ok", hash(value)))
        except TypeError as exc:
            outcomes.append(("error", str(exc)))
    assert outcomes[0] == outcomes[1]
    for attack in (
        lambda: setattr(claims, "sub", "root"),
        lambda: setattr(claims, "new", 1),
        lambda: delattr(claims, "sub"),
    ):
        with pytest.raises(dataclasses.FrozenInstanceError):
            attack()
    with pytest.raises(TypeError):
        claims.claims["scope"] = "admin"  # type: ignore[index]
    assert copy.copy(claims) == claims
    replaced = dataclasses.replace(claims, sub="7")
    assert replaced.sub == "7" and replaced.client_id == claims.client_id and claims.sub == "42"
    assert dataclasses.astuple(claims.__class__(**{**vars(claims), "claims": {}})) == dataclasses.astuple(
        made.__class__(**{**vars(made), "claims": {}})
    )
    with pytest.raises(TypeError):
        pickle.dumps(claims)  # a mappingproxy does not pickle, whichever way the object was built
    with pytest.raises(TypeError):
        pickle.dumps(made)
    assert claims.scopes == ("openid", "profile") and type(claims.scopes) is tuple
    assert type(claims.audience) is tuple


def test_claims_of_two_tokens_are_not_shared():
    first = validate_access_token(signed('{<C>,"x":1}'), audience=AUDIENCE)
    second = validate_access_token(signed('{<C>,"x":2}'), audience=AUDIENCE)
    assert first.claims["x"] == 1 and second.claims["x"] == 2 and first.jti != second.jti


# --- internal/jws.py: the verifier cache -------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key():
    return jwk.JWK.generate(kty="RSA", size=2048)


def test_rs256_and_ps256_on_one_rsa_key_each_verify_their_own_signature_only(rsa_key):
    rs = jose.sign({"alg": "RS256"}, {"a": 1}, rsa_key)
    ps = jose.sign({"alg": "PS256"}, {"a": 1}, rsa_key)
    for _ in range(2):  # cold, then from the cache
        assert json.loads(jose.verify(rs, rsa_key, "RS256")) == {"a": 1}  # as the old code allowed
        assert json.loads(jose.verify(ps, rsa_key, "PS256")) == {"a": 1}
        with pytest.raises(ValueError, match="does not verify"):
            jose.verify(rs, rsa_key, "PS256")
        with pytest.raises(ValueError, match="does not verify"):
            jose.verify(ps, rsa_key, "RS256")
        with pytest.raises(ValueError, match="does not verify"):
            jose.verify(rs, rsa_key, "RS384")
        with pytest.raises(ValueError, match="does not verify"):
            jose.verify(ps, rsa_key, "PS512")


@pytest.mark.parametrize(("crv", "alg"), [("P-384", "ES256"), ("P-256", "ES384"), ("P-521", "ES384")])
def test_an_ec_key_of_the_wrong_curve_is_refused_every_time(crv, alg):
    key = jwk.JWK.generate(kty="EC", crv=crv)
    own_alg = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}[crv]
    token = jose.sign({"alg": own_alg}, {"a": 1}, key)
    for _ in range(3):
        with pytest.raises(ValueError, match="curve"):
            jose.verify(token, key, alg)
        assert json.loads(jose.verify(token, key, own_alg)) == {"a": 1}
    assert (id(key), alg) not in jose._op_keys


def test_a_secp256k1_key_never_verifies_es256():
    key = jwk.JWK.generate(kty="EC", crv="secp256k1")
    with pytest.raises(ValueError, match="curve"):
        jose.verify("e30.e30." + "A" * 86, key, "ES256")


def test_a_cache_entry_for_another_object_of_the_same_id_is_not_used(monkeypatch, rsa_key):
    # Stand in for a JWK freed and its id() reused: the entry names another object.
    ec_key = jwk.JWK.generate(kty="EC", crv="P-256")
    token = jose.sign({"alg": "RS256"}, {"a": 1}, rsa_key)
    jose.verify(token, rsa_key, "RS256")
    monkeypatch.setitem(jose._op_keys, (id(ec_key), "RS256"), jose._op_keys[(id(rsa_key), "RS256")])
    with pytest.raises(ValueError, match="does not fit"):
        jose.verify(token, ec_key, "RS256")
    monkeypatch.setitem(jose._op_keys, (id(ec_key), "verify"), jose._op_keys[(id(rsa_key), "verify")])
    with pytest.raises(ValueError, match="does not fit"):
        jose.verify(token, ec_key, "RS256")


def test_a_freed_jwk_and_a_new_one_at_its_address_are_checked_apart():
    for _ in range(20):
        rsa = jwk.JWK.generate(kty="RSA", size=1024)
        token = jose.sign({"alg": "RS256"}, {"a": 1}, rsa)
        jose.verify(token, rsa, "RS256")
        address = id(rsa)
        jose._op_keys.clear()  # the bound empties the cache: nothing holds the JWK any longer
        del rsa
        gc.collect()
        ec_key = jwk.JWK.generate(kty="EC", crv="P-256")
        with pytest.raises(ValueError, match="does not fit"):
            jose.verify(token, ec_key, "RS256")
        if id(ec_key) == address:
            break


def test_the_bound_empties_the_cache_and_every_key_still_verifies():
    pairs = []
    for _ in range(jose._MAX_CACHED_KEYS + 6):
        key = jwk.JWK.generate(kty="EC", crv="P-256")
        pairs.append((key, jose.sign({"alg": "ES256"}, {"a": 1}, key)))
    for _ in range(2):
        for index, (key, token) in enumerate(pairs):
            assert json.loads(jose.verify(token, key, "ES256")) == {"a": 1}
            other = pairs[index - 1][1]
            with pytest.raises(ValueError, match="does not verify"):
                jose.verify(other, key, "ES256")
    assert len(jose._op_keys) <= jose._MAX_CACHED_KEYS


def test_concurrent_verifications_with_different_keys(rsa_key):
    p256 = jwk.JWK.generate(kty="EC", crv="P-256")
    p384 = jwk.JWK.generate(kty="EC", crv="P-384")
    cases = [
        (rsa_key, "RS256", jose.sign({"alg": "RS256"}, {"k": "rs"}, rsa_key)),
        (rsa_key, "PS384", jose.sign({"alg": "PS384"}, {"k": "ps"}, rsa_key)),
        (p256, "ES256", jose.sign({"alg": "ES256"}, {"k": "p256"}, p256)),
        (p384, "ES384", jose.sign({"alg": "ES384"}, {"k": "p384"}, p384)),
    ]
    errors: list[str] = []
    start = threading.Barrier(len(cases))

    def check(index: int) -> None:
        for round_ in range(150):
            if round_ % 50 == 0:
                jose._op_keys.clear()
            for key, alg, token in cases[index:] + cases[:index]:
                try:
                    ok = json.loads(jose.verify(token, key, alg))
                    if ok != json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==")):
                        errors.append(f"{alg}: wrong payload")
                except ValueError as exc:
                    errors.append(f"{alg} refused its own token: {exc}")
                for other_key, other_alg, _ in cases:
                    if other_key is key and other_alg == alg:
                        continue
                    try:
                        jose.verify(token, other_key, other_alg)
                    except ValueError:
                        continue
                    errors.append(f"{alg} token verified by {other_alg}")

    def worker(index: int) -> None:
        start.wait()
        try:
            check(index)
        except BaseException as exc:  # a dead thread must fail the test, not pass it
            errors.append(f"thread {index} raised {exc!r}")

    completed = []

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(len(cases))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
        completed.append(not thread.is_alive())
    assert errors == [] and all(completed)


# --- key rotation --------------------------------------------------------------------------------------


def test_a_retired_key_stops_verifying_when_its_window_ends(monkeypatch):
    token = signed("{<C>}")
    kid = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]
    assert validate_access_token(token, audience=AUDIENCE).sub == "42"  # the verifier is cached now
    rotation = keys.rotate()
    assert rotation.retired is not None and rotation.retired.kid == kid
    keys.invalidate()
    assert validate_access_token(token, audience=AUDIENCE).sub == "42"  # within the window
    end = keys.prunable_after(rotation.retired).timestamp()
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: end + 1)
    with pytest.raises(InvalidToken, match="does not publish"):
        validate_access_token(token, audience=AUDIENCE)
    monkeypatch.setattr(time, "time", real_time)


def test_a_deleted_key_stops_verifying():
    token = signed("{<C>}")
    assert validate_access_token(token, audience=AUDIENCE).sub == "42"
    from oidc_provider_ext.models import SigningKey

    SigningKey.objects.all().delete()
    keys.invalidate()
    with pytest.raises(InvalidToken, match="does not publish"):
        validate_access_token(token, audience=AUDIENCE)


@pytest.mark.parametrize("alg", ["PS256", "RS384", "RS512", "PS512", "ES256"])
def test_the_store_key_verifies_only_its_own_alg(alg):
    # The same RSA private key signs with another RSA algorithm: the JWK names RS256 (RFC 8725 3.1).
    kid, key = keys.signing_key()
    assert keys.verification_key(kid).get("alg") == "RS256"
    header = b64(json.dumps({"alg": alg, "kid": kid, "typ": "at+jwt"}))
    signing_input = f"{header}.{b64('{' + claims_text() + '}')}"
    algorithm = jose.ALGORITHMS["PS256" if alg == "ES256" else alg]
    raw = key.get_op_key("sign").sign(signing_input.encode(), jose._padding(algorithm), algorithm.hash())
    token = f"{signing_input}.{b64(raw)}"
    for _ in range(2):
        invalid(token, "does not match its key")
    assert validate_access_token(signed("{<C>}"), audience=AUDIENCE).sub == "42"


def test_override_settings_is_seen_at_once_and_undone(settings):
    from django.test import override_settings

    oidc_settings(settings, RESOURCE_SERVER_AUDIENCE=AUDIENCE)
    token = signed("{<C>}")
    assert validate_access_token(token).sub == "42"
    base = settings.OIDC_PROVIDER_EXT
    cases = [
        ({"RESOURCE_SERVER_ISSUER": "https://other.example"}, InvalidToken, "not issued by the issuer"),
        ({"RESOURCE_SERVER_AUDIENCE": "api-z"}, InvalidToken, "not meant for this resource server"),
        (
            {"RESOURCE_SERVER_JWKS_URL": "http://evil.example"},
            ImproperlyConfigured,
            "RESOURCE_SERVER_JWKS_URL",
        ),
    ]
    for overrides, error, message in cases:
        with override_settings(OIDC_PROVIDER_EXT={**base, **overrides}), pytest.raises(error, match=message):
            validate_access_token(token)
        assert validate_access_token(token).sub == "42"  # back to the outer settings
