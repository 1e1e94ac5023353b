"""The example project and the app's plumbing: URL names, system checks, settings, migrations,
the demo command and the admin."""

import json
from io import StringIO

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.urls import resolve, reverse

from oidc_provider_ext import checks
from oidc_provider_ext.adapter import DefaultOIDCAdapter
from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.dot import dot_settings

from .conftest import oidc_settings

URL_NAMES = [
    ("oidc_provider_ext:authorize", "/connect/authorize"),
    ("oidc_provider_ext:authorize-continue", "/connect/authorize/continue/abc"),
    ("oidc_provider_ext:authorize-step-up", "/connect/authorize/step-up/abc"),
    ("oidc_provider_ext:token", "/connect/token"),
    ("oidc_provider_ext:device-authorization", "/connect/device_authorization"),
    ("oidc_provider_ext:device", "/connect/device"),
    ("oidc_provider_ext:device-continue", "/connect/device/continue/abc"),
    ("oidc_provider_ext:userinfo", "/connect/userinfo"),
    ("oidc_provider_ext:jwks", "/connect/jwks"),
    ("oidc_provider_ext:introspect", "/connect/introspect"),
    ("oidc_provider_ext:revocation", "/connect/revocation"),
    ("oidc_provider_ext:endsession", "/connect/endsession"),
    ("oidc_provider_ext:login", "/connect/login"),
    ("oidc_provider_ext:login-verify", "/connect/login/verify"),
    ("oidc_provider_ext:register", "/connect/register"),
    ("oidc_provider_ext:register-client", "/connect/register/abc"),
    ("oidc_provider_ext:connected-apps", "/connect/apps"),
    ("oidc_provider_ext:connected-app-revoke", "/connect/apps/7/revoke"),
    ("oidc_provider_ext:sessions", "/connect/sessions"),
    ("oidc_provider_ext:session-end", "/connect/sessions/7/end"),
    ("oidc_provider_ext:account-security", "/connect/security"),
    ("oidc_provider_ext:account-totp", "/connect/security/app"),
    ("oidc_provider_ext:account-step-up", "/connect/security/confirm"),
    ("oidc_provider_ext:account-totp-remove", "/connect/security/app/remove"),
    ("oidc_provider_ext:account-recovery-codes", "/connect/security/recovery-codes"),
    ("oidc_provider_ext:password-reset", "/connect/password/reset"),
    ("oidc_provider_ext:password-reset-done", "/connect/password/reset/sent"),
    ("oidc_provider_ext:password-reset-confirm", "/connect/password/reset/MQ/abc-123"),
    ("oidc_provider_ext:password-reset-complete", "/connect/password/reset/done"),
    ("oidc_provider_ext:passkeys", "/connect/account/passkeys"),
    ("oidc_provider_ext:passkey-registration-options", "/connect/account/passkeys/options"),
    ("oidc_provider_ext:passkey-rename", "/connect/account/passkeys/7/rename"),
    ("oidc_provider_ext:passkey-remove", "/connect/account/passkeys/7/remove"),
    ("oidc_provider_ext:passkey-options", "/connect/passkeys/options"),
    ("oidc_provider_ext:discovery", "/.well-known/openid-configuration"),
    ("oidc_provider_ext:protected-resource-metadata", "/.well-known/oauth-protected-resource"),
    ("oidc_provider_ext:protected-resource-metadata-path", "/.well-known/oauth-protected-resource/"),
    ("oidc_provider_ext:oauth-authorization-server", "/.well-known/oauth-authorization-server"),
    ("oidc_provider_ext:oauth-authorization-server-path", "/.well-known/oauth-authorization-server/idp"),
    ("oidc_provider_ext:openid-configuration-path", "/.well-known/openid-configuration/idp"),
]


