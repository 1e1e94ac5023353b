"""Test-only URLconf of an API project that installs only the resource-server part: the metadata
URLconf helper and one protected view, no provider endpoints."""

from django.http import HttpRequest, JsonResponse
from django.urls import include, path

from oidc_provider_ext.resource import ProtectedResource, require_access_token

REPORTS = ProtectedResource("https://reports.example.com/v2", scopes_supported=["reports"])


@require_access_token("reports", resource=REPORTS)
def reports(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"sub": request.access_token_claims.sub})


urlpatterns = [
    path("", include("oidc_provider_ext.resource.urls")),
    path("v2/reports", reports),
]
