"""oidc_provider_ext.sessions: Django's database sessions with fewer statements, and the same
guarantees (unique keys, a new key at sign-in, the old one gone)."""

import pytest
from django.contrib.sessions.backends.base import UpdateError
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse

from oidc_provider_ext import sessions
from oidc_provider_ext.sessions import SessionStore, stored_key

from .conftest import record_calls
from .factories import USER_PASSWORD

pytestmark = pytest.mark.django_db


def test_the_example_project_uses_it(settings):
    assert settings.SESSION_ENGINE == "oidc_provider_ext.sessions"


def test_the_table_holds_no_session_key(user):
    """DESIGN.md "No bearer secret in clear": a copy of the sessions' table (a backup, a read
    replica, another app's view-only admin) gives no cookie that signs anyone in. Each row is keyed
    by the SHA-256 of the browser's key; the key itself is nowhere in it, and the row's key used as
    a cookie is not a session."""
    browser = Client()
    login = reverse("oidc_provider_ext:login")
    browser.post(login, {"username": user.username, "password": USER_PASSWORD})
    key = browser.cookies["sessionid"].value
    assert SessionStore(key).load()["_auth_user_id"] == str(user.pk)
    (row,) = Session.objects.all()
    assert row.session_key == stored_key(key) and key not in repr(list(Session.objects.values_list()))
    assert len(row.session_key) == Session._meta.get_field("session_key").max_length
    thief = Client()
    thief.cookies["sessionid"] = row.session_key
    assert thief.get(reverse("oidc_provider_ext:connected-apps")).status_code == 302  # to the sign-in
    assert SessionStore(row.session_key).load() == {}


@pytest.mark.django_db(transaction=True)
def test_the_orm_path_reads_and_writes_the_same_rows(monkeypatch):
    """Where the SQL written once does not apply (another database vendor), Django's queries are used
    with the same stored key."""
    from oidc_provider_ext.internal import lookups

    store = SessionStore()
    store["who"] = "alice"
    store.create()
    monkeypatch.setattr(lookups, "supported_vendor", lambda using: False)
    monkeypatch.setattr(sessions._by_key(Session), "supported", lambda using: False)

    def not_here(*args, **kwargs):
        raise AssertionError("the SQL written once was used")

    monkeypatch.setattr(sessions._by_key(Session), "one", not_here)
    monkeypatch.setattr(lookups, "_save_sql", not_here)
    assert SessionStore(store.session_key)["who"] == "alice"
    assert store.exists(store.session_key) and not store.exists(stored_key(store.session_key))
    reader = SessionStore(store.session_key)
    reader["who"] = "bob"
    reader.save()
    assert SessionStore(store.session_key)["who"] == "bob"
    reader.delete()
    assert not Session.objects.exists()


@pytest.mark.parametrize("step", ["save_base", "_do_insert", "_do_update"])
def test_a_save_step_of_the_sites_own_is_called(monkeypatch, step):
    """A save step wrapped on the session model (a library's tracker, say) runs: the store then
    saves through save(), not the SQL written once."""
    calls = record_calls(monkeypatch, Session, step)
    store = SessionStore()
    store["who"] = "alice"
    store.create()
    store["who"] = "bob"
    store.save()
    assert len(calls) == (2 if step == "save_base" else 1)
    assert SessionStore(store.session_key)["who"] == "bob"


def test_a_taken_key_is_never_reused(monkeypatch):
    taken = SessionStore()
    taken["who"] = "alice"
    taken.create()
    drawn = iter([taken.session_key, "b" * 32])
    monkeypatch.setattr(sessions, "get_random_string", lambda *args: next(drawn))
    fresh = SessionStore()
    fresh["who"] = "mallory"
    fresh.save()
    assert fresh.session_key == "b" * 32
    assert SessionStore(taken.session_key).load() == {"who": "alice"}


def test_a_taken_key_after_cycle_key_is_never_reused(monkeypatch):
    taken = SessionStore()
    taken["who"] = "alice"
    taken.create()
    store = SessionStore()
    store["who"] = "bob"
    store.create()
    old = store.session_key
    drawn = iter([taken.session_key, "c" * 32])
    monkeypatch.setattr(sessions, "get_random_string", lambda *args: next(drawn))
    store.cycle_key()
    store.save()
    assert store.session_key == "c" * 32
    assert SessionStore(taken.session_key).load() == {"who": "alice"}
    assert SessionStore("c" * 32).load() == {"who": "bob"}
    assert not Session.objects.filter(session_key=stored_key(old)).exists()


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_a_save_is_one_statement(monkeypatch, django_assert_num_queries):
    """In autocommit mode (no ATOMIC_REQUESTS) the INSERT or UPDATE is atomic on its own: no
    BEGIN/COMMIT around it, and a taken key or a vanished row still fail as Django's do."""
    taken = SessionStore()
    taken["who"] = "alice"
    with django_assert_num_queries(1):  # the INSERT
        taken.save()
    taken["who"] = "alice again"
    with django_assert_num_queries(1):  # the UPDATE
        taken.save()
    drawn = iter([taken.session_key, "d" * 32])
    monkeypatch.setattr(sessions, "get_random_string", lambda *args: next(drawn))
    fresh = SessionStore()
    fresh["who"] = "mallory"
    fresh.save()  # the taken key's INSERT fails, the next key is used
    assert fresh.session_key == "d" * 32
    assert SessionStore(taken.session_key).load() == {"who": "alice again"}
    assert Session.objects.filter(session_key=stored_key(fresh.session_key)).delete()[0] == 1
    fresh["who"] = "mallory again"
    with pytest.raises(UpdateError):  # as Django's: the session middleware answers it
        fresh.save()
    assert not Session.objects.filter(session_key=stored_key(fresh.session_key)).exists()


