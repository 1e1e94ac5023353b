"""Back-channel endpoints: token (RFC 6749 3.2), revocation (RFC 7009), introspection (RFC 7662)."""

from __future__ import annotations

import base64
import calendar
import contextlib
from urllib.parse import unquote

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from django.views.generic import View
from oauth2_provider import views as dot_views
from oauth2_provider.models import get_access_token_model, get_refresh_token_model
from oauth2_provider.views.mixins import OAuthLibMixin
from oauthlib.common import Request

from oidc_provider_ext import clients
from oidc_provider_ext.adapter import get_adapter
from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.internal.requests import rejecting_bad_requests
from oidc_provider_ext.models import AuthorizationGrant
from oidc_provider_ext.tokens import subject_for
from oidc_provider_ext.validator import checksum


def oauth_error(error: str, description: str, status: int = 400, **headers) -> JsonResponse:
    response = JsonResponse({"error": error, "error_description": description}, status=status)
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _claimed_client_ids(request) -> set[str]:
    """The client_id in the body and in HTTP Basic credentials, unverified (to drop from a cache)."""
    claimed = {request.POST.get("client_id", "")}
    scheme, _space, credentials = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() == "basic":
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            claimed.add(unquote(base64.b64decode(credentials).decode("ascii").split(":", 1)[0]))
    return claimed - {""}


def _form_post_only(request):
    """RFC 6749 3.2 / RFC 7009 2.1 / RFC 7662 2.1: POST with a form-encoded body."""
    if request.method != "POST":
        return oauth_error("invalid_request", "Use POST.", status=405, Allow="POST")
    content_type = request.content_type or ""
    if content_type != "application/x-www-form-urlencoded":
        return oauth_error("invalid_request", "The body must be application/x-www-form-urlencoded.")
    if request.GET:
        # RFC 9700 4.13 spirit: credentials and tokens never travel in the query string.
        return oauth_error(
            "invalid_request", "Parameters must be sent in the request body, not the query string."
        )
    return None


def _visible_to(client) -> Q:
    """RFC 7662 4: a client learns only about its own tokens, unless an operator made it a resource
    server for other clients' tokens (OIDC profile: introspection audiences = their client ids,
    the ``aud`` of their access tokens)."""
    profile = getattr(client, "oidc_profile", None)
    audiences = profile.introspection_audiences.split() if profile is not None else []
    return Q(application=client) | Q(application__client_id__in=audiences)


class JsonErrorsMixin:
    """A wrong HTTP method is answered like every other error of a back-channel endpoint."""

    def http_method_not_allowed(self, request, *args, **kwargs):
        allowed = ", ".join(m.upper() for m in self._allowed_methods())
        return oauth_error("invalid_request", f"Use {allowed}.", status=405, Allow=allowed)


def _invalid_request(request, problem):
    return oauth_error("invalid_request", problem.description)


