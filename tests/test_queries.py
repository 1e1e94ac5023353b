"""Query counts per endpoint are deterministic, so they are asserted exactly (performance itself
is measured in benchmarks/). Counts include the SAVEPOINT/RELEASE pair DOT's atomic block issues
inside the test transaction; in production that pair is a BEGIN/COMMIT Django does not count."""

import pytest
from django.urls import reverse

from .flow import exchange, get_code, token_request

pytestmark = pytest.mark.django_db


@pytest.fixture
def warm(browser, rp, user, confidential_app):
    """One full exchange first: the signing key exists and the key snapshot is loaded."""
    code, _ = get_code(browser, confidential_app, user)
    assert exchange(rp, confidential_app, code).status_code == 200


def test_code_exchange(warm, browser, rp, user, confidential_app, django_assert_num_queries):
    code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
    # grant, client, redeem UPDATE, ID token row, savepoint, access token, refresh token,
    # grant link UPDATE, release
    with django_assert_num_queries(9):
        assert exchange(rp, confidential_app, code).status_code == 200


def test_userinfo(warm, browser, rp, user, confidential_app, django_assert_num_queries):
    code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
    access_token = exchange(rp, confidential_app, code).json()["access_token"]
    # access token (+ user, client), the grant's requested claims
    with django_assert_num_queries(2):
        response = rp.get(reverse("oidc_provider_ext:userinfo"), HTTP_AUTHORIZATION=f"Bearer {access_token}")
    assert response.status_code == 200


def test_refresh(warm, browser, rp, user, confidential_app, django_assert_num_queries):
    code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
    refresh_token = exchange(rp, confidential_app, code).json()["refresh_token"]
    # DOT's rotation path dominates this count (locks, revocation of the old pair).
    with django_assert_num_queries(21):
        response = token_request(
            rp,
            {"grant_type": "refresh_token", "refresh_token": refresh_token},
            auth=(confidential_app.client_id, confidential_app.raw_secret),
        )
    assert response.status_code == 200


def test_discovery_and_jwks_are_query_free_once_warm(warm, client, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert client.get("/.well-known/openid-configuration").status_code == 200
        assert client.get(reverse("oidc_provider_ext:jwks")).status_code == 200
