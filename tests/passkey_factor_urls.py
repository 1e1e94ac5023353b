"""Test-only URLconf: the example project plus a bare challenge page for PasskeyFactor, standing
in for the step-up page (internal/factors.py's consumer), so the factor's partial and script run in
a real browser (tests/e2e/test_passkeys_browser.py)."""

import json

from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import HttpResponse
from django.middleware.csrf import get_token
from django.template.loader import render_to_string
from django.urls import include, path
from django.views import View

from oidc_provider_ext.internal.passkeys import PasskeyFactor


class FactorPage(LoginRequiredMixin, View):
    def get(self, request):
        factor = PasskeyFactor()
        partial = render_to_string(
            factor.template_name, {"factor_context": factor.challenge_context(request, request.user)}, request
        )
        # As the challenge page (challenge.html) includes it: in a form with the token and the factor.
        form = (
            f'<form method="post" action="{request.path}">'
            f'<input type="hidden" name="csrfmiddlewaretoken" value="{get_token(request)}">'
            f'<input type="hidden" name="factor" value="passkey">{partial}</form>'
        )
        return HttpResponse(f"<!doctype html><html><head></head><body><main>{form}</main></body></html>")

    def post(self, request):
        amr = (
            PasskeyFactor().verify(request, request.user) if request.POST.get("factor") == "passkey" else None
        )
        return HttpResponse(f'<!doctype html><p id="result">{json.dumps(amr)}</p>')


urlpatterns = [path("test/factor", FactorPage.as_view()), path("", include("idp_project.urls"))]
