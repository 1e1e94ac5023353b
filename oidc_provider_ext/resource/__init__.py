"""Validating this provider's access tokens at a resource server (an API).

Public API:

* :func:`validate_access_token` checks a JWT access token as RFC 9068 section 4 asks and returns
  its :class:`AccessTokenClaims`, or raises a :class:`ResourceServerError`;
* :func:`require_access_token` is a view decorator built on it, answering per RFC 6750 3;
* :func:`bearer_token` and :func:`bearer_challenge` are the pieces both share with
  :mod:`oidc_provider_ext.contrib.drf` (the Django REST framework integration) and
  :mod:`oidc_provider_ext.resource.asgi` (any ASGI app, e.g. an MCP server);
* :class:`ProtectedResource` is what a resource server is (RFC 9728): its identifier, which its
  tokens carry in ``aud``, and its metadata document, served by :mod:`oidc_provider_ext.resource.urls`.

Every check names the resource server it protects (``RESOURCE_SERVER_IDENTIFIER``, or ``resource=``
per view; ``RESOURCE_SERVER_AUDIENCE`` / ``audience=`` name further accepted ``aud`` values): a token
whose ``aud`` contains none of them is refused, and with none at all every token is refused with
ImproperlyConfigured. It fails closed; there is no "any client".

Keys come from this project's key store (the API runs inside the provider's project), or from the
provider's JWKS URL (``RESOURCE_SERVER_JWKS_URL``, the API runs apart). Only in the first case can a
revoked token be refused: DOT deletes the token's row on revocation, and that row is checked.
docs/resource-server.md has the whole story.

Importing this module does not import any model, so a project that does not install the provider
app can use it with a remote JWKS URL.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import wraps
from inspect import iscoroutinefunction
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, JsonResponse
from jwcrypto import jwk, jws
from jwcrypto.common import JWException

from oidc_provider_ext.conf import SETTINGS_NAME, app_settings, resource_audiences
from oidc_provider_ext.internal import jws as jose

from . import remote_jwks
from .metadata import ProtectedResource, as_resource, configured_resource
from .urlconf import AUDIENCE_MARK, RESOURCE_MARK

__all__ = [
    "AccessTokenClaims",
    "InsufficientScope",
    "InvalidRequest",
    "InvalidToken",
    "KeySetUnavailable",
    "ProtectedResource",
    "ResourceServerError",
    "bearer_challenge",
    "bearer_token",
    "require_access_token",
    "resolve_resource",
    "validate_access_token",
]

log = logging.getLogger(__name__)

# RFC 9068 2.1 / 4: "at+jwt", or the full media type "application/at+jwt"; media types compare
# case-insensitively (RFC 7515 4.1.9). An ID token's typ is "JWT" (or absent), so it fails here.
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})

# RFC 8725 3.1 / RFC 9068 4: only asymmetric algorithms. "none" and HS* never verify: with HS* a
# public key would serve as the HMAC secret, and anyone can read a public key.
_KEY_TYPE_OF_ALG = {
    "RS256": "RSA",
    "RS384": "RSA",
    "RS512": "RSA",
    "PS256": "RSA",
    "PS384": "RSA",
    "PS512": "RSA",
    "ES256": "EC",
    "ES384": "EC",
    "ES512": "EC",
    "EdDSA": "OKP",
}
ALLOWED_ALGS = frozenset(_KEY_TYPE_OF_ALG)

# Our access tokens are well under 2 KB; a bound keeps parsing cheap for whatever is sent.
MAX_TOKEN_LENGTH = 8192


# Set on every view require_access_token() protects (and on the DRF authentication class):
# AUDIENCE_MARK the audiences it names, or None when it relies on the settings (system check E011
# reads it); RESOURCE_MARK its ProtectedResource, or None (the metadata view serves these).

Audience = str | Sequence[str]
Resource = ProtectedResource | str

# RFC 6750 3: characters allowed inside the challenge's quoted attribute values.
_CHALLENGE_VALUE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


# --- results and errors -------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessTokenClaims:
    """A validated access token: the RFC 9068 2.2 claims, and every claim as signed in ``claims``."""

    sub: str
    client_id: str
    scopes: tuple[str, ...]
    issuer: str
    audience: tuple[str, ...]
    issued_at: float
    expires_at: float
    jti: str
    claims: Mapping[str, Any]

    @property
    def has_resource_owner(self) -> bool:
        """False for a token the client obtained for itself (client credentials).

        RFC 9068 2.2: without a resource owner, ``sub`` identifies the client; this provider then
        sets ``sub`` to the ``client_id``.
        """
        return self.sub != self.client_id

    def has_scopes(self, *scopes: str) -> bool:
        """Whether every one of ``scopes`` was granted."""
        return set(scopes) <= set(self.scopes)


class ResourceServerError(Exception):
    """A request a resource server refuses: the RFC 6750 3.1 ``error`` code and HTTP status."""

    error: ClassVar[str] = "invalid_request"
    status_code: ClassVar[int] = 400

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class InvalidRequest(ResourceServerError):
    """The request is malformed, e.g. the token travels in the query string (400)."""

    error = "invalid_request"
    status_code = 400


class InvalidToken(ResourceServerError):
    """The token is malformed, not ours, not an access token, expired or revoked (401)."""

    error = "invalid_token"
    status_code = 401


class InsufficientScope(ResourceServerError):
    """The token is valid but lacks a required scope (403); ``scope`` lists the ones required."""

    error = "insufficient_scope"
    status_code = 403

    def __init__(self, required: Iterable[str], description: str | None = None) -> None:
        self.scope: tuple[str, ...] = tuple(required)
        super().__init__(description or f"This request needs the scope(s): {' '.join(self.scope)}.")


class KeySetUnavailable(ResourceServerError):
    """The remote JWKS cannot be fetched, so no token can be checked now (503).

    Not an RFC 6750 error: the token may well be valid, and the client should retry later rather
    than discard it. ``error`` borrows RFC 6749's ``temporarily_unavailable``.
    """

    error = "temporarily_unavailable"
    status_code = 503


# --- validation ---------------------------------------------------------------------------------


def resolve_resource(
    audience: Audience | None = None, resource: Resource | None = None
) -> tuple[tuple[str, ...], ProtectedResource | None]:
    """The ``aud`` values a token must name one of, and the resource server they identify.

    ``resource`` (its identifier and its own ``audiences``, plus ``audience``), else ``audience``
    alone (no identity: no metadata to point a client at), else the settings:
    ``RESOURCE_SERVER_IDENTIFIER`` and ``RESOURCE_SERVER_AUDIENCE``. A view's values replace the
    settings, so two resource servers in one project never accept each other's tokens.

    Fails closed (RFC 9068 4: the resource server MUST check ``aud``): with none of them, raises
    ImproperlyConfigured rather than accept any client's token.
    """
    extra = () if audience is None else resource_audiences(audience, "audience")
    if resource is not None:
        named = as_resource(resource, "resource")
        return tuple(dict.fromkeys((*named.accepted_audiences, *extra))), named
    if extra:
        return extra, None
    protected = configured_resource()
    if protected is not None:
        return protected.accepted_audiences, protected
    configured = app_settings.RESOURCE_SERVER_AUDIENCE
    if configured is None:
        raise ImproperlyConfigured(
            f"This resource server has no identifier, so it refuses every access token. Set "
            f"{SETTINGS_NAME}['RESOURCE_SERVER_IDENTIFIER'] (or resource= on the view) to the "
            "https URL its tokens carry in aud, and/or RESOURCE_SERVER_AUDIENCE (audience=) to "
            "other aud values it accepts (see check oidc_provider_ext.E011 and "
            "docs/resource-server.md)."
        )
    return configured, None


def validate_access_token(
    token: str,
    *,
    required_scopes: Iterable[str] = (),
    audience: Audience | None = None,
    resource: Resource | None = None,
) -> AccessTokenClaims:
    """Validate one of this provider's access tokens (RFC 9068 4) and return its claims.

    ``aud`` must contain the identifier of ``resource`` (a :class:`ProtectedResource` or its
    identifier) or one of ``audience`` (a string or a list of strings); with neither, of
    ``RESOURCE_SERVER_IDENTIFIER`` / ``RESOURCE_SERVER_AUDIENCE``; with none of them at all,
    ImproperlyConfigured is raised for any token (see :func:`resolve_resource`).
    Raises :class:`InvalidToken` (for any malformed input too), :class:`InsufficientScope` when a
    ``required_scopes`` entry was not granted, or :class:`KeySetUnavailable`.
    """
    settings: tuple[str | None, bool, str, int] | None = None
    if audience is None and resource is None:  # the settings' resource server: parsed once
        expected, settings = app_settings.derived("resource_server_defaults", _default_validation)
    else:
        expected, _ = resolve_resource(audience, resource)
    required = tuple(required_scopes)
    if not isinstance(token, str):
        raise InvalidToken("The access token is not a signed JWT (RFC 7515 compact serialisation).")
    if len(token) > MAX_TOKEN_LENGTH:  # first: the bound is what keeps parsing cheap
        raise InvalidToken(f"The access token is longer than {MAX_TOKEN_LENGTH} characters.")
    # RFC 7515 7.1: BASE64URL(header) "." BASE64URL(payload) "." BASE64URL(signature), each segment
    # in the one spelling jose.b64url_decode accepts (it refuses any other character, padding and
    # unused bits set), all three before any look-up. The signature may be empty here so that an
    # unsigned token is refused by name (alg "none") by the header's checks.
    segments = token.split(".")
    if len(segments) != 3 or not segments[0] or not segments[1] or not token.isascii():
        raise InvalidToken("The access token is not a signed JWT (RFC 7515 compact serialisation).")
    header, payload, signature = segments
    alg, kid = _header(header)
    raw_payload = _segment_bytes(payload, "payload")
    try:
        raw_signature = jose.b64url_decode(signature)
    except ValueError as exc:
        raise InvalidToken("The access token's signature is invalid.") from exc
    if settings is None:  # a view's own audience, or settings that failed to read (raise here)
        settings = app_settings.derived("resource_server_validation", _validation_settings)
    jwks_url, check_revocation, issuer, leeway = settings
    key = _verification_key(kid, jwks_url)
    if key is None:
        raise InvalidToken("The access token is signed with a key this provider does not publish.")
    _verify_signature(token, len(header) + 1 + len(payload), raw_signature, key, alg)
    claims = _json_segment_bytes(raw_payload, "payload")  # read only once its signature verified
    result = _check_claims(claims, expected, issuer, leeway)
    if not jwks_url and check_revocation:
        _check_not_revoked(token)
    if required and not result.has_scopes(*required):
        raise InsufficientScope(required)
    return result


def _validation_settings() -> tuple[str | None, bool, str, int]:
    """What every validation reads: the JWKS URL, the revocation check, the issuer, the leeway."""
    return (
        app_settings.RESOURCE_SERVER_JWKS_URL,
        app_settings.RESOURCE_SERVER_CHECK_REVOCATION,
        app_settings.RESOURCE_SERVER_ISSUER,
        app_settings.RESOURCE_SERVER_LEEWAY_SECONDS,
    )


def _default_validation() -> tuple[tuple[str, ...], tuple[str | None, bool, str, int] | None]:
    """The settings' audiences and :func:`_validation_settings`, read under one ``derived`` look-up
    (each look-up reads ``settings``). Settings that fail to read give None: they are read again,
    and raise, after the token's form and header were checked, as when they are read apart."""
    expected = resolve_resource()[0]
    try:
        return expected, _validation_settings()
    except Exception:
        return expected, None


