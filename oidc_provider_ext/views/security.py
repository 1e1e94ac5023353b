"""The user's security settings: the authenticator app (set up, remove) and recovery codes."""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.generic import View

from oidc_provider_ext import throttle
from oidc_provider_ext.internal import factor_changes, factors, op_sessions, recovery_codes, totp
from oidc_provider_ext.internal.locales import in_ui_language
from oidc_provider_ext.internal.requests import decorated_view, rejecting_bad_requests
from oidc_provider_ext.views.challenge import _pick, _render, step_up
from oidc_provider_ext.views.errors import boundary_page

_decorators = [never_cache, in_ui_language, rejecting_bad_requests(boundary_page, csrf=True)]


class TOTPCodeForm(forms.Form):
    code = forms.CharField(
        label=gettext_lazy("Code from the app"),
        max_length=32,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}
        ),
    )


def _next_url(request) -> str:
    """Where to go once a factor is set up (a pending authorization request), if it is ours."""
    value = request.POST.get("next") or request.GET.get("next") or ""
    if value and url_has_allowed_host_and_scheme(
        value, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return value
    return ""


def confirm_url(request, next_url: str) -> str | None:
    """None when this browser may change the user's second factors now (internal/factor_changes.py);
    otherwise where to confirm it first: the account step-up page for a recent sign-in below the
    level the user signs in with, the sign-in page for an old one. ``next_url`` comes back after."""
    wanted = factor_changes.standing(request)
    if wanted.allowed:
        return None
    if wanted.session is not None and factor_changes.step_up_factors(request, wanted):
        return f"{reverse('oidc_provider_ext:account-step-up')}?{urlencode({'next': next_url})}"
    return f"{reverse('oidc_provider_ext:login')}?{urlencode({'next': next_url})}"


def refuse_factor_change(request, next_url: str):
    """A redirect to confirm (:func:`confirm_url`), or None when the change may go ahead."""
    url = confirm_url(request, next_url)
    if url is None:
        return None
    if url.startswith(reverse("oidc_provider_ext:login")):
        messages.info(request, _("For your security, please sign in again to continue."))
    return redirect(url)


def _here(request) -> str:
    """This page (to come back to once confirmed), with its own ``next`` kept."""
    following = _next_url(request)
    return f"{request.path}?{urlencode({'next': following})}" if following else request.path


class _Page(LoginRequiredMixin, View):
    login_url = reverse_lazy("oidc_provider_ext:login")


@decorated_view(*_decorators)
class SecurityView(_Page):
    template_name = "oidc_provider_ext/security.html"

    def get(self, request, *args, **kwargs):
        user = request.user
        device = totp.confirmed_device(user)
        others = [
            factor
            for factor in factors.enrolled_factors(user)
            if factor.key not in ("totp", "recovery") and not getattr(factor, "backup", False)
        ]
        context = {
            "totp_device": device,
            "recovery_left": recovery_codes.remaining(user),
            "has_second_factor": device is not None or bool(others),
            "other_factors": others,
            "next": _next_url(request),
        }
        return render(request, self.template_name, context)


@decorated_view(*_decorators)
class TOTPEnrolView(_Page):
    """Set up an authenticator app: a QR code drawn here, the key for typing in, and a code from
    the app before it counts."""

    template_name = "oidc_provider_ext/totp_enrol.html"

    def _page(self, request, device, form, status=200):
        uri = totp.provisioning_uri(device, request.user)
        secret = totp.secret_of(device)
        context = {
            "form": form,
            "qr_data_uri": totp.qr_data_uri(uri),
            "secret_groups": [secret[i : i + 4] for i in range(0, len(secret), 4)],
            "next": _next_url(request),
        }
        response = render(request, self.template_name, context, status=status)
        response["Cache-Control"] = "no-store"
        return response

    def get(self, request, *args, **kwargs):
        if (refused := refuse_factor_change(request, _here(request))) is not None:
            return refused
        device = totp.start_enrolment(request.user)
        if device is None:
            messages.info(
                request, _("An authenticator app is already set up. Remove it first to use another.")
            )
            return redirect("oidc_provider_ext:account-security")
        return self._page(request, device, TOTPCodeForm())

    def post(self, request, *args, **kwargs):
        user = request.user
        if (refused := refuse_factor_change(request, _here(request))) is not None:
            return refused
        device = totp.start_enrolment(user)
        if device is None:
            return redirect("oidc_provider_ext:account-security")
        form = TOTPCodeForm(request.POST)
        if not form.is_valid():
            return self._page(request, device, form, status=400)
        if not throttle.factor_attempt(request, user):
            form.add_error("code", _("Too many wrong codes. Wait a few minutes and try again."))
            return self._page(request, device, form, status=400)
        if not totp.verify(device, form.cleaned_data["code"], confirming=True):
            form.add_error("code", _("That code is not right. Check the app's clock and try again."))
            return self._page(request, device, form, status=400)
        throttle.factor_succeeded(request, user)
        # A code from an app just given proves only that: this browser's sign-in neither gains a
        # factor nor becomes more recent (a factor the user already had is not stood in for; the
        # next sign-in or step-up uses the new one).
        messages.success(request, _("Your authenticator app is set up."))
        if recovery_codes.remaining(user) == 0:
            return _show_codes(request, recovery_codes.regenerate(user))
        return redirect(_next_url(request) or reverse("oidc_provider_ext:account-security"))


def _show_codes(request, codes: list[str]):
    response = render(
        request, "oidc_provider_ext/recovery_codes.html", {"codes": codes, "next": _next_url(request)}
    )
    response["Cache-Control"] = "no-store"
    return response


@decorated_view(*_decorators)
class TOTPRemoveView(_Page):
    template_name = "oidc_provider_ext/totp_remove.html"

    def get(self, request, *args, **kwargs):
        if totp.confirmed_device(request.user) is None:
            return redirect("oidc_provider_ext:account-security")
        if (refused := refuse_factor_change(request, request.path)) is not None:
            return refused
        return render(request, self.template_name)

    def post(self, request, *args, **kwargs):
        user = request.user
        if (refused := refuse_factor_change(request, request.path)) is not None:
            return refused
        if totp.remove(user):
            if not factors.has_second_factor(user):
                recovery_codes.remove(user)  # a backup of nothing
            # Sessions elsewhere that relied on the app end; this browser's stop counting it.
            here = [entry["id"] for entry in op_sessions.browser_entries(request).values()]
            factors.end_sessions_relying_on(user, {"otp"}, keep=here)
            op_sessions.without_methods(request, {"otp"})
            messages.success(request, _("The authenticator app was removed from your account."))
        return redirect("oidc_provider_ext:account-security")


@decorated_view(*_decorators)
class RecoveryCodesView(_Page):
    """How many codes are left; POST makes ten new ones (the old ones stop working)."""

    template_name = "oidc_provider_ext/recovery_codes.html"

    def get(self, request, *args, **kwargs):
        return render(request, self.template_name, {"left": recovery_codes.remaining(request.user)})

    def post(self, request, *args, **kwargs):
        user = request.user
        if not factors.has_second_factor(user):
            messages.error(request, _("Set up an authenticator app or a passkey first."))
            return redirect("oidc_provider_ext:account-security")
        if (refused := refuse_factor_change(request, request.path)) is not None:
            return refused
        return _show_codes(request, recovery_codes.regenerate(user))


@decorated_view(*_decorators)
class AccountStepUpView(_Page):
    """Confirm it's you with a second factor before changing factors (``?next=`` comes back): the
    recent sign-in of this browser gains it (internal/factor_changes.py)."""

    def _wanted(self, request):
        wanted = factor_changes.standing(request)
        offered = factor_changes.step_up_factors(request, wanted) if not wanted.allowed else []
        return wanted, offered

    def get(self, request, *args, **kwargs):
        wanted, offered = self._wanted(request)
        if not offered:  # allowed already, or only signing in again helps
            return redirect(
                confirm_url(request, _next_url(request))
                or _next_url(request)
                or "oidc_provider_ext:account-security"
            )
        chosen = _pick(offered, request.GET.get("factor"))
        return _render(request, offered, chosen, request.user, step="account", next=_next_url(request))

    def post(self, request, *args, **kwargs):
        wanted, offered = self._wanted(request)
        if not offered or wanted.session is None:
            return redirect(
                confirm_url(request, _next_url(request))
                or _next_url(request)
                or "oidc_provider_ext:account-security"
            )
        failed = step_up(
            request, offered, wanted.tenant, wanted.session, step="account", next=_next_url(request)
        )
        return failed or redirect(_next_url(request) or "oidc_provider_ext:account-security")
