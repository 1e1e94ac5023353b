"""``/connect/authorize``: validate the request, sign the user in when needed, ask for consent,
issue a code.

The validated request is kept server-side (in the session) from the first GET until the code is
issued: the login round-trip and the consent form carry only an opaque request id, so nothing the
browser sends back can change the client, redirect_uri, scopes, PKCE challenge or nonce
(DESIGN.md, "Data that must survive"). Every rule of OIDC Core 3.1.2.1 that depends on the
browser's session (prompt, max_age, id_token_hint) is decided here.
"""

from __future__ import annotations

import secrets
import time
from contextlib import nullcontext
from urllib.parse import parse_qs, urlencode, urlsplit

from django.contrib.auth.views import redirect_to_login
from django.db import IntegrityError, transaction
from django.shortcuts import render
from django.urls import reverse
from django.utils import translation
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import View
from oauth2_provider.exceptions import OAuthToolkitError
from oauth2_provider.http import OAuth2ResponseRedirect
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.views.mixins import OAuthLibMixin

from oidc_provider_ext import clients, consents, sessions
from oidc_provider_ext.adapter import get_adapter
from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.forms import ConsentForm
from oidc_provider_ext.internal.requests import Problem, csrf_failed, rejecting_bad_requests, value_problem
from oidc_provider_ext.models import ClientProfile
from oidc_provider_ext.tenants import TenantError, default_tenant, parse_acr_values, resolve_requested_tenant
from oidc_provider_ext.tokens import InvalidIdTokenHint, subject_for, verify_id_token_hint
from oidc_provider_ext.validator import redirect_uri_allowed
from oidc_provider_ext.views.errors import bad_request_page, error_page

PENDING_SESSION_KEY = "oidc_pending_authorizations"
WRONG_SUBJECT = "The signed-in user is not the one the client asked for."
MAX_PENDING = 10
# Only these survive to the code; oauthlib's own request object and sets are not serialisable.
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


# Human names of the claims a scope releases, for the consent page.
CLAIM_LABELS = {
    "name": "full name", "given_name": "first name", "family_name": "last name", "middle_name": "middle name",
    "nickname": "nickname", "preferred_username": "username", "profile": "profile page", "picture": "picture",
    "website": "website", "gender": "gender", "birthdate": "birth date", "zoneinfo": "time zone",
    "locale": "language", "updated_at": "when your profile changed", "email": "email address",
    "email_verified": "whether your email is verified", "address": "postal address",
    "phone_number": "phone number", "phone_number_verified": "whether your phone is verified",
}  # fmt: skip


class ClientError(Exception):
    """An error for the client, sent to its (validated) redirect_uri."""

    def __init__(self, error: str, description: str):
        super().__init__(description)
        self.error, self.description = error, description


def _add_query(uri: str, params: dict[str, str]) -> str:
    return f"{uri}{'&' if '?' in uri else '?'}{urlencode(params)}"


def _parse_max_age(raw) -> int | None:
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = -1
    if value < 0 or str(raw).strip() != str(value):
        raise ClientError("invalid_request", "max_age must be a non-negative integer number of seconds.")
    return value


_MATCHES_NOTHING = "\x00"


def _requested_value(claims: dict | None, name: str) -> tuple[bool, list[str]]:
    """(essential, allowed values) requested for ``name`` in the id_token member (OIDC Core 5.5.1)."""
    spec = ((claims or {}).get("id_token") or {}).get(name)
    if not isinstance(spec, dict):
        return False, []
    values = spec.get("values") if isinstance(spec.get("values"), list) else []
    if "value" in spec:
        values = [spec["value"], *values]
    # Only strings can match an acr or a sub; anything else (numbers, lists, objects) stands for a
    # value nothing matches (a control character, which the request boundary keeps out of claims).
    return bool(spec.get("essential")), [
        value if isinstance(value, str) else _MATCHES_NOTHING for value in values
    ]


