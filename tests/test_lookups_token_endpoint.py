"""internal/lookups.py, the token endpoint's part: its SQL written from ``_meta`` gives exactly what
the ORM gives (same objects, same rows), on SQLite and PostgreSQL, and through the ORM fallback."""

import uuid
from datetime import timedelta

import pytest
from django.db.models.signals import post_save, pre_save
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_refresh_token_model

from oidc_provider_ext.internal import lookups
from oidc_provider_ext.models import AuthorizationGrant, OPSession

from .conftest import record_calls
from .factories import ApplicationFactory, UserFactory

pytestmark = pytest.mark.django_db
AccessToken = get_access_token_model()
RefreshToken = get_refresh_token_model()


@pytest.fixture(params=["sql", "orm"])
def path(request, monkeypatch):
    """Each test runs on the written SQL and on the ORM fallback (other databases)."""
    if request.param == "orm":
        monkeypatch.setattr(lookups, "supported_vendor", lambda alias: False)
    return request.param


def _grant(user, app, op_session, **fields):
    now = timezone.now()
    values = {
        "code_checksum": uuid.uuid4().hex * 2,
        "application": app,
        "user": user,
        "op_session": op_session,
        "redirect_uri": "https://rp.example.com/callback",
        "scope": "openid offline_access",
        "code_challenge": "c" * 43,
        "code_challenge_method": "S256",
        "nonce": "n-1",
        "claims": {"id_token": {"email": {"essential": True}}, "userinfo": {"name": None}},
        "resource": ["https://api.example.com/"],
        "auth_time": now - timedelta(minutes=3, microseconds=17),
        "acr": "urn:example:mfa",
        "amr": ["pwd", "otp"],
        "sid": "sid-1",
        "tenant": "org1",
        "expires": now + timedelta(seconds=60),
        **fields,
    }
    return AuthorizationGrant.objects.create(**values)


def _session(user, **fields):
    return OPSession.objects.create(user=user, auth_time=timezone.now(), **fields)


def _same(a, b, model) -> None:
    for field in model._meta.concrete_fields:
        assert getattr(a, field.attname) == getattr(b, field.attname), field.name
        assert type(getattr(a, field.attname)) is type(getattr(b, field.attname)), field.name


def test_grant_by_code_is_what_the_orm_loads(path, django_assert_num_queries):
    user, app = UserFactory(), ApplicationFactory()
    session = _session(user)
    family = uuid.uuid4()
    stored = _grant(user, app, session, redeemed=timezone.now(), reuse_detected=True, token_family=family)
    expected = AuthorizationGrant.objects.select_related("user").get(pk=stored.pk)
    with django_assert_num_queries(1):
        grant, live = lookups.grant_by_code(stored.code_checksum)
        assert grant.user.username == user.username  # loaded with it
    assert live is True
    _same(grant, expected, AuthorizationGrant)
    _same(grant.user, expected.user, type(user))
    assert grant.expires.tzinfo is not None and grant.token_family == family
    assert not any(name.startswith("oidc_grant__") for name in vars(grant.user))


def test_grant_by_code_with_empty_values(path):
    user, app = UserFactory(), ApplicationFactory()
    stored = _grant(user, app, None, claims={}, resource=[], amr=[], nonce="", code_challenge="")
    grant, live = lookups.grant_by_code(stored.code_checksum)
    _same(grant, AuthorizationGrant.objects.get(pk=stored.pk), AuthorizationGrant)
    assert grant.redeemed is None and grant.token_family is None and grant.reuse_detected is False
    assert live is False  # no OP session (deleted: SET_NULL)


def test_an_ended_op_session_is_not_live(path):
    user, app = UserFactory(), ApplicationFactory()
    stored = _grant(user, app, _session(user, ended=timezone.now()))
    assert lookups.grant_by_code(stored.code_checksum)[1] is False


def test_an_unknown_code_has_no_grant(path):
    assert lookups.grant_by_code("0" * 64) == (None, False)


def test_update_is_the_conditional_update(path):
    user, app = UserFactory(), ApplicationFactory()
    grant = _grant(user, app, _session(user))
    now = timezone.now()
    redeem = {"redeemed__isnull": True, "expires__gt": now}
    assert lookups.update(AuthorizationGrant, grant.pk, {"redeemed": now}, **redeem) == 1
    assert lookups.update(AuthorizationGrant, grant.pk, {"redeemed": now}, **redeem) == 0  # once
    grant.refresh_from_db()
    assert grant.redeemed == now
    expired = _grant(user, app, None, expires=now - timedelta(seconds=1))
    assert lookups.update(AuthorizationGrant, expired.pk, {"redeemed": now}, **redeem) == 0
    family = uuid.uuid4()
    assert lookups.update(AuthorizationGrant, grant.pk, {"token_family": family}, reuse_detected=True) == 0
    assert lookups.update(AuthorizationGrant, grant.pk, {"token_family": family}, reuse_detected=False) == 1
    assert AuthorizationGrant.objects.get(token_family=family).pk == grant.pk


