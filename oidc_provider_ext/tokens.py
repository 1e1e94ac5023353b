"""Minting of the JWTs this provider issues: access tokens (RFC 9068) and ID token claims."""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

from .adapter import get_adapter
from .conf import app_settings
from .keys import sign

ACCESS_TOKEN_TYP = "at+jwt"  # RFC 9068 2.1


def subject_for(user) -> str:
    return get_adapter().get_subject(user)


def generate_access_token(request) -> str:
    """oauthlib token generator: a signed JWT access token per RFC 9068.

    ``request`` is the oauthlib request at the token endpoint: client, user and scopes are set.
    The token is also stored by DOT (checksum lookup), so revocation and introspection work.
    """
    now = int(time.time())
    client_id = request.client.client_id
    user = getattr(request, "user", None)
    claims: dict[str, Any] = {
        "iss": app_settings.ISSUER,
        # RFC 9068 2.2: sub is the resource owner, or the client itself for client credentials.
        "sub": subject_for(user)
        if user is not None and request.grant_type != "client_credentials"
        else client_id,
        "aud": client_id,
        "client_id": client_id,
        "iat": now,
        "exp": now + app_settings.ACCESS_TOKEN_EXPIRE_SECONDS,
        "jti": uuid.uuid4().hex,
        "scope": " ".join(request.scopes or []),
    }
    return sign(claims, typ=ACCESS_TOKEN_TYP)


def generate_refresh_token(request) -> str:
    """Opaque refresh token: 256 bits from the OS CSPRNG."""
    return secrets.token_urlsafe(32)