@pytest.mark.parametrize(("name", "path"), URL_NAMES)
def test_every_url_name_reverses_to_its_path(name, path):
    args = {
        "-continue": ["abc"],
        "-up": ["abc"],
        "-revoke": [7],
        "-end": [7],
        "-confirm": ["MQ", "abc-123"],
        "-path": ["idp"],
        "-rename": [7],
        "-remove": [7],
        "-client": ["abc"],
    }.get(name[name.rfind("-") :], [])
    if name.endswith(("protected-resource-metadata-path", "account-totp-remove", "account-step-up")):
        args = []  # RFC 9728 3.1: a regex pattern that takes the resource's path as it comes
    assert reverse(name, args=args) == path
    assert resolve(path).url_name == name.split(":")[1]


def test_every_app_url_name_is_listed():
    from oidc_provider_ext import urls

    names = {
        p.name for p in urls.endpoint_urlpatterns + urls.discovery_urlpatterns + urls.well_known_urlpatterns
    }
    assert {f"oidc_provider_ext:{n}" for n in names} == {name for name, _ in URL_NAMES}


@pytest.mark.parametrize(
    "name",
    ["login", "logout", "password_change", "password_change_done", "password_reset", "password_reset_done"],
)
def test_django_auth_pages_are_wired(name):
    assert reverse(name).startswith("/accounts/")


@pytest.mark.django_db
def test_migrations_are_complete():
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


class TestChecks:
    def _ids(self):
        return {
            message.id
            for message in run_checks()
            if message.id and message.id.startswith("oidc_provider_ext.")
        }

    def test_example_project_is_clean(self):
        assert self._ids() == set()

    def test_ids_are_unique(self):
        ids = [value for name, value in vars(checks).items() if name[:1] in "EW" and name[1:].isdigit()]
        assert len(ids) == len(set(ids)) >= 9

    def test_w050_ui_locales_without_a_catalogue(self, settings):
        oidc_settings(settings, UI_LOCALES=["en", "de", "ja"])
        assert checks.W050 in self._ids()
        oidc_settings(settings, UI_LOCALES=["en", "de", "pt-br", "ar"])  # pt-br falls back to pt
        assert checks.W050 not in self._ids()

    def test_e001_oidc_disabled(self, settings):
        settings.OAUTH2_PROVIDER = dot_settings(OIDC_ENABLED=False)
        assert checks.E001 in self._ids()

    def test_e002_wrong_validator(self, settings):
        settings.OAUTH2_PROVIDER = dot_settings(
            OAUTH2_VALIDATOR_CLASS="oauth2_provider.oauth2_validators.OAuth2Validator"
        )
        assert checks.E002 in self._ids()

    def test_e003_missing_issuer(self, settings):
        settings.OIDC_PROVIDER_EXT = {}
        assert checks.E003 in self._ids()

    def test_e004_malformed_issuer(self, settings):
        settings.OIDC_PROVIDER_EXT = {"ISSUER": "https://id.example.com/?x=1"}
        assert checks.E004 in self._ids()

    def test_e005_unknown_key(self, settings):
        settings.OIDC_PROVIDER_EXT = {"ISSUER": "https://id.example.com", "ISUSER": "typo"}
        assert checks.E005 in self._ids()

    @pytest.mark.parametrize(
        "name", ["RESOURCE_SERVER_LEEWAY_SECONDS", "ACCESS_TOKEN_EXPIRE_SECONDS", "THROTTLE_WINDOW_SECONDS"]
    )
    def test_e005_an_integer_setting_that_is_not_one(self, settings, name):
        # Read with int() where it is used: "ten" would be a ValueError (a 500) on every request
        # that reads it, instead of an error at start-up.
        settings.OIDC_PROVIDER_EXT = {"ISSUER": "https://id.example.com", name: "ten"}
        [message] = [m for m in checks.check_settings() if m.id == checks.E005]
        assert name in message.msg and "'ten'" in message.msg
        settings.OIDC_PROVIDER_EXT = {"ISSUER": "https://id.example.com", name: "45"}  # from os.environ
        assert checks.E005 not in self._ids()

    def test_e006_code_lifetime_too_long(self, settings):
        settings.OIDC_PROVIDER_EXT = {"ISSUER": "https://id.example.com", "CODE_EXPIRE_SECONDS": 601}
        assert checks.E006 in self._ids()

    def test_e007_bad_adapter(self, settings):
        settings.OIDC_PROVIDER_EXT = {"ISSUER": "https://id.example.com", "ADAPTER": "nowhere.Adapter"}
        assert checks.E007 in self._ids()

    def test_e008_wrong_server(self, settings):
        settings.OAUTH2_PROVIDER = dot_settings(OAUTH2_SERVER_CLASS="oauthlib.openid.Server")
        assert checks.E008 in self._ids()

    def test_e023_wrong_backend(self, settings):
        settings.OAUTH2_PROVIDER = dot_settings(
            OAUTH2_BACKEND_CLASS="oauth2_provider.oauth2_backends.OAuthLibCore"
        )
        assert checks.E023 in self._ids()

    def test_w024_retired_adapter_hook(self, settings):
        oidc_settings(settings, ADAPTER="tests.test_project.OldStyleAdapter")
        assert checks.W024 in self._ids()

    def test_old_dot_settings_import_says_where_it_went(self):
        from oidc_provider_ext import conf

        with pytest.raises(ImproperlyConfigured, match="oidc_provider_ext.dot import dot_settings"):
            conf.dot_settings()

    def test_e011_resource_server_without_audience(self, settings):
        # A URLconf with views protected by the resource-server helper that name no audience.
        settings.ROOT_URLCONF = "tests.resource_views"
        assert checks.E011 in self._ids()
        oidc_settings(settings, RESOURCE_SERVER_AUDIENCE="client-x")
        assert checks.E011 not in self._ids()

    @pytest.mark.parametrize(
        "override",
        [
            # DOT would POST every unknown bearer token there from inside a userinfo request,
            # with requests and no timeout, no redirect or network policy.
            {
                "RESOURCE_SERVER_INTROSPECTION_URL": "http://169.254.169.254/latest",
                "RESOURCE_SERVER_AUTH_TOKEN": "t",
            },
            {"RESOURCE_SERVER_INTROSPECTION_URL": "https://as.example/introspect"},
            # DOT would fetch a client_id URL (RFC draft client ID metadata document) itself.
            {"CIMD_ENABLED": True},
        ],
    )
    def test_e022_dot_settings_that_make_dot_fetch_urls(self, settings, override):
        settings.OAUTH2_PROVIDER = dot_settings(**override)
        assert checks.E022 in self._ids()

    def test_w001_http_issuer(self, settings):
        settings.OIDC_PROVIDER_EXT = {"ISSUER": "http://id.example.com"}
        assert checks.W001 in self._ids()


