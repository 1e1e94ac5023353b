"""RFC 8414 authorization server metadata, and OIDC discovery from the same builder."""

import pytest
from django.core.checks import run_checks

from oidc_provider_ext import checks

from .conftest import oidc_settings

AS_METADATA = "/.well-known/oauth-authorization-server"
DISCOVERY = "/.well-known/openid-configuration"


def _ids():
    return {m.id for m in run_checks() if (m.id or "").startswith("oidc_provider_ext.")}


def test_rfc8414_metadata_is_the_discovery_document(client, settings):
    metadata = client.get(AS_METADATA)
    assert metadata.status_code == 200
    assert metadata["Content-Type"] == "application/json"
    assert metadata["Access-Control-Allow-Origin"] == "*"
    assert metadata.json() == client.get(DISCOVERY).json()
    body = metadata.json()
    # What an MCP client checks in the first document it reads.
    assert body["code_challenge_methods_supported"] == ["S256"]
    assert "scopes_supported" in body and "token_endpoint" in body and "authorization_endpoint" in body
    assert body["response_types_supported"] == ["code"]
    assert "resource_indicators_supported" not in body  # no such member in any registry


@pytest.mark.parametrize("configured", ["https://id.example.com", "https://id.example.com/"])
def test_issuer_is_byte_identical_without_an_added_slash(client, settings, configured):
    oidc_settings(settings, ISSUER=configured)
    for url in (AS_METADATA, DISCOVERY):
        assert client.get(url).json()["issuer"] == "https://id.example.com"


@pytest.mark.parametrize(
    "path",
    [
        AS_METADATA + "/",
        AS_METADATA + "/idp",
        DISCOVERY + "/idp",
        "/.well-known/does-not-exist",
        "/.well-known/oauth-authorization-server/a/b/c",
        "/.well-known/oauth-authorization-server/%00",
        "/.well-known/oauth-authorization-server/" + "a" * 5000,
    ],
)
def test_other_well_known_paths_are_404_not_5xx(client, path):
    assert client.get(path).status_code == 404


class TestIssuerWithAPath:
    @pytest.fixture(autouse=True)
    def _mounted_under_idp(self, settings):
        settings.ROOT_URLCONF = "tests.prefixed_well_known_urls"
        oidc_settings(settings, ISSUER="https://id.example.com/idp")

    def test_path_insertion(self, client):
        # RFC 8414 3.1: https://id.example.com/idp -> /.well-known/oauth-authorization-server/idp
        inserted = client.get(AS_METADATA + "/idp")
        assert inserted.status_code == 200
        assert inserted.json()["issuer"] == "https://id.example.com/idp"
        assert inserted.json()["token_endpoint"] == "https://id.example.com/idp/connect/token"
        # The same document at the OIDC path-insertion and path-appending URLs (MCP clients try
        # them in this order).
        assert client.get(DISCOVERY + "/idp").json() == inserted.json()
        assert client.get("/idp" + DISCOVERY).json() == inserted.json()

    @pytest.mark.parametrize(
        "path", [AS_METADATA, AS_METADATA + "/other", AS_METADATA + "/idp/x", "/idp" + AS_METADATA + "/idp"]
    )
    def test_a_path_that_is_not_the_issuers_is_404(self, client, path):
        assert client.get(path).status_code == 404

    def test_w040_clean(self):
        assert checks.W043 not in _ids()


def test_w040_metadata_not_at_the_root(settings):
    settings.ROOT_URLCONF = "tests.prefixed_urls"  # the provider under /idp/, nothing at the root
    oidc_settings(settings, ISSUER="https://id.example.com/idp")
    message = next(m for m in run_checks() if m.id == checks.W043)
    assert "/.well-known/oauth-authorization-server/idp" in message.msg
    assert "well_known_urlpatterns" in message.hint


def test_w040_clean_for_the_example_project():
    assert checks.W043 not in _ids()
