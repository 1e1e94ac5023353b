"""Attacks from the outside security review (issue "Trust") on account state, secrets at rest, codes
that outlive their session, requested subjects and logout. Each test failed on the code before the fix.
"""

from __future__ import annotations

import json
import secrets
from io import StringIO
from unittest import mock

import pytest
from django.contrib.auth.models import Permission
from django.contrib.sessions.models import Session
from django.core import serializers
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from oauth2_provider.models import get_access_token_model, get_application_model, get_refresh_token_model

from oidc_provider_ext import checks
from oidc_provider_ext.adapter import DefaultOIDCAdapter
from oidc_provider_ext.internal import clients, consents, op_sessions
from oidc_provider_ext.models import (
    AuthorizationGrant,
    BackchannelDelivery,
    ClientProfile,
    OPSession,
    SigningKey,
)

from .conftest import oidc_settings
from .factories import (
    REDIRECT_URI,
    USER_PASSWORD,
    ApplicationFactory,
    TenantFactory,
    TenantMembershipFactory,
    UserFactory,
)
from .flow import (
    authorize_url,
    consent,
    exchange,
    get_code,
    introspect,
    query_of,
    refresh,
    token_request,
    userinfo,
)

pytestmark = pytest.mark.django_db
AccessToken = get_access_token_model()
Application = get_application_model()
RefreshToken = get_refresh_token_model()


def tokens_for(browser, rp, app, user, **params) -> dict:
    code, _ = get_code(browser, app, user, **params)
    response = exchange(rp, app, code)
    assert response.status_code == 200, response.content
    return response.json()


def silent(browser, app, **params):
    """prompt=none: the answer comes back to the client at once, a code or an error."""
    response = browser.get(authorize_url(app, prompt="none", **params))
    assert response.status_code == 302, response.content[:300]
    return query_of(response["Location"])


# --- 3 / 4: account state is checked wherever tokens are issued or honoured ----------------------


class TestDeactivatedUser:
    def test_refresh_userinfo_introspection_and_silent_login_stop(self, browser, rp, user, confidential_app):
        tokens = tokens_for(browser, rp, confidential_app, user, scope="openid offline_access")
        user.is_active = False
        user.save()
        assert refresh(rp, confidential_app, tokens["refresh_token"]).json()["error"] == "invalid_grant"
        assert userinfo(rp, tokens["access_token"]).status_code == 401
        assert introspect(rp, confidential_app, tokens["access_token"]) == {"active": False}
        assert introspect(rp, confidential_app, tokens["refresh_token"]) == {"active": False}
        assert "code" not in silent(browser, confidential_app)

    def test_deactivation_revokes_grants_even_offline_ones(self, browser, rp, user, confidential_app):
        tokens_for(browser, rp, confidential_app, user, scope="openid offline_access")
        user.is_active = False
        user.save()
        assert not RefreshToken.objects.filter(user=user, revoked__isnull=True).exists()
        assert not any(token.is_valid() for token in AccessToken.objects.filter(user=user))
        assert not OPSession.objects.filter(user=user, ended__isnull=True).exists()

    def test_a_deactivation_without_signals_is_still_refused(self, browser, rp, user, confidential_app):
        # e.g. a queryset update, or a user store synchronised behind Django's back
        tokens = tokens_for(browser, rp, confidential_app, user, scope="openid offline_access")
        type(user).objects.filter(pk=user.pk).update(is_active=False)
        assert refresh(rp, confidential_app, tokens["refresh_token"]).json()["error"] == "invalid_grant"
        assert userinfo(rp, tokens["access_token"]).status_code == 401
        assert introspect(rp, confidential_app, tokens["access_token"]) == {"active": False}

    def test_a_code_issued_before_deactivation_does_not_redeem(self, browser, rp, user, confidential_app):
        code, _ = get_code(browser, confidential_app, user)
        type(user).objects.filter(pk=user.pk).update(is_active=False)
        assert exchange(rp, confidential_app, code).json()["error"] == "invalid_grant"