def _invalid_bearer_request(request, problem):
    # RFC 6750 3.1: invalid_request is a 400 with the Bearer challenge.
    return oauth_error(
        "invalid_request", problem.description, status=400, WWW_Authenticate='Bearer error="invalid_request"'
    )


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(rejecting_bad_requests(_invalid_request), name="dispatch")
class TokenView(JsonErrorsMixin, dot_views.TokenView):
    http_method_names = ["post", "options"]

    @method_decorator(sensitive_post_parameters("client_secret", "code", "code_verifier", "refresh_token"))
    def post(self, request, *args, **kwargs):
        problem = _form_post_only(request)
        if problem:
            return problem
        # One transaction per token request: the single-use locks (code, refresh token, grant)
        # hold until the new tokens are committed, which is what makes replays race-free; with
        # SQLite's BEGIN IMMEDIATE it also serialises writers instead of failing them.
        try:
            with transaction.atomic():
                url, headers, body, status = self.create_token_response(request)
        except IntegrityError:
            # A client deleted through another process within the client cache's lifetime: the
            # cached row it authenticated as no longer exists (RFC 6749 5.2: invalid_client).
            for client_id in _claimed_client_ids(request):
                clients.forget(client_id)
            return oauth_error("invalid_client", "Client authentication failed.", status=401)
        response = HttpResponse(content=body, status=status)
        for name, value in headers.items():
            response[name] = value
        response["Cache-Control"] = "no-store"
        response["Pragma"] = "no-cache"
        return response


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(rejecting_bad_requests(_invalid_request), name="dispatch")
class RevocationView(JsonErrorsMixin, dot_views.RevokeTokenView):
    http_method_names = ["post", "options"]

    def post(self, request, *args, **kwargs):
        problem = _form_post_only(request)
        if problem:
            return problem
        response = super().post(request, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        return response


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(rejecting_bad_requests(_invalid_request), name="dispatch")
class IntrospectionView(JsonErrorsMixin, OAuthLibMixin, View):
    """RFC 7662. Only an authenticated confidential client may ask, and only about its own tokens;
    anything else is ``{"active": false}`` (2.2: nothing more is said about inactive tokens)."""

    http_method_names = ["post", "options"]

    @method_decorator(sensitive_post_parameters("client_secret", "token"))
    def post(self, request, *args, **kwargs):
        problem = _form_post_only(request)
        if problem:
            return problem
        client = self._authenticated_client(request)
        if client is None:
            return oauth_error(
                "invalid_client",
                "Client authentication failed.",
                status=401,
                WWW_Authenticate='Basic realm="oidc"',
            )
        token = request.POST.get("token")
        if not token:
            return oauth_error("invalid_request", "The token parameter is missing.")
        data = self._introspect(token, request.POST.get("token_type_hint"), client)
        response = JsonResponse(data)
        response["Cache-Control"] = "no-store"
        return response

    def _authenticated_client(self, request):
        core = self.get_oauthlib_core()
        uri, http_method, body, headers = core._extract_params(request)
        oauth_request = Request(uri, http_method, body, headers)
        validator = core.server.request_validator
        if not validator.authenticate_client(oauth_request):
            return None
        client = oauth_request.client
        return client if client is not None and client.client_type == client.CLIENT_CONFIDENTIAL else None

    @staticmethod
    def _introspect(token: str, hint: str | None, client) -> dict:
        token_checksum = checksum(token)
        access = (
            get_access_token_model()
            .objects.select_related("user", "application")
            .filter(_visible_to(client), token_checksum=token_checksum)
            .first()
        )
        if access is not None and access.is_valid():
            data = {
                "active": True,
                "token_type": "Bearer",
                "scope": access.scope,
                "client_id": access.application.client_id,
                "exp": int(calendar.timegm(access.expires.utctimetuple())),
                "iat": int(calendar.timegm(access.created.utctimetuple())),
                "iss": app_settings.ISSUER,
            }
            if access.user is not None:
                grant = AuthorizationGrant.objects.for_access_token(access).only("tenant").first()
                tenant = grant.tenant if grant is not None else ""
                # The account-state rule: a deactivated user's or ended member's token is inactive.
                if not get_adapter().may_use_client(access.user, access.application, tenant):
                    return {"active": False}
                data.update(sub=subject_for(access.user), username=access.user.get_username())
                data.update(get_adapter().get_tenant_claims(access.user, tenant))
            elif get_adapter().may_use_client(None, access.application, ""):
                data["sub"] = access.application.client_id
            else:
                return {"active": False}  # the account-state rule for a client acting for itself
            return data
        refresh = (
            get_refresh_token_model()
            .objects.select_related("user", "application")
            .filter(_visible_to(client), token_checksum=token_checksum, revoked__isnull=True)
            .first()
        )
        if refresh is not None and refresh.access_token_id is not None:
            grant = (
                AuthorizationGrant.objects.filter(token_family=refresh.token_family).only("tenant").first()
            )
            tenant = grant.tenant if grant else ""
            if not get_adapter().may_use_client(refresh.user, refresh.application, tenant):
                return {"active": False}
            tenant_claims = get_adapter().get_tenant_claims(refresh.user, tenant)
            return {
                **tenant_claims,
                "active": True,
                "token_type": "refresh_token",
                "client_id": refresh.application.client_id,
                "sub": subject_for(refresh.user),
                "username": refresh.user.get_username(),
                "iss": app_settings.ISSUER,
            }
        return {"active": False}


@method_decorator(rejecting_bad_requests(_invalid_bearer_request), name="dispatch")
class UserInfoView(JsonErrorsMixin, dot_views.UserInfoView):
    """OIDC Core 5.3: GET or POST; bearer token in the header, or in a form body for POST."""

    def _create_userinfo_response(self, request):
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
        response = super()._create_userinfo_response(request)
        response["Cache-Control"] = "no-store"
        # oauthlib hands back a JSON body (claims, or an RFC 6750 error) without saying so.
        if response.content:
            response["Content-Type"] = "application/json"
        return response
