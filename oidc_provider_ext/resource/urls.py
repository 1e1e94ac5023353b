"""URLconf of the protected-resource metadata (RFC 9728 3), for an API project that installs only
the resource-server part. In its root URLconf::

    path("", include("oidc_provider_ext.resource.urls"))

It must be mounted at the root: the metadata URL puts the well-known path between the host and the
identifier's path (RFC 9728 3.1). The provider's own ``oidc_provider_ext.urls`` includes these
patterns already.
"""

from django.urls import path, re_path

from .views import ProtectedResourceMetadataView

app_name = "oidc_provider_ext_resource"

protected_resource_urlpatterns = [
    path(
        ".well-known/oauth-protected-resource",
        ProtectedResourceMetadataView.as_view(),
        name="protected-resource-metadata",
    ),
    # RFC 9728 3.1: a resource with a path has its metadata at the well-known path + that path.
    re_path(
        r"^\.well-known/oauth-protected-resource/",
        ProtectedResourceMetadataView.as_view(),
        name="protected-resource-metadata-path",
    ),
]

urlpatterns = protected_resource_urlpatterns
