"""``/connect/endsession``: OpenID Connect RP-Initiated Logout 1.0."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import logout as django_logout
from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponseForbidden
from django.shortcuts import render
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import View
from oauth2_provider.http import OAuth2ResponseRedirect
from oauth2_provider.models import get_application_model
from oauthlib.common import add_params_to_uri

from oidc_provider_ext.internal import op_sessions
from oidc_provider_ext.internal.locales import in_ui_language, ui_language
from oidc_provider_ext.internal.requests import csrf_failed, decorated_view, rejecting_bad_requests
from oidc_provider_ext.models import OPSession
from oidc_provider_ext.tokens import InvalidIdTokenHint, subject_for, verify_id_token_hint
from oidc_provider_ext.views.errors import boundary_page, error_page

PARAMETERS = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state", "ui_locales")


class LogoutError(Exception):
    pass


@dataclass(frozen=True)
class LogoutRequest:
    params: dict
    application: Any
    claims: dict | None
    redirect_uri: str | None
    state: str | None


# RPs may POST the request (section 2) without our CSRF token; the confirmation form is checked
# for CSRF explicitly below.
@decorated_view(
    never_cache, in_ui_language, csrf_exempt, login_not_required, rejecting_bad_requests(boundary_page)
)
class EndSessionView(View):
    confirm_template = "oidc_provider_ext/logout_confirm.html"
    done_template = "oidc_provider_ext/logged_out.html"

    def get(self, request, *args, **kwargs):
        return self._handle(request.GET, confirmed=False)

    def post(self, request, *args, **kwargs):
        confirmed = request.POST.get("confirm") == "yes"
        if confirmed and csrf_failed(request):
            return HttpResponseForbidden(_("The sign-out form expired. Reload the page and try again."))
        return self._handle(request.POST, confirmed=confirmed)

    def _handle(self, params, confirmed: bool):
        request = self.request
        try:
            logout_request = self._validate(params)
        except LogoutError as exc:
            return error_page(request, _("This sign-out link is not valid"), str(exc))
        with translation.override(ui_language(request, params.get("ui_locales", ""))):
            browser_sessions = op_sessions.browser_entries(request)
            if request.user.is_authenticated and (
                confirmed or self._hint_proves_user(logout_request, browser_sessions)
            ):
                self._log_out(logout_request, browser_sessions)
            elif request.user.is_authenticated:
                context = {"logout": logout_request, "stay_url": _stay_url(logout_request)}
                return render(request, self.confirm_template, context, status=200)
            return self._done(logout_request)

    def _validate(self, params) -> LogoutRequest:
        clean = {name: params.get(name) or None for name in PARAMETERS}
        claims = None
        if clean["id_token_hint"]:
            try:
                # Section 2: any ID token we issued, expired ones included, signed by any published key.
                claims = verify_id_token_hint(clean["id_token_hint"], clean["client_id"])
            except InvalidIdTokenHint as exc:
                raise LogoutError(_("The id_token_hint is not valid: %(reason)s.") % {"reason": exc}) from exc
        application = None
        client_id = clean["client_id"] or (claims and _single_audience(claims))
        if client_id:
            application = get_application_model().objects.filter(client_id=client_id).first()
            if application is None:
                raise LogoutError(_("The client_id is not a registered application."))
        uri = clean["post_logout_redirect_uri"]
        if uri:
            # Section 3: exact match with a URI registered for this client, or no redirection.
            if application is None:
                raise LogoutError(_("post_logout_redirect_uri needs a client_id or an id_token_hint."))
            if uri not in application.post_logout_redirect_uris.split():
                raise LogoutError(_("The post_logout_redirect_uri is not registered for this application."))
        return LogoutRequest(clean, application, claims, uri, clean["state"])

    def _hint_proves_user(self, logout_request: LogoutRequest, browser_sessions: dict) -> bool:
        """No confirmation when the hint is an ID token of the signed-in user from this session."""
        claims = logout_request.claims
        if not claims or claims.get("sub") != subject_for(self.request.user):
            return False
        return claims.get("sid") in {entry["sid"] for entry in browser_sessions.values()}

    def _log_out(self, logout_request: LogoutRequest, browser_sessions: dict) -> None:
        sid = (logout_request.claims or {}).get("sid")
        ended = [entry for entry in browser_sessions.values() if entry["sid"] == sid]
        if ended and len(browser_sessions) > 1:
            # End this OP session only; the browser stays signed in to its other tenants.
            op_sessions.end(list(OPSession.objects.filter(pk=ended[0]["id"])))
            op_sessions.forget(self.request, ended[0]["id"])
        else:
            django_logout(self.request)  # ends every OP session of this browser (op_sessions._on_logout)

    def _done(self, logout_request: LogoutRequest):
        if logout_request.redirect_uri:
            uri = logout_request.redirect_uri
            if logout_request.state:
                uri = add_params_to_uri(uri, [("state", logout_request.state)])
            return OAuth2ResponseRedirect(uri, logout_request.application.get_allowed_schemes())
        return render(self.request, self.done_template, {"logout": logout_request})


def _stay_url(logout_request: LogoutRequest) -> str:
    """Where "Stay signed in" leads: back to the client's home page when it registered one
    (its post_logout_redirect_uri would tell it the user signed out), else the account page."""
    profile = getattr(logout_request.application, "oidc_profile", None)
    return getattr(profile, "client_uri", "") or reverse("oidc_provider_ext:sessions")


def _single_audience(claims: dict) -> str | None:
    audience = claims.get("aud")
    if isinstance(audience, str):
        return audience
    if isinstance(audience, list) and len(audience) == 1:
        return audience[0]
    return claims.get("azp")
