"""The second-factor pages: the challenge after a password (``login-verify``) and the step-up a
relying party's acr asks for (``authorize-step-up``). Both list factors from the registry
(internal/factors.py), take ``factor=<key>`` and that factor's own fields, and call the factor's
``verify``; nothing else the browser sends is trusted."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth import logout as django_logout
from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import translation
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views import View
from django.views.decorators.cache import never_cache

from oidc_provider_ext import throttle
from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.internal import clients, factors, op_sessions
from oidc_provider_ext.internal.authorization import PendingAuthorization, for_login_page
from oidc_provider_ext.internal.locales import in_ui_language, ui_language
from oidc_provider_ext.internal.requests import decorated_view, rejecting_bad_requests
from oidc_provider_ext.internal.sign_in import HalfSignIn
from oidc_provider_ext.views.errors import boundary_page, error_page

TEMPLATE = "oidc_provider_ext/challenge.html"
WRONG_CODE = gettext_lazy("That did not work. Check the code and try again.")

_decorators = [
    never_cache,
    in_ui_language,
    login_not_required,  # a half sign-in, or a step-up that signs in again: our flow, not the site's
    # The request boundary, then the CSRF check (our own forms post here).
    rejecting_bad_requests(boundary_page, csrf=True),
]


def _pick(offered: list, key: str | None):
    return next((factor for factor in offered if factor.key == key), offered[0] if offered else None)


def _render(
    request, offered: list, chosen, user, *, pending=None, error: str = "", status: int = 200, **context
):
    context.update(
        factors=offered,
        factor=chosen,
        factor_context=chosen.challenge_context(request, user) if chosen is not None else {},
        error=error,
    )
    # OIDC Core 3.1.2.1 ui_locales of the request this sign-in is for, as on the login page.
    language = ui_language(request, pending.ui_locales) if pending is not None else translation.get_language()
    with translation.override(language):
        response = render(request, TEMPLATE, context, status=status)
    patch_vary_headers(response, ("Accept-Language",))
    return response


def _verify(request, offered: list, user, *, budget: tuple[str, str]):
    """(the factor posted, the amr values it adds or None, an error for the page, whether the
    ``budget`` (throttle.attempt's kind and id: this half sign-in's or this OP session's codes) is
    spent). Every code is counted before it is checked (throttle.py "second factors")."""
    chosen = factors.get(request.POST.get("factor", ""))
    if chosen is None or chosen not in offered:
        return _pick(offered, None), None, _("Choose one of the ways offered."), False
    if not throttle.factor_attempt(request, user):
        return chosen, None, _("Too many wrong codes. Wait a few minutes and try again."), False
    used = throttle.attempt(*budget)
    spent = used >= app_settings.MFA_FAILURE_LIMIT
    if used > app_settings.MFA_FAILURE_LIMIT:
        return chosen, None, WRONG_CODE, spent
    added = chosen.verify(request, user)
    if not added:
        return chosen, None, WRONG_CODE, spent
    throttle.factor_succeeded(request, user)
    return chosen, added, "", False


@decorated_view(*_decorators)
class SignInChallengeView(View):
    """The second step of a sign-in: the password was right, the user is not signed in yet."""

    def _expired(self):
        messages.error(
            self.request, _("Your sign-in took too long or was interrupted. Please sign in again.")
        )
        return redirect("oidc_provider_ext:login")

    def get(self, request, *args, **kwargs):
        loaded = HalfSignIn.load(request)
        if loaded is None:
            return self._expired()
        half, user = loaded
        offered = factors.enrolled_factors(user)
        return _render(
            request,
            offered,
            _pick(offered, request.GET.get("factor")),
            user,
            pending=for_login_page(request, half.next_url),
            step="sign-in",
        )

    def post(self, request, *args, **kwargs):
        loaded = HalfSignIn.load(request)
        if loaded is None:
            return self._expired()
        half, user = loaded
        offered = factors.enrolled_factors(user)
        chosen, added, error, spent = _verify(request, offered, user, budget=("half-sign-in", half.nonce))
        if added is None:
            if spent:
                half.discard(request)
                messages.error(request, _("Too many wrong codes. Please sign in again."))
                return redirect(f"{reverse('oidc_provider_ext:login')}?{urlencode({'next': half.next_url})}")
            return _render(
                request,
                offered,
                chosen,
                user,
                pending=for_login_page(request, half.next_url),
                error=error,
                status=400,
                step="sign-in",
            )
        half.complete(request, user, added, pending=for_login_page(request, half.next_url))
        return HttpResponseRedirect(half.next_url)


@decorated_view(*_decorators)
class StepUpView(View):
    """OIDC Core 3.1.2.1 acr_values / 5.5.1.1 acr: the signed-in user passes the one missing factor
    for a pending authorization request; the same OP session gains it."""

    def _load(self, request, request_id: str):
        pending = PendingAuthorization.load(request, request_id)
        if pending is None or not pending.answered_by(request, "step-up"):
            return None
        return pending

    def _expired(self):
        return error_page(
            self.request,
            _("This sign-in request has expired"),
            _(
                "The request was already answered, is too old, or belongs to another sign-in. "
                "Go back to the application and start again."
            ),
        )

    def get(self, request, request_id: str, *args, **kwargs):
        pending = self._load(request, request_id)
        if pending is None:
            return self._expired()
        offered = pending.step_up_factors(request)
        if not offered:  # the session changed meanwhile: decide again
            return _back_to(pending)
        application = clients.get_client(pending.client_id)
        return _render(
            request,
            offered,
            _pick(offered, request.GET.get("factor")),
            request.user,
            pending=pending,
            step="step-up",
            application=application,
        )

    def post(self, request, request_id: str, *args, **kwargs):
        pending = self._load(request, request_id)
        session = op_sessions.current(request, pending.tenant) if pending is not None else None
        if pending is None or session is None:
            return self._expired()
        offered = pending.step_up_factors(request)
        failed = step_up(request, offered, pending.tenant, session, pending=pending, step="step-up")
        return failed or _back_to(pending)


def step_up(request, offered, tenant: str, session, **page):
    """Check the factor posted for the OP session ``session`` (tenant ``tenant``) against
    ``offered``; the session gains it and None is returned, or the answer to a failure: the page
    again (``page``: what _render shows), or, once the session spent its wrong codes, a sign-out."""
    chosen, added, error, spent = _verify(request, offered, request.user, budget=("step-up", str(session.id)))
    if added is None and spent:
        django_logout(request)  # ends this browser's OP sessions (internal/op_sessions.py)
        messages.error(request, _("Too many wrong codes. Please sign in again."))
        return redirect("oidc_provider_ext:login")
    if added is None:
        return _render(request, offered, chosen, request.user, error=error, status=400, **page)
    op_sessions.step_up(request, tenant, session, added)
    return None


def _back_to(pending: PendingAuthorization):
    """Back to the flow the step-up interrupted: an authorization request, or a device sign-in."""
    name = "device-continue" if pending.device is not None else "authorize-continue"
    return redirect(f"oidc_provider_ext:{name}", pending.id)
