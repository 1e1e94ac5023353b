"""Issue 14.2 and 14.4: what a new site gets wrong on install is a system-check message with the fix,
not a 500 at the first sign-in, a 404 for every relying party, a locked-out user or a traceback."""

import subprocess
import sys

import pytest
from django.conf import global_settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.checks import run_checks

from oidc_provider_ext import checks

from .conftest import oidc_settings

CLIENT_SECRET_HASHER = "oidc_provider_ext.hashers.ClientSecretHasher"
# What README.md used to say: Django's list replaced by one password hasher and ours.
REPLACED_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher", CLIENT_SECRET_HASHER]
# What README.md says now.
APPENDED_HASHERS = [*global_settings.PASSWORD_HASHERS, CLIENT_SECRET_HASHER]


def _messages(**kwargs):
    return {m.id: m for m in run_checks(**kwargs) if (m.id or "").startswith("oidc_provider_ext.")}


class TestHostedPagesNeedCrispy:
    @pytest.mark.parametrize("app", ["crispy_forms", "crispy_bootstrap5", "django.contrib.sessions"])
    def test_e030_missing_app(self, settings, app):
        settings.INSTALLED_APPS = [name for name in settings.INSTALLED_APPS if name != app]
        message = _messages()[checks.E030]
        assert app in message.msg and "INSTALLED_APPS" in message.hint

    @pytest.mark.parametrize(
        ("pack", "allowed"), [(None, None), ("bootstrap4", "bootstrap4"), ("bootstrap5", ("bootstrap4",))]
    )
    def test_e031_template_pack(self, settings, pack, allowed):
        for name, value in (("CRISPY_TEMPLATE_PACK", pack), ("CRISPY_ALLOWED_TEMPLATE_PACKS", allowed)):
            if value is None:
                delattr(settings, name)
            else:
                setattr(settings, name, value)
        assert 'CRISPY_TEMPLATE_PACK = "bootstrap5"' in _messages()[checks.E031].hint

    def test_example_settings_pass(self):
        assert not {checks.E030, checks.E031} & set(_messages())


class TestMountedUnderAPrefix:
    def test_e032_root_issuer_but_urls_under_idp(self, settings):
        settings.ROOT_URLCONF = "tests.prefixed_urls"
        oidc_settings(settings, ISSUER="https://id.example.com")
        message = _messages()[checks.E032]
        assert "/idp/.well-known/openid-configuration" in message.msg
        assert "'https://<host>/idp'" in message.hint

    def test_e032_issuer_path_but_urls_at_the_root(self, settings):
        oidc_settings(settings, ISSUER="https://id.example.com/idp")
        assert checks.E032 in _messages()

    @pytest.mark.django_db
    def test_issuer_naming_the_prefix_is_clean_and_discovery_is_where_it_says(self, settings, client):
        settings.ROOT_URLCONF = "tests.prefixed_urls"
        oidc_settings(settings, ISSUER="https://id.example.com/idp")
        assert checks.E032 not in _messages()
        meta = client.get("/idp/.well-known/openid-configuration").json()
        assert meta["issuer"] == "https://id.example.com/idp"
        assert meta["token_endpoint"] == "https://id.example.com/idp/connect/token"

    def test_force_script_name_counts(self, settings):
        from django.urls import set_script_prefix

        oidc_settings(settings, ISSUER="https://id.example.com/idp")
        set_script_prefix("/idp/")  # what django.setup() does with FORCE_SCRIPT_NAME = "/idp"
        try:
            assert checks.E032 not in _messages()
        finally:
            set_script_prefix("/")


def test_missing_oauth2_provider_says_what_to_add():
    code = (
        "import django; from django.conf import settings; settings.configure(INSTALLED_APPS=["
        "'django.contrib.auth', 'django.contrib.contenttypes', 'oidc_provider_ext']); django.setup()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured")
    assert "'oauth2_provider' in INSTALLED_APPS" in last


@pytest.mark.django_db
class TestPasswordHashersKeepExistingUsers:
    @pytest.fixture
    def existing_users(self, settings):
        settings.PASSWORD_HASHERS = APPENDED_HASHERS
        User = get_user_model()
        for name, hasher in [("ann", "argon2"), ("sam", "scrypt"), ("pat", "pbkdf2_sha1")]:
            User.objects.create(username=name, password=make_password("pw-" + name, hasher=hasher))
        User.objects.create(username="nopw", password=make_password(None))  # unusable: never counted

    @pytest.mark.parametrize("databases", [None, ["default"]])
    def test_w030_replaced_list_locks_users_out(self, settings, existing_users, databases):
        settings.PASSWORD_HASHERS = REPLACED_HASHERS
        message = _messages(databases=databases)[checks.W030]
        assert "argon2, pbkdf2_sha1, scrypt" in message.msg
        assert "global_settings.PASSWORD_HASHERS" in message.hint

    def test_readme_list_is_clean_and_they_sign_in(self, settings, existing_users):
        settings.PASSWORD_HASHERS = APPENDED_HASHERS
        assert checks.W030 not in _messages()
        for name in ("ann", "sam", "pat"):
            assert get_user_model().objects.get(username=name).check_password("pw-" + name)

    def test_hasher_listed_but_library_missing(self, settings, existing_users, monkeypatch):
        import importlib.util

        real = importlib.util.find_spec
        monkeypatch.setattr(
            importlib.util, "find_spec", lambda name, *a: None if name == "argon2" else real(name, *a)
        )
        settings.PASSWORD_HASHERS = APPENDED_HASHERS
        assert "argon2" in _messages()[checks.W030].msg

    def test_legacy_hash_without_dollar_is_reported_not_an_error(self, settings):
        get_user_model().objects.create(username="old", password="5f4dcc3b5aa765d61d8327deb882cf99")
        settings.PASSWORD_HASHERS = REPLACED_HASHERS
        assert "unsalted or unknown" in _messages()[checks.W030].msg


class TestIsolationLevel:
    """W047: the single-use checks and the key snapshot need READ COMMITTED on PostgreSQL."""

    def _with(self, level):
        from django.db.backends.postgresql.psycopg_any import IsolationLevel

        database = {"ENGINE": "django.db.backends.postgresql", "NAME": "idp"}
        if level is not None:
            database["OPTIONS"] = {"isolation_level": getattr(IsolationLevel, level)}
        return checks.isolation_warnings(
            {"default": {"ENGINE": "django.db.backends.sqlite3"}, "other": database}
        )

    @pytest.mark.parametrize("level", ["REPEATABLE_READ", "SERIALIZABLE"])
    def test_above_read_committed_is_named(self, level):
        (message,) = self._with(level)
        assert message.id == checks.W047 and level in message.msg and "'other'" in message.msg

    @pytest.mark.parametrize("level", [None, "READ_COMMITTED", "READ_UNCOMMITTED"])
    def test_read_committed_and_the_default_are_fine(self, level):
        assert self._with(level) == []
