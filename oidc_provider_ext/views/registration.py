"""``/connect/register``: dynamic client registration (RFC 7591 3) and, at
``/connect/register/<client_id>``, its management protocol (RFC 7592 2). Off unless the operator
chose a REGISTRATION policy (docs/registration.md); the rules live in internal/registration.py."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.hashers import check_password
from django.http import Http404, HttpResponse, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import View

from oidc_provider_ext import throttle
from oidc_provider_ext.conf import (
    REGISTRATION_INITIAL_ACCESS_TOKEN,
    REGISTRATION_OFF,
    REGISTRATION_OPEN,
    app_settings,
)
from oidc_provider_ext.internal import registration as rules
from oidc_provider_ext.internal.requests import decorated_view, rejecting_bad_requests
from oidc_provider_ext.views.backchannel import JsonErrorsMixin, oauth_error
from oidc_provider_ext.views.discovery import endpoint_url


def _bad_request(request, problem):
    return oauth_error("invalid_client_metadata", problem.description)


def _bearer(request) -> str:
    scheme, _space, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _invalid_token(description: str):
    # RFC 6750 3.1; the same answer whether the client exists or not (RFC 7592 2: no oracle).
    return oauth_error(
        "invalid_token", description, status=401, WWW_Authenticate='Bearer error="invalid_token"'
    )


def _too_many():
    return oauth_error(
        "temporarily_unavailable",
        "Too many registration requests from this address.",
        status=429,
        Retry_After="60",
    )


def _json(document: dict, status: int = 200) -> JsonResponse:
    response = JsonResponse(document, status=status)
    response["Cache-Control"] = "no-store"  # RFC 7591 3.2.1
    response["Pragma"] = "no-cache"
    return response


def _client_uri(client_id: str) -> str:
    return endpoint_url("oidc_provider_ext:register") + "/" + _quote(client_id)


def _quote(client_id: str) -> str:
    from urllib.parse import quote

    return quote(client_id, safe="")


def _json_body(request):
    if (request.content_type or "") != "application/json":
        raise rules.RegistrationError("invalid_client_metadata", "The body must be application/json.")
    return rules.parse_body(request.body)


@decorated_view(csrf_exempt, login_not_required, rejecting_bad_requests(_bad_request, reads_parameters=False))
class _RegistrationEndpoint(JsonErrorsMixin, View):
    def dispatch(self, request, *args, **kwargs):
        if app_settings.REGISTRATION == REGISTRATION_OFF:
            raise Http404  # RFC 7591 is not offered (and not advertised)
        response: HttpResponseBase
        if request.method == "OPTIONS":
            response = HttpResponse(status=204)
        elif rules.over_request_limit(request):
            response = _too_many()
        else:
            try:
                response = super().dispatch(request, *args, **kwargs)
            except rules.RegistrationError as error:
                response = oauth_error(error.error, error.description)
        # Browser-based clients (an MCP inspector) register from their own origin. No cookie is
        # involved (the credentials are bearer tokens in a header), so any origin may read it.
        response["Access-Control-Allow-Origin"] = "*"
        if request.method == "OPTIONS":
            response["Access-Control-Allow-Methods"] = ", ".join(m.upper() for m in self.http_method_names)
            response["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response["Access-Control-Max-Age"] = "600"
        return response


class RegistrationView(_RegistrationEndpoint):
    """RFC 7591 3.1: POST the client metadata as JSON, get the client (201)."""

    http_method_names = ["post", "options"]

    def post(self, request, *args, **kwargs):
        policy = app_settings.REGISTRATION
        address = throttle.throttle_address(request)
        if policy == REGISTRATION_INITIAL_ACCESS_TOKEN and not rules.initial_access_token_usable(
            _bearer(request)
        ):
            # RFC 7591 3: the token first, so nobody without one learns the metadata rules' answers.
            return _invalid_token("A valid initial access token is required to register a client.")
        metadata = rules.validate_metadata(_json_body(request))
        if policy == REGISTRATION_INITIAL_ACCESS_TOKEN:
            # Spent only by a registration that succeeds (and atomically: a concurrent one may
            # have taken the last use since the check above).
            if not rules.use_initial_access_token(_bearer(request)):
                return _invalid_token("A valid initial access token is required to register a client.")
        elif policy == REGISTRATION_OPEN:
            refused = rules.open_registration_refused(address)
            if refused:
                return oauth_error("temporarily_unavailable", refused, status=429, Retry_After="3600")
        application, secret, token = rules.register(metadata, address=address, policy=policy)
        document = rules.client_information(application, _client_uri(application.client_id))
        document["registration_access_token"] = token
        if secret is not None:
            document["client_secret"] = secret
            document["client_secret_expires_at"] = 0  # RFC 7591 3.2.1: does not expire
        return _json(document, status=201)


class RegistrationClientView(_RegistrationEndpoint):
    """RFC 7592 2: read, replace or delete a registration with its registration access token."""

    http_method_names = ["get", "put", "delete", "options"]

    def _client(self, request, client_id: str):
        """The self-registered client the bearer token is the registration access token of."""
        token = _bearer(request)
        # DOT's client_id column holds 255 characters: a longer one names no client. Read from the
        # database, never the client cache: a write must start from the row as it is now.
        application = (
            rules.Application.objects.select_related("oidc_profile")
            .filter(client_id=client_id, registration_source=rules.DCR)
            .first()
            if token and len(client_id) <= 255 and "\x00" not in client_id  # (PostgreSQL refuses NUL)
            else None
        )
        profile = getattr(application, "oidc_profile", None) if application is not None else None
        if not rules.registration_token_matches(profile, token):
            return None
        return application

    def get(self, request, client_id: str, *args, **kwargs):
        application = self._client(request, client_id)
        if application is None:
            return _invalid_token("The registration access token is not valid for this client.")
        return _json(rules.client_information(application, _client_uri(client_id)))

    def put(self, request, client_id: str, *args, **kwargs):
        application = self._client(request, client_id)
        if application is None:
            return _invalid_token("The registration access token is not valid for this client.")
        data = _json_body(request)
        if not isinstance(data, dict) or data.get("client_id") != application.client_id:
            # RFC 7592 2.2: the request names the client it updates, and cannot rename it.
            raise rules.RegistrationError("invalid_client_metadata", "client_id must be this client's.")
        # RFC 7592 2.2: these are the server's to say; a client_secret sent must be the current one.
        forbidden = {
            "registration_access_token",
            "registration_client_uri",
            "client_id_issued_at",
            "client_secret_expires_at",
        } & set(data)
        if forbidden:
            raise rules.RegistrationError(
                "invalid_client_metadata", f"Do not send {', '.join(sorted(forbidden))}."
            )
        if "client_secret" in data and not (
            isinstance(data["client_secret"], str)
            and application.client_secret
            and check_password(data["client_secret"], application.client_secret)
        ):
            raise rules.RegistrationError(
                "invalid_client_metadata", "client_secret is not this client's secret."
            )
        metadata = rules.validate_metadata(
            {k: v for k, v in data.items() if k not in ("client_id", "client_secret")}
        )
        application = rules.update(application, metadata)
        return _json(rules.client_information(application, _client_uri(client_id)))

    def delete(self, request, client_id: str, *args, **kwargs):
        application = self._client(request, client_id)
        if application is None:
            return _invalid_token("The registration access token is not valid for this client.")
        rules.delete(application)
        response = HttpResponse(status=204)
        response["Cache-Control"] = "no-store"
        return response


def registration_endpoint() -> str | None:
    """The registration endpoint's URL for metadata, or None when registration is off."""
    if app_settings.REGISTRATION == REGISTRATION_OFF:
        return None
    return endpoint_url("oidc_provider_ext:register")
