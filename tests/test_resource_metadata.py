"""A resource server describes itself (RFC 9728): its identifier is the aud its tokens must carry,
its metadata is served at /.well-known/oauth-protected-resource[/path], and every challenge points
at that document. Two resource servers live in one process here (tests/resource_views.py: ORDERS
and BILLING) and must never accept each other's tokens."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.urls import path

from oidc_provider_ext import checks
from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.resource import ProtectedResource, require_access_token, validate_access_token
from oidc_provider_ext.resource.metadata import WELL_KNOWN_PATH
from oidc_provider_ext.tokens import mint_access_token

from .conftest import oidc_settings
from .resource_views import AUDIENCE, BILLING, ORDERS

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.urls("tests.resource_views"),
    # Minted tokens have no DOT row; revocation is tests/test_resource.py's subject.
    pytest.mark.oidc_settings(RESOURCE_SERVER_CHECK_REVOCATION=False),
]

ORDERS_METADATA = "https://api.example.com/.well-known/oauth-protected-resource/orders"
BILLING_METADATA = "https://billing.example.com/.well-known/oauth-protected-resource"


def token_for(audience: str | list[str], *scopes: str, client_id: str = "mcp-client") -> str:
    """An access token as the provider mints it, for ``audience`` (RFC 8707: the resource)."""
    return mint_access_token(client_id=client_id, subject="42", scopes=list(scopes), extra={"aud": audience})


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


@pytest.fixture
def api():
    return Client()


# --- the metadata document ----------------------------------------------------------------------


def test_metadata_of_a_resource_with_a_path(api):
    response = api.get(f"{WELL_KNOWN_PATH}/orders")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Access-Control-Allow-Origin"] == "*"
    assert response.json() == {
        "resource": "https://api.example.com/orders",
        "authorization_servers": [app_settings.ISSUER],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["orders:read", "orders:write"],
        "resource_name": "Orders",
    }


def test_metadata_of_a_resource_at_the_root(api):
    document = api.get(WELL_KNOWN_PATH).json()
    assert document["resource"] == "https://billing.example.com"  # byte-exact: no slash added
    assert "resource_name" not in document


@pytest.mark.oidc_settings(ISSUER="https://id.example.com/tenant-a/")
def test_authorization_server_is_the_discovery_issuer_byte_for_byte(api):
    issuer = api.get("/.well-known/openid-configuration").json()["issuer"]
    assert issuer == "https://id.example.com/tenant-a"
    assert api.get(f"{WELL_KNOWN_PATH}/orders").json()["authorization_servers"] == [issuer]


@pytest.mark.oidc_settings(
    RESOURCE_SERVER_IDENTIFIER="https://api.example.com/v1/",
    RESOURCE_SERVER_SCOPES_SUPPORTED=["profile", "admin"],
    RESOURCE_SERVER_NAME="Example API",
    RESOURCE_SERVER_AUDIENCE=[AUDIENCE],
)
def test_metadata_of_the_configured_resource(api):
    # RFC 9728 3.1: the well-known path goes between the host and the identifier's path.
    document = api.get(f"{WELL_KNOWN_PATH}/v1/").json()
    assert document == {
        "resource": "https://api.example.com/v1/",
        "authorization_servers": [app_settings.ISSUER],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["profile", "admin"],
        "resource_name": "Example API",
    }
    assert AUDIENCE not in str(document)  # further audiences are never published
    assert api.get(f"{WELL_KNOWN_PATH}/v1").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        f"{WELL_KNOWN_PATH}/unknown",
        f"{WELL_KNOWN_PATH}/orders/",
        f"{WELL_KNOWN_PATH}/ORDERS",
        f"{WELL_KNOWN_PATH}/orders/x",
        f"{WELL_KNOWN_PATH}/../orders",
        f"{WELL_KNOWN_PATH}/%2e%2e/orders",
        f"{WELL_KNOWN_PATH}/x/%2e%2e/orders",
        f"{WELL_KNOWN_PATH}/orders%00",
        f"{WELL_KNOWN_PATH}/%00",
        f"{WELL_KNOWN_PATH}/orders%0a",
        f"{WELL_KNOWN_PATH}/%ff%fe",
        f"{WELL_KNOWN_PATH}/orders%3Fx=1",
        f"{WELL_KNOWN_PATH}//orders",
        f"{WELL_KNOWN_PATH}/" + "a" * 1_000_000,
        f"{WELL_KNOWN_PATH}/" + "a/" * 10_000,
        f"{WELL_KNOWN_PATH}x",
    ],
)
def test_a_path_that_is_no_configured_resource_is_404(api, path):
    response = api.get(path)
    assert response.status_code == 404


@pytest.mark.urls("idp_project.urls")
def test_no_resource_at_all_is_404_not_500(api):
    assert Client(raise_request_exception=False).get(WELL_KNOWN_PATH).status_code == 404


def test_metadata_takes_no_other_method(api):
    assert api.post(f"{WELL_KNOWN_PATH}/orders").status_code == 405


@pytest.mark.urls("tests.resource_only_urls")
def test_metadata_urlconf_helper_in_an_api_only_project(api):
    document = api.get(f"{WELL_KNOWN_PATH}/v2").json()
    assert document["resource"] == "https://reports.example.com/v2"
    response = api.get("/v2/reports")
    assert response["WWW-Authenticate"] == (
        'Bearer realm="api", scope="reports", '
        'resource_metadata="https://reports.example.com/.well-known/oauth-protected-resource/v2"'
    )
    good = token_for("https://reports.example.com/v2", "reports")
    assert api.get("/v2/reports", **bearer(good)).json() == {"sub": "42"}


# --- challenges ---------------------------------------------------------------------------------


def test_401_without_a_token_points_at_the_metadata(api):
    response = api.get("/api/orders")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == (
        f'Bearer realm="api", scope="orders:read", resource_metadata="{ORDERS_METADATA}"'
    )
    assert api.get("/api/billing")["WWW-Authenticate"] == (
        f'Bearer realm="api", resource_metadata="{BILLING_METADATA}"'
    )


def test_a_token_for_this_resource_is_accepted(api):
    response = api.get("/api/orders", **bearer(token_for(ORDERS.identifier, "orders:read")))
    assert response.status_code == 200, response.content
    assert response.json()["sub"] == "42"


def test_insufficient_scope_is_403_with_scope_and_metadata(api):
    response = api.get("/api/orders", **bearer(token_for(ORDERS.identifier, "orders:write")))
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    challenge = response["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="api", error="insufficient_scope", error_description="')
    assert challenge.endswith(f'scope="orders:read", resource_metadata="{ORDERS_METADATA}"')


@pytest.mark.parametrize(
    ("path", "audience", "metadata"),
    [
        ("/api/billing", ORDERS.identifier, BILLING_METADATA),
        ("/api/orders", BILLING.identifier, ORDERS_METADATA),
        # Near misses: compared byte for byte, never normalised.
        ("/api/orders", "https://api.example.com/orders/", ORDERS_METADATA),
        ("/api/orders", "https://API.example.com/orders", ORDERS_METADATA),
        ("/api/orders", "https://api.example.com:443/orders", ORDERS_METADATA),
        ("/api/orders", "https://api.example.com", ORDERS_METADATA),
        ("/api/orders", "https://api.example.com/orders/admin", ORDERS_METADATA),
        ("/api/orders", AUDIENCE, ORDERS_METADATA),
    ],
)
def test_a_token_for_another_resource_is_invalid_token(api, path, audience, metadata):
    response = api.get(path, **bearer(token_for(audience, "orders:read", "billing")))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert "aud" in response.json()["error_description"]
    assert response["WWW-Authenticate"].endswith(f'resource_metadata="{metadata}"')


def test_a_token_for_both_resources_is_accepted_by_both(api):
    # RFC 9068 4: aud may list several resources; each server finds itself in it.
    token = token_for([ORDERS.identifier, BILLING.identifier], "orders:read")
    assert api.get("/api/orders", **bearer(token)).status_code == 200
    assert api.get("/api/billing", **bearer(token)).status_code == 200


def test_an_id_token_is_refused(api):
    from oidc_provider_ext import keys

    id_token = keys.sign(
        {
            "iss": app_settings.ISSUER,
            "sub": "42",
            "aud": ORDERS.identifier,
            "client_id": "c",
            "iat": 1,
            "exp": 2**31,
            "jti": "j",
            "scope": "orders:read",
        },
        typ="JWT",
    )
    response = api.get("/api/orders", **bearer(id_token))
    assert response.status_code == 401
    assert "at+jwt" in response.json()["error_description"]


# --- the configured identifier ------------------------------------------------------------------


@pytest.mark.oidc_settings(RESOURCE_SERVER_IDENTIFIER="https://api.example.com/v1")
def test_views_without_a_resource_use_the_configured_identifier(api):
    accepted = token_for("https://api.example.com/v1")
    assert api.get("/api/setting-audience", **bearer(accepted)).status_code == 200
    # A token with the client_id as aud (no resource indicator) is not for this identifier ...
    response = api.get("/api/setting-audience", **bearer(token_for(AUDIENCE)))
    assert response.status_code == 401
    assert response["WWW-Authenticate"].endswith(
        'resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/v1"'
    )
    # ... and a view's own resource replaces the configured one: no token crosses over.
    assert (
        api.get("/api/orders", **bearer(token_for("https://api.example.com/v1", "orders:read"))).status_code
        == 401
    )


@pytest.mark.oidc_settings(
    RESOURCE_SERVER_IDENTIFIER="https://api.example.com/v1", RESOURCE_SERVER_AUDIENCE=AUDIENCE
)
def test_audience_setting_adds_accepted_values(api):
    assert api.get("/api/setting-audience", **bearer(token_for(AUDIENCE))).status_code == 200
    assert api.get("/api/setting-audience", **bearer(token_for("other-client"))).status_code == 401


BAD_IDENTIFIERS = [
    "",
    "*",
    "api.example.com",
    "/orders",
    "http://api.example.com",  # plain http only on loopback
    "ftp://api.example.com",
    "https://",
    "https://api.example.com/orders?x=1",
    "https://api.example.com/orders#x",
    "https://user:pw@api.example.com",
    "https://api.example.com/a/../orders",
    "https://api.example.com/./orders",
    "https://api.example.com/ord ers",
    "https://api.example.com/orders\x00",
    "https://api.example.com/orders\n",
    " https://api.example.com",
    "https://api.example.com/" + "a" * 3000,
    ["https://api.example.com"],
    42,
]


@pytest.mark.parametrize("value", BAD_IDENTIFIERS)
def test_malformed_identifiers_are_configuration_errors(settings, value):
    with pytest.raises((ImproperlyConfigured, TypeError)):
        require_access_token(resource=value)
    if isinstance(value, str):
        with pytest.raises(ImproperlyConfigured):
            ProtectedResource(value)
    oidc_settings(settings, RESOURCE_SERVER_IDENTIFIER=value)
    with pytest.raises((ImproperlyConfigured, TypeError)):
        validate_access_token(token_for("https://api.example.com"))
    assert [m.id for m in run_checks() if m.id == checks.E011] == [checks.E011]
    # The metadata of the other resources is still served; the broken one is not: never a 500.
    quiet = Client(raise_request_exception=False)
    assert quiet.get(f"{WELL_KNOWN_PATH}/orders").status_code == 200
    assert quiet.get(f"{WELL_KNOWN_PATH}/a/../orders").status_code == 404


@pytest.mark.parametrize(
    "value",
    ["http://127.0.0.1:8123/mcp", "http://localhost/mcp", "https://api.example.com/", "https://x.test"],
)
def test_loopback_http_and_https_identifiers_are_accepted(value):
    assert ProtectedResource(value).identifier == value


@pytest.mark.parametrize("value", [["bad scope"], ["a\x00"], "profile", [""], [1]])
def test_malformed_scopes_supported_are_configuration_errors(settings, value):
    with pytest.raises(ImproperlyConfigured):
        ProtectedResource("https://api.example.com", scopes_supported=value)
    oidc_settings(
        settings, RESOURCE_SERVER_IDENTIFIER="https://api.example.com", RESOURCE_SERVER_SCOPES_SUPPORTED=value
    )
    assert [m.id for m in run_checks() if m.id == checks.E011] == [checks.E011]


def test_check_e011_is_quiet_with_an_identifier(settings):
    def e011():
        return [message for message in run_checks() if message.id == checks.E011]

    assert e011()  # tests/resource_views.py has views relying on the settings
    oidc_settings(settings, RESOURCE_SERVER_IDENTIFIER="https://api.example.com")
    assert e011() == []


# --- Django REST framework ----------------------------------------------------------------------

try:
    import rest_framework  # noqa: F401

    HAS_DRF = True
except ImportError:
    HAS_DRF = False


@pytest.mark.skipif(not HAS_DRF, reason="djangorestframework is not installed (pip install -e '.[test]')")
class TestDRF:
    def test_401_points_at_the_metadata(self, api):
        response = api.get("/drf/orders")
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == (
            f'Bearer realm="api", scope="orders:read", resource_metadata="{ORDERS_METADATA}"'
        )

    def test_token_for_the_resource_is_accepted(self, api):
        assert (
            api.get("/drf/orders", **bearer(token_for(ORDERS.identifier, "orders:read"))).status_code == 200
        )

    def test_token_for_another_resource_is_401(self, api):
        response = api.get("/drf/orders", **bearer(token_for(BILLING.identifier, "orders:read")))
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith('Bearer realm="api", error="invalid_token"')
        assert response["WWW-Authenticate"].endswith(f'resource_metadata="{ORDERS_METADATA}"')

    def test_insufficient_scope_is_403_with_scope_and_metadata(self, api):
        response = api.get("/drf/orders", **bearer(token_for(ORDERS.identifier, "billing")))
        assert response.status_code == 403
        assert response["WWW-Authenticate"].endswith(
            f'scope="orders:read", resource_metadata="{ORDERS_METADATA}"'
        )

    def test_the_resource_is_checked_when_the_class_is_defined(self):
        from oidc_provider_ext.contrib.drf import JWTAccessTokenAuthentication

        with pytest.raises(ImproperlyConfigured):

            class Bad(JWTAccessTokenAuthentication):
                resource = "http://api.example.com"


# --- check W040: the metadata is routed -----------------------------------------------------------


@require_access_token(resource="https://lost.example.com/api")
def _lost(request):  # pragma: no cover - never called
    raise AssertionError


# This module doubles as a URLconf of an API that forgot the metadata patterns.
urlpatterns = [path("api", _lost)]


def _w040() -> list[str]:
    return [message.msg for message in run_checks() if message.id == checks.W040]


def test_check_w040_quiet_when_every_resource_is_served():
    assert _w040() == []


@pytest.mark.urls("tests.test_resource_metadata")
def test_check_w040_names_a_resource_whose_metadata_is_not_routed(settings):
    (message,) = _w040()
    assert "'https://lost.example.com/api'" in message
    assert "/.well-known/oauth-protected-resource/api" in message
    oidc_settings(settings, RESOURCE_SERVER_IDENTIFIER="https://api.example.com/v3")
    assert len(_w040()) == 2


@pytest.mark.urls("tests.resource_only_urls")
def test_check_w040_quiet_with_the_urlconf_helper(settings):
    oidc_settings(settings, RESOURCE_SERVER_IDENTIFIER="https://reports.example.com/other")
    assert _w040() == []  # the helper's pattern covers every path below the well-known one
