"""``/connect/revocation``: token revocation (RFC 7009)."""

from __future__ import annotations

from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider import views as dot_views

from oidc_provider_ext.internal.cors import cors_endpoint
from oidc_provider_ext.internal.requests import rejecting_bad_requests
from oidc_provider_ext.views.backchannel import (
    JsonErrorsMixin,
    claimed_client_ids,
    form_post_only,
    invalid_request,
)


# A browser app revokes its tokens at sign-out (RFC 7009 2.1 authenticates the client as at the
# token endpoint, so the client is the one the request names).
@method_decorator(cors_endpoint(methods=["POST"], client_ids=claimed_client_ids), name="dispatch")
@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(rejecting_bad_requests(invalid_request), name="dispatch")
class RevocationView(JsonErrorsMixin, dot_views.RevokeTokenView):
    http_method_names = ["post", "options"]

    def post(self, request, *args, **kwargs):
        problem = form_post_only(request)
        if problem:
            return problem
        response = super().post(request, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        return response
