"""``/connect/jwks``: the provider's JWK Set (RFC 7517 5), every key that may verify a live token."""

from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import View

from oidc_provider_ext import keys
from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.internal.requests import decorated_view, rejecting_bad_requests
from oidc_provider_ext.views.backchannel import invalid_request

# No parameters (RFC 6749 3.1: unrecognised ones are ignored); the boundary bounds the body.
_boundary = rejecting_bad_requests(invalid_request, reads_parameters=False)


@decorated_view(csrf_exempt, login_not_required, _boundary)
class JwksView(View):
    def get(self, request, *args, **kwargs):
        response = JsonResponse(keys.jwks())
        response["Content-Type"] = "application/jwk-set+json"
        response["Access-Control-Allow-Origin"] = "*"
        # Short enough that a newly announced key is seen before it starts signing.
        response["Cache-Control"] = f"public, max-age={app_settings.JWKS_MAX_AGE_SECONDS}"
        return response
