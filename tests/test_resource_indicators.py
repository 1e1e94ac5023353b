"""RFC 8707 resource indicators: audience-bound access tokens for registered resource servers."""

import pytest

from .flow import exchange, get_code, refresh

pytestmark = pytest.mark.django_db

API = "https://api.example.com/mcp"


def test_resource_at_code_exchange_is_an_oauth_error_not_a_500(browser, rp, user, confidential_app):
    # Every MCP SDK client sends `resource` on the code exchange; DOT 3.4 used to crash on it.
    code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
    response = exchange(rp, confidential_app, code, resource=API)
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid_target"


def test_resource_at_refresh_is_an_oauth_error_not_a_500(browser, rp, user, confidential_app):
    code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
    tokens = exchange(rp, confidential_app, code).json()
    response = refresh(rp, confidential_app, tokens["refresh_token"], resource=API)
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid_target"
