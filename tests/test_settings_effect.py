"""Every documented setting changes behaviour (the ones not exercised elsewhere)."""

import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import unquote

import pytest
from django.urls import reverse

from oidc_provider_ext.internal.clients import get_client
from oidc_provider_ext.tokens import mint_logout_token

from . import presets
from .conftest import oidc_settings
from .flow import authorize_url, login, verify_jwt

pytestmark = pytest.mark.django_db


def test_client_cache_seconds(settings, confidential_app):
    type(confidential_app).objects.filter(pk=confidential_app.pk).update(name="Before")
    get_client(confidential_app.client_id)  # cached now
    type(confidential_app).objects.filter(pk=confidential_app.pk).update(name="After")  # no signal
    assert get_client(confidential_app.client_id).name == "Before"
    oidc_settings(settings, CLIENT_CACHE_SECONDS=0)
    assert get_client(confidential_app.client_id).name == "After"


def test_client_changes_through_the_orm_are_seen_at_once(confidential_app):
    get_client(confidential_app.client_id)
    confidential_app.name = "Renamed"
    confidential_app.save()
    assert get_client(confidential_app.client_id).name == "Renamed"


@pytest.mark.oidc_settings(LOGOUT_TOKEN_EXPIRE_SECONDS=30)
def test_logout_token_expire_seconds(db):
    claims = verify_jwt(mint_logout_token(client_id="c", subject="s", sid="x"), typ="logout+jwt")
    assert claims["exp"] - claims["iat"] == 30


def test_backchannel_logout_timeout_seconds(settings, db):
    from oidc_provider_ext.internal.backchannel import post as _post

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self):
            time.sleep(1.0)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/"
        oidc_settings(settings, BACKCHANNEL_LOGOUT_TIMEOUT_SECONDS=0.2)
        assert _post(url, "token") == "timeout"
        oidc_settings(settings, BACKCHANNEL_LOGOUT_TIMEOUT_SECONDS=5)
        assert _post(url, "token") is None
    finally:
        server.shutdown()
        server.server_close()


def test_authorize_request_max_age_seconds(settings, browser, user, confidential_app, monkeypatch):
    import time

    response = browser.get(authorize_url(confidential_app))  # signed into the login's next URL
    next_url = unquote(response["Location"].split("next=", 1)[1])
    assert next_url.startswith(reverse("oidc_provider_ext:authorize-continue", args=["x"])[:-1])
    later = time.time() + 120
    monkeypatch.setattr(time, "time", lambda: later)  # two minutes pass
    oidc_settings(settings, AUTHORIZE_REQUEST_MAX_AGE_SECONDS=60)
    login(browser, user)
    expired = browser.get(next_url)
    assert expired.status_code == 400 and "expired" in expired.content.decode()
    oidc_settings(settings, AUTHORIZE_REQUEST_MAX_AGE_SECONDS=600)
    page = browser.get(next_url)
    assert page.status_code == 200 and page.templates[0].name == "oidc_provider_ext/consent.html"


def test_outbound_allowed_networks(settings, db):
    from oidc_provider_ext.internal.backchannel import post

    class Ok(BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/"
        oidc_settings(settings, **presets.NO_LOOPBACK)
        assert post(url, "token") == "refused by policy"
        oidc_settings(settings, OUTBOUND_ALLOWED_NETWORKS=["127.0.0.1/32"])
        assert post(url, "token") is None
    finally:
        server.shutdown()
        server.server_close()


def test_a_resource_servers_settings_change_is_seen_at_the_next_validation(
    settings, rp, browser, user, confidential_app
):
    """validate_access_token keeps what it parsed from the settings (AppSettings.derived) only while
    OIDC_PROVIDER_EXT is the same dict: a new one (override_settings, a reload) is read again."""
    from oidc_provider_ext.resource import InvalidToken, validate_access_token

    from .flow import exchange, get_code

    code, _ = get_code(browser, confidential_app, user, scope="openid")
    token = exchange(rp, confidential_app, code).json()["access_token"]
    oidc_settings(settings, RESOURCE_SERVER_AUDIENCE=confidential_app.client_id)
    assert validate_access_token(token).client_id == confidential_app.client_id
    oidc_settings(settings, RESOURCE_SERVER_AUDIENCE="https://api.example.com/")
    with pytest.raises(InvalidToken, match="not meant for this resource server"):
        validate_access_token(token)
    oidc_settings(
        settings, RESOURCE_SERVER_AUDIENCE=confidential_app.client_id, RESOURCE_SERVER_ISSUER="https://other"
    )
    with pytest.raises(InvalidToken, match="not issued by the issuer"):
        validate_access_token(token)


def test_a_settings_error_is_raised_on_every_validation(settings, db):
    """A misconfiguration is never kept as a value: every call raises it again."""
    from django.core.exceptions import ImproperlyConfigured

    from oidc_provider_ext.resource import validate_access_token

    for _ in range(2):
        with pytest.raises(ImproperlyConfigured):
            validate_access_token("a.b.c")
