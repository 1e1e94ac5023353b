"""The pending authorization request: a typed object with its own storage and transitions.

``/connect/authorize`` validates a request once (oauthlib, then :meth:`PendingAuthorization.
from_request`), and from then on nothing the browser sends back can change the client,
redirect_uri, scopes, PKCE challenge or nonce (DESIGN.md, "Data that must survive"):

- the login round trip carries the request signed with ``django.core.signing`` (as
  django-allauth's IdP does), so a browser that is not signed in leaves no state here at all
  (DESIGN.md "Anonymous requests"; one session INSERT, read and DELETE less per sign-in). A
  request too long for a URL (:data:`MAX_SIGNED_LENGTH`), one asking for a fresh sign-in
  (``prompt=login``, ``select_account``, ``max_age``: single use) and a device request wait in the
  session instead (:meth:`PendingAuthorization.travelling_id`);
- once the user is known, the tenant chooser, the step-up and the consent form wait server-side in
  the browser's session under the request's opaque id: their answer is single use.

:meth:`PendingAuthorization.next_step` applies the rules of OIDC Core 3.1.2.1 that depend on the
browser's session (prompt, max_age, id_token_hint / claims ``sub``, the account-state rule) and
returns what happens next: :class:`Login`, :class:`ChooseTenant`, :class:`StepUp` (the missing
factor only), :class:`Enrol` (a required factor the user has not set up), :class:`AskConsent`,
:class:`Issue` or :class:`Fail` (an error for the client) / :class:`Refuse` (a page at the IdP).
The views turn a step into HTTP; every new OIDC parameter touches this module only.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from django.core import signing
from django.http import HttpRequest
from django.urls import Resolver404, get_script_prefix, resolve
from django.utils.translation import gettext

from oidc_provider_ext import acr
from oidc_provider_ext.adapter import get_adapter
from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.internal import consents, factors, op_sessions, resources
from oidc_provider_ext.models import ClientProfile
from oidc_provider_ext.tenants import default_tenant, parse_acr_values, resolve_requested_tenant
from oidc_provider_ext.tokens import InvalidIdTokenHint, subject_for, verify_id_token_hint

SESSION_KEY = "oidc_pending_authorizations"
MAX_PENDING = 10  # per browser session; the oldest goes first
_SIGNING_SALT = "oidc_provider_ext.pending-authorization"
# A signed request longer than this waits in the session instead (a long state, claims and
# resource indicators): the login URL carries it twice over (path, then ``next``), and servers
# refuse request lines over ~4 KB (gunicorn: 4094).
MAX_SIGNED_LENGTH = 1800
# What a browser's answer may do: set only on a request waiting in the session, never signed (a
# signed request is the login round trip's, before anyone answered anything).
_ANSWER_FIELDS = ("user", "expects", "asked", "consent_seen", "step_up_acr")
WRONG_SUBJECT = "The signed-in user is not the one the client asked for."
# Only these survive to the code; oauthlib's own request object and sets are not serialisable.
KEPT_CREDENTIALS = (
    "client_id",
    "redirect_uri",
    "response_type",
    "state",
    "code_challenge",
    "code_challenge_method",
    "nonce",
    "claims",
)
# A requested acr or sub that is not a string matches nothing: a control character, which the
# request boundary keeps out of every real value.
_MATCHES_NOTHING = "\x00"


class AuthorizationError(Exception):
    """An error for the client, sent to its (validated) redirect_uri with ``state``."""

    def __init__(self, error: str, description: str):
        super().__init__(description)
        self.error, self.description = error, description


# --- steps -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Login:
    """The user must (re-)authenticate for this request."""


@dataclass(frozen=True)
class ChooseTenant:
    tenants: list


@dataclass(frozen=True)
class StepUp:
    """The signed-in user must pass one more factor to reach ``required`` (an acr)."""

    required: str


@dataclass(frozen=True)
class Enrol:
    """The policy needs a factor the user has not set up: a page sends them to set one up."""

    required: str


@dataclass(frozen=True)
class AskConsent:
    pass


@dataclass(frozen=True)
class Issue:
    """Issue the code (the pending request is no longer stored)."""


@dataclass(frozen=True)
class Fail:
    """An error for the client (OIDC Core 3.1.2.6)."""

    error: str
    description: str


@dataclass(frozen=True)
class Refuse:
    """An error page at the IdP: nothing the client could do about it."""

    title: str
    message: str


Step = Login | ChooseTenant | StepUp | Enrol | AskConsent | Issue | Fail | Refuse
_WAITING = (Login, ChooseTenant, StepUp, Enrol, AskConsent)


# --- the request -----------------------------------------------------------------------------------


def _parse_max_age(raw) -> int | None:
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = -1
    if value < 0 or str(raw).strip() != str(value):
        raise AuthorizationError(
            "invalid_request", "max_age must be a non-negative integer number of seconds."
        )
    return value


def requested_value(claims: dict | None, name: str) -> tuple[bool, list[str]]:
    """(essential, allowed values) requested for ``name`` in the id_token member (OIDC Core 5.5.1)."""
    spec = ((claims or {}).get("id_token") or {}).get(name)
    if not isinstance(spec, dict):
        return False, []
    values: list[Any] = spec["values"] if isinstance(spec.get("values"), list) else []
    if "value" in spec:
        values = [spec["value"], *values]
    return bool(spec.get("essential")), [
        value if isinstance(value, str) else _MATCHES_NOTHING for value in values
    ]


def _reject_malformed_acr_request(claims: dict | None) -> None:
    """OIDC Core 5.5.1: a claim's member is null or an object; "value" a string, "values" an array
    (of strings for acr). A malformed essential acr request is an error, never silently ignored."""
    id_token = (claims or {}).get("id_token")
    spec = id_token.get("acr") if isinstance(id_token, dict) else None
    if spec is None:
        return
    if not isinstance(spec, dict):
        raise AuthorizationError(
            "invalid_request", "The acr member of the claims parameter must be an object."
        )
    if not spec.get("essential"):
        return
    values = spec.get("values", [])
    if ("value" in spec and not isinstance(spec["value"], str)) or not (
        isinstance(values, list) and all(isinstance(value, str) for value in values)
    ):
        raise AuthorizationError(
            "invalid_request", "An essential acr request needs a string value or an array of string values."
        )


@dataclass
class PendingAuthorization:
    id: str
    created: float
    scopes: list[str]
    credentials: dict[str, Any]  # the validated request (KEPT_CREDENTIALS)
    prompt: list[str]
    max_age: int | None
    subject: str | None  # the sub the client asked for (id_token_hint, claims), if any
    login_hint: str
    ui_locales: str
    tenant: str  # a code, "" for none
    tenant_deferred: bool  # decided after sign-in (the user's only tenant, or the chooser)
    idp: list[str]
    login_started: int | None = None  # when this request sent the user to sign in
    asked: list[str] | None = None  # the scopes the consent page asks for
    # The live consent the consent page was decided against (consents.seen): its answer updates
    # that row in one statement if it is still as seen, else reads it again.
    consent_seen: list | None = None
    user: str | None = None  # who the chooser/consent page was shown to
    expects: str = ""  # the answer the browser may post next: "tenant", "consent" or "step-up"
    # OIDC Core 3.1.2.1 / 5.5.1.1: the acr values asked for, in the client's order of preference;
    # essential (claims parameter): one of them or an error, never a weaker sign-in.
    acr_requested: list[str] = field(default_factory=list)
    acr_essential: bool = False
    step_up_acr: str = ""  # the level the step-up page must reach
    # RFC 8707 2.1: the resource indicators, exactly as sent (registered, enabled, allowed).
    resources: list[str] = field(default_factory=list)
    # A device authorization (RFC 8628) being answered in this browser: its id. The code flow's
    # rules apply (login, tenant, account state, consent); the user always confirms (5.4).
    device: int | None = None
    # Loaded from a signed id (travelling_id): it lives in the URL, the session holds no copy.
    signed: bool = field(default=False, compare=False)

    def _stored(self) -> dict[str, Any]:
        """The fields a stored or signed request keeps. A copy: a request kept in the session must
        not change with this object (JSON, as the session and the signature serialize it)."""
        return json.loads(json.dumps(self._fields()))

    def _fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("id", "signed")}

    # --- construction --------------------------------------------------------------------------

    @classmethod
    def from_request(cls, params, scopes, credentials, application) -> PendingAuthorization:
        """The request oauthlib validated, with the OIDC parameters checked here.

        Raises :class:`AuthorizationError` (for the client) or ``TenantError`` (a page at the IdP).
        """
        # OIDC Core 3.1.2.6: request objects are not supported (not advertised in discovery).
        if "request" in params:
            raise AuthorizationError("request_not_supported", "Request objects are not supported.")
        if "request_uri" in params:
            raise AuthorizationError("request_uri_not_supported", "request_uri is not supported.")
        try:
            acr_values_param = parse_acr_values(params.get("acr_values"))
        except ValueError as exc:
            raise AuthorizationError("invalid_request", str(exc)) from exc
        tenant = (
            resolve_requested_tenant(acr_values_param.tenant, application)
            if acr_values_param.tenant is not None
            else default_tenant(application)
        )
        adapter = get_adapter()
        claims = credentials.get("claims") or {}
        _reject_malformed_acr_request(claims)
        essential, acr_values = requested_value(claims, "acr")
        if essential and acr_values and not set(acr_values) & set(adapter.acr_values_supported):
            # OIDC Core 5.5.1.1 and the unmet_authentication_requirements errata: an essential
            # acr we cannot satisfy is a failed authentication.
            raise AuthorizationError(
                "unmet_authentication_requirements", "None of the requested acr values is supported."
            )
        hint_sub = None
        if params.get("id_token_hint"):
            try:
                hint_sub = verify_id_token_hint(params["id_token_hint"], application.client_id)["sub"]
            except InvalidIdTokenHint as exc:
                raise AuthorizationError("invalid_request", str(exc)) from exc
        _essential, sub_values = requested_value(claims, "sub")
        # RFC 8707 2.1: may repeat. The tenant rule is applied now if the tenant is known, and in
        # any case again before the code is issued (_decide).
        requested_resources = params.getlist("resource") if hasattr(params, "getlist") else []
        try:
            resources.resolve(requested_resources, application, tenant.code if tenant is not None else None)
        except resources.InvalidTarget as exc:
            raise AuthorizationError(exc.error, exc.description) from exc
        if essential and acr_values:
            acr_requested = acr_values
        else:  # voluntary: the claims parameter's values first, then acr_values (both preferences)
            acr_requested = list(dict.fromkeys([*acr_values, *acr_values_param.classes]))
        return cls(
            id=secrets.token_urlsafe(24),
            created=time.time(),
            scopes=list(scopes),
            credentials={key: credentials[key] for key in KEPT_CREDENTIALS if credentials.get(key)},
            prompt=sorted(credentials.get("prompt") or ()),
            max_age=_parse_max_age(params.get("max_age")),
            subject=hint_sub or (sub_values[0] if sub_values else None),
            login_hint=params.get("login_hint", "")[:255],
            ui_locales=params.get("ui_locales", "")[:255],
            tenant=tenant.code if tenant is not None else op_sessions.NO_TENANT,
            # With no tenant named and no client default, the tenant is decided after sign-in: the
            # user's only organisation, or the one they pick. A site without tenants has none.
            tenant_deferred=tenant is None and adapter.has_tenants(),
            idp=list(acr_values_param.idps),
            resources=list(dict.fromkeys(requested_resources)),
            acr_requested=acr_requested[:10],
            acr_essential=bool(essential and acr_values),
        )

    @classmethod
    def for_device(cls, device) -> PendingAuthorization:
        """The pending answer to a device authorization whose user code this browser entered."""
        return cls(
            id=secrets.token_urlsafe(24),
            created=time.time(),
            scopes=device.scopes,
            credentials={"client_id": device.application.client_id},
            prompt=[],
            max_age=None,
            subject=None,
            login_hint="",
            ui_locales="",
            tenant=device.tenant,
            tenant_deferred=device.tenant_deferred,
            idp=[],
            device=device.pk,
        )

    @property
    def client_id(self) -> str:
        return self.credentials["client_id"]

    # --- storage: the browser's session ---------------------------------------------------------

    @classmethod
    def load(cls, request: HttpRequest, request_id: str) -> PendingAuthorization | None:
        """The pending request ``request_id`` of this browser (an id, or a request signed by
        :meth:`travelling_id`), if it is still valid."""
        max_age = app_settings.AUTHORIZE_REQUEST_MAX_AGE_SECONDS
        if ":" in request_id:  # signing.dumps separates with ":"; an opaque id (base64url) has none
            try:
                stored = signing.loads(request_id, salt=_SIGNING_SALT, max_age=max_age)
            except signing.BadSignature:  # forged, altered or expired (SignatureExpired)
                return None
            # Never a device request: those are stored when their code is entered (travelling_id).
            if not isinstance(stored, dict) or not isinstance(stored.get("id"), str) or stored.get("device"):
                return None
            request_id = stored["id"]
            stored = {k: v for k, v in stored.items() if k not in _ANSWER_FIELDS}
            stored["signed"] = True
        else:
            stored = request.session.get(SESSION_KEY, {}).get(request_id) if request_id else None
        if stored is None or time.time() - stored["created"] >= max_age:
            return None
        known = {f.name for f in fields(cls)}
        return cls(id=request_id, **{k: v for k, v in stored.items() if k in known and k != "id"})

    def travelling_id(self, request: HttpRequest) -> str:
        """The id the login round trip carries (its ``next`` URL): a new request signed, stored
        nowhere; or its id, the request waiting in the session, if it was stored before or would
        be too long for a URL signed, or if it asks for a fresh sign-in."""
        # prompt=login / select_account and max_age are met by the sign-in made for this request
        # (login_started, login_reason) once: its code discards a request waiting in the session,
        # while a signed URL followed again (back button, history) would count that sign-in again
        # for up to AUTHORIZE_REQUEST_MAX_AGE_SECONDS.
        fresh = bool({"login", "select_account"} & set(self.prompt)) or self.max_age is not None
        if not fresh and self.id not in request.session.get(SESSION_KEY, {}):  # not waiting there
            # Serialized at once: the field values themselves, no copy.
            data = {k: v for k, v in self._fields().items() if k not in _ANSWER_FIELDS}
            data["id"] = self.id
            signed = signing.dumps(data, salt=_SIGNING_SALT, compress=True)
            if len(signed) <= MAX_SIGNED_LENGTH:
                return signed
        # A device request the code entry stored, or a request an earlier step stored (its answer
        # fields reset: the sign-in starts over), waits on in the session under its id.
        self.save(request)
        return self.id

    def save(self, request: HttpRequest) -> None:
        now = time.time()
        pending = {
            key: value
            for key, value in request.session.get(SESSION_KEY, {}).items()
            if now - value["created"] < app_settings.AUTHORIZE_REQUEST_MAX_AGE_SECONDS
        }
        pending[self.id] = self._stored()
        while len(pending) > MAX_PENDING:
            pending.pop(min(pending, key=lambda key: pending[key]["created"]))
        session = request.session
        session[SESSION_KEY] = pending
        # DESIGN.md "Anonymous requests": a session that holds nothing but pending requests
        # expires with them, not after SESSION_COOKIE_AGE (op_sessions.py restores that on sign-in).
        if not request.user.is_authenticated and set(session.keys()) <= op_sessions.PENDING_ONLY_KEYS:
            session[op_sessions.PENDING_ONLY_KEY] = True
            session.set_expiry(app_settings.AUTHORIZE_REQUEST_MAX_AGE_SECONDS)

    def discard(self, request: HttpRequest) -> None:
        pending = dict(request.session.get(SESSION_KEY, {}))
        if pending.pop(self.id, None) is not None:
            request.session[SESSION_KEY] = pending

    def keep_after_sign_in(self, request: HttpRequest) -> None:
        """Put this request back after a sign-in that flushed the session (another user)."""
        if self.signed:
            return  # it travels in the URL
        pending = dict(request.session.get(SESSION_KEY, {}))
        pending.setdefault(self.id, self._stored())
        request.session[SESSION_KEY] = pending

    # --- transitions -----------------------------------------------------------------------------

    def next_step(self, request: HttpRequest, application) -> Step:
        """Decide what happens next for the browser of ``request``, storing or discarding the
        pending request as the step requires."""
        step = self._decide(request, application)
        if isinstance(step, Login):
            # Not stored here: the login round trip carries it (travelling_id); it answers nothing
            # until the user is known again.
            self.login_started = int(time.time())
            self.user, self.expects = None, ""
            return step
        if isinstance(step, ChooseTenant):
            self.user, self.expects = str(request.user.pk), "tenant"
        elif isinstance(step, AskConsent):
            self.user, self.expects = str(request.user.pk), "consent"
        elif isinstance(step, StepUp):
            self.user, self.expects, self.step_up_acr = str(request.user.pk), "step-up", step.required
        elif isinstance(step, Enrol):
            self.user, self.expects = str(request.user.pk), ""
        if isinstance(step, _WAITING):
            self.save(request)
        else:
            self.discard(request)
        return step

    def _decide(self, request: HttpRequest, application) -> Step:
        prompt = set(self.prompt)
        if self.tenant_deferred and request.user.is_authenticated:
            step = self._decide_tenant(request, application)
            if step is not None:
                return step
        session = op_sessions.current(request, self.tenant)
        if session is not None and not op_sessions.may_use_client(request, application, self.tenant):
            # The account-state rule: a user no longer allowed here (deactivated, membership ended)
            # gets no code from an old session, prompt=none or not; they must sign in again.
            op_sessions.forget(request, session.id)
            session = None
        reason = self.login_reason(request, session)
        if reason == WRONG_SUBJECT and self.login_started:
            # OIDC Core 3.1.2.2 (id_token_hint) / 5.5.1 (sub): never a positive answer for another
            # user, not even one who signed in for this request.
            return Fail("login_required", reason)
        if reason:
            return Fail("login_required", reason) if "none" in prompt else Login()
        assert session is not None  # no reason to sign in means a session
        step = self._decide_acr(request, application, session)
        if step is not None:
            return step
        if self.resources:
            # Again, now that the tenant is decided and minutes may have passed (disabled since).
            try:
                resources.resolve(self.resources, application, self.tenant)
            except resources.InvalidTarget as exc:
                return Fail(exc.error, exc.description)
        if self.device is not None:
            # RFC 8628 5.4 (remote phishing): whoever sent the user here (a QR code, a link with the
            # code) may be an attacker holding the device, so the user always confirms, even for a
            # first-party client or scopes consented before; only what is new is ticked.
            missing, _consent = consents.missing_scopes(
                request.user, application, self.tenant, self.scopes, self.resources
            )
            skip = consents.policy(application) == ClientProfile.ConsentPolicy.SKIP
            self.asked = [] if skip else missing
            return AskConsent()
        if consents.policy(application) == ClientProfile.ConsentPolicy.SKIP:
            return Issue()
        missing, consent = consents.missing_scopes(
            request.user, application, self.tenant, self.scopes, self.resources
        )
        if not missing and "consent" not in prompt:
            consents.touch(consent)
            return Issue()
        if "none" in prompt:
            return Fail("consent_required", "The user has not consented to this request.")
        # prompt=consent asks for everything again; otherwise only for what is new.
        self.asked = list(self.scopes) if "consent" in prompt else missing
        self.consent_seen = consents.seen(consent)
        return AskConsent()

    def _decide_acr(
        self, request: HttpRequest, application, session: op_sessions.CurrentSession
    ) -> Step | None:
        """Whether the session's acr is enough for what the client asked and the policy requires;
        if not, the step that gets there (OIDC Core 3.1.2.1 acr_values, 5.5.1.1 essential acr)."""
        adapter = get_adapter()
        user = request.user
        have = session.acr
        enrolled: list | None = None

        def reachable(required: str) -> list:
            nonlocal enrolled
            if enrolled is None:
                enrolled = factors.enrolled_factors(user)
            return factors.factors_reaching(enrolled, session.amr, required)

        need = None
        if self.acr_requested:
            # The client's values in its order of preference: the first one this sign-in has or a
            # step-up can reach. None of them: voluntary, the sign-in goes on with the acr it has.
            target = next(
                (
                    value
                    for value in self.acr_requested
                    if value in adapter.acr_values_supported
                    and (acr.satisfies(have, value) or reachable(value))
                ),
                None,
            )
            if target is None and self.acr_essential:
                # OIDC Core 5.5.1.1 and 3.1.2.6 (errata set 2): unmet_authentication_requirements.
                return Fail(
                    "unmet_authentication_requirements",
                    "The user cannot reach any of the essential acr values requested.",
                )
            if target is not None and not acr.satisfies(have, target):
                need = target
        minimum = adapter.minimum_acr(user, application, self.tenant, request=request)
        if minimum and not acr.satisfies(have, minimum):
            need = acr.strongest(need, minimum)
        if need is None:
            return None
        if "none" in self.prompt:
            # OIDC Core 3.1.2.6: the step-up or the enrolment needs the user.
            return Fail("interaction_required", "The user must authenticate with another factor.")
        if not reachable(need):
            return Enrol(need)
        return StepUp(need)

    def acr_still_met(self, request: HttpRequest, application) -> bool:
        """Whether the browser's session still meets what the client asked and the policy requires
        (checked again when the consent form is answered: a factor removed in another tab while the
        page was open lowers the session's acr)."""
        session = op_sessions.current(request, self.tenant)
        return session is not None and self._decide_acr(request, application, session) is None

    def step_up_factors(self, request: HttpRequest) -> list:
        """The factors the step-up page offers: the user's that reach ``step_up_acr`` from the
        browser's current session, and only those."""
        session = op_sessions.current(request, self.tenant)
        if session is None or not self.step_up_acr:
            return []
        return factors.factors_reaching(factors.enrolled_factors(request.user), session.amr, self.step_up_acr)

    def _decide_tenant(self, request: HttpRequest, application) -> Step | None:
        """Pick the tenant of a request that named none, once the user is known."""
        tenants = allowed_tenants(request.user, application)
        if len(tenants) > 1:
            if "none" in self.prompt:
                return Fail("interaction_required", "The user must choose an organisation.")
            return ChooseTenant(tenants)
        if not tenants:
            if get_adapter().client_tenant_codes(application):
                return Refuse(
                    gettext("No organisation for this application"),
                    gettext(
                        "Your account is not a member of an organisation this application accepts. "
                        "Contact your administrator."
                    ),
                )
            self.choose_tenant(request, op_sessions.NO_TENANT)
            return None
        self.choose_tenant(request, tenants[0].code)
        return None

    def choose_tenant(self, request: HttpRequest, code: str) -> None:
        self.tenant, self.tenant_deferred = code, False
        # The sign-in that just happened for this request (unscoped: the tenant was unknown)
        # becomes the chosen tenant's session; an older sign-in does not.
        unscoped = op_sessions.current(request, op_sessions.NO_TENANT)
        if (
            code
            and op_sessions.current(request, code) is None
            and unscoped is not None
            and self.login_started
            and unscoped.auth_time >= self.login_started
        ):
            op_sessions.rescope(request, code, unscoped)

    def login_reason(self, request: HttpRequest, session: op_sessions.CurrentSession | None) -> str | None:
        """Why the user must (re-)authenticate for this request, or None (OIDC Core 3.1.2.1)."""
        if session is None:
            return "The user is not signed in."
        if self.subject is not None and self.subject != subject_for(request.user):
            return WRONG_SUBJECT
        if self.login_started and session.auth_time >= self.login_started:
            return None  # signed in for this very request: prompt=login and max_age are satisfied
        if {"login", "select_account"} & set(self.prompt):
            return "The client asked for the user to sign in again."
        if self.max_age is not None and time.time() - session.auth_time > self.max_age:
            return "The sign-in is older than max_age."
        return None

    def answered_by(self, request: HttpRequest, expected: str) -> bool:
        """Whether the signed-in user of ``request`` may post the ``expected`` answer now."""
        return (
            request.user.is_authenticated and self.user == str(request.user.pk) and self.expects == expected
        )

    def granted_scopes(self, ticked: set[str]) -> list[str]:
        """The scopes the consent form grants: only what was asked can be unticked, and openid
        never (it is the sign-in itself); anything else the browser sends is ignored."""
        asked = set(self.asked if self.asked is not None else self.scopes)
        return [
            scope
            for scope in self.scopes
            if scope not in asked or scope in ticked or scope == consents.OPENID
        ]

    def granted_acr(self, session: op_sessions.CurrentSession) -> str:
        """The acr the tokens carry: the session's, or for an essential request the first requested
        value the session meets (OIDC Core 5.5.1.1: it MUST match one of the requested values)."""
        if self.acr_essential:
            supported = get_adapter().acr_values_supported
            for value in self.acr_requested:
                if value in supported and acr.satisfies(session.acr, value):
                    return value
        return session.acr

    def oidc_context(self, session: op_sessions.CurrentSession) -> dict[str, Any]:
        """What the code carries of the sign-in (stored on the grant, OIDC Core 12.2)."""
        return {
            "tenant": self.tenant,
            "op_session_id": session.id,
            "sid": session.sid,
            "auth_time": session.auth_time,
            "acr": self.granted_acr(session),
            "amr": session.amr,
            "resource": self.resources,
        }


def allowed_tenants(user, application) -> list:
    """The active tenants ``user`` belongs to that ``application`` accepts."""
    adapter = get_adapter()
    return [t for t in adapter.get_user_tenants(user) if adapter.client_allows_tenant(application, t.code)]


def for_login_page(request: HttpRequest, next_url: str) -> PendingAuthorization | None:
    """The pending request a login page's ``next`` continues, if any (the URL is resolved, not
    parsed by hand)."""
    if not next_url:
        return None
    path = urlsplit(next_url).path
    prefix = get_script_prefix()  # reverse() adds it, resolve() expects the path without it
    if path.startswith(prefix):
        path = "/" + path[len(prefix) :]
    try:
        match = resolve(path)
    except Resolver404:
        return None
    # By the app's URL name, whatever instance namespace the site mounted it under.
    if (
        match.url_name not in ("authorize-continue", "device-continue")
        or "oidc_provider_ext" not in match.app_names
    ):
        return None
    return PendingAuthorization.load(request, match.kwargs.get("request_id", ""))
