"""Authlib as a CLI: the device authorization grant (RFC 8628) with ``OAuth2Session`` against the
example IdP on the live server: the device authorization request, polling with
``fetch_token(grant_type=urn:ietf:params:oauth:grant-type:device_code)`` (authorization_pending,
then tokens), Authlib's ID-token validation, refresh, and the user's side through the hosted
code-entry, login and confirmation pages (``tests.live.UserAgent``)."""

from __future__ import annotations

import time
import warnings

import authlib.deprecate
import pytest
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from oidc_provider_ext.models import ClientProfile
from tests.conftest import oidc_settings
from tests.live import UserAgent, forms_of, http_session

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.jose import JsonWebKey, jwt
    from authlib.oidc.core import CodeIDToken

pytestmark = pytest.mark.live

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def enter_code_and_confirm(user_agent: UserAgent, verification_uri: str, user_code: str, decision="allow"):
    """What the user does on their phone: open verification_uri, type the code (lower case, no
    dash: the page must accept it), sign in, confirm. Returns the last page."""
    page = user_agent.get(verification_uri)
    form = next(f for f in forms_of(page.text) if "user_code" in f.controls)
    response = user_agent.submit(page, form, form.submission(user_code=user_code.replace("-", "").lower()))
    for _ in range(10):
        if response.is_redirect:
            response = user_agent.get(response.headers["Location"])
            continue
        kind = user_agent.page_kind(response)
        if kind == "login":
            response = user_agent.submit_login(response)
        elif kind == "consent":
            assert "data-device-warning" in response.text, "RFC 8628 5.4: the user is warned"
            return user_agent.submit_consent(response, decision)
        else:
            raise AssertionError(
                f"unexpected page {response.status_code} at {response.url}: {response.text[:500]}"
            )
    raise AssertionError("too many steps")


@pytest.fixture
def cli_client(demo, settings):
    oidc_settings(settings, DEVICE_POLL_INTERVAL_SECONDS=1)
    client_id = demo["public"]["client_id"]
    ClientProfile.objects.filter(application__client_id=client_id).update(allow_device_flow=True)
    return client_id


def test_authlib_device_flow(demo, cli_client):
    meta = http_session().get(f"{demo['issuer']}/.well-known/openid-configuration", timeout=10).json()
    assert DEVICE_GRANT in meta["grant_types_supported"]
    session = http_session(
        OAuth2Session(
            client_id=cli_client, scope="openid profile offline_access", token_endpoint_auth_method="none"
        )
    )
    session.timeout = 10
    # RFC 8628 3.1: the device authorization request (Authlib has no helper; a form POST).
    response = session.post(
        meta["device_authorization_endpoint"],
        data={"client_id": cli_client, "scope": "openid profile offline_access"},
        withhold_token=True,
    )
    assert response.status_code == 200, response.text
    grant = response.json()
    assert grant["verification_uri"] == f"{demo['issuer']}/connect/device"
    interval = grant["interval"]

    with pytest.raises(OAuthError) as pending:
        session.fetch_token(meta["token_endpoint"], grant_type=DEVICE_GRANT, device_code=grant["device_code"])
    assert pending.value.error == "authorization_pending"

    user_agent = UserAgent(demo["issuer"], **demo["user"])
    done = enter_code_and_confirm(user_agent, grant["verification_uri"], grant["user_code"])
    assert 'data-device-result="approved"' in done.text

    time.sleep(interval)  # RFC 8628 3.5: the client waits the interval between polls
    token = session.fetch_token(
        meta["token_endpoint"], grant_type=DEVICE_GRANT, device_code=grant["device_code"]
    )
    assert token["token_type"].lower() == "bearer" and token["refresh_token"]

    jwks = JsonWebKey.import_key_set(http_session().get(meta["jwks_uri"], timeout=10).json())
    claims = jwt.decode(
        token["id_token"],
        jwks,
        claims_cls=CodeIDToken,
        claims_options={"iss": {"essential": True, "value": meta["issuer"]}},
        claims_params={"client_id": cli_client, "access_token": token["access_token"]},
    )
    claims.validate(leeway=30)
    assert claims["tenant"] == demo["tenant"], "the client's default tenant, as for the code flow"
    assert claims["sid"] and claims["auth_time"]

    info = session.get(meta["userinfo_endpoint"]).json()
    assert info["sub"] == claims["sub"]
    refreshed = session.refresh_token(meta["token_endpoint"])
    assert refreshed["access_token"] != token["access_token"]

    # Single use (RFC 8628 3.5 / RFC 6749 4.1.2): the device code is spent.
    time.sleep(interval)
    with pytest.raises(OAuthError) as spent:
        session.fetch_token(meta["token_endpoint"], grant_type=DEVICE_GRANT, device_code=grant["device_code"])
    assert spent.value.error == "invalid_grant"


def test_authlib_device_flow_denied(demo, cli_client):
    meta = http_session().get(f"{demo['issuer']}/.well-known/openid-configuration", timeout=10).json()
    session = http_session(OAuth2Session(client_id=cli_client, token_endpoint_auth_method="none"))
    session.timeout = 10
    grant = session.post(
        meta["device_authorization_endpoint"], data={"client_id": cli_client}, withhold_token=True
    ).json()
    user_agent = UserAgent(demo["issuer"], **demo["user"])
    done = enter_code_and_confirm(user_agent, grant["verification_uri"], grant["user_code"], decision="deny")
    assert 'data-device-result="denied"' in done.text
    with pytest.raises(OAuthError) as denied:
        session.fetch_token(meta["token_endpoint"], grant_type=DEVICE_GRANT, device_code=grant["device_code"])
    assert denied.value.error == "access_denied"
