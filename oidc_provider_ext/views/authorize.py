"""``/connect/authorize``: HTTP for the authorization endpoint (OIDC Core 3.1.2).

The pending request and its rules live in :mod:`oidc_provider_ext.internal.authorization`; this
module turns its steps into responses: the login redirect, the tenant chooser, the consent page,
the code, or an error for the client (with ``state`` and ``iss``) or the user (a page here).
Relying parties send requests to ``authorize``; the browser's answers (after sign-in, the
chooser's and the consent form's) go to ``authorize-continue/<id>``, where the pending request
says which answer it expects.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import redirect_to_login
from django.db import IntegrityError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import View
from oauth2_provider.exceptions import OAuthToolkitError
from oauth2_provider.http import OAuth2ResponseRedirect
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.views.mixins import OAuthLibMixin

from oidc_provider_ext.adapter import get_adapter
from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.forms import ConsentForm
from oidc_provider_ext.internal import clients, consents, metadata_documents, op_sessions
from oidc_provider_ext.internal.authorization import (
    AskConsent,
    AuthorizationError,
    ChooseTenant,
    Enrol,
    Fail,
    Issue,
    Login,
    PendingAuthorization,
    Refuse,
    StepUp,
    allowed_tenants,
)
from oidc_provider_ext.internal.locales import in_ui_language, ui_language
from oidc_provider_ext.internal.requests import (
    Problem,
    decorated_view,
    error_description,
    rejecting_bad_requests,
    value_problem,
)
from oidc_provider_ext.models import ResourceServer
from oidc_provider_ext.tenants import TenantError
from oidc_provider_ext.validator import redirect_uri_allowed
from oidc_provider_ext.views.errors import bad_request_page, boundary_page, error_page

# Human names of the claims a scope releases, for the consent page.
CLAIM_LABELS = {
    "name": gettext_lazy("full name"),
    "given_name": gettext_lazy("first name"),
    "family_name": gettext_lazy("last name"),
    "middle_name": gettext_lazy("middle name"),
    "nickname": gettext_lazy("nickname"),
    "preferred_username": gettext_lazy("username"),
    "profile": gettext_lazy("profile page"),
    "picture": gettext_lazy("picture"),
    "website": gettext_lazy("website"),
    "gender": gettext_lazy("gender"),
    "birthdate": gettext_lazy("birth date"),
    "zoneinfo": gettext_lazy("time zone"),
    "locale": gettext_lazy("language"),
    "updated_at": gettext_lazy("when your profile changed"),
    "email": gettext_lazy("email address"),
    "email_verified": gettext_lazy("whether your email is verified"),
    "address": gettext_lazy("postal address"),
    "phone_number": gettext_lazy("phone number"),
    "phone_number_verified": gettext_lazy("whether your phone is verified"),
}


def _add_query(uri: str, params: dict[str, str]) -> str:
    return f"{uri}{'&' if '?' in uri else '?'}{urlencode(params)}"


def authorization_response(uri: str, application):
    """A redirect to a redirect_uri oauthlib validated for ``application``."""
    # RFC 9207: every authorization response, errors included, names the issuer (DOT adds it to
    # successful ones already).
    if "iss" not in parse_qs(urlsplit(uri).query):
        uri = _add_query(uri, {"iss": app_settings.ISSUER})
    schemes = list(
        application.get_allowed_schemes() if application else oauth2_settings.ALLOWED_REDIRECT_URI_SCHEMES
    )
    if application is not None and consents.self_registered(application):
        # A native app's private-use scheme (RFC 8252 7.1), accepted at registration by
        # internal/registration.check_redirect_uri; the URI was matched exactly before we got here.
        schemes.append(urlsplit(uri).scheme)
    response = OAuth2ResponseRedirect(uri, schemes)
    # The redirect carries a code (or an error): no Referer leak, no caching.
    response["Referrer-Policy"] = "no-referrer"
    return response


def _redirect_target(uri: str) -> str:
    """Who receives the answer: the redirect URI's host, or a native app's private-use scheme."""
    parts = urlsplit(uri)
    return parts.hostname or parts.scheme


def invalid_link_page(request, error: str, description: str):
    """An authorization error shown at the IdP instead of being redirected to the client."""
    return error_page(
        request,
        title=_("This sign-in link is not valid"),
        message=_(
            "The application that sent you here made a request this sign-in service cannot "
            "accept, so you were not sent back to it. Please return to the application and "
            "try again, or contact its support if this keeps happening."
        ),
        error=error,
        error_description=description,
    )


def _document_host(application) -> str:
    """A metadata-document client's host: the one thing about it this provider verified (the
    document was fetched from there). "" for any other client."""
    if getattr(application, "registration_source", None) != application.RegistrationSource.CIMD:
        return ""
    return urlsplit(application.client_id).hostname or ""


def _client_home_page(application, profile, document_host: str) -> str:
    """The client_uri to link on the consent page: a metadata document's client_uri only on the
    document's own host (draft-ietf-oauth-client-id-metadata-document, "OAuth Phishing Attacks":
    a document at attacker.example may name itself after anyone and link their site)."""
    client_uri = getattr(profile, "client_uri", "") or ""
    if client_uri and document_host and urlsplit(client_uri).hostname != document_host:
        return ""
    return client_uri


def client_error(credentials: dict, application, error: str, description: str, *, request=None):
    """OIDC Core 3.1.2.6: an error goes back to the validated redirect_uri, with state.

    ``request``: the error comes before the user did anything at the IdP. A self-registered
    client's redirect URIs were never reviewed, so such an error is a page here, not an automatic
    redirect: else anyone could register https://phish.example and send an invalid request to
    make this IdP redirect there (RFC 9700 4.11.2). Once the user answered the consent page (which
    names where the answer goes) the error is redirected as usual."""
    if request is not None and application is not None and consents.self_registered(application):
        return invalid_link_page(request, error, description)
    params = {"error": error, "error_description": error_description(description)}
    if credentials.get("state"):
        params["state"] = credentials["state"]
    return authorization_response(_add_query(credentials["redirect_uri"], params), application)


def _boundary_error(request, problem: Problem):
    """The request boundary's answer at the authorization endpoint (OIDC Core 3.1.2.6): an error
    redirect when client_id, redirect_uri and state are themselves sound and the redirect_uri is
    registered for the client; otherwise an error page at the IdP (RFC 6749 4.1.2.1)."""
    if problem.parameter is None or problem.repeated:  # nothing of it can be trusted
        return bad_request_page(request, problem.description)
    params = request.POST if request.method == "POST" else request.GET
    if problem.parameter not in params:
        return bad_request_page(request, problem.description)
    trusted = {}
    for name in ("client_id", "redirect_uri", "state"):
        values = params.getlist(name)
        if len(values) > 1 or (values and value_problem(name, values[0])) or name == problem.parameter:
            return bad_request_page(request, problem.description)
        trusted[name] = values[0] if values else ""
    application = clients.get_client(trusted["client_id"])
    if (
        application is None
        or not trusted["redirect_uri"]
        # The one redirect-URI rule (exact match; loopback ports for public clients only).
        or not redirect_uri_allowed(application, trusted["redirect_uri"])
    ):
        return bad_request_page(request, problem.description)
    return client_error(trusted, application, problem.error, problem.description, request=request)


class _Authorization(OAuthLibMixin, View):
    """Turns the pending request's steps into responses (both views below)."""

    consent_template = "oidc_provider_ext/consent.html"
    chooser_template = "oidc_provider_ext/tenant_chooser.html"
    enrol_template = "oidc_provider_ext/factor_required.html"

    # --- steps to responses ----------------------------------------------------------------------

    def _respond(self, pending: PendingAuthorization, application):
        step = pending.next_step(self.request, application)
        match step:
            case Login():
                return self._redirect_to_login(pending)
            case ChooseTenant(tenants=tenants):
                return self._render_chooser(pending, tenants)
            case StepUp():
                return redirect("oidc_provider_ext:authorize-step-up", pending.id)
            case Enrol():
                return self._render_enrol(pending, application)
            case AskConsent():
                return self._render_consent(pending, application)
            case Issue():
                return self._issue_code(pending, application)
            case Fail(error=error, description=description):
                return self._fail(pending, application, error, description)
            case Refuse(title=title, message=message):
                return error_page(self.request, title, message)
        raise AssertionError(f"unknown step {step!r}")

    def _fail(self, pending: PendingAuthorization, application, error: str, description: str):
        # Before the consent answer: a self-registered client's error is a page (client_error).
        return client_error(pending.credentials, application, error, description, request=self.request)

    continue_url_name = "oidc_provider_ext:authorize-continue"

    def _continue_url(self, pending: PendingAuthorization, request_id: str = "") -> str:
        """Where the browser's answers to ``pending`` go (sign-in's next, chooser, consent)."""
        return reverse(self.continue_url_name, args=[request_id or pending.id])

    def _render_enrol(self, pending: PendingAuthorization, application):
        """The policy asks for a factor the user has not set up: enrol, then come back here."""
        context = {
            "application": application,
            "enrol_url": _add_query(
                reverse("oidc_provider_ext:account-security"), {"next": self._continue_url(pending)}
            ),
        }
        with translation.override(ui_language(self.request, pending.ui_locales)):
            return render(self.request, self.enrol_template, context, status=403)

    def _redirect_to_login(self, pending: PendingAuthorization):
        login_url = reverse("oidc_provider_ext:login")
        if pending.login_hint:
            login_url = _add_query(login_url, {"login_hint": pending.login_hint})
        return redirect_to_login(self._continue_url(pending, pending.travelling_id(self.request)), login_url)

    def _render_chooser(self, pending: PendingAuthorization, tenants):
        context = {"tenants": tenants, "request_id": pending.id, "form_action": self._continue_url(pending)}
        with translation.override(ui_language(self.request, pending.ui_locales)):
            return render(self.request, self.chooser_template, context)

    def _render_consent(self, pending: PendingAuthorization, application, **extra):
        adapter = get_adapter()
        asked = set(pending.asked or ())

        def describe(scope):
            return {
                "name": scope,
                "description": adapter.get_scope_description(scope),
                # Only what this site really releases (the adapter's claims), not all OIDC Core 5.4 names.
                "claims": [
                    CLAIM_LABELS.get(claim, claim)
                    for claim in adapter.get_scope_claims(scope)
                    if claim in adapter.claims_supported
                ],
                "required": scope == consents.OPENID,
            }

        continue_url = self._continue_url(pending)
        profile = getattr(application, "oidc_profile", None)
        document_host = _document_host(application)
        context = {
            **extra,
            "form": ConsentForm(initial={"request_id": pending.id}),
            "form_action": continue_url,
            "application": application,
            "profile": profile,
            # draft-ietf-oauth-client-id-metadata-document: "display the hostname of the client_id"
            "client_host": document_host,
            "client_uri": _client_home_page(application, profile, document_host),
            "tenant": adapter.get_tenant(pending.tenant, request=self.request) if pending.tenant else None,
            "scopes": [describe(scope) for scope in pending.scopes if scope in asked],
            "already_allowed": [describe(scope) for scope in pending.scopes if scope not in asked],
            # RFC 8707: the APIs the user grants access to, by the names the operator gave them.
            "resources": list(ResourceServer.objects.filter(identifier__in=pending.resources))
            if pending.resources
            else [],  # none named: no query to build (it would find none)
            "switch_account_url": _add_query(reverse("oidc_provider_ext:login"), {"next": continue_url}),
            # Nobody reviewed a client that registered itself: the page says so and names where the
            # answer goes; its logo is only ever the copy fetched at registration (a data: URI).
            "self_registered": consents.self_registered(application),
            # (a native app's private-use scheme names it: com.example.app)
            "redirect_host": _redirect_target(pending.credentials.get("redirect_uri", "")),
        }
        with translation.override(ui_language(self.request, pending.ui_locales)):
            return render(self.request, self.consent_template, context)

    def _issue_code(self, pending: PendingAuthorization, application, consented: bool = False):
        """The code (and, after the consent form, the remembered consent)."""
        session = op_sessions.current(self.request, pending.tenant)
        if session is None or not op_sessions.may_use_client(self.request, application, pending.tenant):
            # The session ended (another tab signed out, an operator ended it) or the user may no
            # longer use this client while the consent page was open: no code, no consent.
            return self._expired()
        credentials = {**pending.credentials, "oidc_context": pending.oidc_context(session)}
        try:
            # Re-validates client, redirect_uri, scopes and PKCE from the stored request.
            uri, _headers, _body, _status = self.create_authorization_response(
                request=self.request,
                scopes=" ".join(pending.scopes),
                credentials=credentials,
                allow=True,
            )
        except OAuthToolkitError as error:
            return self._oauthlib_error(error, application)
        except IntegrityError:
            # The client was deleted (perhaps re-created under the same client_id) through another
            # process within the client cache's lifetime: the cached row no longer exists.
            clients.forget(application.client_id)
            return self._unknown_application()
        # oauthlib answers some refusals (PKCE or a scope no longer allowed) with an error redirect
        # rather than an exception: no code, so nothing to remember either.
        if consented and "code" in parse_qs(urlsplit(uri).query):
            # After the code, not in one transaction with it: the code is what the user allowed in
            # this request; remembering it only spares them a page next time. A failure between the
            # two leaves a code nobody received (it expires) and a consent to ask again: both safe.
            consents.remember(
                self.request.user,
                application,
                pending.tenant,
                pending.scopes,
                pending.resources,
                seen=pending.consent_seen,
            )
        return authorization_response(uri, application)

    def _tenant_answer(self, pending: PendingAuthorization):
        """The tenant chooser's answer (the browser posts it to the continue URL)."""
        application = clients.get_client(pending.client_id)
        chosen = self.request.POST.get("tenant", "")
        allowed = {t.code for t in allowed_tenants(self.request.user, application)} if application else set()
        if application is None or not pending.tenant_deferred or chosen not in allowed:
            return error_page(
                self.request, _("Organisation not available"), _("Choose one of the organisations offered.")
            )
        pending.choose_tenant(self.request, chosen)
        return self._respond(pending, application)

    def _oauthlib_error(self, error, application=None, *, untrusted: bool = False):
        """``untrusted``: the client registered itself and the user has not acted yet (see
        client_error): never an automatic redirect."""
        error.oauthlib_error.description = error_description(error.oauthlib_error.description or "")
        redirect, response = self.error_response(error)
        if redirect and error.oauthlib_error.redirect_uri and not untrusted:
            return authorization_response(response["url"], application)
        oauthlib_error = error.oauthlib_error
        return invalid_link_page(self.request, oauthlib_error.error, oauthlib_error.description)

    def _expired(self):
        return error_page(
            self.request,
            title=_("This sign-in request has expired"),
            message=_(
                "The request was already answered, is too old, or belongs to another sign-in. "
                "Go back to the application and start again."
            ),
        )

    def _unknown_application(self):
        return error_page(self.request, _("Unknown application"), _("This application no longer exists."))


