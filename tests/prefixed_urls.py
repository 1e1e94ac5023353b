"""Test-only URLconf: the provider mounted under /idp/ (docs/operations.md, "Mounting under a path")."""

from django.urls import include, path

urlpatterns = [path("idp/", include("oidc_provider_ext.urls"))]