def _reject_duplicate_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # RFC 7515 4 / RFC 7519 4: member names must be unique; we reject rather than keep the last.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member name")
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259 6)")


# One decoder for every token (json.loads with hooks builds a new one per call); shared across
# threads like json's own default decoder.
_JSON = json.JSONDecoder(object_pairs_hook=_reject_duplicate_names, parse_constant=_reject_constant)


# Header segments that passed _check_header, with what it returned: one key's tokens share their
# header byte for byte, so its base64url and JSON are read once, not per token. Bounded (emptied
# when full) against a stream of made-up headers; a header that fails is never kept.
_MAX_HEADERS = 32
_headers: dict[str, tuple[str, str]] = {}


def _header(segment: str) -> tuple[str, str]:
    checked = _headers.get(segment)
    if checked is None:
        checked = _check_header(_json_segment_bytes(_segment_bytes(segment, "header"), "header"))
        if len(_headers) >= _MAX_HEADERS:
            _headers.clear()
        _headers[segment] = checked
    return checked


def _segment_bytes(segment: str, what: str) -> bytes:
    try:
        return jose.b64url_decode(segment)
    except ValueError as exc:
        raise InvalidToken(f"The access token's {what} is not base64url.") from exc


# The C scanner of _JSON (same hooks, so as strict), called straight: _JSON.decode() is this plus
# two regex matches for whitespace around the value. Text the scan does not take whole (whitespace
# first or last, trailing data, a syntax error) goes through _JSON.decode() itself, so the verdict
# is the same either way.
_SCAN_JSON: Callable[[str, int], tuple[Any, int]] = _JSON.scan_once  # type: ignore[attr-defined]


