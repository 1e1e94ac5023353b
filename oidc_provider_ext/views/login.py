"""The hosted sign-in page of the authorization flow, branded and scoped per tenant, and the
lockout page django-axes shows in its place."""

import math

from django.conf import settings
from django.contrib.auth import load_backend
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import translation
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache

from oidc_provider_ext import throttle
from oidc_provider_ext.adapter import get_adapter
from oidc_provider_ext.forms import LoginForm
from oidc_provider_ext.internal import clients, factors, passkeys, sign_in
from oidc_provider_ext.internal.authorization import for_login_page
from oidc_provider_ext.internal.locales import in_ui_language, ui_language
from oidc_provider_ext.internal.requests import decorated_view, rejecting_bad_requests
from oidc_provider_ext.internal.sign_in import HalfSignIn
from oidc_provider_ext.views.errors import boundary_page


# The request boundary runs before the CSRF check (which reads the body), then does it itself;
# Django's LoginView checks CSRF again in its own dispatch.
@decorated_view(
    never_cache, in_ui_language, login_not_required, rejecting_bad_requests(boundary_page, csrf=True)
)
class LoginView(auth_views.LoginView):
    template_name = "oidc_provider_ext/login.html"
    form_class = LoginForm
    # Signed-in users who arrive here were sent to re-authenticate (prompt=login, max_age): ask
    # again. Every successful sign-in starts a new OP session (oidc_provider_ext.sessions).
    redirect_authenticated_user = False

    def dispatch(self, request, *args, **kwargs):
        next_url = request.POST.get(self.redirect_field_name) or request.GET.get(self.redirect_field_name, "")
        # The authorization request this sign-in completes, if any.
        self.pending = pending = for_login_page(request, next_url)
        code = pending.tenant if pending is not None and not pending.tenant_deferred else None
        self.tenant = get_adapter().get_tenant(code) if code else None
        language = (
            ui_language(request, pending.ui_locales) if pending is not None else translation.get_language()
        )
        with translation.override(language):
            response = super().dispatch(request, *args, **kwargs)
            if hasattr(response, "render"):
                response.render()  # inside the override: the page is in the client's language
            return response

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "tenant": self.tenant}

    def get_context_data(self, **kwargs):
        pending = self.pending
        # OIDC Core 3.1.2.3: the user signs in to continue to a client; the page names it.
        application = clients.get_client(pending.credentials.get("client_id", "")) if pending else None
        return super().get_context_data(
            tenant=self.tenant,
            idp_hints=pending.idp if pending is not None else [],
            application=application,
            profile=getattr(application, "oidc_profile", None),
            passkeys_offered=passkeys.offered(),
            **kwargs,
        )

    def get_initial(self):
        initial = super().get_initial()
        # OIDC Core 3.1.2.1 login_hint: pre-fill the identifier the client already knows.
        hint = self.request.GET.get("login_hint") or (self.pending.login_hint if self.pending else "")
        if hint:
            initial["username"] = hint[:150]
        return initial

    def post(self, request, *args, **kwargs):
        # A passkey assertion (static/oidc_provider_ext/passkeys.js) instead of a password.
        if "credential" in request.POST:
            return self.passkey_sign_in(request.POST["credential"])
        return super().post(request, *args, **kwargs)

    def form_valid(self, form):
        user = form.get_user()
        tenant = self.tenant.code if self.tenant is not None else ""
        if factors.has_second_factor(user, self.request):  # read with the membership (forms.LoginForm)
            # Not signed in yet: the second factor first (internal/sign_in.py).
            HalfSignIn.begin(self.request, user, tenant=tenant, next_url=self.get_success_url())
            return HttpResponseRedirect(reverse("oidc_provider_ext:login-verify"))
        sign_in.finish(
            self.request,
            user,
            backend=getattr(user, "backend", None),
            tenant=tenant,
            amr=["pwd"],
            pending=self.pending,
        )
        return HttpResponseRedirect(self.get_success_url())

    def passkey_sign_in(self, credential: str):
        """Passwordless sign-in with a discoverable passkey (WebAuthn L3 7.2), then on to ``next``
        exactly as after a password."""
        request = self.request
        if throttle.login_address_refused(request):
            return self.passkey_failed(
                _("Too many failed sign-ins from your network. Please wait a few minutes."), 429
            )
        try:
            assertion = passkeys.authenticate(request, credential)
        except passkeys.PasskeyError as exc:
            throttle.count_login_failure(request)
            return self.passkey_failed(exc.message)
        user = assertion.passkey.user
        adapter = get_adapter()
        # As for a password (forms.LoginForm): an inactive user or a non-member of the tenant gets
        # the answer an unknown passkey gets.
        if not getattr(user, "is_active", True) or (
            self.tenant is not None and not adapter.is_member_of(user, self.tenant.code.lower())
        ):
            throttle.count_login_failure(request)
            return self.passkey_failed(passkeys.UNKNOWN)
        # The methods of oidc_provider_ext.acr's contract (["hwk"|"swk", "user"]: acr
        # phishing-resistant, amr + "mfa"): a passkey that verified its user is both factors.
        sign_in.finish(
            request,
            user,
            backend=_session_backend(),
            tenant=self.tenant.code if self.tenant is not None else "",
            amr=assertion.amr,
            pending=self.pending,
        )
        return HttpResponseRedirect(self.get_success_url())

    def passkey_failed(self, message, status: int = 400):
        form = self.form_class(request=self.request, initial=self.get_initial(), tenant=self.tenant)
        return self.render_to_response(self.get_context_data(form=form, passkey_error=message), status=status)

    def form_invalid(self, form):
        # As the source documents describe: bad credentials answer HTTP 400 Bad Request.
        return self.render_to_response(self.get_context_data(form=form), status=400)


def _session_backend() -> str:
    """The backend a passkey sign-in is recorded with: the first configured one that can load the
    user on later requests (``get_user``); django.contrib.auth needs one to name."""
    for path in settings.AUTHENTICATION_BACKENDS:
        if hasattr(load_backend(path), "get_user"):
            return path
    return "django.contrib.auth.backends.ModelBackend"


def lockout_response(request, original_response=None, credentials=None):
    """django-axes' ``AXES_LOCKOUT_CALLABLE``: the lockout page in the language of the sign-in it
    interrupts (axes renders its template outside the login view, in the site default), with the
    wait in minutes rather than axes' ISO 8601 duration ("PT15M")."""
    from axes.conf import settings as axes_settings
    from axes.helpers import get_cool_off

    next_url = request.GET.get(auth_views.LoginView.redirect_field_name, "")
    pending = for_login_page(request, next_url) if isinstance(next_url, str) else None
    cool_off = get_cool_off(request)
    minutes = max(1, math.ceil(cool_off.total_seconds() / 60)) if cool_off else None
    with translation.override(ui_language(request, pending.ui_locales if pending is not None else "")):
        response = render(
            request,
            "oidc_provider_ext/lockout.html",
            {"cooloff_minutes": minutes},
            status=axes_settings.AXES_HTTP_RESPONSE_CODE,
        )
    patch_vary_headers(response, ("Accept-Language",))
    return response
