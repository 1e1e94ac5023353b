"""Review 1 (RFC 8707 / RFC 8414 / RFC 9728 merge 5e2e67d): reproducing tests for the findings.

Each test asserts the behaviour the product SHOULD have; it fails on 5e2e67d.
"""

from __future__ import annotations

import re

import pytest
from oauth2_provider.models import get_application_model

from oidc_provider_ext.models import AuthorizationGrant, Consent
from oidc_provider_ext.resource import InvalidToken, validate_access_token

from . import presets
from .factories import ApplicationFactory, ResourceServerFactory
from .flow import (
    authorize_url,
    consent,
    exchange,
    get_code,
    login,
    query_of,
    refresh,
    token_request,
    verify_jwt,
)

pytestmark = [pytest.mark.django_db, pytest.mark.oidc_settings(presets.API_SCOPES)]

API = "https://api.example.com/mcp"
OTHER_API = "https://other.example.com/"

# RFC 6749 4.1.2.1 / 5.2: error_description is limited to %x20-21 / %x23-5B / %x5D-7E.
ERROR_DESCRIPTION = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")


# --- F2: a client whose client_id is an API's identifier gets tokens that API accepts -----------------


def test_a_client_named_like_a_resource_server_cannot_mint_tokens_for_it(browser, rp, user, confidential_app):
    # The API allows only confidential_app.
    ResourceServerFactory(identifier=API, scopes="api:read", allowed_clients=[confidential_app])
    # A client (admin-created; later DCR / client-id metadata documents) whose client_id is the
    # API's identifier. ResourceServer.clean() refuses the other order, nothing refuses this one.
    intruder = ApplicationFactory(client_id=API)
    problems = None
    try:
        intruder.full_clean()
    except Exception as exc:  # noqa: BLE001 - any refusal is the fix
        problems = exc
    if problems is not None:
        return
    # Its tokens without a resource indicator carry aud = its client_id = the API's identifier...
    code, _ = get_code(browser, intruder, user, scope="openid api:read api:write")
    token = exchange(rp, intruder, code).json()["access_token"]
    claims = verify_jwt(token, typ="at+jwt")
    # ...and the API (which never allowed this client, and does not accept api:write) takes them.
    with pytest.raises(InvalidToken):
        accepted = validate_access_token(token, resource=API)
        pytest.fail(f"API accepted a token of a client it does not allow: {accepted.client_id} {claims}")


# --- F4: using the refresh token for a second API kills the first API's access token ------------------


def test_a_token_for_a_second_resource_does_not_revoke_the_first(
    browser, rp, user, confidential_app, two_apis
):
    # RFC 8707 2.2 / docs: "the client asks one token per resource (a refresh token can be exchanged
    # for each)". Asking for B must not end the live token for A.
    code, _ = get_code(
        browser, confidential_app, user, scope="openid offline_access api:read", resource=[API, OTHER_API]
    )
    first = exchange(rp, confidential_app, code, resource=API).json()
    assert validate_access_token(first["access_token"], resource=API)
    second = refresh(rp, confidential_app, first["refresh_token"], resource=OTHER_API)
    assert second.status_code == 200, second.content
    assert validate_access_token(second.json()["access_token"], resource=OTHER_API)
    validate_access_token(first["access_token"], resource=API)  # raises "expired" on 5e2e67d


Application = get_application_model()
