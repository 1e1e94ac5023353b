"""Review round 17: process-local caches under concurrent threads, after CI caught the signing-key
snapshot serving a load begun before a key existed (a KeyError, HTTP 500, under 20 racing token
requests; tests/test_keys.py). A review of every cache in tests/test_scaleout.py's INVENTORY for
the same class: a value loaded before a change served after it, a check-then-act that raises.

Each test fails if its attack works (or the property it pins stops holding)."""

from __future__ import annotations

import base64
import contextlib
import copy
import inspect
import json
import sys
import threading
import time

import pytest
from django.db import IntegrityError, connection, connections, router, transaction
from django.utils import timezone

from oidc_provider_ext import keys
from oidc_provider_ext.internal import clients, lookups
from oidc_provider_ext.models import OPSession, SigningKey, Tenant
from oidc_provider_ext.resource import remote_jwks
from oidc_provider_ext.validator import OIDCValidator

from .flow import exchange, get_code, refresh, verify_jwt

pytestmark = pytest.mark.django_db


# --- signing keys: a change that rolls back ---------------------------------------------------------


class _Rollback(Exception):
    pass


@pytest.mark.django_db(transaction=True)  # real commits and rollbacks, as in production
def test_a_key_created_in_a_transaction_that_rolls_back_is_not_kept():
    """Django drops on_commit callbacks on rollback, so "invalidate after commit" never ran: a key
    created on first use inside a transaction (the refresh grant signs inside its own) stayed in
    the process's snapshot after the rollback, signing and published though in no database."""
    assert not SigningKey.objects.filter(alg="ES256").exists()
    with pytest.raises(_Rollback), transaction.atomic():
        phantom_kid, _ = keys.signing_key("ES256")  # first use of ES256: creates the key
        raise _Rollback  # something after the signature fails
    assert not SigningKey.objects.filter(kid=phantom_kid).exists()
    kid, _ = keys.signing_key("ES256")  # another request of this process
    assert kid != phantom_kid, "signs with a key that was rolled back"
    assert phantom_kid not in {key["kid"] for key in keys.jwks()["keys"]}, "publishes it"


@pytest.mark.django_db(transaction=True)
def test_a_savepoint_rolled_back_after_another_key_change_drops_its_key():
    """Two key changes in one transaction, the second in a savepoint that rolls back: what the
    transaction loaded after the second no longer serves it."""
    with transaction.atomic():
        first = keys.create_key("ES256", state=SigningKey.State.ACTIVE)
        with pytest.raises(_Rollback), transaction.atomic():
            SigningKey.objects.filter(pk=first.pk).delete()  # a change in a savepoint ...
            assert keys._current().signing.get("ES256") is None  # ... which this transaction sees
            raise _Rollback
        assert keys._current().signing["ES256"][0] == first.kid
    assert keys._current().signing["ES256"][0] == first.kid


@pytest.mark.django_db(transaction=True)
def test_a_refresh_that_rolls_back_leaves_no_phantom_key_for_the_next_exchange(
    monkeypatch, rp, user, confidential_app, browser
):
    """The same through HTTP: a refresh is the first ES256 signature, and its write then fails
    (what TokenView answers as invalid_client), so its transaction rolls back."""
    code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
    tokens = exchange(rp, confidential_app, code).json()
    profile = confidential_app.oidc_profile
    profile.id_token_signed_response_alg = "ES256"  # the operator switched the client's alg
    profile.save()
    assert not SigningKey.objects.filter(alg="ES256").exists()

    def failing_save(self, *args, **kwargs):
        raise IntegrityError("the client was deleted by another process")

    with monkeypatch.context() as patched:
        patched.setattr(OIDCValidator, "save_bearer_token", failing_save)
        assert refresh(rp, confidential_app, tokens["refresh_token"]).status_code == 401
    assert not SigningKey.objects.filter(alg="ES256").exists()

    code, _ = get_code(browser, confidential_app, user, scope="openid")
    id_token = exchange(rp, confidential_app, code).json()["id_token"]
    kid = json.loads(base64.urlsafe_b64decode(id_token.split(".")[0] + "==="))["kid"]
    assert SigningKey.objects.filter(kid=kid).exists(), f"ID token signed with {kid}: no such key"
    verify_jwt(id_token)