class TestEndedMembership:
    @pytest.fixture
    def member(self, user):
        return TenantMembershipFactory(user=user, tenant=TenantFactory(code="acme"))

    def test_existing_session_gets_no_tenant_code(self, browser, rp, user, confidential_app, member):
        tokens_for(browser, rp, confidential_app, user, acr_values="tenant:acme")
        assert "code" in silent(browser, confidential_app, acr_values="tenant:acme")
        member.is_active = False
        member.save()
        answer = silent(browser, confidential_app, acr_values="tenant:acme")
        assert "code" not in answer and answer["error"] == "login_required"

    def test_membership_ended_without_signals_is_still_refused(
        self, browser, rp, user, confidential_app, member
    ):
        tokens = tokens_for(
            browser, rp, confidential_app, user, acr_values="tenant:acme", scope="openid offline_access"
        )
        type(member).objects.filter(pk=member.pk).update(is_active=False)
        assert "code" not in silent(browser, confidential_app, acr_values="tenant:acme")
        assert userinfo(rp, tokens["access_token"]).status_code == 401
        assert introspect(rp, confidential_app, tokens["access_token"]) == {"active": False}
        assert refresh(rp, confidential_app, tokens["refresh_token"]).json()["error"] == "invalid_grant"

    def test_ending_a_membership_revokes_that_tenants_grants_only(
        self, browser, rp, user, confidential_app, member
    ):
        acme = tokens_for(
            browser, rp, confidential_app, user, acr_values="tenant:acme", scope="openid offline_access"
        )
        other = TenantMembershipFactory(user=user, tenant=TenantFactory(code="globex"))
        globex = tokens_for(
            Client(), rp, confidential_app, user, acr_values="tenant:globex", scope="openid offline_access"
        )
        member.delete()
        assert refresh(rp, confidential_app, acme["refresh_token"]).status_code == 400
        assert userinfo(rp, acme["access_token"]).status_code == 401
        assert userinfo(rp, globex["access_token"]).status_code == 200
        assert refresh(rp, confidential_app, globex["refresh_token"]).status_code == 200
        assert other.is_active


class _RefusingAdapter(DefaultOIDCAdapter):
    """A site rule through the one hook: this client is suspended."""

    def may_use_client(self, user, application, tenant, **kwargs):
        return application.client_id != "suspended"


class TestOneHook:
    @pytest.fixture
    def suspended(self, settings):
        oidc_settings(settings, ADAPTER=f"{__name__}._RefusingAdapter")
        return ApplicationFactory(
            client_id="suspended",
            authorization_grant_type=get_application_model().GRANT_CLIENT_CREDENTIALS,
        )

    def test_client_credentials_ask_the_hook(self, rp, suspended):
        response = token_request(
            rp, {"grant_type": "client_credentials"}, auth=(suspended.client_id, suspended.raw_secret)
        )
        assert response.status_code in (400, 401) and "access_token" not in response.json()

    def test_client_credentials_never_get_openid_or_offline_access(self, rp):
        app = ApplicationFactory(authorization_grant_type=get_application_model().GRANT_CLIENT_CREDENTIALS)
        response = token_request(
            rp, {"grant_type": "client_credentials", "scope": "openid"}, auth=(app.client_id, app.raw_secret)
        )
        assert response.json()["error"] == "invalid_scope"

    def test_userinfo_with_a_clients_own_token_is_refused_not_a_500(self, rp):
        # A client-credentials token that carries openid (issued before the scope rule above).
        app = ApplicationFactory(authorization_grant_type=get_application_model().GRANT_CLIENT_CREDENTIALS)
        token = token_request(
            rp, {"grant_type": "client_credentials"}, auth=(app.client_id, app.raw_secret)
        ).json()["access_token"]
        AccessToken.objects.filter(application=app).update(scope="openid")
        response = userinfo(rp, token)
        assert response.status_code == 401


# --- 2 / 9: nothing a cookie or a token can be made from, in the admin or a dump -----------------


