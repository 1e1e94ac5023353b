"""Django's two statements in a password sign-in, written once: the user read by name
(backends.ModelBackend.authenticate) and the ``last_login`` UPDATE (sign_in.update_last_login).

Each must decide exactly as Django's own code does; these tests put the two side by side on the
same rows, and check that every case the written SQL could get wrong goes to Django instead.
"""

from __future__ import annotations

from unittest import mock

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth import backends as django_backends
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import update_last_login as djangos_update_last_login
from django.contrib.auth.signals import user_logged_in
from django.db import DatabaseError, connection, models, transaction
from django.db.models.lookups import Exact
from django.db.models.signals import post_save, pre_save
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext, register_lookup
from django.utils import timezone

from oidc_provider_ext import backends
from oidc_provider_ext.internal import lookups, sign_in

from .conftest import record_calls
from .factories import UserFactory
from .flow import USER_PASSWORD, login

pytestmark = pytest.mark.django_db

User = get_user_model()
OURS = "oidc_provider_ext.backends.ModelBackend"


@pytest.fixture(autouse=True)
def _fresh_lookup_cache():
    lookups._user_by_name_lookup.cache_clear()
    yield
    lookups._user_by_name_lookup.cache_clear()


def _row(user) -> dict:
    return {f.attname: getattr(user, f.attname) for f in User._meta.concrete_fields}


# --- the user by name ----------------------------------------------------------------------------


def test_the_user_is_read_by_one_statement_of_our_own_and_is_the_orms_row():
    user = UserFactory()
    with CaptureQueriesContext(connection) as ctx:
        found = backends.ModelBackend().authenticate(None, username=user.username, password=USER_PASSWORD)
    written = lookups.user_by_name_lookup(User, "default").compiled("default").sql
    assert len(ctx.captured_queries) == 1
    assert ctx.captured_queries[0]["sql"].startswith(written.split("%s")[0])  # values bound, then shown
    assert 'WHERE t0."username" = ' in written
    assert found is not None and _row(found) == _row(User.objects.get_by_natural_key(user.username))
    assert found._state.db == "default" and not found._state.adding


@pytest.mark.parametrize(
    "case",
    [
        "right password",
        "wrong password",
        "unknown name",
        "inactive",
        "name in another case",
        "empty password",
    ],
)
def test_authenticate_decides_as_djangos_model_backend(case):
    user = UserFactory(username="ada")
    username, password = "ada", USER_PASSWORD
    if case == "wrong password":
        password = "not-the-password"
    elif case == "unknown name":
        username = "grace"
    elif case == "inactive":
        User.objects.filter(pk=user.pk).update(is_active=False)
    elif case == "name in another case":
        username = "ADA"
    elif case == "empty password":
        password = ""
    djangos = django_backends.ModelBackend().authenticate(None, username=username, password=password)
    ours = backends.ModelBackend().authenticate(None, username=username, password=password)
    assert (ours is None) == (djangos is None)
    assert ours is None or _row(ours) == _row(djangos)
    assert (ours is not None) == (case == "right password")


@pytest.mark.parametrize("username", ["ada\x00", "ada\x07", "a" * 1_000_000, 42, "ädä"])
def test_odd_usernames_are_decided_as_djangos_backend_decides_them(username):
    # NUL (PostgreSQL refuses it in text: both raise), control characters, a megabyte, a number.
    UserFactory(username="ada")

    def outcome(backend):
        try:
            with transaction.atomic():
                found = backend.authenticate(None, username=username, password=USER_PASSWORD)
        except Exception as exc:  # noqa: BLE001 - the kind of failure is what is compared
            return type(exc)
        return None if found is None else found.pk

    assert outcome(backends.ModelBackend()) == outcome(django_backends.ModelBackend())


def test_the_username_may_come_as_the_username_field_keyword():
    user = UserFactory()
    found = backends.ModelBackend().authenticate(
        None, **{User.USERNAME_FIELD: user.username}, password=USER_PASSWORD
    )
    assert found is not None and found.pk == user.pk
    assert backends.ModelBackend().authenticate(None, password=USER_PASSWORD) is None
    assert backends.ModelBackend().authenticate(None, username=user.username) is None


def test_an_unknown_name_costs_one_password_hash_as_in_django():
    # Django #20760: otherwise the response time tells which names exist.
    with mock.patch("django.contrib.auth.base_user.make_password", wraps=make_password) as hashed:
        assert backends.ModelBackend().authenticate(None, username="nobody", password="x") is None
    assert hashed.call_count == 1