class TestSettings:
    def test_unknown_key_raises(self, settings):
        settings.OIDC_PROVIDER_EXT = {"ISSUER": "https://x", "NOPE": 1}
        with pytest.raises(ImproperlyConfigured, match="NOPE"):
            assert app_settings.ISSUER

    def test_read_lazily(self, settings):
        settings.OIDC_PROVIDER_EXT = {"ISSUER": "https://a.example.com/"}
        assert app_settings.ISSUER == "https://a.example.com"
        settings.OIDC_PROVIDER_EXT = {"ISSUER": "https://b.example.com"}
        assert app_settings.ISSUER == "https://b.example.com"

    def test_defaults(self, settings):
        settings.OIDC_PROVIDER_EXT = {"ISSUER": "https://x"}
        assert app_settings.CODE_EXPIRE_SECONDS == 60
        assert app_settings.ACCESS_TOKEN_EXPIRE_SECONDS == 3600


@pytest.mark.django_db
class TestDemoCommand:
    def _run(self, *args):
        out = StringIO()
        call_command("oidc_demo", "--json", *args, stdout=out)
        return json.loads(out.getvalue())

    def test_json_shape_and_working_credentials(self, client):
        data = self._run()
        assert set(data) == {"issuer", "user", "confidential", "public", "tenant"}
        assert data["tenant"] == "acme"
        # The example project's oidc_demo: its demo relying party's callback (idp_project/demo_rp.py).
        assert data["confidential"]["redirect_uri"] == f"{data['issuer']}/demo-rp/callback"
        from django.contrib.auth import get_user_model

        demo = get_user_model().objects.get(username=data["user"]["username"])
        assert demo.check_password(data["user"]["password"])
        from oauth2_provider.models import Application

        app = Application.objects.get(client_id=data["confidential"]["client_id"])
        from django.contrib.auth.hashers import check_password

        assert check_password(data["confidential"]["client_secret"], app.client_secret)
        assert Application.objects.get(client_id=data["public"]["client_id"]).client_type == "public"

    def test_idempotent_and_redirect_uris_repeatable(self):
        from django.contrib.auth import get_user_model
        from oauth2_provider.models import Application

        from oidc_provider_ext.models import Tenant

        self._run()
        data = self._run(
            "--redirect-uri", "http://localhost:9000/cb", "--redirect-uri", "http://localhost:9000/cb2"
        )
        assert Application.objects.count() == 2
        assert Tenant.objects.count() == 1
        assert get_user_model().objects.count() == 1
        app = Application.objects.get(client_id=data["public"]["client_id"])
        assert app.redirect_uris.split() == ["http://localhost:9000/cb", "http://localhost:9000/cb2"]
        assert data["public"]["redirect_uri"] == "http://localhost:9000/cb"

    def _works(self, data):
        from django.contrib.auth import get_user_model
        from django.contrib.auth.hashers import check_password
        from oauth2_provider.models import Application

        user = get_user_model().objects.get(username=data["user"]["username"])
        app = Application.objects.get(client_id=data["confidential"]["client_id"])
        return user.check_password(data["user"]["password"]) and check_password(
            data["confidential"]["client_secret"], app.client_secret
        )

    def test_same_credentials_on_every_run_until_reset(self, tmp_path):
        """Issue 14.6: every run re-issued them, so what `make run` printed stopped working."""
        kept = tmp_path / "db.sqlite3.demo-credentials.json"
        first = self._run("--credentials-file", str(kept))
        again = self._run("--credentials-file", str(kept))
        assert again["user"] == first["user"] and again["confidential"] == first["confidential"]
        assert self._works(first)
        assert kept.stat().st_mode & 0o777 == 0o600
        reset = self._run("--credentials-file", str(kept), "--reset")
        assert reset["user"]["password"] != first["user"]["password"]
        assert reset["confidential"]["client_secret"] != first["confidential"]["client_secret"]
        assert self._works(reset) and not self._works(first)
        assert self._run("--credentials-file", str(kept))["user"] == reset["user"]

    def test_credentials_survive_a_fresh_database(self, tmp_path):
        from django.contrib.auth import get_user_model
        from oauth2_provider.models import Application

        kept = tmp_path / "creds.json"
        first = self._run("--credentials-file", str(kept))
        get_user_model().objects.all().delete()
        Application.objects.all().delete()
        assert self._run("--credentials-file", str(kept)) == first
        assert self._works(first)

    def test_default_credentials_file_sits_next_to_a_sqlite_file(self, settings):
        from oidc_provider_ext.management.commands import oidc_demo

        sqlite = {"ENGINE": "django.db.backends.sqlite3", "NAME": "/srv/idp/db.sqlite3"}
        connections = {"default": type("C", (), {"settings_dict": sqlite})()}
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(oidc_demo, "connections", connections)
            assert str(oidc_demo.default_credentials_file()) == "/srv/idp/db.sqlite3.demo-credentials.json"
            sqlite["NAME"] = "file:memorydb_default?mode=memory&cache=shared"
            assert oidc_demo.default_credentials_file() is None
            connections["default"].settings_dict = {"ENGINE": "django.db.backends.postgresql", "NAME": "idp"}
            assert oidc_demo.default_credentials_file() is None

    def test_human_output_explains_how_to_try(self):
        out = StringIO()
        call_command("oidc_demo", stdout=out)
        assert "/connect/authorize?" in out.getvalue()
        assert "curl" in out.getvalue()