def pending_request(request, request_id: str) -> dict | None:
    """The stored authorization request ``request_id`` of this browser session, if still valid."""
    entry = request.session.get(PENDING_SESSION_KEY, {}).get(request_id)
    if entry is None or time.time() - entry["created"] >= app_settings.AUTHORIZE_REQUEST_MAX_AGE_SECONDS:
        return None
    return entry


def pending_request_for_next(request, next_url: str) -> tuple[str, dict] | None:
    """``(request id, stored request)`` that a login page's ``next`` URL continues, if any."""
    prefix = reverse("oidc_provider_ext:authorize-continue", args=["X"])[:-1]
    if not next_url or not next_url.startswith(prefix):
        return None
    request_id = next_url[len(prefix) :].split("?")[0].strip("/")
    entry = pending_request(request, request_id)
    return (request_id, entry) if entry else None


def _boundary_error(request, problem: Problem):
    """The request boundary's answer at the authorization endpoint (OIDC Core 3.1.2.6): an error
    redirect when client_id, redirect_uri and state are themselves sound and the redirect_uri is
    registered for the client; otherwise an error page at the IdP (RFC 6749 4.1.2.1)."""
    if problem.parameter is None or problem.repeated:  # nothing of it can be trusted
        return bad_request_page(request, problem.description)
    params = request.POST if request.method == "POST" else request.GET
    if "request_id" in params or problem.parameter not in params:
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
    view = AuthorizeView()
    view.setup(request)
    return view._client_error(trusted, application, "invalid_request", problem.description)


