"""Test-only URLconf: the provider's endpoints plus small APIs protected by oidc_provider_ext.resource
(and by the DRF integration when djangorestframework is installed)."""

from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.utils.decorators import method_decorator
from django.views import View

from oidc_provider_ext.resource import AccessTokenClaims, require_access_token


def claims_json(claims: AccessTokenClaims, **extra) -> JsonResponse:
    return JsonResponse(
        {
            "sub": claims.sub,
            "client_id": claims.client_id,
            "scopes": list(claims.scopes),
            "jti": claims.jti,
            "has_resource_owner": claims.has_resource_owner,
            **extra,
        }
    )


@require_access_token()
def any_token(request: HttpRequest) -> JsonResponse:
    return claims_json(request.access_token_claims)


@require_access_token("profile")
def profile(request: HttpRequest) -> JsonResponse:
    return claims_json(request.access_token_claims)


@require_access_token("profile", "admin")
def admin(request: HttpRequest) -> JsonResponse:
    return claims_json(request.access_token_claims)


@require_access_token(audience="https://api.example.com")
def audience_api(request: HttpRequest) -> JsonResponse:
    return claims_json(request.access_token_claims)


@require_access_token("profile")
async def async_profile(request: HttpRequest) -> JsonResponse:
    return claims_json(request.access_token_claims, view="async")


@method_decorator(require_access_token("email"), name="dispatch")
class EmailView(View):
    def get(self, request: HttpRequest) -> JsonResponse:
        return claims_json(request.access_token_claims)

    def post(self, request: HttpRequest) -> JsonResponse:
        return claims_json(request.access_token_claims, method="POST")


urlpatterns = [
    path("", include("oidc_provider_ext.urls")),
    path("api/any", any_token, name="api-any"),
    path("api/profile", profile, name="api-profile"),
    path("api/admin", admin, name="api-admin"),
    path("api/audience", audience_api, name="api-audience"),
    path("api/async-profile", async_profile, name="api-async-profile"),
    path("api/email", EmailView.as_view(), name="api-email"),
]

try:
    import rest_framework  # noqa: F401
except ImportError:  # the DRF tests skip themselves
    pass
else:
    from rest_framework.renderers import JSONRenderer
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from oidc_provider_ext.contrib.drf import HasScopes, JWTAccessTokenAuthentication

    class DRFProfile(APIView):
        authentication_classes = [JWTAccessTokenAuthentication]
        permission_classes = [HasScopes]
        renderer_classes = [JSONRenderer]
        required_scopes = ["profile"]

        def get(self, request):
            user = request.user
            return Response(
                {
                    "user": user.get_username() if user.is_authenticated else None,
                    "sub": request.auth.sub,
                    "scopes": list(request.auth.scopes),
                }
            )

        def post(self, request):
            return self.get(request)

    class DRFAdmin(DRFProfile):
        required_scopes = ["profile", "admin"]

    class DRFNoScopesDeclared(DRFProfile):
        required_scopes = None

    urlpatterns += [
        path("drf/profile", DRFProfile.as_view(), name="drf-profile"),
        path("drf/admin", DRFAdmin.as_view(), name="drf-admin"),
        path("drf/misconfigured", DRFNoScopesDeclared.as_view(), name="drf-misconfigured"),
    ]
