"""Review 1 (adjacent to the RFC 8707 merge, pre-existing): a refresh request refused AFTER the
refresh token was consumed (invalid_scope) burns the token, and the client's retry is then taken
for a replay (RFC 9700 4.14.2) and revokes the whole family. docs/resource-servers.md promises "a
refused request consumes nothing" for invalid_target; the same should hold for invalid_scope."""

import pytest

from . import presets
from .flow import exchange, get_code, refresh

pytestmark = [pytest.mark.django_db, pytest.mark.oidc_settings(presets.API_SCOPES)]


def test_a_refresh_refused_for_a_wider_scope_leaves_the_refresh_token_usable(
    browser, rp, user, confidential_app
):
    code, _ = get_code(browser, confidential_app, user, scope="openid offline_access api:read")
    body = exchange(rp, confidential_app, code).json()
    widened = refresh(
        rp, confidential_app, body["refresh_token"], scope="openid offline_access api:read api:write"
    )
    assert widened.status_code == 400, widened.content
    assert widened.json()["error"] == "invalid_scope"
    retry = refresh(rp, confidential_app, body["refresh_token"])
    assert retry.status_code == 200, retry.content  # 5e2e67d: invalid_grant, family revoked
