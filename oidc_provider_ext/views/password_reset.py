"""``/connect/password/reset…``: Django's password-reset views inside the hosted pages.

The login page's "Forgot password?" leads here. The templates are the app's own
(``oidc_provider_ext/password_reset_*.html``), not ``registration/``: a site's admin already ships
``registration/password_reset_*.html``, and which one won would depend on INSTALLED_APPS order.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.contrib.auth import views as auth_views
from django.http import HttpResponseRedirect
from django.urls import reverse_lazy

from oidc_provider_ext import throttle
from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.internal.locales import in_ui_language
from oidc_provider_ext.internal.requests import decorated_view, rejecting_bad_requests
from oidc_provider_ext.views.errors import boundary_page

_boundary = rejecting_bad_requests(boundary_page, csrf=True)


@decorated_view(in_ui_language, _boundary)
class PasswordResetView(auth_views.PasswordResetView):
    template_name = "oidc_provider_ext/password_reset_form.html"
    email_template_name = "oidc_provider_ext/password_reset_email.txt"
    subject_template_name = "oidc_provider_ext/password_reset_subject.txt"
    success_url = reverse_lazy("oidc_provider_ext:password-reset-done")

    def form_valid(self, form):
        # The link in the email is built from ISSUER, never from the Host header: a forged Host
        # would otherwise send the victim a reset link (and its token) to the attacker's site.
        issuer = urlsplit(app_settings.ISSUER)
        self.extra_email_context = {
            "site_origin": f"{issuer.scheme}://{issuer.netloc}",
            # These override what Django's form takes from get_current_site(request).
            "site_name": issuer.netloc,
            "domain": issuer.netloc,
            "protocol": issuer.scheme,
        }
        if not throttle.allow_reset_email(self.request, form.cleaned_data["email"]):
            # The same answer as when an email was sent: nothing tells whether an account exists.
            return HttpResponseRedirect(self.get_success_url())
        return super().form_valid(form)


@decorated_view(in_ui_language, _boundary)
class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "oidc_provider_ext/password_reset_done.html"


@decorated_view(in_ui_language, _boundary)
class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "oidc_provider_ext/password_reset_confirm.html"
    success_url = reverse_lazy("oidc_provider_ext:password-reset-complete")


@decorated_view(in_ui_language, _boundary)
class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "oidc_provider_ext/password_reset_complete.html"
