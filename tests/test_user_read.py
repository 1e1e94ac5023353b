"""The signed-in user read with the OP-session check (oidc_provider_ext.backends.ModelBackend).

A signed-in browser's request reads the user's row and checks its OP sessions are still live in ONE
statement (op_sessions.browser_entries); the row is handed to the auth backend while Django loads
``request.user``, so Django's own verification still runs on it: the session auth hash (a password
change elsewhere signs the browser out; SECRET_KEY_FALLBACKS keep it), ``user_can_authenticate``
(an inactive user is not signed in) and the backend named by the session. These tests attack what
a shortcut that set the request's user directly would get wrong."""

from importlib import import_module

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, get_user_model
from django.contrib.auth import SESSION_KEY as USER_SESSION_KEY
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.db import connection
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from oidc_provider_ext import backends
from oidc_provider_ext.internal import factors, op_sessions
from oidc_provider_ext.middleware import OPSessionMiddleware
from oidc_provider_ext.models import OPSession

from .factories import UserFactory
from .flow import signed_in

pytestmark = pytest.mark.django_db

OURS = "oidc_provider_ext.backends.ModelBackend"
DJANGOS = "django.contrib.auth.backends.ModelBackend"
ACCOUNT_PAGE = "oidc_provider_ext:sessions"  # sign-in required


def _request(browser: Client):
    """A request of ``browser`` through the authentication and OP-session middleware, its session
    loaded before (the statements counted are those of the two middleware)."""
    request = RequestFactory().get("/")
    engine = import_module(django_settings.SESSION_ENGINE)
    request.session = engine.SessionStore(browser.cookies[django_settings.SESSION_COOKIE_NAME].value)
    request.session.keys()  # the session read
    AuthenticationMiddleware(lambda r: HttpResponse()).process_request(request)
    return request


def _through_middleware(request):
    OPSessionMiddleware(lambda r: HttpResponse())(request)
    return request


def _statements(request) -> list[str]:
    with CaptureQueriesContext(connection) as ctx:
        _through_middleware(request)
        _ = request.user.is_authenticated  # loaded here at the latest
    return [query["sql"] for query in ctx.captured_queries]


def test_the_example_project_uses_the_backend(settings):
    assert OURS in settings.AUTHENTICATION_BACKENDS and DJANGOS not in settings.AUTHENTICATION_BACKENDS
    assert issubclass(backends.ModelBackend, import_module("django.contrib.auth.backends").ModelBackend)


def test_one_statement_reads_the_user_and_the_op_sessions(user):
    browser = signed_in(user)
    request = _request(browser)
    assert request.session[BACKEND_SESSION_KEY] == OURS
    (sql,) = _statements(request)
    assert get_user_model()._meta.db_table in sql and OPSession._meta.db_table in sql
    assert request.user.is_authenticated and request.user.pk == user.pk
    assert request.user._state.db == "default" and not request.user._state.adding
    # every column as the ORM gives it (types too: SQLite's integers for booleans, its datetimes)
    from_orm = get_user_model().objects.get(pk=user.pk)
    for field in get_user_model()._meta.concrete_fields:
        value, expected = getattr(request.user, field.attname), getattr(from_orm, field.attname)
        assert (value, type(value)) == (expected, type(expected)), field.name
    assert request.user.get_session_auth_hash() == request.session[HASH_SESSION_KEY]
    assert set(op_sessions.browser_entries(request)) == {""}
    # the second factor and membership answers were read with it, for this user
    assert getattr(request, factors.SECOND_FACTOR_READ) == (user.pk, False)
    assert browser.get(reverse(ACCOUNT_PAGE)).status_code == 200


def test_a_password_changed_elsewhere_signs_the_browser_out(user):
    """Django's session auth hash is verified on the row the OP-session check read: the browser whose
    password was changed on another device is signed out on its next request."""
    browser = signed_in(user)
    user.set_password("a new password elsewhere")
    user.save()
    request = _through_middleware(_request(browser))
    assert not request.user.is_authenticated
    assert USER_SESSION_KEY not in request.session  # Django flushed it
    assert browser.get(reverse(ACCOUNT_PAGE)).status_code == 302


def test_an_inactive_user_is_not_signed_in(user):
    """``user_can_authenticate`` is asked of the row read with the OP sessions: a user made inactive
    without the signals that end their OP sessions (a queryset update) is not signed in."""
    browser = signed_in(user)
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    assert OPSession.objects.filter(user=user, ended__isnull=True).exists()  # still live
    request = _through_middleware(_request(browser))
    assert not request.user.is_authenticated
    assert browser.get(reverse(ACCOUNT_PAGE)).status_code == 302
    # The backend itself never returns a handed-over row that may not authenticate.
    inactive = get_user_model().objects.get(pk=user.pk)
    with backends.handing_over(inactive):
        assert backends.ModelBackend().get_user(user.pk) is None


