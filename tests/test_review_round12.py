"""Attacker review, round 12: the token endpoint's write transaction opened lazily at the first
locking statement (internal/token_writes.py), and the code exchange's tokens signed ahead of it.

Every test runs with real transactions (``transaction=True``). The race window of the change is
the time between a token request's reads (now outside any transaction, also on SQLite) and its
first locking statement. ``in_the_window`` commits a concurrent change, from another thread and
connection, exactly there: at ``sqlite_writers.writer_turn()``, which ``token_writes.begin()``
enters first (on PostgreSQL it is a no-op, but still called). Before this change the turn was taken
at the start of the request, before any read, so the same hook then simulated a change committed
before the request: every test below passes on the previous commit.

FAILS ON HEAD (6b749e3), marked ``# FAILS ON HEAD`` below:
  * test_code_exchange_whose_grant_is_deleted_in_the_window_is_invalid_grant_not_500
  * test_replay_whose_grant_is_deleted_in_the_window_is_invalid_grant_not_500
  * test_refresh_refuses_a_token_whose_access_token_is_revoked_in_the_window
The first two pass after c13b934, the third after 02cf4e9. A signal-less deactivation in the window
was reported too; it is one serial order of the two requests, and the test of it pins what the
contract promises (honoured at the next use). The others pin properties the change relies on.
"""

from __future__ import annotations

import contextlib
import json
import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections, transaction
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application, RefreshToken

from oidc_provider_ext.internal import sqlite_writers, token_writes
from oidc_provider_ext.models import AuthorizationGrant
from oidc_provider_ext.validator import OIDCValidator

from . import presets
from .factories import ApplicationFactory, ResourceServerFactory
from .flow import exchange, get_code, pkce_pair, refresh, token_request, userinfo, verify_jwt

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.oidc_settings(presets.API_SCOPES)]

API = "https://api.example.com/mcp"


def concurrently(action) -> None:
    """Run ``action`` in another thread (its own database connection) and wait: a change another
    worker commits."""
    errors: list[BaseException] = []

    def run():
        try:
            action()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    if errors:
        raise errors[0]


@pytest.fixture
def in_the_window(monkeypatch):
    """``in_the_window(action)``: the next token request commits ``action`` concurrently just
    before its write transaction opens (after its reads, and for a code exchange its signatures)."""
    real_turn = sqlite_writers.writer_turn
    pending: list = []

    @contextlib.contextmanager
    def turn(*args, **kwargs):
        while pending:
            concurrently(pending.pop(0))
        with real_turn(*args, **kwargs):
            yield

    monkeypatch.setattr(sqlite_writers, "writer_turn", turn)
    return pending.append


def quiet_client() -> Client:
    return Client(raise_request_exception=False)


# --- F1: a grant deleted in the window: DoesNotExist, a 500 --------------------------------------


def test_code_exchange_whose_grant_is_deleted_in_the_window_is_invalid_grant_not_500(
    browser, user, confidential_app, in_the_window
):
    # FAILS ON HEAD: validate_code loses the UPDATE (the row is gone), calls _code_replayed, whose
    # grant.refresh_from_db() raises AuthorizationGrant.DoesNotExist: a 500. The user (or the
    # client, or oidc_cleanup) was deleted between the read and the single-use UPDATE.
    code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
    user_pk = user.pk
    in_the_window(lambda: get_user_model().objects.get(pk=user_pk).delete())
    response = exchange(quiet_client(), confidential_app, code)
    assert response.status_code == 400, response.status_code
    assert response.json()["error"] == "invalid_grant"
    assert not AccessToken.objects.exists()