def test_a_manager_of_the_sites_own_is_asked_instead(monkeypatch):
    user = UserFactory()
    asked = []
    manager_class = type(User._default_manager)
    original = manager_class.get_by_natural_key

    def get_by_natural_key(self, username):
        asked.append(username)
        return original(self, username)

    monkeypatch.setattr(manager_class, "get_by_natural_key", get_by_natural_key)
    assert lookups.user_by_name_lookup(User, "default") is None
    assert backends.ModelBackend().authenticate(None, username=user.username, password=USER_PASSWORD) == user
    assert asked == [user.username]


def test_a_queryset_of_the_sites_own_is_asked_instead(monkeypatch):
    # A soft-delete manager, say: its get_queryset() filters rows the written SQL would return.
    manager_class = type(User._default_manager)
    monkeypatch.setattr(
        manager_class, "get_queryset", lambda self: super(manager_class, self).get_queryset().none()
    )
    user = UserFactory.build(username="hidden")
    User.objects.bulk_create([user])
    assert lookups.user_by_name_lookup(User, "default") is None
    assert backends.ModelBackend().authenticate(None, username="hidden", password=USER_PASSWORD) is None


def test_a_manager_get_of_the_sites_own_is_asked_instead(monkeypatch):
    manager_class = type(User._default_manager)
    original = manager_class.get
    asked = []

    def get(self, *args, **kwargs):
        asked.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(manager_class, "get", get)
    user = UserFactory()
    assert lookups.user_by_name_lookup(User, "default") is None
    assert backends.ModelBackend().authenticate(None, username=user.username, password=USER_PASSWORD) == user
    assert asked == [{"username": user.username}]


def test_an_exact_lookup_of_the_sites_own_is_left_to_the_manager():
    # A case-insensitive "exact", say; an integer field's and a foreign key's are not "= %s" either.
    class CaseInsensitiveExact(Exact):
        def as_sql(self, compiler, connection):
            lhs, lhs_params = self.process_lhs(compiler, connection)
            rhs, rhs_params = self.process_rhs(compiler, connection)
            return f"UPPER({lhs}) = UPPER({rhs})", [*lhs_params, *rhs_params]

    field_class = type(User._meta.get_field(User.USERNAME_FIELD))
    user = UserFactory(username="ada")
    with register_lookup(field_class, CaseInsensitiveExact, lookup_name="exact"):
        assert lookups.user_by_name_lookup(User, "default") is None
        found = backends.ModelBackend().authenticate(None, username="ADA", password=USER_PASSWORD)
    assert found == user


def test_a_username_field_that_is_not_unique_is_left_to_the_manager(monkeypatch):
    # get() raises on two rows; the written SQL's LIMIT 1 would pick one of them.
    monkeypatch.setattr(User, "USERNAME_FIELD", "email")
    assert lookups.user_by_name_lookup(User, "default") is None
    UserFactory(username="one", email="same@example.com")
    UserFactory(username="two", email="same@example.com")
    with pytest.raises(User.MultipleObjectsReturned):
        backends.ModelBackend().authenticate(None, email="same@example.com", password=USER_PASSWORD)


# --- last_login ----------------------------------------------------------------------------------


def _signals_of(call, user) -> list[tuple]:
    seen = []

    def pre(sender, instance, **kwargs):
        seen.append(
            ("pre_save", sender, instance.pk, kwargs["update_fields"], kwargs["raw"], kwargs["using"])
        )

    def post(sender, instance, **kwargs):
        seen.append(
            (
                "post_save",
                sender,
                instance.pk,
                kwargs["update_fields"],
                kwargs["created"],
                kwargs["raw"],
                kwargs["using"],
            )
        )

    pre_save.connect(pre, sender=User, weak=False)
    post_save.connect(post, sender=User, weak=False)
    try:
        call(user)
    finally:
        pre_save.disconnect(pre, sender=User)
        post_save.disconnect(post, sender=User)
    assert all(entry[2] == user.pk for entry in seen)
    return [(name, sender, *rest) for name, sender, _pk, *rest in seen]


