"""``/connect/token``: the token endpoint (RFC 6749 3.2)."""

from __future__ import annotations

import json

from django.db import IntegrityError
from django.http import HttpResponse
from django.views.generic import View
from oauth2_provider import views as dot_views

from oidc_provider_ext.internal import clients, token_writes
from oidc_provider_ext.internal.requests import error_description
from oidc_provider_ext.views.backchannel import (
    JsonErrorsMixin,
    claimed_client_ids,
    form_endpoint,
    form_post_only,
    oauth_error,
)


# Browser apps (public clients with PKCE) redeem codes and refresh with fetch(): RFC 6749 errors
# must be readable too, or invalid_grant looks like a network failure.
@form_endpoint(
    browser_readable=True,
    sensitive=("client_secret", "code", "code_verifier", "refresh_token", "device_code"),
)
class TokenView(JsonErrorsMixin, dot_views.TokenView):
    http_method_names = ["post", "options"]
    dispatch = View.dispatch  # form_endpoint covers DOT's decorators

    def post(self, request, *args, **kwargs):
        problem = form_post_only(request)
        if problem:
            return problem
        # One transaction per token request, opened at its first locking statement (the code's or
        # refresh token's single use; internal/token_writes.py): the locks hold until the new
        # tokens are committed, which is what makes replays race-free; with SQLite's BEGIN
        # IMMEDIATE it also serialises writers instead of failing them, and they queue for it in
        # turn (internal/sqlite_writers.py) rather than in SQLite's busy back-off.
        try:
            with token_writes.deferred():
                url, headers, body, status = self.create_token_response(request)
        except IntegrityError:
            # A client deleted through another process within the client cache's lifetime: the
            # cached row it authenticated as no longer exists (RFC 6749 5.2: invalid_client).
            for client_id in claimed_client_ids(request):
                clients.forget(client_id)
            return oauth_error("invalid_client", "Client authentication failed.", status=401)
        if status >= 400:
            body = _reduced_description(body)
        response = HttpResponse(content=body, status=status)
        for name, value in headers.items():
            response[name] = value
        response["Cache-Control"] = "no-store"
        response["Pragma"] = "no-cache"
        return response


def _reduced_description(body: str) -> str:
    """An error body oauthlib built: its error_description in RFC 6749's character set (5.2)."""
    try:
        payload = json.loads(body)
    except (TypeError, ValueError):
        return body
    if not isinstance(payload, dict) or not isinstance(payload.get("error_description"), str):
        return body
    reduced = error_description(payload["error_description"])
    if reduced == payload["error_description"]:
        return body
    return json.dumps({**payload, "error_description": reduced})
