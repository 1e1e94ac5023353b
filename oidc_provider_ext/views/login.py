"""The hosted sign-in page of the authorization flow."""

from django.contrib.auth import views as auth_views
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache

from oidc_provider_ext.forms import LoginForm

AUTH_TIME_SESSION_KEY = "oidc_auth_time"


@method_decorator(never_cache, name="dispatch")
class LoginView(auth_views.LoginView):
    template_name = "oidc_provider_ext/login.html"
    form_class = LoginForm
    # Signed-in users who arrive here were sent to re-authenticate (prompt=login): ask again.
    redirect_authenticated_user = False

    def form_valid(self, form):
        response = super().form_valid(form)
        self.request.session[AUTH_TIME_SESSION_KEY] = int(timezone.now().timestamp())
        return response

    def form_invalid(self, form):
        # As the source documents describe: bad credentials answer HTTP 400 Bad Request.
        return self.render_to_response(self.get_context_data(form=form), status=400)
