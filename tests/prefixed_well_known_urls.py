"""Test-only URLconf: the provider under /idp/, and RFC 8414 metadata at the host's root
(docs/operations.md, "Mounting under a path")."""

from django.urls import include, path

from oidc_provider_ext.urls import well_known_urlpatterns

urlpatterns = [
    path("idp/", include("oidc_provider_ext.urls")),
    path("", include((well_known_urlpatterns, "oidc_provider_ext_well_known"))),
]