def test_replay_whose_grant_is_deleted_in_the_window_is_invalid_grant_not_500(
    browser, user, confidential_app, in_the_window
):
    # FAILS ON HEAD: the replay is seen in the read (redeemed is set), _code_replayed opens the
    # transaction, and the grant deleted meanwhile (its client deleted) makes refresh_from_db raise.
    code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
    assert exchange(Client(), confidential_app, code).status_code == 200
    app_pk = confidential_app.pk
    # The client's owner deletes it (its grants and tokens cascade).
    in_the_window(lambda: Application.objects.get(pk=app_pk).delete())
    response = exchange(quiet_client(), confidential_app, code)
    assert response.status_code in (400, 401), response.status_code
    assert response.json()["error"] in ("invalid_grant", "invalid_client")


# --- F2/F3: what the conditional UPDATEs re-check ------------------------------------------


def test_a_user_deactivated_without_signals_in_the_window_is_honoured_at_the_next_use(
    browser, user, confidential_app, in_the_window
):
    # Reported by the review, and not a defect: a deactivation committed without the post_save
    # receiver (a queryset update()) revokes nothing, by design "honoured at the next refresh,
    # userinfo or introspection call" (receivers.py). An exchange that read the user as active just
    # before it ends as if it had run just before the deactivation, which is one serial order of the
    # two: its tokens are refused at their next use, as any issued a moment earlier are. (A
    # deactivation through save() expires the grant row, and the single-use UPDATE sees that: below.)
    code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
    user_pk = user.pk
    in_the_window(lambda: get_user_model().objects.filter(pk=user_pk).update(is_active=False))
    response = exchange(Client(), confidential_app, code)
    assert response.status_code == 200, response.content
    tokens = response.json()
    assert userinfo(Client(), tokens["access_token"]).status_code == 401
    assert refresh(Client(), confidential_app, tokens["refresh_token"]).status_code == 400


def test_refresh_refuses_a_token_whose_access_token_is_revoked_in_the_window(
    browser, user, confidential_app, in_the_window
):
    # FAILS ON HEAD: "an orphan whose access token was revoked" is refused (validate_refresh_token),
    # but the orphan check reads rt.access_token_id before the transaction; RFC 7009 revocation of
    # the access token (DOT deletes it; the refresh token's FK is SET NULL) committed in the window
    # is not re-checked by the UPDATE (revoked IS NULL only), and the rotation issues new tokens.
    code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
    issued = exchange(Client(), confidential_app, code).json()
    access_pk = AccessToken.objects.get().pk
    in_the_window(lambda: AccessToken.objects.get(pk=access_pk).revoke())
    response = refresh(Client(), confidential_app, issued["refresh_token"])
    assert response.status_code == 400, response.content


# --- pins: what the change relies on --------------------------------------------------------------


def _log_out(user_pk: int) -> None:
    from oidc_provider_ext.internal import op_sessions
    from oidc_provider_ext.models import OPSession

    op_sessions.end(list(OPSession.objects.filter(user_id=user_pk)))


def _deactivate_with_signals(user_pk: int) -> None:
    target = get_user_model().objects.get(pk=user_pk)
    target.is_active = False
    target.save()


@pytest.mark.parametrize("change", [_log_out, _deactivate_with_signals])
def test_a_logout_or_deactivation_in_the_window_kills_the_code(
    browser, user, confidential_app, in_the_window, change
):
    """The conditional UPDATE re-checks what they change: the grant's expiry."""
    code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
    user_pk = user.pk
    in_the_window(lambda: change(user_pk))
    response = exchange(Client(), confidential_app, code)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    assert not AccessToken.objects.exists()


def test_a_concurrent_winner_in_the_window_makes_the_loser_revoke_it(
    browser, user, confidential_app, in_the_window
):
    """The loser signed ahead; it discards its tokens and revokes the winner's (RFC 6749 4.1.2)."""
    code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
    won: dict = {}
    in_the_window(lambda: won.update(exchange(Client(), confidential_app, code).json()))
    response = exchange(Client(), confidential_app, code)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    assert "access_token" in won
    assert "access_token" not in response.json() and "id_token" not in response.json()
    assert userinfo(Client(), won["access_token"]).status_code == 401
    assert not RefreshToken.objects.filter(revoked__isnull=True).exists()