def test_cycle_key_writes_once_and_keeps_the_data(django_assert_num_queries):
    store = SessionStore()
    store["pending"] = {"x": 1}
    store.create()
    old = store.session_key
    with django_assert_num_queries(1):  # the old row's DELETE by key; nothing written yet
        store.cycle_key()
    assert store.session_key != old
    store["user"] = "1"
    store.save()
    assert SessionStore(store.session_key).load() == {"pending": {"x": 1}, "user": "1"}
    assert not Session.objects.filter(session_key=stored_key(old)).exists()


def test_sign_in_gives_a_new_key_and_the_old_one_is_dead(user):
    """Session fixation (OWASP): the key the browser had before signing in is worthless after."""
    browser = Client()
    login = reverse("oidc_provider_ext:login")
    assert browser.get(login).status_code == 200
    session = browser.session
    session["planted"] = True
    session.save()
    before = browser.cookies["sessionid"].value
    response = browser.post(login, {"username": user.username, "password": USER_PASSWORD})
    assert response.status_code == 302
    after = browser.cookies["sessionid"].value
    assert after != before
    assert not Session.objects.filter(session_key=stored_key(before)).exists()
    assert SessionStore(after).load()["_auth_user_id"] == str(user.pk)
    attacker = Client()
    attacker.cookies["sessionid"] = before
    assert "_auth_user_id" not in attacker.session.load()


def test_signals_and_expiry_as_django_s():
    """The session row written and deleted with SQL written once still sends the model signals a
    site may listen to, and an expired row is not loaded (its key is forgotten)."""
    from datetime import timedelta

    from django.db.models.signals import post_delete, post_save, pre_delete, pre_save
    from django.utils import timezone

    seen = []

    def receiver(signal, sender, instance, **kwargs):
        seen.append((signal, instance.pk, kwargs.get("created")))

    signals = (pre_save, post_save, pre_delete, post_delete)
    for signal in signals:
        signal.connect(receiver, sender=Session)
    try:
        store = SessionStore()
        store["who"] = "alice"
        store.create()
        key = store.session_key
        store["who"] = "bob"
        store.save()
        store.cycle_key()
        store.save()
    finally:
        for signal in signals:
            signal.disconnect(receiver, sender=Session)
    row = stored_key(key)  # the rows are keyed by the key's hash
    assert seen[:4] == [
        (pre_save, row, None),
        (post_save, row, True),
        (pre_save, row, None),
        (post_save, row, False),
    ]
    assert seen[4:6] == [(pre_delete, row, None), (post_delete, row, None)]
    assert seen[6][1] == seen[7][1] == stored_key(store.session_key) != row
    assert not Session.objects.filter(pk=row).exists()
    assert SessionStore(store.session_key)["who"] == "bob"

    Session.objects.filter(pk=stored_key(store.session_key)).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    )
    expired = SessionStore(store.session_key)
    assert expired.load() == {} and expired.session_key is None


def test_the_async_api_reads_and_writes_the_same_rows(user):
    """Django's session API has async twins (aload, asave, acycle_key… — what alogin and
    request.auser() use): they key rows by the same hash as the sync methods, and see each other's
    sessions."""
    from asgiref.sync import async_to_sync

    store = SessionStore()
    store["who"] = "alice"
    async_to_sync(store.asave)()
    key = store.session_key
    assert Session.objects.filter(session_key=stored_key(key)).exists()
    assert not Session.objects.filter(session_key=key).exists()
    assert SessionStore(key)["who"] == "alice"  # written async, read sync
    reader = SessionStore(key)
    assert async_to_sync(reader.aget)("who") == "alice"
    assert async_to_sync(reader.aexists)(key) and not async_to_sync(reader.aexists)(stored_key(key))
    async_to_sync(reader.acycle_key)()  # alogin's fixation defence
    async_to_sync(reader.asave)()
    assert reader.session_key != key and not Session.objects.filter(session_key=stored_key(key)).exists()
    assert SessionStore(reader.session_key)["who"] == "alice"
    assert key not in set(Session.objects.values_list("session_key", flat=True))
    async_to_sync(reader.aflush)()
    assert not Session.objects.exists()
