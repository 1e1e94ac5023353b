"""internal/prepared.py: a lookup compiled once gives what the ORM gives, every time."""

import pytest
from oauth2_provider.models import get_access_token_model

from oidc_provider_ext.internal.prepared import PreparedLookup
from oidc_provider_ext.models.grants import with_grant
from oidc_provider_ext.validator import checksum

from .flow import exchange, get_code, refresh

pytestmark = pytest.mark.django_db

AccessToken = get_access_token_model()


def _build(value):
    return with_grant(
        AccessToken.objects.select_related("application", "user").filter(token_checksum=value),
        "claims",
        "tenant",
    )[:1]


def _same(prepared, orm):
    assert prepared is not None and orm is not None
    assert type(prepared) is type(orm)
    for field in AccessToken._meta.concrete_fields:
        assert getattr(prepared, field.attname) == getattr(orm, field.attname), field.name
    assert prepared.application.client_id == orm.application.client_id
    assert prepared.user.pk == orm.user.pk and prepared.user.email == orm.user.email
    assert (prepared.grant_pk, prepared.grant_claims, prepared.grant_tenant) == (
        orm.grant_pk,
        orm.grant_claims,
        orm.grant_tenant,
    )
    assert prepared._state.db == orm._state.db and not prepared._state.adding


def test_matches_the_orm_for_first_and_rotated_tokens(browser, rp, user, confidential_app):
    code, _ = get_code(
        browser, confidential_app, user, scope="openid offline_access", claims='{"userinfo": {"email": null}}'
    )
    body = exchange(rp, confidential_app, code).json()
    rotated = refresh(rp, confidential_app, body["refresh_token"])
    lookup = PreparedLookup(AccessToken, _build)
    for token in AccessToken.objects.all():
        _same(lookup.one(token.token_checksum), next(iter(_build(token.token_checksum))))
    assert rotated.status_code == 200, rotated.content
    assert lookup.one(
        AccessToken.objects.get(source_refresh_token__isnull=False).token_checksum
    ).grant_claims == {"userinfo": {"email": None}}


@pytest.mark.parametrize("token", ["", "\x00", "x" * 1_000_000, "' OR 1=1 --", "%s %s"])
def test_unknown_values_find_nothing(token, browser, rp, user, confidential_app):
    code, _ = get_code(browser, confidential_app, user, scope="openid")
    exchange(rp, confidential_app, code)
    lookup = PreparedLookup(AccessToken, _build)
    # The callers look up checksums (validator.checksum); the value is a parameter either way.
    assert lookup.one(checksum(token)) is None
    assert lookup.one(token[:1000].replace("\x00", "")) is None


def test_compiled_once_per_connection(browser, rp, user, confidential_app):
    code, _ = get_code(browser, confidential_app, user, scope="openid")
    exchange(rp, confidential_app, code)
    token = AccessToken.objects.get()
    built = []

    def build(value):
        built.append(value)
        return _build(value)

    lookup = PreparedLookup(AccessToken, build)
    for _ in range(3):
        assert lookup.one(token.token_checksum).pk == token.pk
    assert len(built) == 1


def test_a_value_that_is_not_a_parameter_is_refused():
    lookup = PreparedLookup(AccessToken, lambda value: AccessToken.objects.filter(pk=1)[:1])
    with pytest.raises(ValueError):
        lookup.one("anything")