def test_insert_is_save(path):
    user, app = UserFactory(), ApplicationFactory()
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append((kwargs["signal"], instance.pk is not None, kwargs.get("created")))

    pre_save.connect(receiver, sender=AccessToken)
    post_save.connect(receiver, sender=AccessToken)
    try:
        token = AccessToken(
            user=user,
            application=app,
            scope="openid",
            expires=timezone.now() + timedelta(hours=1),
            resource=["https://api.example.com/"],
        )
        token.token = "raw-access-token"
        lookups.insert(token)
    finally:
        pre_save.disconnect(receiver, sender=AccessToken)
        post_save.disconnect(receiver, sender=AccessToken)
    assert seen == [(pre_save, False, None), (post_save, True, True)]
    stored = AccessToken.objects.get(pk=token.pk)
    _same(token, stored, AccessToken)
    assert stored.created is not None and stored.token_checksum  # auto_now_add; DOT's checksum field
    refresh = RefreshToken(user=user, application=app, access_token=stored, token_family=uuid.uuid4())
    refresh.token = "raw-refresh-token"
    lookups.insert(refresh)
    _same(refresh, RefreshToken.objects.get(pk=refresh.pk), RefreshToken)


def _tokens(user, app, *, revoked=None, access_token=True):
    token = None
    if access_token:
        token = AccessToken(
            user=user, application=app, scope="openid offline_access", expires=timezone.now(), resource=["x"]
        )
        token.token = uuid.uuid4().hex
        token.save()
    refresh = RefreshToken(
        user=user, application=app, access_token=token, token_family=uuid.uuid4(), revoked=revoked
    )
    refresh.token = "raw-refresh"
    refresh.save()
    return refresh


def test_refresh_token_by_checksum_is_what_the_orm_loads(path, django_assert_num_queries):
    user, app = UserFactory(), ApplicationFactory()
    used = _tokens(user, app, revoked=timezone.now() - timedelta(seconds=5))
    live = _tokens(user, app)
    assert used.token_checksum == live.token_checksum
    with django_assert_num_queries(1):
        found = lookups.refresh_token_by_checksum(live.token_checksum)
        assert found.user.username == user.username and found.access_token.scope  # loaded with it
    assert found.pk == live.pk  # the live row first
    expected = RefreshToken.objects.select_related("user", "access_token").get(pk=live.pk)
    _same(found, expected, RefreshToken)
    _same(found.access_token, expected.access_token, AccessToken)
    _same(found.user, expected.user, type(user))
    live.delete()
    found = lookups.refresh_token_by_checksum(used.token_checksum)
    assert found.pk == used.pk and found.revoked == RefreshToken.objects.get(pk=used.pk).revoked
    assert lookups.refresh_token_by_checksum("0" * 64) is None


def test_refresh_token_without_its_access_token(path, django_assert_num_queries):
    user, app = UserFactory(), ApplicationFactory()
    orphan = _tokens(user, app, access_token=False)
    with django_assert_num_queries(1):
        found = lookups.refresh_token_by_checksum(orphan.token_checksum)
        assert found.access_token_id is None and found.access_token is None  # no query for it
    _same(found, RefreshToken.objects.get(pk=orphan.pk), RefreshToken)


def test_grant_of_family_for_update(path):
    user, app = UserFactory(), ApplicationFactory()
    family = uuid.uuid4()
    stored = _grant(user, app, None, token_family=family, redeemed=timezone.now())
    grant = lookups.grant_of_family_for_update(family)
    _same(grant, AuthorizationGrant.objects.get(pk=stored.pk), AuthorizationGrant)
    assert lookups.grant_of_family_for_update(uuid.uuid4()) is None


def test_an_inserted_token_is_saved(path, django_assert_num_queries):
    """After insert() the instance counts as saved: a later save() is one UPDATE, not an INSERT."""
    user, app = UserFactory(), ApplicationFactory()
    token = AccessToken(user=user, application=app, scope="openid", expires=timezone.now(), resource=[])
    token.token = "raw-access-token-2"
    lookups.insert(token)
    assert token._state.adding is False and token._state.db == "default"
    pk, count = token.pk, AccessToken.objects.count()
    token.scope = "openid profile"
    with django_assert_num_queries(1) as captured:
        token.save()
    assert captured.captured_queries[0]["sql"].lstrip().upper().startswith("UPDATE")
    assert token.pk == pk and AccessToken.objects.count() == count
    assert AccessToken.objects.get(pk=pk).scope == "openid profile"


class SelfSavingAccessToken(AccessToken):
    """A site's token model with its own save(): insert() must call it, not write the INSERT."""

    saved = 0

    class Meta:
        proxy = True
        app_label = "oidc_lookups_tests"

    def save(self, *args, **kwargs):
        type(self).saved += 1
        super().save(*args, **kwargs)


def test_a_model_with_its_own_save_is_saved_by_it(path):
    assert not lookups.saves_as_django(SelfSavingAccessToken)
    assert lookups.saves_as_django(AccessToken) and lookups.saves_as_django(RefreshToken)
    user, app = UserFactory(), ApplicationFactory()
    token = SelfSavingAccessToken(user=user, application=app, scope="openid", expires=timezone.now())
    token.token = "raw-access-token-3"
    before = SelfSavingAccessToken.saved
    lookups.insert(token)
    assert SelfSavingAccessToken.saved == before + 1
    assert token.pk is not None and AccessToken.objects.filter(pk=token.pk).exists()


@pytest.mark.parametrize("step", ["save_base", "_save_table", "_do_insert"])
def test_a_save_step_of_the_sites_own_is_called_by_insert(path, monkeypatch, step):
    """A library may wrap a step under save() on the model class (django-model-utils' FieldTracker
    wraps save_base): insert() then calls save(), so the wrapper runs."""
    calls = record_calls(monkeypatch, AccessToken, step)
    user, app = UserFactory(), ApplicationFactory()
    token = AccessToken(user=user, application=app, scope="openid", expires=timezone.now(), resource=[])
    token.token = "raw-access-token-wrapped"
    lookups.insert(token)
    assert len(calls) == 1
    assert AccessToken.objects.filter(pk=token.pk).exists()
