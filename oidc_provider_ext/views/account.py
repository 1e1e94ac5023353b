"""The user's own account pages: connected apps (consents) and signed-in sessions."""

from django.contrib import messages
from django.contrib.auth import logout as django_logout
from django.contrib.auth.mixins import LoginRequiredMixin
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse_lazy
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.generic import ListView, TemplateView, View

from oidc_provider_ext.adapter import get_adapter
from oidc_provider_ext.internal import consents, op_sessions, user_agents
from oidc_provider_ext.internal.locales import in_ui_language
from oidc_provider_ext.internal.requests import decorated_view, rejecting_bad_requests
from oidc_provider_ext.models import OPSession, ResourceServer
from oidc_provider_ext.views.errors import boundary_page

# The request boundary, and Django's CSRF check after it (the middleware would read a body the
# boundary has not vetted yet).
_boundary = rejecting_bad_requests(boundary_page, csrf=True)


def _live(user):
    return consents.live_consents(user).select_related("application").order_by("-last_used", "-granted")


@decorated_view(never_cache, in_ui_language, _boundary)
class ConnectedAppsView(LoginRequiredMixin, ListView):
    template_name = "oidc_provider_ext/connected_apps.html"
    context_object_name = "consents"
    login_url = reverse_lazy("oidc_provider_ext:login")

    def get_queryset(self):
        adapter = get_adapter()
        rows = list(_live(self.request.user))
        granted = {consent.pk: consents.granted_by_resource(consent) for consent in rows}
        identifiers = {key for by_resource in granted.values() for key in by_resource if key}
        names = dict(
            ResourceServer.objects.filter(identifier__in=identifiers).values_list("identifier", "name")
        ) if identifiers else {}  # fmt: skip
        for consent in rows:
            by_resource = granted[consent.pk]
            # What the client may do itself, then per API (RFC 8707: consent is given per API).
            consent.scope_descriptions = [
                adapter.get_scope_description(scope)
                for scope in sorted(by_resource.get(consents.NO_RESOURCE, ()))
            ]
            consent.apis = [
                (names.get(key) or key, [adapter.get_scope_description(scope) for scope in sorted(scopes)])
                for key, scopes in sorted(by_resource.items())
                if key
            ]
            consent.tenant_object = adapter.get_tenant(consent.tenant) if consent.tenant else None
        return rows


@decorated_view(never_cache, in_ui_language, _boundary)
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
        messages.success(request, _("%(name)s can no longer access your account.") % {"name": name})
        return redirect("oidc_provider_ext:connected-apps")


@decorated_view(never_cache, in_ui_language, _boundary)
class SessionsView(LoginRequiredMixin, ListView):
    """The user's signed-in sessions (device/browser, when), each can be ended."""

    template_name = "oidc_provider_ext/sessions.html"
    context_object_name = "op_sessions"
    login_url = reverse_lazy("oidc_provider_ext:login")

    def get_queryset(self):
        here = {entry["id"] for entry in op_sessions.browser_entries(self.request).values()}
        rows = list(
            OPSession.objects.filter(user=self.request.user.pk, ended__isnull=True).order_by("-auth_time")
        )
        for op_session in rows:
            op_session.is_current = op_session.pk in here  # type: ignore[attr-defined]  # for the template
            op_session.device = user_agents.describe(op_session.user_agent)  # type: ignore[attr-defined]
        return rows


@decorated_view(never_cache, in_ui_language, _boundary)
class EndOPSessionView(LoginRequiredMixin, View):
    login_url = reverse_lazy("oidc_provider_ext:login")

    def post(self, request, pk: int, *args, **kwargs):
        op_session = get_object_or_404(OPSession, pk=pk, user=request.user, ended__isnull=True)
        here = op_sessions.browser_entries(request)
        if any(entry["id"] == op_session.pk for entry in here.values()):
            if len(here) == 1:
                django_logout(request)  # this browser's last session: sign out (ends it, see sessions)
                return redirect("oidc_provider_ext:login")
            op_sessions.forget(request, op_session.pk)
        # Another device learns on its next request that its session ended (op_sessions.browser_entries).
        op_sessions.end([op_session])
        messages.success(request, _("That session is signed out."))
        return redirect("oidc_provider_ext:sessions")