class TestNothingUsableStored:
    def test_view_only_staff_cannot_read_a_session_key(self, client, browser, rp, confidential_app):
        victim = UserFactory(is_superuser=True, is_staff=True)
        tokens_for(browser, rp, confidential_app, victim)
        session_key = browser.session.session_key
        viewer = UserFactory(is_staff=True)
        viewer.user_permissions.add(Permission.objects.get(codename="view_opsession"))
        client.force_login(viewer)
        op_session = OPSession.objects.get(user=victim)
        pages = [
            client.get(reverse("admin:oidc_provider_ext_opsession_changelist")),
            client.get(reverse("admin:oidc_provider_ext_opsession_change", args=[op_session.pk])),
        ]
        for page in pages:
            assert page.status_code == 200
            assert session_key not in page.content.decode()

    def test_a_database_dump_holds_no_live_secret(self, browser, rp, user):
        app = ApplicationFactory()
        code, _ = get_code(browser, app, user, scope="openid offline_access")
        tokens = exchange(rp, app, code).json()
        pending_code, _ = get_code(browser, app, user)
        live = {
            "session key": browser.session.session_key,
            "redeemed code": code,
            "live code": pending_code,
            "access token": tokens["access_token"],
            "refresh token": tokens["refresh_token"],
            "ID token": tokens["id_token"],
            "client secret": app.raw_secret,
        }
        public = SigningKey.objects.get(state="active").public_jwk
        assert "d" not in (json.loads(public) if isinstance(public, str) else public)
        dump = "".join(
            serializers.serialize("json", model.objects.all())
            for model in (
                OPSession,
                AuthorizationGrant,
                AccessToken,
                RefreshToken,
                get_application_model(),
                SigningKey,
            )
        )
        with connection.cursor() as cursor:
            names = [
                t for t in connection.introspection.table_names(cursor) if t.startswith("oidc_provider_ext_")
            ]
        assert names  # our own tables, every one, raw
        # and the browser sessions' table (the example project's engine: oidc_provider_ext.sessions)
        names.append(Session._meta.db_table)
        for table in names:
            with connection.cursor() as cursor:
                cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 (table names from introspection)
                dump += repr(cursor.fetchall())
        for name, value in live.items():
            assert value not in dump, name


class TestSecretsInProduction:
    def test_check_deploy_refuses_the_example_key_and_a_missing_secret_keys(self, settings):
        from django.core.checks import run_checks

        settings.SECRET_KEY = "insecure-example-key-change-me-" + "x" * 32
        ids = {m.id for m in run_checks(include_deployment_checks=True)}
        assert {checks.E020, checks.E021} <= ids
        settings.SECRET_KEY = secrets.token_urlsafe(50)
        oidc_settings(settings, SECRET_KEYS=[secrets.token_urlsafe(50)])
        ids = {m.id for m in run_checks(include_deployment_checks=True)}
        assert not {checks.E020, checks.E021} & ids

    def test_client_secret_hashes_follow_secret_keys_and_move_to_the_new_one(self, rp, settings):
        oidc_settings(settings, SECRET_KEYS=["old-" + "o" * 60])
        app = ApplicationFactory(authorization_grant_type=get_application_model().GRANT_CLIENT_CREDENTIALS)
        before = get_application_model().objects.get(pk=app.pk).client_secret
        oidc_settings(settings, SECRET_KEYS=["new-" + "n" * 60, "old-" + "o" * 60])
        grant = {"grant_type": "client_credentials"}
        assert token_request(rp, grant, auth=(app.client_id, app.raw_secret)).status_code == 200
        after = get_application_model().objects.get(pk=app.pk).client_secret
        assert after != before  # re-hashed under the new secret on use
        oidc_settings(settings, SECRET_KEYS=["new-" + "n" * 60])
        clients.forget(app.client_id)
        assert token_request(rp, grant, auth=(app.client_id, app.raw_secret)).status_code == 200

    def test_middleware_check(self, settings):
        from django.core.checks import run_checks

        settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != checks.MIDDLEWARE_PATH]
        assert checks.W020 in {m.id for m in run_checks()}


# --- 12: codes die with their session and consent -----------------------------------------------


class TestCodesDie:
    def test_code_issued_before_logout_does_not_redeem(self, browser, rp, user, confidential_app):
        code, _ = get_code(browser, confidential_app, user)
        browser.post(reverse("logout"))
        assert exchange(rp, confidential_app, code).json()["error"] == "invalid_grant"

    def test_code_issued_before_consent_revocation_does_not_redeem(self, browser, rp, user, confidential_app):
        code, _ = get_code(browser, confidential_app, user)
        consents.revoke(consents.live_consent(user, confidential_app, ""))
        assert exchange(rp, confidential_app, code).json()["error"] == "invalid_grant"