def test_a_concurrent_refresh_in_the_window_revokes_the_family(
    browser, user, confidential_app, in_the_window
):
    code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
    issued = exchange(Client(), confidential_app, code).json()
    won: dict = {}
    in_the_window(lambda: won.update(refresh(Client(), confidential_app, issued["refresh_token"]).json()))
    response = refresh(Client(), confidential_app, issued["refresh_token"])
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    assert "refresh_token" in won
    assert refresh(Client(), confidential_app, won["refresh_token"]).status_code == 400


VOLATILE = {"jti", "iat", "exp", "nbf", "at_hash"}


def _stable(claims: dict) -> dict:
    """The claims that two exchanges of the same grant must share."""
    return {k: v for k, v in claims.items() if k not in VOLATILE}


def _signed_ahead_as_before(browser, user, app, monkeypatch, **params) -> tuple[dict, dict, dict]:
    """Two identical exchanges: signed ahead (HEAD), and by oauthlib's own path
    (generate_access_token, then add_id_token's fallback through finalize_id_token) as before.
    Asserts that their ID tokens, access tokens and response bodies agree; the first's."""
    results = []
    for ahead in (True, False):
        verifier, challenge = pkce_pair()
        code, _ = get_code(
            browser, app, user, code_challenge=challenge, code_challenge_method="S256", **params
        )
        with monkeypatch.context() as patch:
            if not ahead:
                patch.setattr(OIDCValidator, "_sign_ahead", lambda self, request: None)
            response = exchange(Client(), app, code, verifier=verifier, resource=params.get("resource"))
        assert response.status_code == 200, response.content
        body = response.json()
        results.append(
            (
                verify_jwt(body["id_token"]),
                verify_jwt(body["access_token"], typ="at+jwt"),
                {k: v for k, v in body.items() if k not in ("access_token", "id_token", "refresh_token")},
            )
        )
    (ahead_id, ahead_at, ahead_body), (old_id, old_at, old_body) = results
    assert set(ahead_id) == set(old_id) and _stable(ahead_id) == _stable(old_id)
    assert set(ahead_at) == set(old_at) and _stable(ahead_at) == _stable(old_at)
    assert ahead_body == old_body
    return results[0]


def test_signed_ahead_tokens_have_the_claims_of_the_oauthlib_path(
    browser, user, confidential_app, monkeypatch
):
    claims = json.dumps({"id_token": {"email": None, "auth_time": {"essential": True}}})
    id_token, _, _ = _signed_ahead_as_before(
        browser,
        user,
        confidential_app,
        monkeypatch,
        scope="openid profile email offline_access",
        nonce="n-12",
        claims=claims,
        acr_values="x",
    )
    assert id_token["nonce"] == "n-12" and id_token["email"] == user.email


def test_signed_ahead_tokens_for_a_resource_are_narrowed_like_before(
    browser, user, confidential_app, monkeypatch
):
    ResourceServerFactory(identifier=API, name="API", scopes="api:read", allowed_clients=[confidential_app])
    _, access_token, body = _signed_ahead_as_before(
        browser,
        user,
        confidential_app,
        monkeypatch,
        scope="openid email api:read offline_access",
        resource=API,
    )
    assert access_token["aud"] == API and body["scope"] == "api:read"


def test_the_id_token_at_hash_is_of_the_access_token_returned(browser, user, confidential_app):
    import base64
    import hashlib

    code, _ = get_code(browser, confidential_app, user, scope="openid")
    body = exchange(Client(), confidential_app, code).json()
    digest = hashlib.sha256(body["access_token"].encode()).digest()[:16]
    assert verify_jwt(body["id_token"])["at_hash"] == base64.urlsafe_b64encode(digest).decode().rstrip("=")
    # and the access token returned is the one stored (a resource server validating offline
    # accepts nothing that introspection and userinfo do not know)
    assert userinfo(Client(), body["access_token"]).status_code == 200