@pytest.mark.django_db
class TestAdmin:
    @pytest.fixture
    def staff(self, client):
        from django.contrib.auth import get_user_model

        admin_user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-123")
        client.force_login(admin_user)
        return client

    @pytest.mark.parametrize(
        "model",
        [
            "oauth2_provider/application",
            "oidc_provider_ext/signingkey",
            "oidc_provider_ext/tenant",
            "oidc_provider_ext/authorizationgrant",
            "oidc_provider_ext/opsession",
            "oidc_provider_ext/consent",
        ],
    )
    def test_changelists_render(self, staff, model):
        assert staff.get(f"/admin/{model}/").status_code == 200

    ADD_FORM = {
        "client_id": "admin-made",
        "hash_client_secret": "on",
        "redirect_uris": "https://rp.example.com/cb",
        "post_logout_redirect_uris": "",
        "client_type": "confidential",
        "authorization_grant_type": "authorization-code",
        "name": "Made in admin",
        "allowed_origins": "",
        "oidc_profile-TOTAL_FORMS": "1",
        "oidc_profile-INITIAL_FORMS": "0",
        "oidc_profile-MIN_NUM_FORMS": "0",
        "oidc_profile-MAX_NUM_FORMS": "1",
        "oidc_profile-0-require_pkce": "on",
        "oidc_profile-0-id_token_signed_response_alg": "RS256",  # the select's default
        "oidc_profile-0-consent_policy": "skip",
    }

    def _add_client(self, staff, follow=True, **overrides):
        page = staff.get("/admin/oauth2_provider/application/add/")
        assert page.status_code == 200
        secret = page.context["adminform"].form["client_secret"].value()
        assert secret and len(secret) >= 40
        response = staff.post(
            "/admin/oauth2_provider/application/add/",
            {**self.ADD_FORM, "client_secret": secret, **overrides},
            follow=follow,
        )
        return secret, response

    def test_create_client_shows_secret_once(self, staff):
        from oauth2_provider.models import Application

        secret, response = self._add_client(staff)
        assert response.status_code == 200, response.content[:2000]
        assert "adminform" not in response.context or not response.context["adminform"].form.errors, (
            response.context["adminform"].form.errors
        )
        app = Application.objects.get(client_id="admin-made")
        assert app.client_secret != secret  # stored hashed
        assert app.oidc_profile.require_pkce
        assert app.oidc_profile.consent_policy == "skip"
        # Shown once, in the body of the save's own response (not a message), with its client_id.
        assert response.redirect_chain == []
        body = response.content.decode()
        assert secret in body and "admin-made" in body
        assert "no-store" in response["Cache-Control"]
        assert not any(secret in str(m) for m in response.context["messages"])
        change = staff.get(f"/admin/oauth2_provider/application/{app.pk}/change/")
        assert secret not in change.content.decode()

    def test_new_client_secret_never_travels_in_a_cookie(self, staff, settings):
        """Issue 14.3: with Django's default message storage (cookie, then session) the secret
        was in the decoded ``messages`` cookie. Now no cookie and no session holds it."""
        from django.contrib.messages.storage.cookie import CookieStorage
        from django.contrib.sessions.backends.base import SessionBase
        from django.http import HttpRequest

        settings.MESSAGE_STORAGE = "django.contrib.messages.storage.fallback.FallbackStorage"
        secret, response = self._add_client(staff, follow=False)
        responses = [response]
        while responses[-1].status_code == 302:  # every hop, each with the cookies it sets
            responses.append(staff.get(responses[-1]["Location"]))
        assert secret in responses[-1].content.decode()
        for seen in responses:
            for morsel in seen.cookies.values():
                assert secret not in morsel.value
                if morsel.key == CookieStorage.cookie_name:
                    request = HttpRequest()
                    request.COOKIES[morsel.key] = morsel.value
                    decoded = CookieStorage(request)._decode(morsel.value) or []
                    assert not any(secret in str(m) for m in decoded)
        session = staff.session
        assert isinstance(session, SessionBase)
        assert secret not in repr(dict(session.items()))

    def test_grant_types_offered_are_the_ones_served(self, staff):
        """Issue 14.5: implicit, password, device and hybrid clients can never get a token here."""
        from oauth2_provider.models import Application

        page = staff.get("/admin/oauth2_provider/application/add/")
        field = page.context["adminform"].form.fields["authorization_grant_type"]
        assert [value for value, _ in field.choices if value] == ["authorization-code", "client-credentials"]
        assert "unsupported_grant_type" in field.help_text
        device = "urn:ietf:params:oauth:grant-type:device_code"
        for grant in ("implicit", "password", "openid-hybrid", device):
            _, response = self._add_client(staff, authorization_grant_type=grant)
            assert "authorization_grant_type" in response.context["adminform"].form.errors
        assert not Application.objects.filter(client_id="admin-made").exists()