@method_decorator(never_cache, name="dispatch")
# OIDC Core 3.1.2.1: the authorization endpoint accepts POST too, sent cross-site by the RP with
# no CSRF token of ours; the consent form's POST is CSRF-checked explicitly in post().
@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(rejecting_bad_requests(_boundary_error, repeatable_form_fields=("scope",)), name="dispatch")
class AuthorizeView(OAuthLibMixin, View):
    template_name = "oidc_provider_ext/consent.html"

    # --- entry points ------------------------------------------------------------------------------

    def _params(self):
        return self.request.POST if self.request.method == "POST" else self.request.GET

    def get(self, request, *args, **kwargs):
        try:
            scopes, credentials = self.validate_authorization_request(request)
        except OAuthToolkitError as error:
            return self._oauthlib_error(error)
        application = credentials["request"].client
        try:
            entry = self._new_entry(scopes, credentials, application)
        except ClientError as error:
            return self._client_error(credentials, application, error.error, error.description)
        except TenantError as error:
            # The source documents: an invalid organisation code is HTTP 400 in the browser.
            return error_page(request, error.title, error.message)
        # Stored only if the request has to wait (login, consent, chooser): an immediate answer
        # leaves the session untouched (no session write).
        return self._continue(secrets.token_urlsafe(24), entry, application)

    def post(self, request, *args, **kwargs):
        """The consent form's decision, or an authorization request sent by POST."""
        if "request_id" not in request.POST or "decision" not in request.POST:
            if len(request.POST.getlist("scope")) > 1:
                return bad_request_page(request, "The parameter 'scope' is repeated.")
            return self.get(request, *args, **kwargs)
        if csrf_failed(request):
            return error_page(request, "This form has expired", "Reload the page and try again.", status=403)
        form = ConsentForm(request.POST)
        request_id = form.data.get("request_id", "") if form.is_valid() else ""
        entry = pending_request(request, request_id)
        if not request.user.is_authenticated or entry is None or entry.get("user") != str(request.user.pk):
            return self._expired()
        self._forget(request_id)
        application = _client(entry)
        if application is None:
            return error_page(request, "Unknown application", "This application no longer exists.")
        if form.cleaned_data["decision"] != ConsentForm.ALLOW:
            return self._client_error(
                entry["credentials"], application, "access_denied", "The user denied the request."
            )
        # Only scopes that were asked can be unticked, and openid never (it is the sign-in itself);
        # anything else the browser sends is ignored: the request is the stored one.
        ticked = set(request.POST.getlist("scope"))
        asked = set(entry.get("asked", entry["scopes"]))
        granted = [
            scope
            for scope in entry["scopes"]
            if scope not in asked or scope in ticked or scope == consents.OPENID
        ]
        entry["scopes"] = granted
        return self._issue_code(entry, application, consented=True)

    # --- the decision ------------------------------------------------------------------------------

    def _new_entry(self, scopes, credentials, application) -> dict:
        query = self._params()
        # OIDC Core 3.1.2.6: request objects are not supported (not advertised in discovery).
        if "request" in query:
            raise ClientError("request_not_supported", "Request objects are not supported.")
        if "request_uri" in query:
            raise ClientError("request_uri_not_supported", "request_uri is not supported.")
        prompt = sorted(credentials.get("prompt") or ())
        try:
            acr = parse_acr_values(query.get("acr_values"))
        except ValueError as exc:
            raise ClientError("invalid_request", str(exc)) from exc
        if acr.tenant is not None:
            tenant = resolve_requested_tenant(acr.tenant, application)
        else:
            tenant = default_tenant(application)
        # With no tenant named and no client default, the tenant is decided after sign-in: the
        # user's only organisation, or the one they pick. A site without tenants has none.
        tenant_deferred = tenant is None and get_adapter().has_tenants()
        claims = credentials.get("claims") or {}
        essential, acr_values = _requested_value(claims, "acr")
        if essential and acr_values and not set(acr_values) & set(get_adapter().acr_values_supported):
            # OIDC Core 5.5.1.1 and the unmet_authentication_requirements errata: an essential
            # acr we cannot satisfy is a failed authentication.
            raise ClientError(
                "unmet_authentication_requirements", "None of the requested acr values is supported."
            )
        hint_sub = None
        if query.get("id_token_hint"):
            try:
                hint_sub = verify_id_token_hint(query["id_token_hint"], application.client_id)["sub"]
            except InvalidIdTokenHint as exc:
                raise ClientError("invalid_request", str(exc)) from exc
        _essential, sub_values = _requested_value(claims, "sub")
        return {
            "created": time.time(),
            "scopes": list(scopes),
            "credentials": {key: credentials[key] for key in _KEPT_CREDENTIALS if credentials.get(key)},
            "prompt": prompt,
            "max_age": _parse_max_age(query.get("max_age")),
            "subject": hint_sub or (sub_values[0] if sub_values else None),
            "login_hint": query.get("login_hint", "")[:255],
            "ui_locales": query.get("ui_locales", "")[:255],
            "tenant": tenant.code if tenant is not None else sessions.NO_TENANT,
            "tenant_deferred": tenant_deferred,
            "idp": list(acr.idps),
        }

    def _continue(self, request_id: str, entry: dict, application):
        request = self.request
        prompt = set(entry["prompt"])
        if entry["tenant_deferred"] and request.user.is_authenticated:
            response = self._decide_tenant(request_id, entry, application)
            if response is not None:
                return response
        session = sessions.current(request, entry["tenant"])
        if session is not None and not get_adapter().may_use_client(
            request.user, application, entry["tenant"]
        ):
            # The account-state rule: a user no longer allowed here (deactivated, membership ended)
            # gets no code from an old session, prompt=none or not; they must sign in again.
            sessions.forget(request, session.id)
            session = None
        reason = self._login_reason(entry, session)
        if reason == WRONG_SUBJECT and entry.get("login_started"):
            # OIDC Core 3.1.2.2 (id_token_hint) / 5.5.1 (sub): never a positive answer for another
            # user, not even one who signed in for this request.
            self._forget(request_id)
            return self._client_error(entry["credentials"], application, "login_required", reason)
        if reason:
            if "none" in prompt:
                self._forget(request_id)
                return self._client_error(entry["credentials"], application, "login_required", reason)
            entry["login_started"] = int(time.time())
            self._store(request_id, entry)
            return self._redirect_to_login(request_id, entry)

        if consents.policy(application) == ClientProfile.ConsentPolicy.SKIP:
            self._forget(request_id)
            return self._issue_code(entry, application)
        missing, consent = consents.missing_scopes(
            request.user, application, entry["tenant"], entry["scopes"]
        )
        if not missing and "consent" not in prompt:
            self._forget(request_id)
            consents.touch(consent)
            return self._issue_code(entry, application)
        if "none" in prompt:
            self._forget(request_id)
            return self._client_error(
                entry["credentials"],
                application,
                "consent_required",
                "The user has not consented to this request.",
            )
        # prompt=consent asks for everything again; otherwise only for what is new (issue: consent).
        entry["asked"] = list(entry["scopes"]) if "consent" in prompt else missing
        entry["user"] = str(request.user.pk)
        self._store(request_id, entry)
        return self._render_consent(request_id, entry, application)

    def _decide_tenant(self, request_id: str, entry: dict, application):
        """Pick the tenant of a request that named none, once the user is known (issue: tenants)."""
        adapter = get_adapter()
        tenants = [
            t
            for t in adapter.get_user_tenants(self.request.user)
            if adapter.client_allows_tenant(application, t)
        ]
        if len(tenants) > 1:
            if "none" in entry["prompt"]:
                self._forget(request_id)
                return self._client_error(
                    entry["credentials"],
                    application,
                    "interaction_required",
                    "The user must choose an organisation.",
                )
            return self._render_chooser(request_id, entry, tenants)
        if not tenants:
            profile = getattr(application, "oidc_profile", None)
            if profile is not None and profile.pk is not None and profile.allowed_tenants.exists():
                self._forget(request_id)
                return error_page(
                    self.request,
                    "No organisation for this application",
                    "Your account is not a member of an organisation this application accepts. "
                    "Contact your administrator.",
                )
            self._choose_tenant(request_id, entry, sessions.NO_TENANT)
            return None
        self._choose_tenant(request_id, entry, tenants[0].code)
        return None

    def _choose_tenant(self, request_id: str, entry: dict, code: str) -> None:
        entry["tenant"], entry["tenant_deferred"] = code, False
        # The sign-in that just happened for this request (unscoped: the tenant was unknown) becomes
        # the chosen tenant's session; an older sign-in does not.
        unscoped = sessions.current(self.request, sessions.NO_TENANT)
        if (
            code
            and sessions.current(self.request, code) is None
            and unscoped is not None
            and entry.get("login_started")
            and unscoped.auth_time >= entry["login_started"]
        ):
            sessions.rescope(self.request, code, unscoped)
        self._store(request_id, entry)

    def _render_chooser(self, request_id: str, entry: dict, tenants: list):
        entry["user"] = str(self.request.user.pk)
        self._store(request_id, entry)
        context = {"tenants": tenants, "request_id": request_id}
        with translation.override(_ui_language(entry["ui_locales"])):
            return render(self.request, "oidc_provider_ext/tenant_chooser.html", context)

    def _login_reason(self, entry: dict, session: sessions.CurrentSession | None) -> str | None:
        """Why the user must (re-)authenticate for this request, or None (OIDC Core 3.1.2.1)."""
        if session is None:
            return "The user is not signed in."
        if entry["subject"] is not None and entry["subject"] != subject_for(self.request.user):
            return WRONG_SUBJECT
        if entry.get("login_started") and session.auth_time >= entry["login_started"]:
            return None  # signed in for this very request: prompt=login and max_age are satisfied
        if {"login", "select_account"} & set(entry["prompt"]):
            return "The client asked for the user to sign in again."
        if entry["max_age"] is not None and time.time() - session.auth_time > entry["max_age"]:
            return "The sign-in is older than max_age."
        return None

    # --- pending requests --------------------------------------------------------------------------

    def _store(self, request_id: str, entry: dict) -> None:
        now = time.time()
        pending = {
            key: value
            for key, value in self.request.session.get(PENDING_SESSION_KEY, {}).items()
            if now - value["created"] < app_settings.AUTHORIZE_REQUEST_MAX_AGE_SECONDS
        }
        pending[request_id] = entry
        while len(pending) > MAX_PENDING:
            pending.pop(min(pending, key=lambda key: pending[key]["created"]))
        session = self.request.session
        session[PENDING_SESSION_KEY] = pending
        # DESIGN.md "Anonymous requests": a session that holds nothing but pending requests
        # expires with them, not after SESSION_COOKIE_AGE (sessions.py restores that on sign-in).
        if not self.request.user.is_authenticated and set(session.keys()) <= sessions.PENDING_ONLY_KEYS:
            session[sessions.PENDING_ONLY_KEY] = True
            session.set_expiry(app_settings.AUTHORIZE_REQUEST_MAX_AGE_SECONDS)

    def _forget(self, request_id: str) -> None:
        pending = dict(self.request.session.get(PENDING_SESSION_KEY, {}))
        if pending.pop(request_id, None) is not None:
            self.request.session[PENDING_SESSION_KEY] = pending

    # --- responses ---------------------------------------------------------------------------------

    def _redirect_to_login(self, request_id: str, entry: dict):
        login_url = reverse("oidc_provider_ext:login")
        if entry["login_hint"]:
            login_url = _add_query(login_url, {"login_hint": entry["login_hint"]})
        return redirect_to_login(
            reverse("oidc_provider_ext:authorize-continue", args=[request_id]), login_url
        )

    def _render_consent(self, request_id: str, entry: dict, application):
        adapter = get_adapter()
        asked = set(entry["asked"])

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

        context = {
            "form": ConsentForm(initial={"request_id": request_id}),
            "application": application,
            "profile": getattr(application, "oidc_profile", None),
            "tenant": adapter.get_tenant(entry["tenant"]) if entry["tenant"] else None,
            "scopes": [describe(scope) for scope in entry["scopes"] if scope in asked],
            "already_allowed": [describe(scope) for scope in entry["scopes"] if scope not in asked],
            "switch_account_url": _add_query(
                reverse("oidc_provider_ext:login"),
                {"next": reverse("oidc_provider_ext:authorize-continue", args=[request_id])},
            ),
        }
        with translation.override(_ui_language(entry["ui_locales"])):
            return render(self.request, self.template_name, context)

    def _issue_code(self, entry: dict, application, consented: bool = False):
        """The code (and, after the consent form, the remembered consent) for ``entry``."""
        session = sessions.current(self.request, entry["tenant"])
        if session is None or not get_adapter().may_use_client(
            self.request.user, application, entry["tenant"]
        ):
            # The session ended (another tab signed out, an operator ended it) or the user may no
            # longer use this client while the consent page was open: no code, no consent.
            return self._expired()
        credentials = dict(entry["credentials"])
        credentials["oidc_context"] = {
            "tenant": entry["tenant"],
            "op_session_id": session.id,
            "sid": session.sid,
            "auth_time": session.auth_time,
            "acr": session.acr,
            "amr": session.amr,
        }
        try:
            # One transaction only when there are two writes (consent and code).
            with transaction.atomic() if consented else nullcontext():
                if consented:
                    consents.remember(self.request.user, application, entry["tenant"], entry["scopes"])
                # Re-validates client, redirect_uri, scopes and PKCE from the stored request.
                uri, _headers, _body, _status = self.create_authorization_response(
                    request=self.request,
                    scopes=" ".join(entry["scopes"]),
                    credentials=credentials,
                    allow=True,
                )
        except OAuthToolkitError as error:
            return self._oauthlib_error(error, application)
        except IntegrityError:
            # The client was deleted (perhaps re-created under the same client_id) through another
            # process within the client cache's lifetime: the cached row no longer exists.
            clients.forget(application.client_id)
            return error_page(self.request, "Unknown application", "This application no longer exists.")
        return self._redirect(uri, application)

    def _oauthlib_error(self, error, application=None):
        redirect, response = self.error_response(error)
        if redirect and error.oauthlib_error.redirect_uri:
            return self._redirect(response["url"], application)
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

    def _client_error(self, credentials, application, error: str, description: str):
        # OIDC Core 3.1.2.6: errors go back to the validated redirect_uri, with state.
        params = {"error": error, "error_description": description}
        if credentials.get("state"):
            params["state"] = credentials["state"]
        return self._redirect(_add_query(credentials["redirect_uri"], params), application)

    def _redirect(self, uri, application):
        # RFC 9207: every authorization response, errors included, names the issuer (DOT adds it
        # to successful ones already).
        if "iss" not in parse_qs(urlsplit(uri).query):
            uri = _add_query(uri, {"iss": app_settings.ISSUER})
        # A redirect only ever targets a redirect_uri oauthlib validated against the client.
        schemes = (
            application.get_allowed_schemes() if application else oauth2_settings.ALLOWED_REDIRECT_URI_SCHEMES
        )
        response = OAuth2ResponseRedirect(uri, schemes)
        # The redirect carries a code (or an error): no Referer leak, no caching.
        response["Referrer-Policy"] = "no-referrer"
        return response

    def _expired(self):
        return error_page(
            self.request,
            title="This sign-in request has expired",
            message=(
                "The request was already answered, is too old, or belongs to another sign-in. "
                "Go back to the application and start again."
            ),
        )


