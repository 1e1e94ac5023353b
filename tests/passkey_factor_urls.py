"""Test-only URLconf: the example project plus a bare challenge page for PasskeyFactor, standing
in for the step-up page (internal/factors.py's consumer), so the factor's partial and script run in
a real browser (tests/e2e/test_passkeys_browser.py)."""

import json

from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import HttpResponse
from django.template.loader import render_to_string
from django.urls import include, path
from django.views import View

from oidc_provider_ext.internal.passkeys import PasskeyFactor


class FactorPage(LoginRequiredMixin, View):
    def get(self, request):
        factor = PasskeyFactor()
        partial = render_to_string(
            factor.template_name, factor.challenge_context(request, request.user), request
        )
        return HttpResponse(f"<!doctype html><html><head></head><body><main>{partial}</main></body></html>")

    def post(self, request):
        amr = (
            PasskeyFactor().verify(request, request.user) if request.POST.get("factor") == "passkey" else None
        )
        return HttpResponse(f'<!doctype html><p id="result">{json.dumps(amr)}</p>')


urlpatterns = [path("test/factor", FactorPage.as_view()), path("", include("idp_project.urls"))]
