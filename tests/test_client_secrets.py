"""Client secrets: a fast keyed hash for generated secrets, a slow one for anything else, and the
transparent upgrade of old slow hashes (issue: performance, item 1)."""

import secrets

import pytest
from django.contrib.auth.hashers import check_password, identify_hasher, make_password
from django.core.checks import run_checks
from oauth2_provider.generators import generate_client_secret

from oidc_provider_ext.checks import E009, E010
from oidc_provider_ext.hashers import ClientSecretHasher, looks_generated

from .factories import ApplicationFactory
from .flow import exchange, get_code

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "secret",
    [secrets.token_urlsafe(32), generate_client_secret(), secrets.token_hex(32) + "AbC"],
)
def test_generated_secrets_are_recognised(secret):
    assert looks_generated(secret)


@pytest.mark.parametrize(
    "secret",
    ["hunter2", "correct horse battery staple" * 3, "a" * 200, "Password1" * 6, "abcABC123" * 5],
)
def test_human_secrets_are_not(secret):
    assert not looks_generated(secret)


def test_generated_secret_gets_the_fast_hash_and_verifies():
    app = ApplicationFactory()
    stored = type(app).objects.get(pk=app.pk).client_secret
    assert identify_hasher(stored).algorithm == "oidc_hmac_sha256"
    assert check_password(app.raw_secret, stored)
    assert not check_password(app.raw_secret + "x", stored)


def test_human_chosen_secret_keeps_the_slow_hash():
    app = ApplicationFactory(client_secret="my-company-2024")
    stored = type(app).objects.get(pk=app.pk).client_secret
    assert identify_hasher(stored).algorithm != "oidc_hmac_sha256"
    assert check_password("my-company-2024", stored)


def test_old_slow_hash_is_upgraded_on_the_next_successful_authentication(browser, rp, user):
    app = ApplicationFactory()
    slow = make_password(app.raw_secret, hasher="pbkdf2_sha256")
    type(app).objects.filter(pk=app.pk).update(client_secret=slow)
    from oidc_provider_ext.internal.clients import forget

    forget(app.client_id)
    code, _ = get_code(browser, app, user)
    assert exchange(rp, app, code).status_code == 200
    upgraded = type(app).objects.get(pk=app.pk).client_secret
    assert upgraded.startswith("oidc_hmac_sha256$") and check_password(app.raw_secret, upgraded)
    code, _ = get_code(browser, app, user)
    assert exchange(rp, app, code).status_code == 200  # still works with the new hash


def test_wrong_secret_does_not_upgrade(rp, browser, user):
    app = ApplicationFactory()
    slow = make_password(app.raw_secret, hasher="pbkdf2_sha256")
    type(app).objects.filter(pk=app.pk).update(client_secret=slow)
    code, _ = get_code(browser, app, user)
    app.raw_secret = "wrong-" + app.raw_secret
    assert exchange(rp, app, code).status_code == 401
    assert type(app).objects.get(pk=app.pk).client_secret == slow


def test_key_rotation_with_fallbacks(settings):
    encoded = ClientSecretHasher().encode("s" * 50, "salt1234salt1234")
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-" + "z" * 40
    assert ClientSecretHasher().verify("s" * 50, encoded)
    settings.SECRET_KEY_FALLBACKS = []
    assert not ClientSecretHasher().verify("s" * 50, encoded)


def _ids():
    return {m.id for m in run_checks() if m.id}


def test_check_e009_hasher_missing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    assert E009 in _ids()


def test_check_e010_hasher_first(settings):
    settings.PASSWORD_HASHERS = [
        "oidc_provider_ext.hashers.ClientSecretHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]
    assert E010 in _ids()
