"""``/connect/userinfo``: the UserInfo endpoint (OIDC Core 5.3)."""

from __future__ import annotations

import hashlib

from django.utils.decorators import method_decorator
from oauth2_provider import views as dot_views
from oauth2_provider.models import get_access_token_model

from oidc_provider_ext.internal.cors import cors_endpoint
from oidc_provider_ext.internal.requests import rejecting_bad_requests
from oidc_provider_ext.views.backchannel import JsonErrorsMixin, oauth_error


def _invalid_bearer_request(request, problem):
    # RFC 6750 3.1: invalid_request is a 400 with the Bearer challenge.
    return oauth_error(
        "invalid_request", problem.description, status=400, WWW_Authenticate='Bearer error="invalid_request"'
    )


def _token_client_ids(request) -> list[str]:
    """The client the presented access token was issued to (RFC 6750 2.1 header or 2.2 body), or
    none when the token is unknown. Only asked when the request carries an ``Origin``."""
    scheme, _space, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer":
        token = request.POST.get("access_token", "") if request.method == "POST" else ""
    if not token:
        return []
    # DOT stores access tokens as SHA-256 checksums (COMPLIANT_BCP_RFC9700_TOKEN_STORAGE).
    checksum = hashlib.sha256(token.strip().encode("utf-8")).hexdigest()
    tokens = get_access_token_model().objects.filter(token_checksum=checksum)
    return list(tokens.values_list("application__client_id", flat=True)[:1])


# OIDC Core 5.3: "The UserInfo Endpoint SHOULD support the use of Cross Origin Resource Sharing".
# The response is about the token's client: only that client's origins read the claims.
@method_decorator(cors_endpoint(methods=["GET", "POST"], client_ids=_token_client_ids), name="dispatch")
@method_decorator(rejecting_bad_requests(_invalid_bearer_request), name="dispatch")
class UserInfoView(JsonErrorsMixin, dot_views.UserInfoView):
    """OIDC Core 5.3: GET or POST; bearer token in the header, or in a form body for POST."""

    def get(self, request, *args, **kwargs):
        return self._userinfo(request, super().get, *args, **kwargs)

    def post(self, request, *args, **kwargs):
        return self._userinfo(request, super().post, *args, **kwargs)

    def _userinfo(self, request, respond, *args, **kwargs):
        if "access_token" in request.GET:
            # RFC 9700 2.1: access tokens are never sent in the query string.
            return oauth_error(
                "invalid_request",
                "Send the access token in the Authorization header.",
                status=400,
                WWW_Authenticate='Bearer error="invalid_request"',
            )
        if "HTTP_AUTHORIZATION" in request.META and "access_token" in request.POST:
            # RFC 6750 2: a client MUST NOT use more than one method to transmit the token.
            return oauth_error(
                "invalid_request",
                "Send the access token one way only.",
                status=400,
                WWW_Authenticate='Bearer error="invalid_request"',
            )
        response = respond(request, *args, **kwargs)  # DOT's view, through our server
        response["Cache-Control"] = "no-store"
        # oauthlib hands back a JSON body (claims, or an RFC 6750 error) without saying so.
        if response.content:
            response["Content-Type"] = "application/json"
        return response