# OIDC Core 3.1.2.1: the authorization endpoint accepts POST too, sent cross-site by the RP with
# no CSRF token of ours.
@decorated_view(
    never_cache, in_ui_language, csrf_exempt, login_not_required, rejecting_bad_requests(_boundary_error)
)
class AuthorizeView(_Authorization):
    """A relying party's authorization request (GET or POST)."""

    def get(self, request, *args, **kwargs):
        params = request.POST if request.method == "POST" else request.GET
        client_id = params.get("client_id", "")
        if app_settings.CLIENT_ID_METADATA_DOCUMENTS and metadata_documents.is_document_url(client_id):
            # The client is its metadata document (internal/metadata_documents.py): fetched within
            # a small deadline before anything else; a failure is a page here, never a redirect to
            # a redirect_uri nobody vouched for.
            reason = metadata_documents.prepare(request, client_id)
            if reason:
                return error_page(
                    request,
                    title=_("This application could not be verified"),
                    message=_(
                        "The application describes itself in a document on its own website, and that "
                        "document could not be used. Go back to the application; its developers can "
                        "find the reason below."
                    ),
                    error="invalid_client",
                    error_description=reason,
                )
        try:
            scopes, credentials = self.validate_authorization_request(request)
        except OAuthToolkitError as error:
            known = clients.get_client(client_id) if client_id else None
            return self._oauthlib_error(
                error, untrusted=known is not None and consents.self_registered(known)
            )
        application = credentials["request"].client
        try:
            pending = PendingAuthorization.from_request(params, scopes, credentials, application)
        except AuthorizationError as error:
            return client_error(credentials, application, error.error, error.description, request=request)
        except TenantError as error:
            # The source documents: an invalid organisation code is HTTP 400 in the browser.
            return error_page(request, error.title, error.message)
        # Stored only if the request has to wait (login, consent, chooser): an immediate answer
        # leaves the session untouched (no session write).
        return self._respond(pending, application)

    def post(self, request, *args, **kwargs):
        return self.get(request, *args, **kwargs)