def test_last_login_is_one_update_with_djangos_signals_and_value():
    ours, djangos = UserFactory(), UserFactory()
    before = timezone.now()
    with CaptureQueriesContext(connection) as ctx:
        ours_signals = _signals_of(lambda u: sign_in.update_last_login(User, u), ours)
    djangos_signals = _signals_of(lambda u: djangos_update_last_login(User, u), djangos)
    # Ours: the column unqualified (Django's UPDATE says "auth_user"."id"), so the written SQL ran.
    assert [q["sql"].split(" SET ")[0] for q in ctx.captured_queries] == [f'UPDATE "{User._meta.db_table}"']
    assert ' WHERE "id" = ' in ctx.captured_queries[0]["sql"]
    assert ours_signals == djangos_signals
    assert ours_signals[0][:3] == ("pre_save", User, frozenset({"last_login"}))
    stored = User.objects.get(pk=ours.pk)
    assert stored.last_login == ours.last_login and stored.last_login >= before
    assert _row(stored) == _row(ours)


def test_last_login_of_a_deleted_user_raises_as_django():
    ours, djangos = UserFactory(), UserFactory()
    User.objects.filter(pk__in=[ours.pk, djangos.pk]).delete()
    # Each in its own savepoint: both mark the atomic block they fail in for rollback.
    with pytest.raises(DatabaseError) as raised_by_django, transaction.atomic():
        djangos_update_last_login(User, djangos)
    with pytest.raises(DatabaseError) as raised, transaction.atomic():
        sign_in.update_last_login(User, ours)
    # Django 6.1: the model's NotUpdated (a DatabaseError too); 5.2: DatabaseError.
    assert type(raised.value) is type(raised_by_django.value)
    assert str(raised.value) == str(raised_by_django.value)


def test_a_base_manager_of_the_sites_own_goes_through_save(monkeypatch):
    # Django's UPDATE filters through the base manager; a filtering one may refuse the row.
    class Filtering(models.Manager):
        def get_queryset(self):
            return super().get_queryset().filter(is_active=True)

    manager = Filtering()
    manager.model = User
    monkeypatch.setattr(User._meta, "base_manager", manager)
    user = UserFactory()
    User.objects.filter(pk=user.pk).update(is_active=False)
    with pytest.raises(DatabaseError):  # as Django's save() raises: its UPDATE found no row
        sign_in.update_last_login(User, user)


@pytest.mark.parametrize(
    ("method", "update_fields"),
    [
        ("save", ("last_login",)),  # a user model's own save()
        # a library wrapping a save step: django-model-utils' FieldTracker wraps save_base,
        # django-concurrency _do_update
        ("save_base", frozenset({"last_login"})),
    ],
)
def test_a_save_or_save_step_of_the_sites_own_is_called(monkeypatch, method, update_fields):
    user = UserFactory()
    calls = record_calls(monkeypatch, User, method, lambda args, kwargs: kwargs.get("update_fields"))
    sign_in.update_last_login(User, user)
    assert calls == [update_fields]


def test_a_password_set_and_not_saved_goes_through_save():
    # AbstractBaseUser.save() reports it to the password validators after saving.
    user = UserFactory()
    user.set_password("a new one")
    with mock.patch("django.contrib.auth.password_validation.password_changed") as changed:
        sign_in.update_last_login(User, user)
    changed.assert_called_once()


def test_the_sign_in_page_uses_both(client):
    user = UserFactory()
    with CaptureQueriesContext(connection) as ctx:
        assert login(client, user).status_code == 302
    statements = [q["sql"] for q in ctx.captured_queries]
    table = User._meta.db_table
    assert sum(s.startswith('SELECT t0."id"') and f'FROM "{table}" t0' in s for s in statements) == 1
    assert any(
        s.startswith(f'UPDATE "{table}" SET "last_login" = ') and ' WHERE "id" = ' in s for s in statements
    )
    assert User.objects.get(pk=user.pk).last_login is not None
    # Django's receiver is replaced under its own dispatch_uid, not added beside it.
    assert sum(s.startswith(f'UPDATE "{table}" SET "last_login"') for s in statements) == 1


def test_only_djangos_own_last_login_receiver_is_replaced():
    # Ours took its place at start-up; Django's own, connected under any uid, is found.
    assert not sign_in.djangos_last_login_receiver_connected()
    user_logged_in.connect(djangos_update_last_login, dispatch_uid="a-sites-copy", weak=False)
    try:
        assert sign_in.djangos_last_login_receiver_connected()
    finally:
        user_logged_in.disconnect(dispatch_uid="a-sites-copy")


def test_authenticate_through_django_reaches_our_backend():
    user = UserFactory()
    found = authenticate(RequestFactory().post("/"), username=user.username, password=USER_PASSWORD)
    assert found == user and found.backend == OURS
