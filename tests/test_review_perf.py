"""Review of the third performance round (git diff 763e65b..): attacks that break it. Each test
fails on the reviewed code and says which behaviour of before (763e65b) or which rule it breaks."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.conf.urls.i18n import i18n_patterns
from django.contrib.auth.models import User
from django.db import models
from django.db.models.signals import post_save
from django.test import Client
from django.urls import include, path
from django.utils import timezone, translation
from oauth2_provider.models import get_access_token_model, get_refresh_token_model

from oidc_provider_ext.adapter import DefaultOIDCAdapter

from .conftest import oidc_settings
from .factories import TenantFactory, TenantMembershipFactory
from .flow import exchange, get_code, introspect, refresh
from .test_lookups import tables  # noqa: F401  (the fixture: test models' tables)

pytestmark = pytest.mark.django_db

# A site that serves the provider under i18n_patterns (ROOT_URLCONF = this module in a test).
urlpatterns = i18n_patterns(path("", include("oidc_provider_ext.urls")))


@pytest.fixture
def token(browser, rp, user, confidential_app):
    code, _ = get_code(browser, confidential_app, user, scope="openid")
    return exchange(rp, confidential_app, code).json()["access_token"]


@pytest.fixture
def _language_reset():
    yield
    translation.deactivate()  # the thread's language, as it was before the test


def _i18n_site(settings):
    settings.ROOT_URLCONF = __name__
    settings.LANGUAGE_CODE = "en"
    settings.LANGUAGES = [("en", "English"), ("de", "Deutsch")]
    middleware = list(django_settings.MIDDLEWARE)
    # Where Django's documentation puts it: after SessionMiddleware, before CommonMiddleware (here
    # after it, as the project moved SessionMiddleware below the bearer middleware).
    middleware.insert(
        middleware.index("django.contrib.sessions.middleware.SessionMiddleware") + 1,
        "django.middleware.locale.LocaleMiddleware",
    )
    settings.MIDDLEWARE = middleware


def test_i18n_patterns_userinfo_answers_in_every_language(token, settings, _language_reset):
    """Attack/regression: a site mounting the provider under ``i18n_patterns`` (LocaleMiddleware
    after the bearer middleware, as Django documents its place after SessionMiddleware).
    BearerEndpointsMiddleware caches the reversed paths with whatever language the first request's
    thread had active, then ``resolve()``s before LocaleMiddleware activated the request's language:
    a thread that last served a German page answers ``/en/connect/userinfo`` with 404. Before
    (763e65b) the whole chain ran and every request for a valid path got its userinfo answer
    (OIDC Core 5.3: the UserInfo endpoint answers a valid token)."""
    _i18n_site(settings)
    browser = Client()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    assert browser.get("/en/connect/userinfo", **auth).status_code == 200
    # A German page on the same thread (LocaleMiddleware activates "de" and leaves it active).
    browser.get("/de/.well-known/openid-configuration")
    assert browser.get("/de/connect/userinfo", **auth).status_code == 200
    assert browser.get("/en/connect/userinfo", **auth).status_code == 200


class StaffAdapter(DefaultOIDCAdapter):
    """A site rule written as docs/adapter.md says hooks are written (``**kwargs`` taken and passed
    on): a tenant's tokens are for its staff, the members of ``<tenant>staff`` as well."""

    def may_use_client(self, user, application, tenant, **kwargs):
        if not super().may_use_client(user, application, tenant, **kwargs):
            return False
        return not tenant or self.is_member_of(user, f"{tenant}staff", **kwargs)


def test_member_hint_answers_only_for_its_own_tenant(browser, rp, user, confidential_app, settings):
    """Attack: the membership a token's own statement read (``member_hint``: the user's
    membership of the token's tenant) is passed as a bare boolean through ``**kwargs``, and the
    default ``is_member_of`` returns it for ANY ``(user, tenant_code)`` it is asked about. A site
    adapter that forwards ``**kwargs`` (the documented hook convention) and asks about another
    tenant gets the token tenant's answer: a user whose staff membership ended keeps userinfo and
    an active introspection. Expected, as before (763e65b): the account-state rule is honoured at
    once (removed membership -> RFC 6750 401 invalid_token at userinfo, RFC 7662
    ``{"active": false}``)."""
    oidc_settings(settings, ADAPTER=f"{__name__}.StaffAdapter")
    TenantMembershipFactory(tenant=TenantFactory(code="acme"), user=user)
    staff = TenantMembershipFactory(tenant=TenantFactory(code="acmestaff"), user=user)
    code, _ = get_code(browser, confidential_app, user, scope="openid", acr_values="tenant:acme")
    token = exchange(rp, confidential_app, code).json()["access_token"]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    assert Client().get("/connect/userinfo", **auth).status_code == 200
    staff.is_active = False  # the user leaves the staff
    staff.save()
    assert Client().get("/connect/userinfo", **auth).status_code == 401
    assert introspect(rp, confidential_app, token) == {"active": False}