# --- signing keys: two invalidations at once -----------------------------------------------------


def test_an_invalidation_and_a_load_take_their_numbers_one_at_a_time(monkeypatch):
    """invalidate() reads the number of the last load and stores the first valid one: read and
    stored apart, a second invalidation in between could be undone (the one that read first
    storing last), and an older load would serve again (the KeyError of tests/test_keys.py). While
    one invalidation is between its read and its store, neither a load nor another invalidation
    may take a number."""
    real = keys._counter_lock
    inside, leave = threading.Event(), threading.Event()

    class HeldLock:
        def __enter__(self):
            real.acquire()
            if threading.current_thread().name == "held":
                inside.set()
                assert leave.wait(10)

        def __exit__(self, *exc):
            real.release()

    monkeypatch.setattr(keys, "_counter_lock", HeldLock())
    held = threading.Thread(target=keys.invalidate, name="held")
    held.start()
    assert inside.wait(10)
    others = [threading.Thread(target=keys._begin_load), threading.Thread(target=keys.invalidate)]
    for thread in others:
        thread.start()
    time.sleep(0.3)  # unlocked, both finish in microseconds
    assert all(thread.is_alive() for thread in others), "took a number inside another's invalidation"
    leave.set()
    for thread in (held, *others):
        thread.join(10)
        assert not thread.is_alive()


def _line_of(func, text: str) -> int:
    lines, first = inspect.getsourcelines(func)
    found = [first + offset for offset, line in enumerate(lines) if line.strip() == text]
    assert found, f"{text!r} not found in {func.__name__}"
    return found[-1]


@pytest.mark.parametrize("line_text", ["_generation_checked_at = installed.loaded_at", "snap = installed"])
def test_an_invalidation_right_after_a_reload_does_not_break_current(monkeypatch, line_text):
    """invalidate() sets the global snapshot to None without the load lock: _current() paused
    between installing its load and returning it, and invalidated meanwhile, must still return
    what it loaded (reading the global again gave None: ``None.signing``, a 500)."""
    monkeypatch.setattr(
        keys,
        "_load_snapshot",
        lambda load, previous: keys._Snapshot(time.monotonic(), load, None, {}, {}, {}),
    )
    keys.invalidate()
    line = _line_of(keys._current, line_text)
    paused, resume = threading.Event(), threading.Event()
    result: dict = {}

    def tracer(frame, event, arg):
        if event == "call":
            return tracer if frame.f_code is keys._current.__code__ else None
        if event == "line" and frame.f_lineno == line and not paused.is_set():
            paused.set()
            assert resume.wait(10)
        return tracer

    def target():
        sys.settrace(tracer)
        try:
            result["value"] = keys._current()
        except BaseException as exc:  # noqa: BLE001 - what the request would raise
            result["error"] = exc
        finally:
            sys.settrace(None)

    thread = threading.Thread(target=target)
    thread.start()
    assert paused.wait(10), "never reached the line"
    keys.invalidate()  # another thread's: an unknown kid, a committed key change
    resume.set()
    thread.join(10)
    assert "error" not in result and result["value"] is not None


# --- signing keys behind a read router --------------------------------------------------------------


class _ReplicaRouter:
    """The usual primary/replica router: reads on 'replica', writes on 'default'."""

    def db_for_read(self, model, **hints):
        return "replica"

    def db_for_write(self, model, **hints):
        return "default"

    def allow_relation(self, *args, **hints):
        return True

    def allow_migrate(self, db, *args, **hints):
        return db == "default"


@pytest.fixture
def replica(settings):
    """A zero-lag replica: a second connection to the same test database, on this thread only
    (Django's test case lets a connection made at run time connect)."""
    from django.db.utils import load_backend

    default = connections["default"].settings_dict
    wrapper = load_backend(default["ENGINE"]).DatabaseWrapper(copy.deepcopy(default), "replica")
    connections["replica"] = wrapper
    settings.DATABASE_ROUTERS = [_ReplicaRouter()]
    yield
    wrapper.close()
    del connections["replica"]


