"""Passkeys: the account page that lists, adds, renames and removes them, and the endpoints the
page script (static/oidc_provider_ext/passkeys.js) asks for WebAuthn options. Passwordless sign-in
itself is a POST to the login page (views/login.py). docs/passkeys.md."""

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.generic import View

from oidc_provider_ext.internal import passkeys
from oidc_provider_ext.internal.locales import in_ui_language
from oidc_provider_ext.internal.requests import decorated_view, rejecting_bad_requests
from oidc_provider_ext.models import Passkey
from oidc_provider_ext.views.errors import boundary_page
from oidc_provider_ext.views.security import confirm_url, refuse_factor_change

_boundary = rejecting_bad_requests(boundary_page, csrf=True)
_LOGIN = reverse_lazy("oidc_provider_ext:login")


def _json_options(options: str) -> HttpResponse:
    response = HttpResponse(options, content_type="application/json")
    response["Cache-Control"] = "no-store"
    return response


def _json_error(message, status: int, **extra) -> JsonResponse:
    response = JsonResponse({"error": str(message), **extra}, status=status)
    response["Cache-Control"] = "no-store"
    return response


@decorated_view(never_cache, in_ui_language, _boundary)
class PasskeysView(LoginRequiredMixin, View):
    """GET lists the user's passkeys; POST (``name``, ``credential``) adds one."""

    template_name = "oidc_provider_ext/passkeys.html"
    login_url = _LOGIN

    def render(self, request, status: int = 200, error: str = ""):
        rows = Passkey.objects.filter(user=request.user).order_by("-last_used", "created")
        return render(
            request,
            self.template_name,
            {"passkeys": rows, "error": error, "max_name": passkeys.NAME_LENGTH},
            status=status,
        )

    def get(self, request, *args, **kwargs):
        return self.render(request)

    def post(self, request, *args, **kwargs):
        if (refused := refuse_factor_change(request, reverse("oidc_provider_ext:passkeys"))) is not None:
            return refused
        try:
            passkey = passkeys.register(
                request, request.user, request.POST.get("credential", ""), request.POST.get("name", "")
            )
        except passkeys.PasskeyError as exc:
            return self.render(request, status=400, error=str(exc.message))
        messages.success(request, _("Passkey “%(name)s” added.") % {"name": passkey.name})
        return redirect("oidc_provider_ext:passkeys")


@decorated_view(never_cache, in_ui_language, _boundary)
class RegistrationOptionsView(LoginRequiredMixin, View):
    """POST: creation options for a new passkey (JSON); the challenge stays in the session."""

    login_url = _LOGIN
    raise_exception = True  # a script asks: 403, not a redirect to the login page

    def post(self, request, *args, **kwargs):
        confirm = confirm_url(request, reverse("oidc_provider_ext:passkeys"))
        if confirm is not None:
            # The page script sends the user there (the step-up page, or signing in again).
            return _json_error(
                _("For your security, please sign in again to add a passkey."), 403, login_url=confirm
            )
        try:
            return _json_options(passkeys.registration_options(request, request.user))
        except passkeys.PasskeyError as exc:
            return _json_error(exc.message, 400)


@decorated_view(never_cache, in_ui_language, login_not_required, _boundary)
class SignInOptionsView(View):
    """POST: request options for a passwordless sign-in (JSON), for the login page's button and
    its autofill (conditional mediation). Anonymous: one challenge per session, replaced by the
    next, expiring (DESIGN.md "Anonymous requests")."""

    def post(self, request, *args, **kwargs):
        return _json_options(passkeys.authentication_options(request))


@decorated_view(never_cache, in_ui_language, _boundary)
class RenamePasskeyView(LoginRequiredMixin, View):
    login_url = _LOGIN

    def post(self, request, pk: int, *args, **kwargs):
        # Only the user's own passkeys: another user's id is a 404, not a hint.
        passkey = get_object_or_404(Passkey, pk=pk, user=request.user)
        passkey.name = passkeys.clean_name(request.POST.get("name", ""))
        passkey.save(update_fields=["name"])
        messages.success(request, _("Passkey renamed to “%(name)s”.") % {"name": passkey.name})
        return redirect("oidc_provider_ext:passkeys")


@decorated_view(never_cache, in_ui_language, _boundary)
class RemovePasskeyView(LoginRequiredMixin, View):
    """GET asks for confirmation; POST removes (after a recent sign-in)."""

    template_name = "oidc_provider_ext/passkey_remove.html"
    login_url = _LOGIN

    def get(self, request, pk: int, *args, **kwargs):
        passkey = get_object_or_404(Passkey, pk=pk, user=request.user)
        return render(request, self.template_name, {"passkey": passkey})

    def post(self, request, pk: int, *args, **kwargs):
        passkey = get_object_or_404(Passkey, pk=pk, user=request.user)
        next_url = reverse("oidc_provider_ext:passkey-remove", args=[pk])
        if (refused := refuse_factor_change(request, next_url)) is not None:
            return refused
        passkeys.remove(request, passkey)
        messages.success(request, _("Passkey “%(name)s” removed.") % {"name": passkey.name})
        return redirect("oidc_provider_ext:passkeys")