def _decode_json(text: str) -> Any:
    try:
        value, end = _SCAN_JSON(text, 0)  # StopIteration: no value at 0 (e.g. whitespace first)
    except StopIteration:
        pass
    else:
        if end == len(text):
            return value
    return _JSON.decode(text)


def _json_segment_bytes(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = _decode_json(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise InvalidToken(f"The access token's {what} is not a JSON object.") from exc
    if not isinstance(value, dict):
        raise InvalidToken(f"The access token's {what} is not a JSON object.")
    return value


def _check_header(header: dict[str, Any]) -> tuple[str, str]:
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
        # OIDC Core 2: an ID token is for the client, never a credential at an API.
        raise InvalidToken('The token is not an access token: its header typ is not "at+jwt".')
    if "crit" in header or "b64" in header:
        # RFC 7515 4.1.11: extensions we do not understand must not be ignored; we use none.
        raise InvalidToken("The access token uses JWS header extensions this server does not support.")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALLOWED_ALGS:
        raise InvalidToken(f"The access token's alg {alg!r} is not allowed.")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("The access token's header has no kid.")
    return alg, kid


def _verification_key(kid: str, url: str | None) -> jwk.JWK | None:
    if url:
        try:
            return remote_jwks.verification_key(url, kid)
        except remote_jwks.JWKSFetchError as exc:
            log.warning("%s", exc)
            raise KeySetUnavailable("The provider's signing keys cannot be fetched; retry later.") from exc
    from oidc_provider_ext import keys  # imports models: only where the provider app is installed

    return keys.verification_key(kid)


def _verify_signature(token: str, signed_length: int, signature: bytes, key: jwk.JWK, alg: str) -> None:
    """InvalidToken unless ``signature`` verifies the token's first ``signed_length`` characters
    (its signing input, RFC 7515 5.2) with ``key`` under ``alg``."""
    # RFC 8725 3.1: a key is used only with its own algorithm; one declaring another alg, or of
    # another type, does not verify this token.
    if key.get("alg", alg) != alg or key.get("kty") != _KEY_TYPE_OF_ALG[alg]:
        raise InvalidToken(f"The access token's alg {alg!r} does not match its key.")
    if alg not in jose.ALGORITHMS:  # EdDSA: jwcrypto's own path, on segments already read strictly
        signed = jws.JWS()
        signed.allowed_algs = [alg]
        try:
            signed.deserialize(token)
            signed.verify(key, alg=alg)
        except (JWException, ValueError, TypeError) as exc:
            raise InvalidToken("The access token's signature is invalid.") from exc
        return
    # RSA and ECDSA straight on the key's cached cryptography object (internal/jws.py): jwcrypto's
    # JWS deep-copies its header registry per token, more than half of an offline check.
    try:
        jose.check_signature(token[:signed_length].encode("ascii"), signature, key, alg)
    except (ValueError, TypeError) as exc:
        raise InvalidToken("The access token's signature is invalid.") from exc


def _not_a_number(name: str) -> InvalidToken:
    return InvalidToken(f"The access token's {name} claim is missing or not a number.")


def _not_a_string(name: str) -> InvalidToken:
    return InvalidToken(f"The access token's {name} claim is missing or not a string.")


def _check_claims(
    claims: dict[str, Any], expected: tuple[str, ...], trusted_issuer: str, leeway: int
) -> AccessTokenClaims:
    # The checks of RFC 9068 4, in this order; each raises the first failure's InvalidToken.
    get: Callable[..., Any] = claims.get
    # iss must exactly match the issuer identifier.
    issuer = get("iss")
    if type(issuer) is not str or not issuer:
        raise _not_a_string("iss")
    if issuer != trusted_issuer:
        raise InvalidToken("The access token was not issued by the issuer this server trusts.")
    now = time.time()
    expires_at = get("exp")
    if not jose.is_numeric_date(expires_at):
        raise _not_a_number("exp")
    if now >= expires_at + leeway:  # RFC 7519 4.1.4: valid only before exp
        raise InvalidToken("The access token has expired.")
    issued_at = get("iat")
    if not jose.is_numeric_date(issued_at):
        raise _not_a_number("iat")
    if issued_at > now + leeway:
        raise InvalidToken("The access token was issued in the future.")
    if "nbf" in claims:  # RFC 7519 4.1.5
        not_before = claims["nbf"]
        if not jose.is_numeric_date(not_before):
            raise _not_a_number("nbf")
        if not_before > now + leeway:
            raise InvalidToken("The access token is not valid yet.")
    # aud must contain an identifier this resource server expects for itself: a string, or a
    # non-empty list of strings.
    aud = get("aud")
    if type(aud) is str:
        audiences: tuple[str, ...] = (aud,)
        meant_for_us = aud in expected
    else:
        audiences = tuple(aud) if type(aud) is list else ()
        if not audiences or not all(type(value) is str for value in audiences):
            raise InvalidToken("The access token's aud claim is missing or malformed.")
        meant_for_us = not set(expected).isdisjoint(audiences)
    if not meant_for_us:
        raise InvalidToken("The access token is not meant for this resource server (aud).")
    scope = get("scope", "")
    if type(scope) is not str:
        raise InvalidToken("The access token's scope claim is not a string.")
    sub = get("sub")
    if type(sub) is not str or not sub:
        raise _not_a_string("sub")
    client_id = get("client_id")
    if type(client_id) is not str or not client_id:
        raise _not_a_string("client_id")
    jti = get("jti")
    if type(jti) is not str or not jti:
        raise _not_a_string("jti")
    # AccessTokenClaims(...) would set its nine fields one by one through object.__setattr__ (it
    # is frozen), more than every claim check above together: they are set in one update of the new
    # object's __dict__ instead, which is where __init__ puts them (the class has no __slots__ nor
    # __post_init__; tests/test_resource_fast_paths.py compares this with the __init__ one).
    result = object.__new__(AccessTokenClaims)
    result.__dict__.update(
        sub=sub,
        client_id=client_id,
        scopes=tuple(filter(None, scope.split(" "))),  # RFC 6749 3.3: space-delimited, no empties
        issuer=issuer,
        audience=audiences,
        issued_at=issued_at,
        expires_at=expires_at,
        jti=jti,
        claims=MappingProxyType(claims),  # read-only
    )
    return result


def _check_not_revoked(token: str) -> None:
    # DOT deletes an access token's row when it is revoked (RFC 7009), and our tokens are stored
    # by their SHA-256 checksum. No row: revoked, or never issued by this provider. In-process, the
    # provider's account-state rule applies too (adapter.may_use_client, as at userinfo): a user
    # deactivated or suspended behind the provider's back is refused before the token expires.
    from oidc_provider_ext.validator import access_token_with_grant, stored_token_may_be_used

    # The token with its grant's tenant: one statement, compiled once (validator.py).
    stored = access_token_with_grant(token)
    if stored is None:
        raise InvalidToken("The access token has been revoked.")
    if stored.is_expired():
        raise InvalidToken("The access token has expired.")
    tenant = ""
    if stored.user is not None:
        if stored.grant_pk is None:
            raise InvalidToken("The access token has been revoked.")
        tenant = stored.grant_tenant
    if not stored_token_may_be_used(stored, tenant):
        raise InvalidToken("The access token may no longer be used.")


# --- HTTP ---------------------------------------------------------------------------------------


def bearer_token(request: HttpRequest) -> str | None:
    """The token of an ``Authorization: Bearer`` header (RFC 6750 2.1), or None when there is none.

    Only the header is read. Raises :class:`InvalidRequest` when a token is sent in the query
    string (RFC 6750 5.3, RFC 9700 4.3.2: it ends up in logs and ``Referer`` headers) or the
    header names the Bearer scheme without a token.
    """
    return token_of(request.META.get("HTTP_AUTHORIZATION", ""), "access_token" in request.GET)


def token_of(authorization: str, token_in_query: bool) -> str | None:
    """:func:`bearer_token` on an ``Authorization`` value and whether the query has a token."""
    if token_in_query:
        raise InvalidRequest("Send the access token in the Authorization header, not the query string.")
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":  # RFC 7235 2.1: the scheme is case-insensitive
        return None
    token = credentials.strip()
    if not token:
        raise InvalidRequest("The Authorization header names Bearer but carries no token.")
    return token


def _quoted(value: str) -> str:
    return _CHALLENGE_VALUE.sub("", value)


def bearer_challenge(
    error: ResourceServerError | None = None,
    *,
    realm: str | None = None,
    resource: ProtectedResource | None = None,
    scopes: Iterable[str] = (),
) -> str:
    """The ``WWW-Authenticate`` value for ``error`` (RFC 6750 3).

    Without ``error`` (no credentials were sent) the challenge has no error attribute (RFC 6750
    3.1). ``realm`` defaults to ``RESOURCE_SERVER_REALM``. ``scope`` lists the scopes the request
    needs: those of an :class:`InsufficientScope`, else ``scopes`` (RFC 6750 3: a client may ask
    for them at once). With ``resource``, ``resource_metadata`` is its metadata URL (RFC 9728 5.1),
    from which a client finds the authorization server.
    """
    params = {"realm": realm if realm is not None else app_settings.RESOURCE_SERVER_REALM}
    if error is not None:
        params.update(error=error.error, error_description=error.description)
    needed = error.scope if isinstance(error, InsufficientScope) else tuple(scopes)
    if needed:
        params["scope"] = " ".join(needed)
    if resource is not None:
        params["resource_metadata"] = resource.metadata_url
    return "Bearer " + ", ".join(f'{name}="{_quoted(value)}"' for name, value in params.items())


def challenge_resource(audience: Audience | None, resource: Resource | None) -> ProtectedResource | None:
    """The resource a challenge points at; None when there is none, or no configuration at all
    (a request without a token is then still a 401, its token-bearing retry the operator error)."""
    try:
        return resolve_resource(audience, resource)[1]
    except ImproperlyConfigured:
        return None


def error_body(error: ResourceServerError | None) -> tuple[int, dict[str, str]]:
    """The status and JSON body of a refused request (RFC 6750 3.1); None: no token was sent."""
    if error is None:
        return 401, {"error_description": "This resource needs an access token: send Authorization: Bearer."}
    return error.status_code, {"error": error.error, "error_description": error.description}


def challenge_for(
    error: ResourceServerError | None, *, resource: ProtectedResource | None, scopes: Iterable[str] = ()
) -> str | None:
    """The ``WWW-Authenticate`` value of a refused request, or None for a 503 (not a bearer
    error: the token may be fine)."""
    if isinstance(error, KeySetUnavailable):
        return None
    # The scopes are a hint on a 401; a 403 names the ones missing (InsufficientScope.scope).
    return bearer_challenge(error, resource=resource, scopes=scopes if error is None else ())


def _error_response(
    error: ResourceServerError | None, resource: ProtectedResource | None, scopes: tuple[str, ...]
) -> JsonResponse:
    status, body = error_body(error)
    response = JsonResponse(body, status=status)
    challenge = challenge_for(error, resource=resource, scopes=scopes)
    if challenge is not None:
        response["WWW-Authenticate"] = challenge
    response["Cache-Control"] = "no-store"
    return response


def _authenticate(
    request: HttpRequest, scopes: tuple[str, ...], audience: tuple[str, ...] | None, resource: Resource | None
) -> HttpResponse | None:
    try:
        token = bearer_token(request)
        if token is None:
            return _error_response(None, challenge_resource(audience, resource), scopes)
        expected, _ = resolve_resource(audience, resource)
        request.access_token_claims = validate_access_token(  # type: ignore[attr-defined]
            token, required_scopes=scopes, audience=expected
        )
    except ResourceServerError as exc:
        log.debug("Refused a bearer request to %s: %s", request.path, exc.description)
        return _error_response(exc, challenge_resource(audience, resource), scopes)
    return None


_View = TypeVar("_View", bound=Callable[..., Any])


def require_access_token(
    *scopes: str, audience: Audience | None = None, resource: Resource | None = None
) -> Callable[[_View], _View]:
    """Decorate a view so it runs only for a valid access token granting every one of ``scopes``.

    The validated :class:`AccessTokenClaims` are ``request.access_token_claims``. Otherwise the
    answer is 401 (no token, or an invalid one), 403 (``insufficient_scope``), 400 (token in the
    query string) or 503 (remote JWKS unavailable), with a ``WWW-Authenticate: Bearer`` challenge
    whose ``resource_metadata`` points at the resource's metadata (RFC 9728 5.1).
    ``resource`` (a :class:`ProtectedResource` or its identifier: the token's ``aud`` must name
    it) and ``audience`` (further accepted ``aud`` values) replace the settings
    ``RESOURCE_SERVER_IDENTIFIER`` and ``RESOURCE_SERVER_AUDIENCE``; with none of them, a request
    raises ImproperlyConfigured (and system check E011 says so at startup). Works on sync and async
    function views; use ``method_decorator(require_access_token(...), name="dispatch")`` on
    class-based views.

    The view is exempt from CSRF checks: a bearer token is never sent by a browser on its own, so a
    cross-site request cannot carry it.
    """
    if any(not isinstance(scope, str) for scope in scopes):
        raise TypeError("Write @require_access_token() or @require_access_token('scope', ...).")
    audiences = None if audience is None else resource_audiences(audience, "require_access_token(audience=)")
    protected = None if resource is None else as_resource(resource, "require_access_token(resource=)")

    def decorator(view: _View) -> _View:
        if iscoroutinefunction(view):

            @wraps(view)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
                problem = await sync_to_async(_authenticate)(request, scopes, audiences, protected)
                if problem is not None:
                    return problem
                return await view(request, *args, **kwargs)

            wrapper: Any = async_wrapper
        else:

            @wraps(view)
            def sync_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
                problem = _authenticate(request, scopes, audiences, protected)
                if problem is not None:
                    return problem
                return view(request, *args, **kwargs)

            wrapper = sync_wrapper
        wrapper.csrf_exempt = True
        setattr(wrapper, AUDIENCE_MARK, audiences if protected is None else protected.accepted_audiences)
        setattr(wrapper, RESOURCE_MARK, protected)
        return wrapper

    return decorator
