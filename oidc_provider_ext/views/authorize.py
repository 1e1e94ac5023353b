"""``/connect/authorize``: validate the request, sign the user in, ask for consent, issue a code.

The validated request is kept server-side (in the session) between the consent page and its POST:
the form carries only an opaque request id, so nothing the browser sends back can change the
client, redirect_uri, scopes, PKCE challenge or nonce (DESIGN.md, "Data that must survive").
"""

from __future__ import annotations

import secrets
import time
from urllib.parse import urlencode

from django.contrib.auth.views import redirect_to_login
from django.http import QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.generic import View
from oauth2_provider.exceptions import OAuthToolkitError
from oauth2_provider.http import OAuth2ResponseRedirect
from oauth2_provider.models import get_application_model
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.views.mixins import OAuthLibMixin

from oidc_provider_ext.adapter import get_adapter
from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.forms import ConsentForm

from .errors import error_page

PENDING_SESSION_KEY = "oidc_pending_authorizations"
MAX_PENDING = 10
# Only these survive to the POST; oauthlib's own request object and sets are not serialisable.
_KEPT_CREDENTIALS = (
    "client_id",
    "redirect_uri",
    "response_type",
    "state",
    "code_challenge",
    "code_challenge_method",
    "nonce",
    "claims",
)


def _add_query(uri: str, params: dict[str, str]) -> str:
    return f"{uri}{'&' if '?' in uri else '?'}{urlencode(params)}"


@method_decorator(never_cache, name="dispatch")
class AuthorizeView(OAuthLibMixin, View):
    template_name = "oidc_provider_ext/consent.html"

    # --- responses -------------------------------------------------------------------------------

    def _fatal_error_page(self, error):
        oauthlib_error = error.oauthlib_error
        return error_page(
            self.request,
            title="This sign-in link is not valid",
            message=(
                "The application that sent you here made a request this sign-in service cannot "
                "accept, so you were not sent back to it. Please return to the application and "
                "try again, or contact its support if this keeps happening."
            ),
            error=oauthlib_error.error,
            error_description=oauthlib_error.description,
        )

    def _error_response(self, error, application):
        redirect, response = self.error_response(error)
        if not redirect or not error.oauthlib_error.redirect_uri:
            return self._fatal_error_page(error)
        return self._redirect(response["url"], application)

    def _redirect(self, uri, application):
        # A redirect only ever targets a redirect_uri oauthlib validated against the client.
        schemes = (
            application.get_allowed_schemes() if application else oauth2_settings.ALLOWED_REDIRECT_URI_SCHEMES
        )
        response = OAuth2ResponseRedirect(uri, schemes)
        # The redirect carries a code (or an error): no Referer leak, no caching.
        response["Referrer-Policy"] = "no-referrer"
        return response

    def _client_error(self, credentials, application, error: str, description: str):
        # OIDC Core 3.1.2.6: errors go back to the validated redirect_uri, with state.
        params = {"error": error, "error_description": description}
        if credentials.get("state"):
            params["state"] = credentials["state"]
        return self._redirect(_add_query(credentials["redirect_uri"], params), application)

    def _issue_code(self, scopes: list[str], credentials: dict, application):
        try:
            uri, _headers, _body, _status = self.create_authorization_response(
                request=self.request, scopes=" ".join(scopes), credentials=dict(credentials), allow=True
            )
        except OAuthToolkitError as error:
            return self._error_response(error, application)
        return self._redirect(uri, application)

    # --- GET: the authorization request ----------------------------------------------------------

    def get(self, request, *args, **kwargs):
        try:
            scopes, credentials = self.validate_authorization_request(request)
        except OAuthToolkitError as error:
            return self._error_response(error, application=None)
        application = credentials["request"].client
        prompt = credentials.get("prompt") or set()

        if not request.user.is_authenticated:
            if "none" in prompt:
                return self._client_error(
                    credentials, application, "login_required", "The user is not signed in."
                )
            return redirect_to_login(request.get_full_path(), reverse("oidc_provider_ext:login"))

        if "login" in prompt:
            # OIDC Core 3.1.2.1: re-authenticate. The login page always asks for the password; the
            # next URL drops prompt=login so the user is not sent round again after signing in.
            query = QueryDict(request.META.get("QUERY_STRING", ""), mutable=True)
            query.pop("prompt", None)
            return redirect_to_login(
                f"{request.path}?{query.urlencode()}", reverse("oidc_provider_ext:login")
            )

        if application.skip_authorization:
            return self._issue_code(scopes, credentials, application)
        if "none" in prompt:
            return self._client_error(
                credentials, application, "consent_required", "The user has not consented to this client."
            )
        request_id = self._remember(scopes, credentials)
        return self._render_consent(request_id, scopes, application)

    def _remember(self, scopes, credentials) -> str:
        pending = self.request.session.get(PENDING_SESSION_KEY, {})
        now = time.time()
        pending = {
            key: value
            for key, value in pending.items()
            if now - value["created"] < app_settings.AUTHORIZE_REQUEST_MAX_AGE_SECONDS
        }
        while len(pending) >= MAX_PENDING:
            pending.pop(min(pending, key=lambda k: pending[k]["created"]))
        request_id = secrets.token_urlsafe(24)
        pending[request_id] = {
            "created": now,
            "user": str(self.request.user.pk),
            "scopes": list(scopes),
            "credentials": {key: credentials[key] for key in _KEPT_CREDENTIALS if credentials.get(key)},
        }
        self.request.session[PENDING_SESSION_KEY] = pending
        return request_id

    def _render_consent(self, request_id, scopes, application, status=200):
        adapter = get_adapter()
        form = ConsentForm(initial={"request_id": request_id})
        context = {
            "form": form,
            "application": application,
            "scopes": [(scope, adapter.get_scope_description(scope)) for scope in scopes],
        }
        return render(self.request, self.template_name, context, status=status)

    # --- POST: the consent decision ----------------------------------------------------------------

    def post(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(
                reverse("oidc_provider_ext:authorize"), reverse("oidc_provider_ext:login")
            )
        form = ConsentForm(request.POST)
        pending = request.session.get(PENDING_SESSION_KEY, {})
        entry = pending.pop(form.data.get("request_id", ""), None) if form.is_valid() else None
        request.session[PENDING_SESSION_KEY] = pending
        if (
            entry is None
            or entry["user"] != str(request.user.pk)
            or time.time() - entry["created"] >= app_settings.AUTHORIZE_REQUEST_MAX_AGE_SECONDS
        ):
            return error_page(
                request,
                title="This sign-in request has expired",
                message=(
                    "The request was already answered, is too old, or belongs to another sign-in. "
                    "Go back to the application and start again."
                ),
            )
        credentials = entry["credentials"]
        application = get_application_model().objects.filter(client_id=credentials["client_id"]).first()
        if application is None:
            return error_page(
                request, title="Unknown application", message="This application no longer exists."
            )
        if form.cleaned_data["decision"] != ConsentForm.ALLOW:
            return self._client_error(
                credentials, application, "access_denied", "The user denied the request."
            )
        # create_authorization_response re-validates client, redirect_uri, scopes and PKCE.
        return self._issue_code(entry["scopes"], credentials, application)
