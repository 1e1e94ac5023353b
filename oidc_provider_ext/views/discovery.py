"""Authorization server metadata: one document, served as OpenID Provider metadata (OIDC Discovery
1.0 section 3) and as OAuth 2.0 authorization server metadata (RFC 8414 section 2).

Every member of the OIDC document is registered in IANA's "OAuth Authorization Server Metadata"
registry (RFC 8414 7.1.2, RFC 9207, RP-Initiated and Back-Channel Logout), so both documents are
the same dict from :func:`provider_metadata`: ``issuer`` is byte-identical (no added slash) and a
client reading either first finds everything.
"""

from urllib.parse import urlsplit

from django.contrib.auth.decorators import login_not_required
from django.http import Http404, JsonResponse
from django.urls import reverse
from django.views.generic import View

from oidc_provider_ext import keys
from oidc_provider_ext.adapter import get_adapter
from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.internal.requests import decorated_view, rejecting_bad_requests
from oidc_provider_ext.views.backchannel import invalid_request


def endpoint_url(name: str) -> str:
    """Absolute URL of one of our endpoints, built from the configured issuer, never the Host header."""
    issuer = urlsplit(app_settings.ISSUER)
    return f"{issuer.scheme}://{issuer.netloc}{reverse(name)}"


# Claims every ID token carries (OIDC Core 2), besides what the adapter releases.
PROTOCOL_CLAIMS = (
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "azp",
    "sid",
    "at_hash",
)


def provider_metadata() -> dict:
    """Only what this provider really supports (each value is exercised by tests). The one builder
    of both metadata documents."""
    adapter = get_adapter()
    metadata = {
        "issuer": app_settings.ISSUER,
        "authorization_endpoint": endpoint_url("oidc_provider_ext:authorize"),
        "token_endpoint": endpoint_url("oidc_provider_ext:token"),
        "userinfo_endpoint": endpoint_url("oidc_provider_ext:userinfo"),
        "jwks_uri": endpoint_url("oidc_provider_ext:jwks"),
        "revocation_endpoint": endpoint_url("oidc_provider_ext:revocation"),
        "introspection_endpoint": endpoint_url("oidc_provider_ext:introspect"),
        "end_session_endpoint": endpoint_url("oidc_provider_ext:endsession"),
        "scopes_supported": adapter.get_scopes_supported(),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": [
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:device_code",  # RFC 8628 4
        ],
        "device_authorization_endpoint": endpoint_url("oidc_provider_ext:device-authorization"),
        "subject_types_supported": ["public"],
        # Each client picks one with id_token_signed_response_alg; RS256 comes first (OIDC Core 15.1).
        "id_token_signing_alg_values_supported": list(keys.SUPPORTED_ALGS),
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,  # RFC 9207
        "claims_supported": [*PROTOCOL_CLAIMS, *adapter.claims_supported],
        "claim_types_supported": ["normal"],
        "claims_parameter_supported": True,
        # Back-Channel Logout 1.0 section 2.1: logout tokens always carry sid.
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "acr_values_supported": list(adapter.acr_values_supported),
        "ui_locales_supported": app_settings.UI_LOCALES,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        **_self_registration_metadata(),
    }
    # Optional features add their members here, one line each, only when they are enabled (a
    # document advertises exactly what works): registration_endpoint (RFC 7591),
    # client_id_metadata_document_supported, device_authorization_endpoint (RFC 8628).
    # Not advertised: RFC 8707 defines no metadata member for resource indicators.
    return metadata


def _self_registration_metadata() -> dict:
    """Clients that register themselves (views/registration.py, docs/registration.md): RFC 7591 3
    and the client ID metadata document draft. Only what is switched on is advertised."""
    from oidc_provider_ext.views.registration import registration_endpoint

    metadata: dict = {}
    endpoint = registration_endpoint()
    if endpoint:
        metadata["registration_endpoint"] = endpoint
    if app_settings.CLIENT_ID_METADATA_DOCUMENTS:
        metadata["client_id_metadata_document_supported"] = True
    return metadata


# Public, and they take no parameters (RFC 6749 3.1: unrecognised ones are ignored); the boundary
# bounds the body.
_metadata_endpoint = decorated_view(
    login_not_required, rejecting_bad_requests(invalid_request, reads_parameters=False)
)


def _metadata_response() -> JsonResponse:
    response = JsonResponse(provider_metadata())
    # Browser-based clients (and MCP clients in a browser) read it cross-origin.
    response["Access-Control-Allow-Origin"] = "*"
    response["Cache-Control"] = "public, max-age=3600"
    return response


@_metadata_endpoint
class DiscoveryView(View):
    """``ISSUER + /.well-known/openid-configuration`` (OIDC Discovery 4, path appended)."""

    def get(self, request, *args, **kwargs):
        return _metadata_response()


@_metadata_endpoint
class AuthorizationServerMetadataView(View):
    """RFC 8414 3: ``/.well-known/oauth-authorization-server`` with the issuer's path, if any,
    *inserted* after it (``https://host/idp`` -> ``/.well-known/oauth-authorization-server/idp``),
    at the host's root. The same insertion is served for OIDC discovery (``/.well-known/
    openid-configuration/idp``), which MCP clients try next. A path that is not the issuer's is 404:
    RFC 8414 3.3 requires the issuer in the document to be the one the URL was built from."""

    def get(self, request, *args, **kwargs):
        if request.path not in metadata_paths():
            raise Http404("No authorization server metadata at this path.")
        return _metadata_response()


AS_METADATA = "/.well-known/oauth-authorization-server"  # RFC 8414 3.1
OIDC_DISCOVERY = "/.well-known/openid-configuration"


def metadata_paths() -> tuple[str, ...]:
    """Where, from the host's root, the issuer's path-inserted metadata is served (RFC 8414 3)."""
    issuer_path = urlsplit(app_settings.ISSUER).path
    return (AS_METADATA + issuer_path, OIDC_DISCOVERY + issuer_path) if issuer_path else (AS_METADATA,)