# --- 11: the requested subject --------------------------------------------------------------------


class TestRequestedSubject:
    def _hint_for(self, browser, rp, app, user) -> str:
        return tokens_for(browser, rp, app, user)["id_token"]

    @pytest.mark.parametrize("how", ["id_token_hint", "claims"])
    def test_another_user_signing_in_gets_no_code(self, rp, confidential_app, how):
        alice, bob = UserFactory(), UserFactory()
        if how == "id_token_hint":
            params = {"id_token_hint": self._hint_for(Client(), rp, confidential_app, alice)}
        else:
            params = {"claims": json.dumps({"id_token": {"sub": {"value": str(alice.pk)}}})}
        browser = Client()
        response = browser.get(authorize_url(confidential_app, **params))
        assert response.status_code == 302 and reverse("oidc_provider_ext:login") in response["Location"]
        response = browser.post(response["Location"], {"username": bob.username, "password": USER_PASSWORD})
        response = browser.get(response["Location"])
        if response.status_code == 200:  # consent page: allowing must not yield a code either
            response = consent(browser, response)
        assert response.status_code == 302 and response["Location"].startswith(REDIRECT_URI)
        answer = query_of(response["Location"])
        assert "code" not in answer and answer["error"] == "login_required"

    def test_the_requested_user_gets_the_code(self, rp, confidential_app):
        alice = UserFactory()
        hint = self._hint_for(Client(), rp, confidential_app, alice)
        code, _ = get_code(Client(), confidential_app, alice, id_token_hint=hint)
        assert exchange(rp, confidential_app, code).status_code == 200


# --- logout bugs A and B --------------------------------------------------------------------------


class TestLogout:
    def test_one_sign_in_is_one_op_session_and_one_logout_ends_it(self, browser, rp, user, confidential_app):
        TenantMembershipFactory(user=user, tenant=TenantFactory(code="solo"))
        tokens = tokens_for(browser, rp, confidential_app, user)  # no acr_values: the only tenant
        assert OPSession.objects.filter(user=user).count() == 1
        response = browser.get(reverse("oidc_provider_ext:endsession"), {"id_token_hint": tokens["id_token"]})
        assert response.status_code == 200
        assert browser.get(reverse("oidc_provider_ext:sessions")).status_code == 302  # signed out
        assert not OPSession.objects.filter(user=user, ended__isnull=True).exists()

    def test_offline_access_token_dies_with_the_session_refresh_survives(
        self, browser, rp, user, confidential_app
    ):
        tokens = tokens_for(browser, rp, confidential_app, user, scope="openid offline_access")
        rotated = refresh(rp, confidential_app, tokens["refresh_token"]).json()
        browser.post(reverse("logout"))
        assert userinfo(rp, tokens["access_token"]).status_code == 401
        assert userinfo(rp, rotated["access_token"]).status_code == 401
        again = refresh(rp, confidential_app, rotated["refresh_token"])
        assert again.status_code == 200
        assert userinfo(rp, again.json()["access_token"]).status_code == 200


# --- HTTP 500s of the review that belong to these classes ---------------------------------------