def test_a_deactivated_user_is_signed_out_for_good(user):
    """Deactivation ends the OP sessions (receivers): not signed in while inactive, and once active
    again the browser's ended OP sessions sign it out."""
    browser = signed_in(user)
    user.is_active = False
    user.save()
    assert not OPSession.objects.filter(user=user, ended__isnull=True).exists()
    assert not _through_middleware(_request(browser)).user.is_authenticated
    get_user_model().objects.filter(pk=user.pk).update(is_active=True)
    request = _through_middleware(_request(browser))
    assert not request.user.is_authenticated
    assert USER_SESSION_KEY not in request.session and op_sessions.SESSION_KEY not in request.session
    assert browser.get(reverse(ACCOUNT_PAGE)).status_code == 302


def test_the_row_read_never_leaks_to_another_request(user):
    """The row is handed over only while ``request.user`` is evaluated: afterwards the backend reads
    the database again, and the next request in the same thread, another user's, gets its own."""
    other = UserFactory()
    alice, bob = signed_in(user), signed_in(other)
    first = _through_middleware(_request(alice))
    assert first.user.pk == user.pk
    assert backends._handed_over.get() is None
    get_user_model().objects.filter(pk=user.pk).update(first_name="Changed")
    assert backends.ModelBackend().get_user(user.pk).first_name == "Changed"  # from the database
    second = _request(bob)
    assert len(_statements(second)) == 1
    assert second.user.pk == other.pk and second.user.username == other.username
    assert backends._handed_over.get() is None


def test_the_row_is_not_left_behind_when_loading_the_user_fails(user, monkeypatch):
    browser = signed_in(user)

    def fails(self, user):
        raise RuntimeError("boom")

    monkeypatch.setattr(backends.ModelBackend, "user_can_authenticate", fails)
    with pytest.raises(RuntimeError):
        _through_middleware(_request(browser))
    assert backends._handed_over.get() is None


def test_a_row_for_another_user_is_not_handed_out(user):
    other = UserFactory()
    with backends.handing_over(user):
        assert backends.ModelBackend().get_user(other.pk) == other  # read from the database
        assert backends.ModelBackend().get_user(user.pk) is user


def test_the_async_twin_takes_the_row_too(user):
    from asgiref.sync import async_to_sync

    other = UserFactory()
    aget_user = async_to_sync(backends.ModelBackend().aget_user)
    with backends.handing_over(user):
        assert aget_user(user.pk) is user
        assert aget_user(other.pk) == other
    found = aget_user(user.pk)
    assert found == user and found is not user  # read from the database


def test_djangos_backend_keeps_the_two_statements(user, settings):
    """A session signed in with Django's ModelBackend (a site that has not swapped it) works as
    before: the user, then the OP sessions."""
    settings.AUTHENTICATION_BACKENDS = [DJANGOS]
    browser = signed_in(user)
    request = _request(browser)
    assert request.session[BACKEND_SESSION_KEY] == DJANGOS
    user_read, live = _statements(request)
    assert OPSession._meta.db_table not in user_read and get_user_model()._meta.db_table not in live
    assert request.user.pk == user.pk and set(op_sessions.browser_entries(request)) == {""}
    assert browser.get(reverse(ACCOUNT_PAGE)).status_code == 200


def test_a_session_naming_a_backend_no_longer_configured_is_signed_out(user, settings):
    browser = signed_in(user)
    settings.AUTHENTICATION_BACKENDS = [DJANGOS]
    request = _request(browser)
    assert _statements(request) == []  # nothing read: Django does not load the user
    assert not request.user.is_authenticated


def test_without_the_factors_sql_the_two_statements(user, monkeypatch):
    browser = signed_in(user)
    monkeypatch.setattr(factors, "enrolled_sql", lambda connection: None)
    request = _request(browser)
    assert len(_statements(request)) == 2
    assert request.user.pk == user.pk and set(op_sessions.browser_entries(request)) == {""}


def test_secret_key_rotation_keeps_the_session(user, settings):
    """Django's SECRET_KEY_FALLBACKS handling runs on the row: the session verified with the old key
    stays signed in and its hash is rewritten with the new one."""
    browser = signed_in(user)
    old_hash = _request(browser).session[HASH_SESSION_KEY]
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-" + "x" * 40
    request = _through_middleware(_request(browser))
    assert request.user.is_authenticated and request.user.pk == user.pk
    assert request.session[HASH_SESSION_KEY] == request.user.get_session_auth_hash() != old_hash


def test_a_tampered_session_hash_is_refused(user):
    browser = signed_in(user)
    request = _request(browser)
    request.session[HASH_SESSION_KEY] = "0" * 64
    _through_middleware(request)
    assert not request.user.is_authenticated and USER_SESSION_KEY not in request.session


def test_a_session_with_an_unusable_user_key_falls_back(user):
    """A user key the user model's primary key cannot take is not read with the OP sessions: Django
    answers it as before (its ValidationError)."""
    from django.core.exceptions import ValidationError

    request = _request(signed_in(user))
    request.session[USER_SESSION_KEY] = "not a number"
    with pytest.raises(ValidationError):
        _through_middleware(request)