@pytest.mark.django_db
class TestCreateClientCommand:
    """Issue 14.5: DOT's createapplication prints the secret but not the client_id, and takes
    grants this provider never serves."""

    def test_prints_client_id_and_a_working_secret(self):
        from django.contrib.auth.hashers import check_password
        from oauth2_provider.models import Application

        out = StringIO()
        call_command(
            "oidc_createclient",
            "confidential",
            "authorization-code",
            "--redirect-uris",
            "https://rp.example.com/cb",
            "--name",
            "RP",
            stdout=out,
        )
        text = out.getvalue()
        client_id = text.split("client_id: ")[1].split()[0]
        secret = text.split("client_secret: ")[1].split()[0]
        app = Application.objects.get(client_id=client_id)
        assert app.client_secret != secret and check_password(secret, app.client_secret)

    @pytest.mark.parametrize("grant", ["implicit", "password", "openid-hybrid"])
    def test_refuses_grants_the_server_does_not_serve(self, grant):
        from django.core.management import CommandError
        from oauth2_provider.models import Application

        with pytest.raises(CommandError, match="invalid choice"):
            call_command("oidc_createclient", "confidential", grant, stdout=StringIO(), stderr=StringIO())
        assert not Application.objects.exists()


class OldStyleAdapter(DefaultOIDCAdapter):
    def is_tenant_member(self, user, tenant, **kwargs):  # retired: W024
        return True


