"""Single-use codes under concurrent redemption (RFC 6749 4.1.2). Runs on PostgreSQL, where requests
really run in parallel; on SQLite it is skipped with the reason printed (CI runs both)."""

import threading

import pytest
from django.db import connection, connections
from django.test import Client
from oauth2_provider.models import AccessToken, RefreshToken

from oidc_provider_ext.models import AuthorizationGrant

from .flow import exchange, get_code, token_request

CONCURRENCY = 20
ROUNDS = 5


def _requires_postgres():
    if connection.vendor != "postgresql":
        pytest.skip(
            "concurrent redemption is tested on PostgreSQL; set DATABASE_URL=postgres://... to run it"
        )


def _race(request) -> list[int]:
    """Fire ``request()`` from CONCURRENCY threads released at the same instant; their statuses."""
    barrier = threading.Barrier(CONCURRENCY)
    statuses: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run():
        try:
            barrier.wait()
            status = request().status_code
            with lock:
                statuses.append(status)
        except BaseException as exc:  # reported below with its traceback, not lost in a thread
            with lock:
                errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(CONCURRENCY)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise AssertionError(f"{len(errors)} of {CONCURRENCY} requests raised") from errors[0]
    return statuses


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_redemption_has_exactly_one_winner(browser, user, confidential_app):
    _requires_postgres()
    for _ in range(ROUNDS):
        AccessToken.objects.all().delete()
        code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
        statuses = _race(lambda code=code: exchange(Client(), confidential_app, code))
        assert len(statuses) == CONCURRENCY
        assert statuses.count(200) == 1, statuses
        assert set(statuses) == {200, 400}, statuses
        # Every loser is a replay of the code, so what the winner got is revoked (RFC 6749 4.1.2
        # "SHOULD revoke"), whichever finished first: no live token outlives the race.
        grant = AuthorizationGrant.objects.get(redeemed__isnull=False, access_token__isnull=True)
        assert grant.reuse_detected
        assert not AccessToken.objects.filter(user=user).exists()
        assert not RefreshToken.objects.filter(user=user, revoked__isnull=True).exists()
        AuthorizationGrant.objects.all().delete()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_refresh_has_exactly_one_winner(browser, user, confidential_app):
    """RFC 9700 4.14.2: one success; the replays reveal the theft and revoke the whole family,
    the winner's fresh tokens included, whatever order the requests finish in."""
    _requires_postgres()
    rp = Client()
    for _ in range(ROUNDS):
        code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
        refresh_token = exchange(rp, confidential_app, code).json()["refresh_token"]
        auth = (confidential_app.client_id, confidential_app.raw_secret)
        body = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        statuses = _race(lambda body=body, auth=auth: token_request(Client(), body, auth=auth))
        assert len(statuses) == CONCURRENCY
        assert statuses.count(200) == 1, statuses
        assert set(statuses) == {200, 400}, statuses
        assert not RefreshToken.objects.filter(user=user, revoked__isnull=True).exists()
        assert not AccessToken.objects.filter(user=user).exists()
        AuthorizationGrant.objects.all().delete()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_one_totp_code_and_one_recovery_code_have_exactly_one_winner(user):
    """RFC 6238 5.2: a code is accepted once, even by requests racing each other (the time step is
    recorded by the UPDATE that checks it); a recovery code likewise (docs/mfa.md)."""
    from oidc_provider_ext.internal import recovery_codes, totp

    from .flow import enrol_totp, forget_used_codes, totp_code

    _requires_postgres()
    app = enrol_totp(user)
    codes = recovery_codes.regenerate(user)

    class Verdict:
        def __init__(self, ok):
            self.status_code = 200 if ok else 400

    for round_ in range(ROUNDS):
        forget_used_codes(user)
        code = totp_code(app)
        statuses = _race(lambda code=code: Verdict(totp.verify(totp.confirmed_device(user), code)))
        assert statuses.count(200) == 1, statuses
        statuses = _race(lambda code=codes[round_]: Verdict(recovery_codes.use(user, code)))
        assert statuses.count(200) == 1, statuses
