"""“Connected apps”: the signed-in user's remembered consents, each revocable."""

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse_lazy
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.generic import ListView, TemplateView

from oidc_provider_ext import consents
from oidc_provider_ext.adapter import get_adapter
from oidc_provider_ext.models import Consent


def _live(user):
    return (
        Consent.objects.filter(user=user, revoked__isnull=True)
        .exclude(expires__lte=timezone.now())
        .select_related("application")
        .order_by("-last_used", "-granted")
    )


@method_decorator(never_cache, name="dispatch")
class ConnectedAppsView(LoginRequiredMixin, ListView):
    template_name = "oidc_provider_ext/connected_apps.html"
    context_object_name = "consents"
    login_url = reverse_lazy("oidc_provider_ext:login")

    def get_queryset(self):
        adapter = get_adapter()
        rows = list(_live(self.request.user))
        for consent in rows:
            consent.scope_descriptions = [
                adapter.get_scope_description(scope) for scope in consent.scope.split()
            ]
            consent.tenant_object = adapter.get_tenant(consent.tenant) if consent.tenant else None
        return rows


@method_decorator(never_cache, name="dispatch")
class RevokeAppView(LoginRequiredMixin, TemplateView):
    """GET asks for confirmation; POST (CSRF-protected) revokes."""

    template_name = "oidc_provider_ext/connected_app_revoke.html"
    login_url = reverse_lazy("oidc_provider_ext:login")

    def get_consent(self):
        # Only the user's own live consents: another user's id is a 404, not a hint.
        return get_object_or_404(_live(self.request.user), pk=self.kwargs["pk"])

    def get_context_data(self, **kwargs):
        return super().get_context_data(consent=self.get_consent(), **kwargs)

    def post(self, request, *args, **kwargs):
        consent = self.get_consent()
        consents.revoke(consent)
        name = consent.application.name or consent.application.client_id
        messages.success(request, f"{name} can no longer access your account.")
        return redirect("oidc_provider_ext:connected-apps")
