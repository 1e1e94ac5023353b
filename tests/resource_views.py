"""Test-only URLconf: the provider's endpoints plus small APIs protected by oidc_provider_ext.resource
(and by the DRF integration when djangorestframework is installed).

Every API names its audience (RFC 9068 4): the client_id AUDIENCE of the client the tests get tokens
for (tests/test_resource.py creates it), or a resource URI. The two ``setting-audience`` views name
none and rely on RESOURCE_SERVER_AUDIENCE, which the tests leave unset unless they set it: they
show that a resource server without an audience refuses every token (and check E011 fires)."""

from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.utils.decorators import method_decorator
from django.views import View

from oidc_provider_ext.resource import AccessTokenClaims, ProtectedResource, require_access_token

AUDIENCE = "client-x"
SERVICE_AUDIENCE = "service-y"  # a client-credentials client the DRF views also accept
RESOURCE_URI = "https://api.example.com"
# Two resource servers in one process (RFC 9728): one with a path, one at a host's root.
ORDERS = ProtectedResource(
    "https://api.example.com/orders", scopes_supported=["orders:read", "orders:write"], name="Orders"
)
BILLING = ProtectedResource("https://billing.example.com", scopes_supported=["billing"])


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


@require_access_token(audience=AUDIENCE)
def any_token(request: HttpRequest) -> JsonResponse:
    return claims_json(request.access_token_claims)


@require_access_token("profile", audience=AUDIENCE)
def profile(request: HttpRequest) -> JsonResponse:
    return claims_json(request.access_token_claims)


@require_access_token("profile", "admin", audience=AUDIENCE)
def admin(request: HttpRequest) -> JsonResponse:
    return claims_json(request.access_token_claims)


@require_access_token(audience=RESOURCE_URI)
def audience_api(request: HttpRequest) -> JsonResponse:
    return claims_json(request.access_token_claims)


@require_access_token("orders:read", resource=ORDERS)
def orders(request: HttpRequest) -> JsonResponse:
    return claims_json(request.access_token_claims)


@require_access_token(resource=BILLING)
def billing(request: HttpRequest) -> JsonResponse:
    return claims_json(request.access_token_claims)


@require_access_token()
def setting_audience(request: HttpRequest) -> JsonResponse:
    return claims_json(request.access_token_claims)


@require_access_token("profile", audience=AUDIENCE)
async def async_profile(request: HttpRequest) -> JsonResponse:
    return claims_json(request.access_token_claims, view="async")


@method_decorator(require_access_token("email", audience=[AUDIENCE]), name="dispatch")
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
    path("api/setting-audience", setting_audience, name="api-setting-audience"),
    path("api/orders", orders, name="api-orders"),
    path("api/billing", billing, name="api-billing"),
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

    class OurTokens(JWTAccessTokenAuthentication):
        audience = (AUDIENCE, SERVICE_AUDIENCE)

    class DRFProfile(APIView):
        authentication_classes = [OurTokens]
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

    class DRFSettingAudience(DRFProfile):
        authentication_classes = [JWTAccessTokenAuthentication]

    class OrdersTokens(JWTAccessTokenAuthentication):
        resource = ORDERS

    class DRFOrders(DRFProfile):
        authentication_classes = [OrdersTokens]
        required_scopes = ["orders:read"]

    urlpatterns += [
        path("drf/profile", DRFProfile.as_view(), name="drf-profile"),
        path("drf/admin", DRFAdmin.as_view(), name="drf-admin"),
        path("drf/misconfigured", DRFNoScopesDeclared.as_view(), name="drf-misconfigured"),
        path("drf/setting-audience", DRFSettingAudience.as_view(), name="drf-setting-audience"),
        path("drf/orders", DRFOrders.as_view(), name="drf-orders"),
    ]
