"""The one job of writing django-oauth-toolkit's configuration for this app.

``OAUTH2_PROVIDER = dot_settings()`` in a site's settings wires DOT to this app's validator, server
and scopes backend, with the RFC 9700 choices below. Kept apart from :mod:`oidc_provider_ext.conf`
(which imports nothing of ours) because PKCE's per-client policy needs the client.
"""

from __future__ import annotations

from typing import Any

from django.utils.functional import lazy

from .conf import app_settings


def pkce_required(client_id: str) -> bool:
    """Whether the client must use PKCE (also what ``OIDCValidator.is_pkce_required`` decides)."""
    from .internal.clients import get_client
    from .validator import pkce_required_for  # the validator imports DOT's models: only when asked

    return pkce_required_for(get_client(client_id))


def dot_settings(**overrides: Any) -> dict[str, Any]:
    """The ``OAUTH2_PROVIDER`` dict that wires django-oauth-toolkit to this app.

    Pass DOT keys as keyword arguments to override (e.g. ``ALLOWED_REDIRECT_URI_SCHEMES``).
    Keys that make DOT fetch URLs itself (``RESOURCE_SERVER_INTROSPECTION_URL``, ``CIMD_ENABLED``)
    are refused by system check E022: every outbound request goes through the guarded client.
    Token lifetimes are *not* DOT settings here: they come from ``OIDC_PROVIDER_EXT``.
    """
    base: dict[str, Any] = {
        "OIDC_ENABLED": True,
        "OAUTH2_VALIDATOR_CLASS": "oidc_provider_ext.validator.OIDCValidator",
        "OAUTH2_SERVER_CLASS": "oidc_provider_ext.server.Server",
        "OIDC_SERVER_CLASS": "oidc_provider_ext.server.Server",
        "OAUTH2_BACKEND_CLASS": "oidc_provider_ext.server.OAuthLibCore",
        "SCOPES_BACKEND_CLASS": "oidc_provider_ext.scopes.ScopesBackend",
        # RFC 9700 2.1.1: S256 only; enforced by our Server, declared here so DOT's checks agree.
        "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
        "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
        "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
        "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
        # PKCE is a per-client policy (public clients always; confidential ones when the operator
        # says so); DOT accepts a callable for that.
        "PKCE_REQUIRED": pkce_required,
        # RFC 9700 4.14.2: a rotated refresh token presented again revokes its whole family
        # (enforced race-free by OIDCValidator.validate_refresh_token).
        "REFRESH_TOKEN_REUSE_PROTECTION": True,
        # RFC 9207: iss in every authorization response (errors too: AuthorizeView adds it there).
        "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
        "OIDC_ISS_ENDPOINT": lazy(lambda: app_settings.ISSUER, str)(),
        # Access and refresh tokens are stored as SHA-256 checksums only: a database leak hands
        # out no live token. Codes are ours (AuthorizationGrant) and never stored in clear either.
        "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
        "REQUEST_APPROVAL_PROMPT": "force",
        # Schemes of a client's allowed_origins (CORS). DOT's default is https only, which refuses
        # the http://localhost:PORT origin of a single-page app under development; internal/cors.py
        # (and the admin) accept http for loopback hosts only.
        "ALLOWED_SCHEMES": ["https", "http"],
    }
    base.update(overrides)
    return base