class TestNo500:
    def test_consent_allowed_after_the_session_ended_in_another_tab(self, browser, user, confidential_app):
        browser.force_login(user)
        page = browser.get(authorize_url(confidential_app))
        assert page.status_code == 200  # the consent page is open
        OPSession.objects.filter(user=user).update(ended="2026-01-01T00:00:00Z")  # another tab signed out
        response = browser.post(
            page.context["form_action"],
            {"request_id": page.context["form"].initial["request_id"], "decision": "allow"},
        )
        assert 400 <= response.status_code < 500 or (
            response.status_code == 302 and "code=" not in response["Location"]
        )
        assert not AuthorizationGrant.objects.exists()

    # A real commit: foreign keys are checked when the transaction commits, as in production.
    @pytest.mark.django_db(transaction=True)
    def test_client_deleted_and_recreated_within_the_cache_lifetime(self, browser, user):
        app = ApplicationFactory(client_id="recreated")
        browser.force_login(user)
        page = browser.get(authorize_url(app))
        assert page.status_code == 200
        # Another worker deletes and re-creates the client; this worker's cache still has the old row.
        cached = clients.get_client("recreated")
        with connection.cursor() as cursor:  # behind this process's back: no signal, no eviction
            for table, column in (
                (ClientProfile._meta.db_table, "application_id"),
                (Application._meta.db_table, "id"),
            ):
                cursor.execute(f"DELETE FROM {table} WHERE {column} = %s", [app.pk])
        ApplicationFactory(client_id="recreated")
        # Stored under the current generation, as a lookup racing the raw SQL above would have.
        clients._store(clients._key("recreated"), clients._lookup(clients._key("recreated"))[1], cached, 30)
        response = browser.post(
            page.context["form_action"],
            {"request_id": page.context["form"].initial["request_id"], "decision": "allow"},
        )
        assert response.status_code == 400
        assert "no longer exists" in response.content.decode()
        assert clients.get_client("recreated").pk != app.pk  # the stale row is forgotten


def test_oidc_keys_reencrypt_is_a_command():
    call_command("oidc_keys", "reencrypt")


# --- the second attacker review (of this fix) -------------------------------------------------------


