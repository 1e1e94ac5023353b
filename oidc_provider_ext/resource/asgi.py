"""Protect any ASGI application (Starlette, FastAPI, an MCP server) with this provider's access tokens.

Pure ASGI: no Django request, view or middleware is involved, only the settings (``OIDC_PROVIDER_EXT``
read through :mod:`oidc_provider_ext.conf`, so Django's settings must be configured)::

    from oidc_provider_ext.resource import ProtectedResource
    from oidc_provider_ext.resource.asgi import ProtectedResourceMiddleware

    api = ProtectedResource("https://api.example.com/mcp", scopes_supported=["mcp:tools"])
    app = ProtectedResourceMiddleware(starlette_app, resource=api, required_scopes=["mcp:tools"])

Every ``http`` and ``websocket`` request needs a valid access token for the resource (the same
:func:`~oidc_provider_ext.resource.validate_access_token` as the Django decorator), granting every
required scope; its claims are ``scope["auth"]`` (:class:`~oidc_provider_ext.resource.AccessTokenClaims`,
Starlette's ``request.auth``). Otherwise the answers are those of RFC 6750 3 with the
``resource_metadata`` of RFC 9728 5.1. The wrapper also serves the resource's metadata document at
``/.well-known/oauth-protected-resource[/path]`` (RFC 9728 3.1), without a token.

Validation runs in a worker thread: it is CPU work (a signature check) and, depending on the
configuration, a database query (revocation, the in-process key store) or a fetch of the remote JWKS;
none of it may block the event loop.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from asgiref.sync import sync_to_async

from oidc_provider_ext.conf import app_settings, resource_audiences

from . import (
    AccessTokenClaims,
    Audience,
    InvalidRequest,
    Resource,
    ResourceServerError,
    challenge_for,
    challenge_resource,
    error_body,
    resolve_resource,
    token_of,
    validate_access_token,
)
from .metadata import WELL_KNOWN_PATH, ProtectedResource, as_resource, find_resource

__all__ = ["ProtectedResourceMiddleware", "validate_off_loop"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
OnAuthenticated = Callable[[Scope, AccessTokenClaims, str], None]

# RFC 7235 4.2 allows one Authorization header; several are refused rather than one picked.
_AUTHORIZATION = b"authorization"


def _validate(token: str, scopes: tuple[str, ...], audiences: tuple[str, ...]) -> AccessTokenClaims:
    in_process = not app_settings.RESOURCE_SERVER_JWKS_URL
    if in_process:
        # As Django does around each request (request_started / request_finished): a worker
        # thread must not keep a broken or expired database connection.
        from django.db import close_old_connections

        close_old_connections()
    try:
        return validate_access_token(token, required_scopes=scopes, audience=audiences)
    finally:
        if in_process:
            close_old_connections()


async def validate_off_loop(
    token: str, *, required_scopes: Iterable[str] = (), audiences: tuple[str, ...]
) -> AccessTokenClaims:
    """:func:`~oidc_provider_ext.resource.validate_access_token` in a worker thread.

    ``thread_sensitive=False``: validations run in parallel, not queued behind one thread, and
    each thread's database connection is closed as Django closes a request's.
    """
    return await sync_to_async(_validate, thread_sensitive=False)(token, tuple(required_scopes), audiences)


class ProtectedResourceMiddleware:
    """ASGI middleware: ``app`` runs only for a valid access token of ``resource``.

    ``resource`` (a :class:`~oidc_provider_ext.resource.ProtectedResource` or its identifier) and
    ``audience`` (further accepted ``aud`` values) replace the settings ``RESOURCE_SERVER_IDENTIFIER``
    and ``RESOURCE_SERVER_AUDIENCE``, as on the Django decorator; with none of them a request with
    a token raises ImproperlyConfigured. ``required_scopes`` must all be granted (else 403
    ``insufficient_scope``). ``on_authenticated(scope, claims, token)`` may add to the scope the
    inner app sees (the MCP integration puts the SDK's user there). ``serve_metadata=False`` leaves
    the well-known path to the inner app.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        resource: Resource | None = None,
        audience: Audience | None = None,
        required_scopes: Iterable[str] = (),
        on_authenticated: OnAuthenticated | None = None,
        serve_metadata: bool = True,
    ) -> None:
        scopes = (required_scopes,) if isinstance(required_scopes, str) else tuple(required_scopes)
        if any(not isinstance(scope, str) or not scope for scope in scopes):
            raise TypeError("required_scopes must be a list of scope names.")
        self.app = app
        self.resource = (
            None if resource is None else as_resource(resource, "ProtectedResourceMiddleware(resource=)")
        )
        self.audience = (
            None
            if audience is None
            else resource_audiences(audience, "ProtectedResourceMiddleware(audience=)")
        )
        self.required_scopes = scopes
        self.on_authenticated = on_authenticated
        self.serve_metadata = serve_metadata

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind not in ("http", "websocket"):  # lifespan and extensions: not requests
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if (
            kind == "http"
            and self.serve_metadata
            and (path == WELL_KNOWN_PATH or path.startswith(WELL_KNOWN_PATH + "/"))
        ):
            await self._metadata(scope, send)
            return
        protected: ProtectedResource | None = None
        try:
            token = _bearer_token(scope)
            if token is None:
                await self._refuse(
                    scope, receive, send, None, challenge_resource(self.audience, self.resource)
                )
                return
            audiences, protected = resolve_resource(self.audience, self.resource)
            claims = await validate_off_loop(token, required_scopes=self.required_scopes, audiences=audiences)
        except ResourceServerError as error:
            log.debug("Refused a bearer request to %s: %s", path, error.description)
            await self._refuse(scope, receive, send, error, protected)
            return
        inner = dict(scope)
        inner["auth"] = claims
        if self.on_authenticated is not None:
            self.on_authenticated(inner, claims, token)
        await self.app(inner, receive, send)

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        error: ResourceServerError | None,
        protected: ProtectedResource | None,
    ) -> None:
        if protected is None and error is not None:
            protected = challenge_resource(self.audience, self.resource)
        if scope["type"] == "websocket":
            # Before the handshake is accepted, a close makes the server answer it with 403.
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
            return
        status, body = error_body(error)
        challenge = challenge_for(error, resource=protected, scopes=self.required_scopes)
        headers = [(b"cache-control", b"no-store")]
        if challenge is not None:
            headers.append((b"www-authenticate", challenge.encode("latin-1")))
        await _send_json(send, status, body, headers, head=scope.get("method") == "HEAD")

    async def _metadata(self, scope: Scope, send: Send) -> None:
        protected = challenge_resource(self.audience, self.resource)
        method = scope.get("method", "GET")
        found = find_resource(
            scope.get("path", ""), lambda: _header(scope, b"host"), (protected,) if protected else ()
        )
        cors = [(b"access-control-allow-origin", b"*")]
        if found is None:
            await _send_json(send, 404, {"error": "not_found"}, cors)
        elif method not in ("GET", "HEAD"):
            await _send_json(send, 405, {"error": "method_not_allowed"}, [*cors, (b"allow", b"GET, HEAD")])
        else:
            headers = [*cors, (b"cache-control", b"public, max-age=3600")]
            await _send_json(send, 200, found.metadata(), headers, head=method == "HEAD")


def _header(scope: Scope, name: bytes) -> str | None:
    values = [value for key, value in scope.get("headers", ()) if key.lower() == name]
    return values[0].decode("latin-1") if len(values) == 1 else None


def _bearer_token(scope: Scope) -> str | None:
    values = [value for key, value in scope.get("headers", ()) if key.lower() == _AUTHORIZATION]
    if len(values) > 1:
        raise InvalidRequest("Send one Authorization header.")
    authorization = values[0].decode("latin-1") if values else ""
    query = scope.get("query_string", b"").decode("latin-1")
    # RFC 6750 5.3: a token in the query string is refused (as the Django decorator does).
    # Parsed only when a name could be access_token (spelt out or percent-encoded): a huge query
    # string without either costs one scan.
    suspect = "%" in query or "access" in query
    in_query = suspect and any(name == "access_token" for name, _ in parse_qsl(query, keep_blank_values=True))
    return token_of(authorization, in_query)


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]], *, head: bool = False
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else payload})
