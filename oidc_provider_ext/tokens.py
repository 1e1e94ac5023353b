"""Minting of the JWTs this provider issues."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from typing import Any

from jwcrypto import jws
from jwcrypto.common import JWException

from .adapter import get_adapter
from .conf import app_settings
from .keys import sign, verification_key
from .models import SigningKey

SIGNING_ALGS = frozenset(SigningKey.Algorithm.values)  # never "none", never HS*

ACCESS_TOKEN_TYP = "at+jwt"  # RFC 9068 2.1


def subject_for(user) -> str:
    return get_adapter().get_subject(user)


def mint_access_token(
    *,
    client_id: str,
    subject: str,
    scopes: list[str],
    extra: dict[str, Any] | None = None,
    audience: str | None = None,
    expires_in: int | None = None,
) -> str:
    """A signed RFC 9068 access token. ``extra`` carries ``auth_time``/``acr``/``amr`` (2.2.1)
    and the like when known.

    ``aud`` (RFC 9068 2.2) is the resource indicator the token was requested for (RFC 8707),
    exactly as the client sent it; without one, the client itself (the provider's own userinfo
    endpoint and resource servers that validate ``client_id`` audiences accept it).
    """
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": app_settings.ISSUER,
        "sub": subject,
        "aud": audience or client_id,
        "client_id": client_id,
        "iat": now,
        "exp": now + (expires_in or app_settings.ACCESS_TOKEN_EXPIRE_SECONDS),
        "jti": uuid.uuid4().hex,
        "scope": " ".join(scopes),
    }
    claims.update(extra or {})
    return sign(claims, typ=ACCESS_TOKEN_TYP)


def generate_refresh_token(request=None) -> str:
    """Opaque refresh token: 256 bits from the OS CSPRNG."""
    return secrets.token_urlsafe(32)


class InvalidIdTokenHint(ValueError):
    """The id_token_hint was not issued by us to this client."""


def verify_id_token_hint(token: str, client_id: str | None) -> dict[str, Any]:
    """Claims of an ID token we issued (to ``client_id`` when given), verified with any published key.

    OIDC Core 3.1.2.1 and RP-Initiated Logout 1.0 section 2: the hint may have expired, so ``exp`` is
    not checked; the signature, the issuer and the audience are.
    """
    if not token or len(token) > 16384:
        raise InvalidIdTokenHint("id_token_hint is empty or too long")
    try:
        parsed = jws.JWS()
        parsed.deserialize(token)
        header = parsed.jose_header
        key = verification_key(header.get("kid", "")) if isinstance(header.get("kid"), str) else None
        typ = header.get("typ", "JWT")  # attacker-chosen until verified: any JSON value
        if (
            key is None
            or header.get("alg") not in SIGNING_ALGS
            or not isinstance(typ, str)
            or typ.lower() != "jwt"
        ):
            raise InvalidIdTokenHint("id_token_hint is not an ID token of this provider")
        parsed.verify(key, alg=header.get("alg"))
        claims = json.loads(parsed.payload)
    except (JWException, ValueError, TypeError) as exc:
        raise InvalidIdTokenHint("id_token_hint cannot be verified") from exc
    if not isinstance(claims, dict) or claims.get("iss") != app_settings.ISSUER:
        raise InvalidIdTokenHint("id_token_hint was issued by another provider")
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
    if not audiences or (client_id is not None and client_id not in audiences):
        raise InvalidIdTokenHint("id_token_hint was issued to another client")
    if not isinstance(claims.get("sub"), str):
        raise InvalidIdTokenHint("id_token_hint has no subject")
    return claims


BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_TYP = "logout+jwt"  # Back-Channel Logout 1.0 section 2.4 (errata): explicit typing


def mint_logout_token(*, client_id: str, subject: str, sid: str, alg: str | None = None) -> str:
    """A Back-Channel Logout 1.0 logout token (section 2.4): never a nonce, always the event."""
    now = int(time.time())
    claims = {
        "iss": app_settings.ISSUER,
        "aud": client_id,
        "iat": now,
        "exp": now + app_settings.LOGOUT_TOKEN_EXPIRE_SECONDS,
        "jti": uuid.uuid4().hex,
        "sub": subject,
        "sid": sid,
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    }
    return sign(claims, typ=LOGOUT_TOKEN_TYP, alg=alg)
