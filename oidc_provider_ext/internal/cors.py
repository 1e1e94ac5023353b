"""CORS for the endpoints a browser app calls with ``fetch()``: token, userinfo and revocation.

One rule, applied by :func:`cors_endpoint` and nowhere else (the authorization endpoint and the
hosted pages are never decorated: they are navigated to, not fetched, and must not be readable by
another origin).

Which origins (Fetch, "CORS protocol"; OIDC Core 5.3: userinfo SHOULD support CORS):

- A response about a *known client* (the client named in a token or revocation request, the client
  the userinfo access token was issued to) is readable only by an origin in that client's
  ``allowed_origins`` (DOT's ``Application`` field).
- A preflight names no client (its request has no body and no credentials), nor does a request whose
  client is unknown (an unknown ``client_id``, an invalid access token): such responses (the
  preflight, or an error) are readable by an origin registered by *any* client, so a browser app can
  tell ``invalid_client`` or ``invalid_token`` from a network failure. They carry no token or claim.
- An origin is ``https://host[:port]``, or ``http://`` for loopback only (``localhost``,
  ``127.0.0.1``, ``[::1]``, any explicit port): a single-page app under local development.
- Never ``Access-Control-Allow-Credentials``: these endpoints take no cookies; a browser sends the
  client's credentials or the access token explicitly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import wraps
from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers

from oidc_provider_ext.internal.clients import all_allowed_origins, get_client

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
_DEFAULT_PORTS = {"https": 443, "http": 80}
# Browsers cap it (Chromium: 2 hours); a removed origin stops working within this time.
PREFLIGHT_MAX_AGE_SECONDS = 600
ALLOWED_REQUEST_HEADERS = "Authorization, Content-Type"
# RFC 6750 3: a bearer-token error is in WWW-Authenticate; RFC 6749 5.2: so is invalid_client's.
EXPOSED_HEADERS = "WWW-Authenticate"


def serialise(origin: str) -> str | None:
    """The origin as a browser serialises it (RFC 6454 6.1: lowercase, default port omitted), or
    None when it is no origin this provider serves: a path, credentials, ``null``, or plain http to
    anything but loopback."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname
    if parts.scheme not in _DEFAULT_PORTS or not host or parts.username is not None or parts.password:
        return None
    if parts.path or parts.query or parts.fragment or "?" in origin or "#" in origin:
        return None
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}:{port}"
    return f"{parts.scheme}://{host}"


def client_origins(client) -> set[str]:
    """The origins ``client`` registered, serialised (the ones :func:`serialise` refuses dropped)."""
    origins = (serialise(value) for value in (getattr(client, "allowed_origins", "") or "").split())
    return {origin for origin in origins if origin}


def origin_allowed(origin: str, client_ids: Iterable[str]) -> bool:
    """Whether a response to a request about ``client_ids`` may be read by ``origin`` (see the
    module docstring)."""
    requested = serialise(origin)
    if requested is None:
        return False
    clients = [get_client(client_id) for client_id in set(client_ids)]
    known = [client for client in clients if client is not None]
    if not known:
        registered = all_allowed_origins()
        return requested in registered or any(serialise(value) == requested for value in registered)
    return all(requested in client_origins(client) for client in known)


def _preflight(origin: str, methods: str) -> HttpResponse:
    response = HttpResponse(status=204)
    response["Access-Control-Allow-Origin"] = origin
    response["Access-Control-Allow-Methods"] = methods
    response["Access-Control-Allow-Headers"] = ALLOWED_REQUEST_HEADERS
    response["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_SECONDS)
    patch_vary_headers(response, ["Origin"])
    return response


def cors_endpoint(*, methods: Iterable[str], client_ids: Callable[[HttpRequest], Iterable[str]]):
    """Decorate an endpoint view (outermost, so boundary errors are covered too) to answer CORS
    preflights and to let the allowed origin read every response, errors included.

    ``client_ids(request)`` names the client(s) the request is about; empty when none is known."""
    allowed_methods = ", ".join(m.upper() for m in methods)

    def decorate(view):
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs):
            # META, not request.headers: that builds a dict of every header on first use.
            origin = request.META.get("HTTP_ORIGIN")
            if (
                origin
                and request.method == "OPTIONS"
                and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in request.META
                and origin_allowed(origin, ())
            ):
                return _preflight(origin, allowed_methods)
            response = view(request, *args, **kwargs)
            # oauthlib adds its own header to successful token responses (https only): one rule.
            del response["Access-Control-Allow-Origin"]
            if origin:
                patch_vary_headers(response, ["Origin"])
                if origin_allowed(origin, _safely(client_ids, request)):
                    response["Access-Control-Allow-Origin"] = origin
                    response["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
            return response

        return wrapped

    return decorate


def _safely(client_ids, request) -> list[str]:
    # A request the boundary refused may have a body that does not parse: no client is known.
    try:
        return [client_id for client_id in client_ids(request) if client_id]
    except Exception:  # any parse failure means "unknown", never a 500
        return []