@pytest.mark.django_db(transaction=True)
def test_a_transaction_reads_its_own_key_changes_on_its_own_connection(replica):
    """The transaction's own snapshot was read through the read router, on a connection that
    cannot see the transaction's key: the first signature of an algorithm inside a transaction
    (the refresh grant, ATOMIC_REQUESTS) raised KeyError."""
    assert router.db_for_read(SigningKey) == "replica"
    with transaction.atomic():
        kid, _ = keys.signing_key("ES256")
    assert SigningKey.objects.filter(kid=kid).exists()


# --- rows written with one statement: a failed write marks the transaction ------------------------


@pytest.mark.parametrize("write", ["save", "insert"])
def test_a_failed_insert_marks_the_transaction_as_save_does(user, write):
    """Model.save_base() writes under transaction.mark_for_rollback_on_error(): an IntegrityError
    caught inside the same atomic block (no savepoint of its own, as under ATOMIC_REQUESTS) leaves
    the block marked, so nothing else the request wrote commits. lookups.insert() did not."""
    first = OPSession.objects.create(user=user, auth_time=timezone.now())
    duplicate = OPSession(user=user, sid=first.sid, auth_time=timezone.now())
    with transaction.atomic(savepoint=False):
        with contextlib.suppress(IntegrityError):
            duplicate.save() if write == "save" else lookups.insert(duplicate)
        marked = connection.needs_rollback
        transaction.set_rollback(False)  # leave the test's transaction usable
    assert marked


# --- "are there tenants" with the client cache off ------------------------------------------------


@pytest.mark.parametrize(("seconds", "later"), [(30, 31), (0, 0)])
def test_the_tenant_flag_is_kept_no_longer_than_the_client_cache(settings, monkeypatch, seconds, later):
    """CLIENT_CACHE_SECONDS = 0 ("0 disables") kept the answer for ever: with a per-process cache,
    another worker never saw the first tenant, or the last one go. A change this process's cache
    does not hear of is played by bulk_create (no signal)."""
    from .conftest import oidc_settings

    oidc_settings(settings, CLIENT_CACHE_SECONDS=seconds)
    assert clients.has_tenants() is False
    Tenant.objects.bulk_create([Tenant(code="acme", name="Acme")])  # "another process"
    now = time.time() + later
    monkeypatch.setattr(clients.time, "time", lambda: now)
    assert clients.has_tenants() is True


# --- a remote JWKS fetch whose leader fails otherwise ------------------------------------------------


def test_waiters_of_a_jwks_fetch_that_failed_get_its_error(monkeypatch):
    """The leader recorded only a JWKSFetchError for its waiters: anything else (the shared cache
    failing in cache.add, set or delete) left them a key set of None, and a TypeError (HTTP 500)."""
    url = "https://op.example/jwks"
    entered, release = threading.Event(), threading.Event()

    def leader_fetch(url):
        entered.set()
        assert release.wait(10)
        raise ConnectionError("Redis: Timeout reading from socket")

    monkeypatch.setattr(remote_jwks, "_fetch_across_processes", leader_fetch)
    monkeypatch.setattr(remote_jwks.cache, "get", lambda *a, **k: None)  # nothing cached
    results: dict[str, object] = {}

    def call(name):
        try:
            results[name] = remote_jwks.verification_key(url, "kid-1")
        except BaseException as exc:  # noqa: BLE001 - what the request would raise
            results[name] = exc

    leader = threading.Thread(target=call, args=("leader",))
    leader.start()
    assert entered.wait(10)
    flight = remote_jwks._flights[url]
    joined, wait = threading.Event(), flight.done.wait
    flight.done.wait = lambda timeout=None: joined.set() or wait(timeout)
    waiter = threading.Thread(target=call, args=("waiter",))
    waiter.start()
    assert joined.wait(10)
    release.set()
    for thread in (leader, waiter):
        thread.join(10)
    assert isinstance(results["leader"], ConnectionError)
    assert isinstance(results["waiter"], remote_jwks.JWKSFetchError), f"waiter got {results['waiter']!r}"