def test_a_pkce_failure_after_the_redemption_returns_no_token(browser, user, public_app):
    _verifier, challenge = pkce_pair()
    code, _ = get_code(browser, public_app, user, code_challenge=challenge, code_challenge_method="S256")
    wrong, _ = pkce_pair()
    response = exchange(Client(), public_app, code, verifier=wrong)
    assert response.status_code == 400 and response.json() == {"error": "invalid_grant"}
    assert not AccessToken.objects.exists() and not RefreshToken.objects.exists()
    grant = AuthorizationGrant.objects.get()
    # As before the change: the code is used up by the attempt (S256OnlyCodeGrant), consistently.
    assert grant.redeemed is not None and grant.access_token_id is None


def test_client_credentials_of_a_client_deleted_in_the_window_is_invalid_client(in_the_window):
    app = ApplicationFactory(authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS)
    from oidc_provider_ext.internal import clients

    assert clients.get_client(app.client_id) is not None  # cached, as in another worker
    app_pk = app.pk

    def delete_behind_the_cache():
        from oidc_provider_ext.models import ClientProfile

        with connection.cursor() as cursor:
            for table, column in (
                (ClientProfile._meta.db_table, "application_id"),
                (Application._meta.db_table, "id"),
            ):
                cursor.execute(f"DELETE FROM {table} WHERE {column} = %s", [app_pk])

    in_the_window(delete_behind_the_cache)
    response = token_request(
        quiet_client(), {"grant_type": "client_credentials"}, auth=(app.client_id, app.raw_secret)
    )
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    assert not AccessToken.objects.exists()


# --- token_writes' thread state ------------------------------------------------------------------


def test_an_exception_after_begin_rolls_back_releases_the_turn_and_the_thread_state():
    grant_count = AuthorizationGrant.objects.count()
    with pytest.raises(RuntimeError), token_writes.deferred():
        token_writes.begin()
        assert connection.in_atomic_block
        AuthorizationGrant.objects.update(reuse_detected=True)
        raise RuntimeError("boom")
    assert not connection.in_atomic_block
    assert getattr(token_writes._local, "writes", None) is None
    assert not getattr(sqlite_writers._local, "in_turn", False)
    assert AuthorizationGrant.objects.count() == grant_count
    # The next request takes the turn again (it was released).
    with token_writes.deferred():
        token_writes.begin()
        assert connection.in_atomic_block
    assert not connection.in_atomic_block


def test_begin_outside_a_token_request_opens_nothing(monkeypatch):
    turns = []
    monkeypatch.setattr(sqlite_writers, "writer_turn", lambda *args, **kwargs: turns.append(args))
    token_writes.begin()
    assert not connection.in_atomic_block
    with transaction.atomic():  # a caller's own transaction is left alone
        token_writes.begin()
        assert connection.in_atomic_block
    assert not connection.in_atomic_block
    assert turns == []  # nor is the SQLite writers' turn taken


def test_nested_deferred_restores_the_outer_request():
    with token_writes.deferred():
        outer = token_writes._local.writes
        with token_writes.deferred():
            token_writes.begin()
            assert connection.in_atomic_block
        assert token_writes._local.writes is outer and not outer.open
        assert not connection.in_atomic_block
    assert getattr(token_writes._local, "writes", None) is None


def test_thread_state_is_per_thread():
    seen = []
    with token_writes.deferred():
        token_writes.begin()

        def other():
            seen.append(getattr(token_writes._local, "writes", None))
            connections.close_all()

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert seen == [None]


def test_the_stored_access_token_outlives_its_signed_ahead_jwt(browser, user, confidential_app):
    """A request whose turn waited long still stores an access token no shorter-lived than the JWT."""
    code, _ = get_code(browser, confidential_app, user, scope="openid")
    body = exchange(Client(), confidential_app, code).json()
    claims = verify_jwt(body["access_token"], typ="at+jwt")
    stored = AccessToken.objects.get()
    assert stored.expires.timestamp() >= claims["exp"] - 1
    assert stored.expires > timezone.now()