class TestSecondReview:
    def test_cleanup_keeps_the_grant_of_a_family_still_in_use(self, browser, rp, user, confidential_app):
        # Rotation can keep a family alive past refresh + access lifetimes after the code.
        tokens = tokens_for(browser, rp, confidential_app, user, scope="openid offline_access")
        AuthorizationGrant.objects.update(redeemed="2000-01-01T00:00:00Z")
        call_command("oidc_cleanup", stdout=StringIO())
        assert AuthorizationGrant.objects.exists()
        response = refresh(rp, confidential_app, tokens["refresh_token"])
        assert response.status_code == 200 and "id_token" in response.json()

    def test_a_refresh_token_without_its_grant_is_invalid_grant_not_500(
        self, browser, rp, user, confidential_app
    ):
        tokens = tokens_for(browser, rp, confidential_app, user, scope="openid offline_access")
        AuthorizationGrant.objects.all().delete()
        assert refresh(rp, confidential_app, tokens["refresh_token"]).json()["error"] == "invalid_grant"
        assert userinfo(rp, tokens["access_token"]).status_code == 401

    def test_a_logout_committing_during_redemption_wins(self, browser, rp, user, settings, confidential_app):
        # The logout lands between validate_code's checks and its single-use UPDATE.
        code, _ = get_code(browser, confidential_app, user)
        oidc_settings(settings, ADAPTER=f"{__name__}._LogoutMidway")
        response = exchange(rp, confidential_app, code)
        assert response.json()["error"] == "invalid_grant"
        assert not AccessToken.objects.exists()

    @pytest.mark.parametrize("typ", [1, None, ["JWT"], {"a": 1}])
    def test_a_forged_hint_with_an_odd_typ_is_refused_not_500(self, client, confidential_app, typ):
        from oidc_provider_ext import keys

        kid = keys.signing_key("RS256")[0]
        header = _b64({"alg": "RS256", "kid": kid, "typ": typ})
        forged = f"{header}.{_b64({'sub': '1'})}.AAAA"
        assert (
            client.get(reverse("oidc_provider_ext:endsession"), {"id_token_hint": forged}).status_code == 400
        )
        response = client.get(authorize_url(confidential_app, id_token_hint=forged))
        assert response.status_code in (302, 400) and "error" in (
            query_of(response["Location"]) if response.status_code == 302 else {"error": 1}
        )

    @pytest.mark.parametrize(
        "spec", [{"essential": True, "value": [1]}, {"essential": True, "values": [{"a": 1}]}]
    )
    def test_unhashable_acr_values_are_invalid_not_500(self, client, confidential_app, spec):
        # OIDC Core 5.5.1: "value" is a string, "values" an array of them (review 2, finding 8:
        # a malformed essential acr request is invalid_request, not silently dropped or unmet).
        response = client.get(authorize_url(confidential_app, claims=json.dumps({"id_token": {"acr": spec}})))
        assert response.status_code == 302
        assert query_of(response["Location"])["error"] == "invalid_request"

    def test_introspection_of_a_client_credentials_token_asks_the_hook(self, rp, settings):
        app = ApplicationFactory(
            client_id="suspended", authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS
        )
        token = token_request(
            rp, {"grant_type": "client_credentials"}, auth=(app.client_id, app.raw_secret)
        ).json()["access_token"]
        assert introspect(rp, app, token)["active"] is True
        oidc_settings(settings, ADAPTER=f"{__name__}._RefusingAdapter")
        assert introspect(rp, app, token) == {"active": False}

    def test_another_account_signing_in_ends_the_previous_users_sessions(self, browser, rp, confidential_app):
        alice, bob = UserFactory(), UserFactory()
        tokens = tokens_for(browser, rp, confidential_app, alice)
        response = browser.post(
            reverse("oidc_provider_ext:login"), {"username": bob.username, "password": USER_PASSWORD}
        )
        assert response.status_code == 302
        assert not OPSession.objects.filter(user=alice, ended__isnull=True).exists()
        assert userinfo(rp, tokens["access_token"]).status_code == 401

    def test_an_op_session_ends_with_its_browser_session(self, browser, rp, user, confidential_app):
        tokens = tokens_for(browser, rp, confidential_app, user)
        op_session = OPSession.objects.get(user=user)
        assert op_session.expires is not None  # the browser session's expiry, recorded at sign-in
        OPSession.objects.update(expires="2000-01-01T00:00:00Z")  # the browser session expired
        out = StringIO()
        call_command("oidc_cleanup", stdout=out)  # nobody logged out: the cleanup ends it
        assert "expired OP sessions: ended 1" in out.getvalue()
        assert OPSession.objects.get(pk=op_session.pk).ended is not None
        assert userinfo(rp, tokens["access_token"]).status_code == 401
        assert "code" not in silent(browser, confidential_app)

    def test_an_expired_op_session_is_not_honoured_before_the_cleanup(
        self, browser, rp, user, confidential_app
    ):
        tokens_for(browser, rp, confidential_app, user)
        OPSession.objects.update(expires="2000-01-01T00:00:00Z")
        assert "code" not in silent(browser, confidential_app)
        assert OPSession.objects.get(user=user).ended is not None  # and it is ended on the way

    def test_deleting_a_user_still_tells_the_clients(self, browser, rp, user, confidential_app):
        ClientProfile.objects.filter(application=confidential_app).update(
            backchannel_logout_uri="https://rp.example.com/bcl"
        )
        tokens_for(browser, rp, confidential_app, user)
        sid = OPSession.objects.get(user=user).sid
        subject = str(user.pk)
        user.delete()
        delivery = BackchannelDelivery.objects.get()
        assert (delivery.subject, delivery.sid, delivery.op_session_id) == (subject, sid, None)

    def test_a_lost_delivery_on_its_last_attempt_is_given_up_not_sending_for_ever(self, browser, rp, user):
        app = ApplicationFactory()
        ClientProfile.objects.filter(application=app).update(
            backchannel_logout_uri="https://rp.example.com/bcl"
        )
        tokens_for(browser, rp, app, user)
        with mock.patch("oidc_provider_ext.internal.backchannel.submit"):  # nothing sends it here
            op_sessions.end(list(OPSession.objects.filter(user=user)))
        BackchannelDelivery.objects.update(
            status=BackchannelDelivery.Status.SENDING, attempts=10, next_attempt="2000-01-01T00:00:00Z"
        )
        call_command("oidc_backchannel_retry", "--max-attempts", "10", stdout=StringIO())
        assert BackchannelDelivery.objects.get().status == BackchannelDelivery.Status.FAILED


def _b64(value) -> str:
    import base64

    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


class _LogoutMidway(DefaultOIDCAdapter):
    """Signs the user out (as another request would) the moment the code exchange asks."""

    def may_use_client(self, user, application, tenant, **kwargs):
        op_sessions.end(list(OPSession.objects.filter(user=user, ended__isnull=True)))
        return super().may_use_client(user, application, tenant, **kwargs)