# Our own forms post here: the CSRF check runs after the request boundary (csrf=True); the consent
# form repeats its scope checkboxes.
@decorated_view(
    never_cache,
    in_ui_language,
    login_not_required,
    rejecting_bad_requests(boundary_page, ("scope",), csrf=True),
)
class AuthorizeContinueView(_Authorization):
    """The browser's way back into a pending request: after sign-in (GET), and the answers of the
    tenant chooser and the consent form (POST, CSRF-checked, the one the request expects)."""

    def get(self, request, request_id: str, *args, **kwargs):
        pending = PendingAuthorization.load(request, request_id)
        if pending is None:
            return self._expired()
        if pending.device is not None:
            # A device sign-in (same session store): its own view warns (RFC 8628 5.4) and answers.
            return redirect("oidc_provider_ext:device-continue", request_id=pending.id)
        application = clients.get_client(pending.client_id)
        if application is None:
            return self._unknown_application()
        return self._respond(pending, application)

    def post(self, request, request_id: str, *args, **kwargs):
        pending = PendingAuthorization.load(request, request_id)
        if pending is not None and pending.device is not None:
            return self._expired()  # a device sign-in is answered at its own URL only
        if pending is not None and pending.answered_by(request, "consent"):
            return self._consent_answer(pending)
        if pending is not None and pending.answered_by(request, "tenant"):
            return self._tenant_answer(pending)
        return self._expired()

    def _consent_answer(self, pending: PendingAuthorization):
        form = ConsentForm(self.request.POST)
        if not form.is_valid() or form.cleaned_data["request_id"] != pending.id:
            return self._expired()
        pending.discard(self.request)  # single use, whatever the answer
        application = clients.get_client(pending.client_id)
        if application is None:
            return self._unknown_application()
        if form.cleaned_data["decision"] != ConsentForm.ALLOW:
            return client_error(
                pending.credentials, application, "access_denied", "The user denied the request."
            )
        if not pending.acr_still_met(self.request, application):
            # The sign-in is weaker than when the page was shown (a factor removed meanwhile).
            return self._expired()
        pending.scopes = pending.granted_scopes(set(self.request.POST.getlist("scope")))
        return self._issue_code(pending, application, consented=True)