@method_decorator(never_cache, name="dispatch")
class AuthorizeContinueView(AuthorizeView):
    """Where the login page sends the user back: continue the stored request."""

    def get(self, request, request_id: str, *args, **kwargs):
        entry = pending_request(request, request_id)
        if entry is None:
            return self._expired()
        application = _client(entry)
        if application is None:
            return error_page(request, "Unknown application", "This application no longer exists.")
        return self._continue(request_id, entry, application)

    def post(self, request, request_id: str, *args, **kwargs):
        """The tenant chooser's answer."""
        if csrf_failed(request):
            return error_page(request, "This form has expired", "Reload the page and try again.", status=403)
        entry = pending_request(request, request_id)
        if not request.user.is_authenticated or entry is None or entry.get("user") != str(request.user.pk):
            return self._expired()
        application = _client(entry)
        adapter = get_adapter()
        chosen = request.POST.get("tenant", "")
        allowed = {
            t.code
            for t in adapter.get_user_tenants(request.user)
            if adapter.client_allows_tenant(application, t)
        }
        if application is None or not entry["tenant_deferred"] or chosen not in allowed:
            return error_page(
                request, "Organisation not available", "Choose one of the organisations offered."
            )
        self._choose_tenant(request_id, entry, chosen)
        return self._continue(request_id, entry, application)


def _client(entry: dict):
    return clients.get_client(entry["credentials"]["client_id"])


def allowed_tenants(user, application) -> list:
    """The active tenants ``user`` belongs to that ``application`` accepts."""
    adapter = get_adapter()
    return [
        tenant
        for tenant in adapter.get_user_tenants(user)
        if adapter.client_allows_tenant(application, tenant)
    ]


def _ui_language(ui_locales: str) -> str:
    """The first of the client's ui_locales this site offers (OIDC Core 3.1.2.1), else the
    current language."""
    available = set(app_settings.UI_LOCALES)
    for tag in ui_locales.split():
        tag = tag.lower()
        for candidate in (tag, tag.split("-")[0]):
            if candidate in available:
                return candidate
    return translation.get_language()
