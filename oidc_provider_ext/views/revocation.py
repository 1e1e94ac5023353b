"""``/connect/revocation``: token revocation (RFC 7009)."""

from __future__ import annotations

from django.views.generic import View
from oauth2_provider import views as dot_views

from oidc_provider_ext.views.backchannel import (
    JsonErrorsMixin,
    form_endpoint,
    form_post_only,
)


# A browser app revokes its tokens at sign-out (RFC 7009 2.1 authenticates the client as at the
# token endpoint, so the client is the one the request names).
@form_endpoint(browser_readable=True, sensitive=("client_secret", "token"))
class RevocationView(JsonErrorsMixin, dot_views.RevokeTokenView):
    http_method_names = ["post", "options"]
    dispatch = View.dispatch  # form_endpoint covers DOT's decorators

    def post(self, request, *args, **kwargs):
        problem = form_post_only(request)
        if problem:
            return problem
        response = super().post(request, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        return response
