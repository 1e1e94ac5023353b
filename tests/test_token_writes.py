"""internal/token_writes.py: a token request's write transaction opens at its first locking
statement. Its reads and its signatures run before it, outside the SQLite writers' turn that the
workers take one at a time; its writes still commit, or roll back, as one.

These tests run with real transactions (``transaction=True``): inside a test's own atomic block,
every statement would be in a transaction and the property could not be seen."""

from __future__ import annotations

import contextlib

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application

from oidc_provider_ext import keys, tokens
from oidc_provider_ext.internal import lookups, sqlite_writers
from oidc_provider_ext.models import AuthorizationGrant
from oidc_provider_ext.validator import OIDCValidator

from .factories import ApplicationFactory, PublicApplicationFactory, UserFactory
from .flow import exchange, get_code, refresh, token_request, userinfo, verify_jwt
from .test_device import allow_polling_now, poll, sign_in_and_confirm, start

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def events(monkeypatch) -> list[tuple[str, bool]]:
    """What a token request does, in order: ("sign", in a transaction?), ("turn", ...) when it
    takes the SQLite writers' turn, ("insert", ...) for each row it writes."""
    seen: list[tuple[str, bool]] = []

    def recording(name, function):
        def record(*args, **kwargs):
            seen.append((name, connection.in_atomic_block))
            return function(*args, **kwargs)

        return record

    monkeypatch.setattr(keys, "sign", recording("sign", keys.sign))
    monkeypatch.setattr(tokens, "sign", recording("sign", tokens.sign))
    monkeypatch.setattr(lookups, "insert", recording("insert", lookups.insert))
    real_turn = sqlite_writers.writer_turn

    @contextlib.contextmanager
    def turn(*args, **kwargs):
        seen.append(("turn", connection.in_atomic_block))
        with real_turn(*args, **kwargs):
            yield

    monkeypatch.setattr(sqlite_writers, "writer_turn", turn)
    return seen


def test_a_code_exchange_signs_before_it_takes_the_write_lock(browser, user, confidential_app, events):
    code, _ = get_code(browser, confidential_app, user, scope="openid offline_access", nonce="n-1")
    events.clear()
    response = exchange(Client(), confidential_app, code)
    assert response.status_code == 200, response.content
    # The access token and the ID token, outside any transaction; then the turn; then the access
    # and refresh token rows, inside the transaction.
    assert events == [
        ("sign", False),
        ("sign", False),
        ("turn", False),
        ("insert", True),
        ("insert", True),
    ]
    body = response.json()
    claims = verify_jwt(body["id_token"])
    assert claims["nonce"] == "n-1" and claims["aud"] == confidential_app.client_id
    assert verify_jwt(body["access_token"], typ="at+jwt")["jti"]
    assert userinfo(Client(), body["access_token"]).status_code == 200
    grant = AuthorizationGrant.objects.get()
    assert grant.redeemed is not None and grant.access_token_id is not None


def test_tokens_signed_for_a_replayed_code_are_never_issued(browser, user, confidential_app, events):
    code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
    first = exchange(Client(), confidential_app, code)
    assert first.status_code == 200
    events.clear()
    again = exchange(Client(), confidential_app, code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    # The replay was seen before anything was signed, and revoked what the code issued.
    assert [name for name, _ in events if name == "sign"] == []
    assert userinfo(Client(), first.json()["access_token"]).status_code == 401
    assert not AccessToken.objects.filter(expires__gt=timezone.now()).exists()


def test_a_failure_after_the_code_is_redeemed_rolls_the_redemption_back(
    browser, user, confidential_app, monkeypatch
):
    """Nothing lost: the code's single use and the new tokens commit together, or not at all."""
    code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    with monkeypatch.context() as patch:
        patch.setattr(OIDCValidator, "_create_refresh_token", broken)
        with pytest.raises(RuntimeError):
            exchange(Client(), confidential_app, code)
    assert AuthorizationGrant.objects.get().redeemed is None
    assert AccessToken.objects.count() == 0
    response = exchange(Client(), confidential_app, code)
    assert response.status_code == 200, response.content


def test_a_refresh_writes_in_one_transaction(browser, user, confidential_app, events):
    code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
    issued = exchange(Client(), confidential_app, code).json()
    events.clear()
    response = refresh(Client(), confidential_app, issued["refresh_token"])
    assert response.status_code == 200, response.content
    inserts = [inside for name, inside in events if name == "insert"]
    assert inserts == [True, True]
    assert [name for name, _ in events].count("turn") == 1
    # The rotation: the old refresh token is spent.
    assert refresh(Client(), confidential_app, issued["refresh_token"]).status_code == 400


def test_a_device_poll_locks_inside_its_transaction(events):
    """select_for_update() outside a transaction is an error (TransactionManagementError, a 500):
    the poll opens the transaction before it locks the device authorization."""
    app = PublicApplicationFactory(profile__allow_device_flow=True)
    user = UserFactory()
    cli, browser = Client(), Client()
    body = start(cli, app, scope="openid offline_access")
    pending = poll(cli, app, body["device_code"])
    assert pending.status_code == 400 and pending.json()["error"] == "authorization_pending"
    allow_polling_now(body["device_code"])
    sign_in_and_confirm(browser, user, body["user_code"])
    events.clear()
    response = poll(cli, app, body["device_code"])
    assert response.status_code == 200, response.content
    assert [inside for name, inside in events if name == "insert"] == [True, True]


def test_client_credentials_write_in_a_transaction(events):
    app = ApplicationFactory(authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS)
    response = token_request(
        Client(), {"grant_type": "client_credentials"}, auth=(app.client_id, app.raw_secret)
    )
    assert response.status_code == 200, response.content
    assert [inside for name, inside in events if name == "insert"] == [True]
