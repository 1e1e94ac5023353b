"""Protect an MCP server written with the official MCP Python SDK (``mcp`` 2.x) with this provider.

Needs ``mcp``, which this package does not depend on: only this module imports it. Two ways:

1. Wrap the SDK's streamable-HTTP app (recommended: RFC 6750 / RFC 9728 answers as the rest of this
   package gives them, ``scope=`` on 403 included)::

       from mcp.server.mcpserver import MCPServer
       from oidc_provider_ext.contrib.mcp import protect_mcp_app
       from oidc_provider_ext.resource import ProtectedResource

       server = MCPServer("invoices")
       resource = ProtectedResource("https://mcp.example.com/mcp", scopes_supported=["invoices"])
       app = protect_mcp_app(server.streamable_http_app(), resource=resource, required_scopes=["invoices"])

2. Or give the SDK a token verifier and let it answer (its 403 names no scope)::

       server = MCPServer(
           "invoices",
           token_verifier=TokenVerifier(resource),
           auth=AuthSettings(issuer_url=ISSUER, resource_server_url=resource.identifier,
                             required_scopes=["invoices"], validate_token_resource=True),
       )

Either way a tool finds the token with ``mcp.server.auth.middleware.auth_context.get_access_token()``
(``subject`` is ``sub``, ``claims`` every claim), and each MCP session is bound to the principal
that opened it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken

from oidc_provider_ext.conf import resource_audiences
from oidc_provider_ext.resource import (
    AccessTokenClaims,
    Audience,
    Resource,
    ResourceServerError,
    resolve_resource,
)
from oidc_provider_ext.resource.asgi import ASGIApp, ProtectedResourceMiddleware, Scope, validate_off_loop
from oidc_provider_ext.resource.metadata import as_resource

__all__ = ["TokenVerifier", "access_token", "protect_mcp_app"]


def access_token(claims: AccessTokenClaims, token: str, resource: str | None = None) -> AccessToken:
    """The SDK's view of a validated token: ``resource`` is the identifier it was checked for."""
    return AccessToken(
        token=token,
        client_id=claims.client_id,
        scopes=list(claims.scopes),
        expires_at=int(claims.expires_at),
        resource=resource,
        subject=claims.sub,
        claims=dict(claims.claims),
    )


def protect_mcp_app(
    app: ASGIApp,
    *,
    resource: Resource | None = None,
    audience: Audience | None = None,
    required_scopes: Iterable[str] = (),
) -> ProtectedResourceMiddleware:
    """``app`` (``MCPServer.streamable_http_app()`` built without ``auth``) behind
    :class:`~oidc_provider_ext.resource.asgi.ProtectedResourceMiddleware`, which also serves the
    resource's metadata; the request scope carries the SDK's authenticated user, as its own
    bearer middleware would set it."""
    middleware = ProtectedResourceMiddleware(
        AuthContextMiddleware(app), resource=resource, audience=audience, required_scopes=required_scopes
    )

    def as_sdk_user(scope: Scope, claims: AccessTokenClaims, token: str) -> None:
        protected = resolve_resource(middleware.audience, middleware.resource)[1]
        scope["user"] = AuthenticatedUser(
            access_token(claims, token, protected.identifier if protected else None)
        )

    middleware.on_authenticated = as_sdk_user
    return middleware


class TokenVerifier:
    """The SDK's ``TokenVerifier`` protocol (``mcp.server.auth.provider``) over
    :func:`~oidc_provider_ext.resource.validate_access_token`.

    ``resource`` and ``audience`` name what the token's ``aud`` must contain, as everywhere in
    :mod:`oidc_provider_ext.resource`. A refused token is None (the SDK answers 401).
    """

    def __init__(self, resource: Resource | None = None, *, audience: Audience | None = None) -> None:
        self.resource = None if resource is None else as_resource(resource, "TokenVerifier(resource=)")
        self.audience = None if audience is None else resource_audiences(audience, "TokenVerifier(audience=)")

    async def verify_token(self, token: str) -> AccessToken | None:
        audiences, protected = resolve_resource(self.audience, self.resource)
        try:
            claims = await validate_off_loop(token, audiences=audiences)
        except ResourceServerError:
            return None
        return access_token(claims, token, protected.identifier if protected else None)

    def __repr__(self) -> str:
        named: Any = self.resource.identifier if self.resource else self.audience
        return f"TokenVerifier({named!r})"
