"""``/connect/userinfo``: the UserInfo endpoint (OIDC Core 5.3)."""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from oauth2_provider import views as dot_views
from oauth2_provider.views.mixins import OIDCOnlyMixin

from oidc_provider_ext import validator
from oidc_provider_ext.internal.cors import cors_endpoint
from oidc_provider_ext.internal.requests import decorated_view, rejecting_bad_requests
from oidc_provider_ext.views.backchannel import JsonErrorsMixin, oauth_error


def _invalid_bearer_request(request, problem):
    # RFC 6750 3.1: invalid_request is a 400 with the Bearer challenge.
    return oauth_error(
        "invalid_request", problem.description, status=400, WWW_Authenticate='Bearer error="invalid_request"'
    )


def _stored_token(request, token: str):
    """The stored access token ``token`` (validator.access_token_with_grant), looked up once per
    request: the view and the CORS decision after it share the row."""
    loaded = vars(request).setdefault("_oidc_access_tokens", {})
    if token not in loaded:
        loaded[token] = validator.access_token_with_grant(token)
    return loaded[token]


def _token_client_ids(request) -> list[str]:
    """The client the presented access token was issued to (RFC 6750 2.1 header or 2.2 body), or
    none when the token is unknown. Only asked when the request carries an ``Origin``."""
    scheme, _space, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer":
        token = request.POST.get("access_token", "") if request.method == "POST" else ""
    if not token:
        return []
    # DOT stores access tokens as SHA-256 checksums (COMPLIANT_BCP_RFC9700_TOKEN_STORAGE).
    stored = _stored_token(request, token.strip())
    if stored is None or stored.application is None:
        return []
    return [stored.application.client_id]


def _bearer_token(request) -> str | None:
    """The access token as oauthlib's ``get_token_from_header`` finds it: from an Authorization
    header when there is one (RFC 6750 2.1: ``Bearer`` and the token, nothing else), else from a
    form body (2.2). The query string (2.3) was refused before."""
    if "HTTP_AUTHORIZATION" in request.META:
        parts = request.META["HTTP_AUTHORIZATION"].split()
        return parts[1] if len(parts) == 2 and parts[0].lower() == "bearer" else None
    return request.POST.get("access_token") if request.method == "POST" else None


# OIDC Core 5.3: "The UserInfo Endpoint SHOULD support the use of Cross Origin Resource Sharing".
# The response is about the token's client: only that client's origins read the claims.
@decorated_view(
    cors_endpoint(methods=["GET", "POST"], client_ids=_token_client_ids),
    sensitive_post_parameters("access_token"),  # RFC 6750 2.2: the token in a form body
    rejecting_bad_requests(_invalid_bearer_request),
    csrf_exempt,
    login_not_required,
)
class UserInfoView(JsonErrorsMixin, dot_views.UserInfoView):
    """OIDC Core 5.3: GET or POST; bearer token in the header, or in a form body for POST."""

    # DOT's dispatch without the method decorators DOT's view re-applies on every request
    # (csrf_exempt, login_not_required): applied once above.
    dispatch = OIDCOnlyMixin.dispatch

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
        if validator.userinfo_served_directly():
            response = self._respond(request)
        else:
            response = respond(request, *args, **kwargs)  # DOT's view, through our server
        response["Cache-Control"] = "no-store"
        # oauthlib hands back a JSON body (claims, or an RFC 6750 error) without saying so.
        if response.content:
            response["Content-Type"] = "application/json"
        return response

    @staticmethod
    def _respond(request) -> HttpResponse:
        """What DOT's view answers through oauthlib's UserInfoEndpoint and our validator, without
        them: the same checks (validator.userinfo_access_token), claims and errors, one lookup."""
        token = _bearer_token(request)
        access_token = _stored_token(request, token) if token else None
        if access_token is None or not validator.userinfo_access_token(access_token, request):
            status, headers, body = validator.invalid_token_error()
            response = HttpResponse(body, status=status)
            for name, value in headers.items():
                response[name] = value
            return response
        claims = validator.userinfo_claims(
            access_token.user, list(access_token.scopes), access_token.grant_claims, access_token.grant_tenant
        )
        return HttpResponse(json.dumps(claims), content_type="application/json")
