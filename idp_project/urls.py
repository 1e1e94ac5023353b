from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    # The demo relying party (the OIDC playground, docs/demo.md): the demo clients' redirect URI.
    path("demo-rp/", include("idp_project.demo_rp")),
    path("", include("oidc_provider_ext.urls")),
    path("", RedirectView.as_view(url="/.well-known/openid-configuration", permanent=False)),
]
