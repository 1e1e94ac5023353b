"""``/connect/device``: the page where a user enters the code a device shows (RFC 8628 3.3).

The code leads to the same pending authorization as any sign-in (internal/authorization.py):
sign-in on the normal login page (scoped to the request's tenant), the tenant chooser, the
account-state rule, then a confirmation page that is always shown (RFC 8628 5.4), whose answer
approves or denies the device. Wrong codes are throttled per user and per address (5.1).
"""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_not_required
from django.db import transaction
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import translation
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.generic import View

from oidc_provider_ext import throttle
from oidc_provider_ext.forms import ConsentForm
from oidc_provider_ext.internal import clients, consents, devices, op_sessions
from oidc_provider_ext.internal.authorization import (
    PendingAuthorization,
)
from oidc_provider_ext.internal.locales import in_ui_language, ui_language
from oidc_provider_ext.internal.requests import decorated_view, rejecting_bad_requests
from oidc_provider_ext.views.authorize import _Authorization
from oidc_provider_ext.views.errors import boundary_page


class UserCodeForm(forms.Form):
    user_code = forms.CharField(
        label=gettext_lazy("Code"),
        max_length=devices.MAX_TYPED_LENGTH,
        strip=True,
        widget=forms.TextInput(
            attrs={
                # Easy to type on a phone: letters only, capitals, no autocorrect (RFC 8628 6.1).
                "autocapitalize": "characters",
                "autocomplete": "off",
                "autocorrect": "off",
                "spellcheck": "false",
                "inputmode": "text",
                "placeholder": "BCDF-GHJK",
                "aria-describedby": "user-code-help",
                "class": "form-control form-control-lg text-center oidc-user-code",
            }
        ),
    )


def _entry_page(request, form, status=200, error: str = ""):
    context = {"form": form, "error": error, "form_action": reverse("oidc_provider_ext:device")}
    return render(request, "oidc_provider_ext/device.html", context, status=status)


@decorated_view(
    never_cache, in_ui_language, login_not_required, rejecting_bad_requests(boundary_page, csrf=True)
)
class DeviceView(View):
    """The code-entry page (verification_uri). ``?user_code=`` (verification_uri_complete) only
    pre-fills the field: the user still submits it and then confirms (RFC 8628 5.4)."""

    def get(self, request, *args, **kwargs):
        typed = request.GET.get("user_code", "")
        code = devices.normalise(typed)
        return _entry_page(
            request, UserCodeForm(initial={"user_code": devices.display(code) if code else ""})
        )

    @method_decorator(sensitive_post_parameters("user_code"))
    def post(self, request, *args, **kwargs):
        form = UserCodeForm(request.POST)
        # RFC 8628 5.1: counted before the lookup, so parallel guesses cannot pass the limit.
        if not throttle.user_code_attempt_allowed(request):
            message = _("Too many wrong codes. Please wait a few minutes, then try again.")
            return _entry_page(request, form, status=429, error=message)
        device = devices.find_pending(form.data.get("user_code", "")) if form.is_valid() else None
        if device is None:
            message = _("That code is not valid or has expired. Check the code on your device and try again.")
            return _entry_page(request, form, status=400, error=message)
        throttle.user_code_entry_succeeded(request)
        pending = PendingAuthorization.for_device(device)
        pending.save(request)
        return redirect("oidc_provider_ext:device-continue", request_id=pending.id)


@decorated_view(
    never_cache,
    in_ui_language,
    login_not_required,
    rejecting_bad_requests(boundary_page, ("scope",), csrf=True),
)
class DeviceContinueView(_Authorization):
    """The browser's way through a device authorization after the code: sign-in (GET), the
    tenant chooser and the confirmation (POST, CSRF-checked, the answer the request expects)."""

    continue_url_name = "oidc_provider_ext:device-continue"

    def _load(self, request_id: str):
        pending = PendingAuthorization.load(self.request, request_id)
        if pending is None or pending.device is None or devices.load_pending(pending.device) is None:
            return None, None
        return pending, clients.get_client(pending.client_id)

    def get(self, request, request_id: str, *args, **kwargs):
        pending, application = self._load(request_id)
        if pending is None or application is None:
            return self._expired()
        return self._respond(pending, application)

    def post(self, request, request_id: str, *args, **kwargs):
        pending, application = self._load(request_id)
        if pending is not None and application is not None and pending.answered_by(request, "consent"):
            return self._answer(pending, application)
        if pending is not None and pending.answered_by(request, "tenant"):
            return self._tenant_answer(pending)
        return self._expired()

    # The steps are the code flow's (_Authorization._respond); a device request differs in three.

    def _render_consent(self, pending: PendingAuthorization, application, **extra):
        # RFC 8628 5.4: the confirmation names the device flow and warns about remote phishing.
        return super()._render_consent(pending, application, device=True, **extra)

    def _issue_code(self, pending: PendingAuthorization, application, consented: bool = False):
        # A device request always asks (5.4), so it never reaches Issue without an answer.
        return self._expired()

    def _fail(self, pending: PendingAuthorization, application, error: str, description: str):
        # No redirect URI to send an error to: the device learns the outcome by polling.
        return self._expired()

    def _answer(self, pending: PendingAuthorization, application):
        form = ConsentForm(self.request.POST)
        if not form.is_valid() or form.cleaned_data["request_id"] != pending.id:
            return self._expired()
        pending.discard(self.request)  # single use, whatever the answer
        device_id, user = pending.device, self.request.user
        if device_id is None:
            return self._expired()
        if form.cleaned_data["decision"] != ConsentForm.ALLOW:
            if not devices.deny(device_id, user):
                return self._expired()  # answered in another tab, or expired, meanwhile
            return self._done(application, approved=False)
        session = op_sessions.current(self.request, pending.tenant)
        if session is None or not op_sessions.may_use_client(self.request, application, pending.tenant):
            return self._expired()
        if not pending.acr_still_met(self.request, application):
            # As the code flow's consent answer: the sign-in is weaker than the level required now
            # (raised by an operator, or a factor removed in another tab, while the page was open).
            return self._expired()
        scopes = pending.granted_scopes(set(self.request.POST.getlist("scope")))
        with transaction.atomic():
            if not devices.approve(device_id, user, scopes, pending.oidc_context(session)):
                transaction.set_rollback(True)
                return self._expired()
            consents.remember(user, application, pending.tenant, scopes)
        return self._done(application, approved=True)

    def _done(self, application, approved: bool):
        with translation.override(ui_language(self.request, "")):
            return render(
                self.request,
                "oidc_provider_ext/device_done.html",
                {"application": application, "approved": approved},
            )
