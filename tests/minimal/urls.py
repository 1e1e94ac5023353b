"""startproject's URLconf plus README.md's one line."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("oidc_provider_ext.urls")),
]