def test_the_token_models_save_runs_at_the_token_endpoint(browser, rp, user, confidential_app, monkeypatch):
    """Attack/regression (token-endpoint round, ``internal/exchange_lookups.insert``): the new
    access and refresh tokens of a code exchange and of a refresh are written with an INSERT of
    its own, so ``Model.save()`` of the token models is never called. DOT lets a site swap them
    (``OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL`` / ``REFRESH_TOKEN_MODEL``) and Django documents
    overriding ``save()`` as the place for such a model's own logic (an audit row, a computed
    column, a quota): it silently stops running, and ``post_save`` receivers see an instance
    that still says ``_state.adding``. ``insert()`` already falls back to ``save()`` for what it
    cannot write (multi-table inheritance, database defaults); a model whose ``save()`` is not
    Django's must be one of those. Expected, as before (763e65b): every new token row goes
    through its model's ``save()``, and is no longer "adding" once saved."""
    saved: list[str] = []
    seen: list[tuple[str, bool]] = []
    models = (get_access_token_model(), get_refresh_token_model())
    for model in models:  # a site's token model with its own save()

        def save(self, *args, _original=model.save, **kwargs):
            saved.append(type(self).__name__)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(model, "save", save)

    def receiver(sender, instance, created, **kwargs):
        if created:
            seen.append((sender.__name__, instance._state.adding))

    for model in models:
        post_save.connect(receiver, sender=model, weak=False)
    try:
        code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
        tokens = exchange(rp, confidential_app, code).json()
        assert sorted(saved) == ["AccessToken", "RefreshToken"]
        saved.clear()
        assert "access_token" in refresh(rp, confidential_app, tokens["refresh_token"]).json()
        assert sorted(saved) == ["AccessToken", "RefreshToken"]
        assert seen and all(not adding for _name, adding in seen), seen
    finally:
        for model in models:
            post_save.disconnect(receiver, sender=model)


class MemberUser(User):  # a site's user model with multi-table inheritance: columns in two tables
    title = models.CharField(max_length=20, blank=True)

    class Meta:
        app_label = "oidc_review_tests"


class MemberBadge(models.Model):  # a row whose foreign key leads to that user model
    member = models.ForeignKey(MemberUser, on_delete=models.CASCADE)

    class Meta:
        app_label = "oidc_review_tests"

    def __str__(self):
        return str(self.pk)


def test_a_multi_table_user_model_is_left_to_the_orm_at_the_code_exchange():
    """Attack/regression (token-endpoint round, then ``exchange_lookups.grant_by_code`` and
    ``refresh_token_by_checksum``): the user's columns were selected as ``u.<column>`` of the
    user model's own table for every field in ``_meta.concrete_fields``, but a user model with
    multi-table inheritance (``class Member(User)``, AUTH_USER_MODEL) keeps the inherited
    columns in the parent's table: the statement named columns that table does not have and every
    code exchange (and refresh) failed with a database error (HTTP 500). The token endpoint's
    lookups are now ``internal/lookups.Lookup``s joining the grant's (the token's) ``user``
    foreign key, and a ``Lookup`` joining a model it cannot describe in one table reports itself
    unsupported, so the caller uses the ORM (as before, 763e65b: ``select_related``)."""
    from oidc_provider_ext.internal.lookups import Lookup

    assert not Lookup(MemberBadge, by=["id"], joins=["member"]).supported()
    # The token endpoint's own lookups join through ``user`` as a Lookup (the structure above).
    from oidc_provider_ext.internal import lookups

    assert [join.name for join in lookups._grant_by_code_lookup().joins] == ["user"]


@pytest.mark.usefixtures("tables")
def test_a_foreign_key_to_a_uuid_key_comes_back_as_the_orm_gives_it():
    """Attack/regression (token-endpoint round, ``internal/lookups._converter``): foreign
    key columns are taken as the driver returns them ("the driver's value is the Python value"),
    but on SQLite a key to a UUID primary key is stored as 32 hex characters, which the ORM turns
    into a ``uuid.UUID`` and this does not. DOT lets a site swap the Application model
    (``OAUTH2_PROVIDER_APPLICATION_MODEL``), often with a UUID key: then the grant's and the
    refresh token's ``application_id`` is a ``str``, ``validate_code``'s
    ``grant.application_id != client.pk`` and ``validate_refresh_token``'s
    ``rt.application_id != client.pk`` always hold, and every code exchange and refresh fails
    with ``invalid_grant`` (fails closed: availability). Expected: the value the ORM gives (as
    before, 763e65b: ``select_related``)."""
    from oidc_provider_ext.internal.lookups import Lookup

    from .test_lookups import Item, Owner, _user

    owner = Owner.objects.create(name="Ed", joined=timezone.now(), balance=1)
    Item.objects.create(code="one", owner=owner, user=_user())
    item = Lookup(Item, by=["code"]).one("one")
    assert item.owner_id == owner.pk == Item.objects.get().owner_id
    assert isinstance(item.owner_id, type(owner.pk))
