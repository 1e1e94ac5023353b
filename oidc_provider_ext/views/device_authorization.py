"""``/connect/device_authorization``: the device authorization endpoint (RFC 8628 3.1, 3.2)."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.http import HttpResponse
from django.views.generic import View
from oauth2_provider.views.mixins import OAuthLibMixin

from oidc_provider_ext.internal import clients
from oidc_provider_ext.views.backchannel import (
    JsonErrorsMixin,
    claimed_client_ids,
    form_endpoint,
    form_post_only,
    oauth_error,
)


@form_endpoint(sensitive=("client_secret",))
class DeviceAuthorizationView(JsonErrorsMixin, OAuthLibMixin, View):
    """A CLI or TV asks for access: it gets a device_code to poll the token endpoint with and a
    user_code for the user to enter at ``verification_uri``. Client authentication as at the token
    endpoint (RFC 8628 3.1): confidential clients authenticate, public clients send client_id."""

    http_method_names = ["post"]

    def post(self, request, *args, **kwargs):
        problem = form_post_only(request)
        if problem:
            return problem
        try:
            with transaction.atomic():
                headers, body, status = self.create_device_authorization_response(request)
        except IntegrityError:
            # A client deleted through another process within the client cache's lifetime.
            for client_id in claimed_client_ids(request):
                clients.forget(client_id)
            return oauth_error("invalid_client", "Client authentication failed.", status=401)
        response = HttpResponse(content=body, status=status, content_type="application/json")
        for name, value in headers.items():
            response[name] = value
        response["Cache-Control"] = "no-store"
        response["Pragma"] = "no-cache"
        return response
