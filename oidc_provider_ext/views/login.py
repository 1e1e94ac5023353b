"""The hosted sign-in page of the authorization flow."""

from django.contrib.auth import views as auth_views
from django.utils import translation
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache

from oidc_provider_ext.forms import LoginForm
from oidc_provider_ext.views.authorize import _ui_language, pending_request_for_next


@method_decorator(never_cache, name="dispatch")
class LoginView(auth_views.LoginView):
    template_name = "oidc_provider_ext/login.html"
    form_class = LoginForm
    # Signed-in users who arrive here were sent to re-authenticate (prompt=login, max_age): ask
    # again. Every successful sign-in starts a new OP session (oidc_provider_ext.sessions).
    redirect_authenticated_user = False

    def dispatch(self, request, *args, **kwargs):
        pending = pending_request_for_next(request, request.GET.get(self.redirect_field_name, ""))
        self.pending_authorization = pending
        with translation.override(
            _ui_language(pending["ui_locales"]) if pending else translation.get_language()
        ):
            return super().dispatch(request, *args, **kwargs)

    def get_initial(self):
        initial = super().get_initial()
        # OIDC Core 3.1.2.1 login_hint: pre-fill the identifier the client already knows.
        hint = self.request.GET.get("login_hint") or (self.pending_authorization or {}).get("login_hint")
        if hint:
            initial["username"] = hint[:150]
        return initial

    def form_invalid(self, form):
        # As the source documents describe: bad credentials answer HTTP 400 Bad Request.
        return self.render_to_response(self.get_context_data(form=form), status=400)