class TestPostgreSQLPreparedStatements:
    """The example project prepares hot statements on PostgreSQL (docs/operations.md, "Databases"):
    planning was most of the database's work per userinfo call."""

    def test_on_by_default_and_off_for_poolers(self):
        from idp_project.settings import postgresql_options

        assert postgresql_options({}) == {"server_side_binding": True, "prepare_threshold": 5}
        for off in ("off", "OFF", "0", "false", "no"):
            assert postgresql_options({"DATABASE_PREPARED_STATEMENTS": off}) == {}
        assert postgresql_options({"DATABASE_PREPARED_STATEMENTS": "on"}) != {}

    @pytest.mark.django_db
    def test_the_userinfo_statement_is_prepared(self, browser, rp, user, confidential_app):
        from django.db import connection

        from .flow import exchange, get_code

        if connection.vendor != "postgresql":
            pytest.skip("PostgreSQL only")
        code, _ = get_code(browser, confidential_app, user, scope="openid")
        access_token = exchange(rp, confidential_app, code).json()["access_token"]
        url = reverse("oidc_provider_ext:userinfo")
        for _ in range(6):
            assert rp.get(url, HTTP_AUTHORIZATION=f"Bearer {access_token}").status_code == 200
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
                ['%FROM "oauth2_provider_accesstoken" t0%'],
            )
            assert cursor.fetchone()[0] == 1
