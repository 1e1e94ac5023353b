"""Tenants: acr_values=tenant:<org_code> selects the organisation a user signs in to."""

import pytest
from django.urls import reverse

from oidc_provider_ext.models import ClientProfile
from oidc_provider_ext.tenants import parse_acr_values

from .factories import REDIRECT_URI, TenantFactory, TenantMembershipFactory, UserFactory
from .flow import (
    authorize_url,
    consent,
    exchange,
    login,
    post_client_change,
    query_of,
    token_request,
    verify_jwt,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme(user):
    tenant = TenantFactory(
        code="acme",
        name="Acme Corporation",
        logo_url="https://cdn.acme.example/logo.png",
        brand_colour="#aa3300",
        support_url="https://help.acme.example/",
    )
    TenantMembershipFactory(tenant=tenant, user=user)
    return tenant


@pytest.fixture
def globex(db):
    return TenantFactory(code="globex", name="Globex")


def tenant_url(app, code, **params):
    return authorize_url(app, acr_values=f"tenant:{code}", **params)


def sign_in_through(browser, url, user, password=None):
    """GET the authorize URL, sign in on the page it leads to, return the next response."""
    response = browser.get(url)
    assert response.status_code == 302 and reverse("oidc_provider_ext:login") in response["Location"], (
        response
    )
    login_page = response["Location"]
    kwargs = {"username": user.username, "password": password or "correct horse battery staple"}
    response = browser.post(login_page, kwargs)
    if response.status_code != 302:
        return response
    return browser.get(response["Location"])


def code_from(browser, response):
    if response.status_code == 200:
        response = consent(browser, response)
    assert response.status_code == 302 and response["Location"].startswith(REDIRECT_URI), response
    return query_of(response["Location"])["code"]


class TestParsing:
    @pytest.mark.parametrize(
        ("raw", "tenant", "idps", "classes"),
        [
            ("tenant:acme", "acme", (), ()),
            ("TENANT:AcMe", "acme", (), ()),
            ("urn:x:mfa tenant:acme idp:google", "acme", ("google",), ("urn:x:mfa",)),
            ("urn:x:mfa", None, (), ("urn:x:mfa",)),
            ("", None, (), ()),
            (None, None, (), ()),
        ],
    )
    def test_valid(self, raw, tenant, idps, classes):
        parsed = parse_acr_values(raw)
        assert (parsed.tenant, parsed.idps, parsed.classes) == (tenant, idps, classes)

    @pytest.mark.parametrize("raw", ["tenant:acme tenant:globex", "tenant:"])
    def test_invalid(self, raw):
        with pytest.raises(ValueError):
            parse_acr_values(raw)

    def test_two_tenants_is_invalid_request_to_the_client(
        self, browser, user, confidential_app, acme, globex
    ):
        login(browser, user)
        response = browser.get(authorize_url(confidential_app, acr_values="tenant:acme tenant:globex"))
        query = query_of(response["Location"])
        assert query["error"] == "invalid_request" and query["state"] == "state-123"

    def test_unknown_tenant_is_a_400_page_not_a_redirect(self, browser, confidential_app, acme):
        response = browser.get(tenant_url(confidential_app, "initech"))
        assert response.status_code == 400 and "Location" not in response
        assert "initech" in response.content.decode()
        assert "Unknown organisation" in response.content.decode()

    def test_disabled_tenant_is_a_400_page(self, browser, confidential_app, acme):
        acme.is_active = False
        acme.save()
        response = browser.get(tenant_url(confidential_app, "acme"))
        assert response.status_code == 400 and "Location" not in response
        assert "disabled" in response.content.decode()

    def test_tenant_not_allowed_for_client_is_a_400_page(self, browser, confidential_app, acme, globex):
        ClientProfile.objects.filter(application=confidential_app).update(allowed_tenant_codes="globex")
        response = browser.get(tenant_url(confidential_app, "acme"))
        assert response.status_code == 400 and "Location" not in response
        assert "does not accept" in response.content.decode()

    def test_code_is_case_insensitive(self, browser, rp, user, confidential_app, acme):
        code = code_from(browser, sign_in_through(browser, tenant_url(confidential_app, "ACME"), user))
        assert verify_jwt(exchange(rp, confidential_app, code).json()["id_token"])["tenant"] == "acme"

    def test_other_acr_values_do_not_become_the_acr(self, browser, rp, user, confidential_app, acme):
        url = authorize_url(confidential_app, acr_values="urn:x:mfa tenant:acme idp:google")
        code = code_from(browser, sign_in_through(browser, url, user))
        claims = verify_jwt(exchange(rp, confidential_app, code).json()["id_token"])
        assert claims["acr"] == "urn:oidc-provider-ext:acr:password"  # what really happened
        assert claims["tenant"] == "acme"


class TestLoginPage:
    def test_branding(self, browser, confidential_app, acme):
        page = browser.get(tenant_url(confidential_app, "acme"), follow=True).content.decode()
        assert "Acme Corporation" in page
        assert 'src="https://cdn.acme.example/logo.png"' in page
        assert "#aa3300" in page
        assert 'href="https://help.acme.example/"' in page

    def test_member_signs_in(self, browser, rp, user, confidential_app, acme):
        code = code_from(browser, sign_in_through(browser, tenant_url(confidential_app, "acme"), user))
        assert exchange(rp, confidential_app, code).status_code == 200

    def test_non_member_gets_the_wrong_password_answer(self, browser, confidential_app, acme):
        outsider = UserFactory()
        wrong_password = sign_in_through(
            browser, tenant_url(confidential_app, "acme"), outsider, password="nope"
        )
        non_member = sign_in_through(browser, tenant_url(confidential_app, "acme"), outsider)
        assert wrong_password.status_code == non_member.status_code == 400
        message = "The username or password is not correct"
        assert message in wrong_password.content.decode() and message in non_member.content.decode()
        assert "_auth_user_id" not in browser.session

    def test_inactive_membership_cannot_sign_in(self, browser, user, confidential_app, acme):
        acme.memberships.update(is_active=False)
        assert sign_in_through(browser, tenant_url(confidential_app, "acme"), user).status_code == 400


class TestWithoutTenantInRequest:
    def test_client_default_tenant(self, browser, rp, user, confidential_app, acme):
        ClientProfile.objects.filter(application=confidential_app).update(default_tenant_code="acme")
        page = browser.get(authorize_url(confidential_app), follow=True)
        assert "Acme Corporation" in page.content.decode()  # branded login for the default tenant
        code = code_from(browser, sign_in_through(browser, authorize_url(confidential_app), user))
        assert verify_jwt(exchange(rp, confidential_app, code).json()["id_token"])["tenant"] == "acme"

    def test_users_only_tenant(self, browser, rp, user, confidential_app, acme, globex):
        code = code_from(browser, sign_in_through(browser, authorize_url(confidential_app), user))
        assert verify_jwt(exchange(rp, confidential_app, code).json()["id_token"])["tenant"] == "acme"

    def test_chooser_for_a_user_in_several(self, browser, rp, user, confidential_app, acme, globex):
        TenantMembershipFactory(tenant=globex, user=user)
        response = sign_in_through(browser, authorize_url(confidential_app), user)
        assert response.status_code == 200
        assert response.templates[0].name == "oidc_provider_ext/tenant_chooser.html"
        assert {t.code for t in response.context["tenants"]} == {"acme", "globex"}
        response = browser.post(
            reverse("oidc_provider_ext:authorize-continue", args=[response.context["request_id"]]),
            {"tenant": "globex"},
        )
        code = code_from(browser, response)
        assert verify_jwt(exchange(rp, confidential_app, code).json()["id_token"])["tenant"] == "globex"

    def test_chooser_refuses_a_tenant_not_offered(self, browser, user, confidential_app, acme, globex):
        TenantMembershipFactory(tenant=globex, user=user)
        TenantFactory(code="initech")
        response = sign_in_through(browser, authorize_url(confidential_app), user)
        response = browser.post(
            reverse("oidc_provider_ext:authorize-continue", args=[response.context["request_id"]]),
            {"tenant": "initech"},
        )
        assert response.status_code == 400 and "Location" not in response

    def test_chooser_with_prompt_none_is_interaction_required(
        self, browser, user, confidential_app, acme, globex
    ):
        TenantMembershipFactory(tenant=globex, user=user)
        login(browser, user)
        query = query_of(browser.get(authorize_url(confidential_app, prompt="none"))["Location"])
        assert query["error"] == "interaction_required"

    def test_client_restricted_to_tenants_the_user_is_not_in(
        self, browser, user, confidential_app, acme, globex
    ):
        ClientProfile.objects.filter(application=confidential_app).update(allowed_tenant_codes="globex")
        response = sign_in_through(browser, authorize_url(confidential_app), user)
        assert response.status_code == 400 and "Location" not in response

    def test_site_without_tenants_is_single_tenant(self, browser, rp, user, confidential_app):
        code = code_from(browser, sign_in_through(browser, authorize_url(confidential_app), user))
        body = exchange(rp, confidential_app, code).json()
        assert "tenant" not in verify_jwt(body["id_token"])
        assert "tenant" not in verify_jwt(body["access_token"], typ="at+jwt")


class TestSessionIsolation:
    def test_session_for_a_does_not_satisfy_b(self, browser, user, confidential_app, acme, globex):
        TenantMembershipFactory(tenant=globex, user=user)
        code_from(browser, sign_in_through(browser, tenant_url(confidential_app, "acme"), user))
        response = browser.get(tenant_url(confidential_app, "globex"))
        assert response.status_code == 302 and reverse("oidc_provider_ext:login") in response["Location"]
        query = query_of(browser.get(tenant_url(confidential_app, "globex", prompt="none"))["Location"])
        assert query["error"] == "login_required"

    def test_switching_back_keeps_the_other_session(self, browser, rp, user, confidential_app, acme, globex):
        TenantMembershipFactory(tenant=globex, user=user)
        first = code_from(browser, sign_in_through(browser, tenant_url(confidential_app, "acme"), user))
        acme_sid = verify_jwt(exchange(rp, confidential_app, first).json()["id_token"])["sid"]
        code_from(browser, sign_in_through(browser, tenant_url(confidential_app, "globex"), user))
        query = query_of(browser.get(tenant_url(confidential_app, "acme", prompt="none"))["Location"])
        claims = verify_jwt(exchange(rp, confidential_app, query["code"]).json()["id_token"])
        assert claims["tenant"] == "acme" and claims["sid"] == acme_sid

    def test_logout_ends_every_tenant_session(self, browser, user, confidential_app, acme, globex):
        TenantMembershipFactory(tenant=globex, user=user)
        code_from(browser, sign_in_through(browser, tenant_url(confidential_app, "acme"), user))
        code_from(browser, sign_in_through(browser, tenant_url(confidential_app, "globex"), user))
        browser.post(reverse("logout"))
        for code in ("acme", "globex"):
            query = query_of(browser.get(tenant_url(confidential_app, code, prompt="none"))["Location"])
            assert query["error"] == "login_required"

    def test_consent_is_per_tenant(self, browser, user, confidential_app, acme, globex):
        TenantMembershipFactory(tenant=globex, user=user)
        code_from(browser, sign_in_through(browser, tenant_url(confidential_app, "acme"), user))
        response = sign_in_through(browser, tenant_url(confidential_app, "globex"), user)
        assert response.status_code == 200  # consent again for the other organisation
        assert response.templates[0].name == "oidc_provider_ext/consent.html"


class TestTokensCarryTheTenant:
    @pytest.fixture
    def tokens(self, browser, rp, user, confidential_app, acme):
        url = tenant_url(confidential_app, "acme", scope="openid offline_access")
        code = code_from(browser, sign_in_through(browser, url, user))
        return exchange(rp, confidential_app, code).json()

    def test_id_token_access_token_userinfo_introspection(self, rp, confidential_app, tokens):
        from urllib.parse import urlencode

        from .flow import basic_auth

        assert verify_jwt(tokens["id_token"])["tenant"] == "acme"
        assert verify_jwt(tokens["access_token"], typ="at+jwt")["tenant"] == "acme"
        info = rp.get(
            reverse("oidc_provider_ext:userinfo"), HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}"
        )
        assert info.json()["tenant"] == "acme"
        for token in (tokens["access_token"], tokens["refresh_token"]):
            response = rp.post(
                reverse("oidc_provider_ext:introspect"),
                urlencode({"token": token}),
                content_type="application/x-www-form-urlencoded",
                HTTP_AUTHORIZATION=basic_auth(confidential_app.client_id, confidential_app.raw_secret),
            )
            assert response.json()["tenant"] == "acme"

    def test_refresh_keeps_the_tenant(self, rp, confidential_app, tokens):
        auth = (confidential_app.client_id, confidential_app.raw_secret)
        body = token_request(
            rp, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, auth=auth
        )
        refreshed = body.json()
        assert verify_jwt(refreshed["id_token"])["tenant"] == "acme"
        assert verify_jwt(refreshed["access_token"], typ="at+jwt")["tenant"] == "acme"
        info = rp.get(
            reverse("oidc_provider_ext:userinfo"), HTTP_AUTHORIZATION=f"Bearer {refreshed['access_token']}"
        )
        assert info.json()["tenant"] == "acme"

    def test_refresh_stops_when_membership_ends(self, rp, confidential_app, tokens, acme):
        acme.memberships.update(is_active=False)
        auth = (confidential_app.client_id, confidential_app.raw_secret)
        response = token_request(
            rp, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, auth=auth
        )
        assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


@pytest.fixture
def staff(client):
    from django.contrib.auth import get_user_model

    admin_user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-123")
    client.force_login(admin_user)
    return client


class TestAdmin:
    def test_tenant_pages_render(self, staff, acme):
        assert staff.get("/admin/oidc_provider_ext/tenant/").status_code == 200
        assert staff.get("/admin/oidc_provider_ext/tenant/?q=acm&is_active__exact=1").status_code == 200
        assert staff.get(f"/admin/oidc_provider_ext/tenant/{acme.pk}/change/").status_code == 200
        assert staff.get("/admin/oidc_provider_ext/tenantmembership/?q=acme").status_code == 200

    def test_add_tenant_with_membership_inline(self, staff, user):
        from oidc_provider_ext.models import Tenant

        response = staff.post(
            "/admin/oidc_provider_ext/tenant/add/",
            {
                "code": "Initech",
                "name": "Initech",
                "is_active": "on",
                "logo_url": "",
                "brand_colour": "#112233",
                "support_url": "",
                "memberships-TOTAL_FORMS": "1",
                "memberships-INITIAL_FORMS": "0",
                "memberships-MIN_NUM_FORMS": "0",
                "memberships-MAX_NUM_FORMS": "1000",
                "memberships-0-user": str(user.pk),
                "memberships-0-is_active": "on",
            },
        )
        assert response.status_code == 302, response.context["adminform"].form.errors
        tenant = Tenant.objects.get(code="initech")  # stored lower-case
        assert tenant.memberships.get().user == user

    def test_bad_colour_and_duplicate_code_are_refused(self, staff, acme):
        response = staff.post(
            "/admin/oidc_provider_ext/tenant/add/",
            {
                "code": "ACME",
                "name": "Again",
                "brand_colour": "red",
                "memberships-TOTAL_FORMS": "0",
                "memberships-INITIAL_FORMS": "0",
                "memberships-MIN_NUM_FORMS": "0",
                "memberships-MAX_NUM_FORMS": "1000",
            },
        )
        assert response.status_code == 200
        errors = response.context["adminform"].form.errors
        assert "brand_colour" in errors
        assert any("already exists" in str(message) for message in errors.get("__all__", [])), errors

    def test_client_tenants_are_codes_the_adapter_knows(self, staff, confidential_app, acme, globex):
        response = post_client_change(
            staff, confidential_app, allowed_tenant_codes="ACME globex", default_tenant_code="Acme"
        )
        assert response.status_code == 302, response.context["inline_admin_formsets"][-1].formset.errors
        profile = ClientProfile.objects.get(application=confidential_app)
        assert (profile.allowed_tenant_codes, profile.default_tenant_code) == ("acme globex", "acme")

    def test_unknown_client_tenant_codes_are_refused(self, staff, confidential_app, acme):
        response = post_client_change(
            staff, confidential_app, allowed_tenant_codes="acme initech", default_tenant_code="umbrella"
        )
        assert response.status_code == 200
        errors = response.context["inline_admin_formsets"][-1].formset.errors[0]
        assert "initech" in str(errors["allowed_tenant_codes"])
        assert "umbrella" in str(errors["default_tenant_code"])
        assert ClientProfile.objects.get(application=confidential_app).allowed_tenant_codes == ""


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_migrated_back_to_the_latest")
def test_migration_copies_client_tenants_to_codes():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor
    from oauth2_provider.models import get_application_model

    app = "oidc_provider_ext"
    executor = MigrationExecutor(connection)
    executor.migrate([(app, "0003_opsession_expiry_no_session_key")])
    old = executor.loader.project_state([(app, "0003_opsession_expiry_no_session_key")]).apps
    Tenant = old.get_model(app, "Tenant")
    # DOT's tables are current (only this app steps back): its models come from the code.
    Application = get_application_model()

    def client(client_id):
        return Application.objects.create(
            client_id=client_id, client_type="public", authorization_grant_type="authorization-code"
        ).pk

    Profile = old.get_model(app, "ClientProfile")
    acme = Tenant.objects.create(code="acme", name="Acme")
    Tenant.objects.filter(pk=acme.pk).update(code="ACME")  # written behind save()'s lower-casing
    globex = Tenant.objects.create(code="globex", name="Globex")
    restricted = Profile.objects.create(
        application_id=client("restricted"),
        default_tenant=globex,
    )
    restricted.allowed_tenants.set([acme, globex])
    Profile.objects.create(application_id=client("open"))

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([(app, "0004_tenant_codes")])
    new = executor.loader.project_state([(app, "0004_tenant_codes")]).apps
    rows = dict(
        new.get_model(app, "ClientProfile").objects.values_list(
            "application__client_id", "allowed_tenant_codes"
        )
    )
    assert rows == {"restricted": "acme globex", "open": ""}
    defaults = new.get_model(app, "ClientProfile").objects.values_list("default_tenant_code", flat=True)
    assert sorted(defaults) == ["", "globex"]


@pytest.fixture
def _migrated_back_to_the_latest():
    """Tests that step this app's migrations back leave the schema at the latest one for the next
    test (transaction=True tests share the database; later migrations exist)."""
    yield
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


class TestTenantsReadOncePerChange:
    """Tenants are kept in Django's cache like clients (internal/clients.py): a tenant-scoped
    sign-in reads its tenant on each of five requests, and tenants change about never."""

    def test_a_tenant_is_read_once_and_a_change_is_seen_at_once(self, acme, django_assert_num_queries):
        from oidc_provider_ext.adapter import get_adapter
        from oidc_provider_ext.internal import clients

        adapter = get_adapter()
        assert adapter.get_tenant("ACME").name == "Acme Corporation"  # read (and kept)
        with django_assert_num_queries(0):
            assert adapter.get_tenant("acme").name == "Acme Corporation"
        acme.name, acme.minimum_acr = "Acme Inc.", "urn:oidc-provider-ext:acr:mfa"
        acme.save()  # through the ORM: the client registry generation is replaced
        assert adapter.get_tenant("acme").minimum_acr == "urn:oidc-provider-ext:acr:mfa"
        type(acme).objects.filter(pk=acme.pk).update(is_active=False)  # behind the ORM's back...
        clients.bump_generation()  # ...as the docs say: then bump
        assert adapter.get_tenant("acme").is_active is False
        acme.delete()
        assert adapter.get_tenant("acme") is None

    def test_a_code_of_no_tenant_is_not_kept(self, db, django_assert_num_queries):
        """Anyone may send any acr_values: unknown codes do not fill the cache."""
        from django.core.cache import cache

        from oidc_provider_ext.adapter import get_adapter

        before = len(cache._cache)  # type: ignore[attr-defined]  # the test's LocMemCache
        for _ in range(2):
            with django_assert_num_queries(1):
                assert get_adapter().get_tenant("nobody-" + "x" * 10_000) is None
        with django_assert_num_queries(0):  # no tenant has a NUL (PostgreSQL would refuse the query)
            assert get_adapter().get_tenant("acme\x00") is None
        assert len(cache._cache) <= before + 1  # type: ignore[attr-defined]  # at most the generation


class TestTheMembershipReadWithTheOPSession:
    """The OP-session check of each signed-in request also answers the membership rule for each
    session's tenant (its second statement folded into the first); the authorization endpoint
    uses that answer (op_sessions.may_use_client)."""

    def test_it_answers_as_the_rule(self, user, acme, globex):
        from django.utils import timezone

        from oidc_provider_ext.adapter import get_adapter
        from oidc_provider_ext.internal import op_sessions
        from oidc_provider_ext.models import OPSession

        inactive = TenantFactory(code="initech", is_active=False)
        TenantMembershipFactory(tenant=inactive, user=user)
        ended = TenantFactory(code="hooli")
        TenantMembershipFactory(tenant=ended, user=user, is_active=False)
        codes = ["acme", "globex", "initech", "hooli", "", "nobody"]
        now = timezone.now()
        sessions = {code: OPSession.objects.create(user=user, auth_time=now, tenant=code) for code in codes}
        rows = op_sessions._live_with_second_factor([s.pk for s in sessions.values()], user.pk)
        members = {pk: member for pk, _enrolled, member, _tenant in rows}
        assert {pk: tenant for pk, _enrolled, _member, tenant in rows} == {
            s.pk: c for c, s in sessions.items()
        }
        for code, session in sessions.items():
            expected = get_adapter().is_member_of(user, code) if code else None
            assert members[session.pk] is expected, code
        assert [code for code in codes if members[sessions[code].pk]] == ["acme"]

    def test_a_membership_ended_while_the_consent_page_is_open_gives_no_code(
        self, browser, user, confidential_app, acme
    ):
        response = sign_in_through(browser, tenant_url(confidential_app, "acme"), user)
        assert response.templates[0].name == "oidc_provider_ext/consent.html"
        acme.memberships.update(is_active=False)  # no signal: only the rule's query can tell
        response = consent(browser, response)
        assert "code=" not in response.get("Location", "") and response.status_code in (302, 400)

    def test_a_tenant_deactivated_while_signed_in_gives_no_code(self, browser, user, confidential_app, acme):
        code_from(browser, sign_in_through(browser, tenant_url(confidential_app, "acme"), user))
        query = query_of(browser.get(tenant_url(confidential_app, "acme", prompt="none"))["Location"])
        assert "code" in query
        # Behind the ORM's back, no generation bump: the cached tenant still says active, but the
        # membership rule reads the tenant's row, so no code is issued from the old session.
        type(acme).objects.filter(pk=acme.pk).update(is_active=False)
        query = query_of(browser.get(tenant_url(confidential_app, "acme", prompt="none"))["Location"])
        assert "code" not in query and query["error"] == "login_required"
        acme.is_active = False
        acme.save()  # through the ORM: every server sees the change at once
        response = browser.get(tenant_url(confidential_app, "acme", prompt="none"))
        assert response.status_code == 400 and "disabled" in response.content.decode()


class TestTheMembershipReadWithTheSecondFactorAtSignIn:
    """At a sign-in to a tenant the membership rule and the second-factor question are one
    statement (factors.read_with_membership): each answer as its own query would give it."""

    @pytest.mark.parametrize("with_factor", [False, True], ids=["password only", "with a factor"])
    def test_it_answers_as_the_rule_and_the_factor_check(self, user, acme, globex, with_factor):
        from django.test import RequestFactory

        from oidc_provider_ext.adapter import get_adapter
        from oidc_provider_ext.internal import factors

        from .flow import enrol_totp

        if with_factor:
            enrol_totp(user)
        TenantMembershipFactory(tenant=TenantFactory(code="initech", is_active=False), user=user)
        TenantMembershipFactory(tenant=TenantFactory(code="hooli"), user=user, is_active=False)
        for code in ("acme", "globex", "initech", "hooli", "nobody"):
            request = RequestFactory().get("/")
            hint = factors.read_with_membership(request, user, code)
            assert hint.member is get_adapter().is_member_of(user, code), code
            assert (hint.user_pk, hint.tenant_code) == (user.pk, code)
            assert factors.has_second_factor(user, request) is with_factor is factors._enrolled(user)

    def test_a_non_member_gets_the_wrong_password_answer_a_member_with_a_factor_the_challenge(
        self, user, confidential_app, acme
    ):
        from django.test import Client

        from .factories import USER_PASSWORD
        from .flow import enrol_totp

        outsider = UserFactory()
        enrol_totp(outsider)
        enrol_totp(user)
        login_url = Client().get(tenant_url(confidential_app, "acme"))["Location"]
        refused = Client().post(login_url, {"username": outsider.username, "password": USER_PASSWORD})
        assert refused.status_code == 400 and "not correct" in refused.content.decode()
        challenged = Client().post(login_url, {"username": user.username, "password": USER_PASSWORD})
        assert challenged.status_code == 302
        assert challenged["Location"] == reverse("oidc_provider_ext:login-verify")


class TestTheMembershipReadWithTheGrant:
    """The code exchange reads the membership rule's answer in the grant's own statement (the
    refresh asks after its lock): the same rule, for the grant's user and tenant only."""

    @pytest.fixture
    def code(self, browser, user, confidential_app, acme):
        url = tenant_url(confidential_app, "acme", scope="openid offline_access")
        return code_from(browser, sign_in_through(browser, url, user))

    def _refused(self, response):
        assert response.status_code == 400 and response.json()["error"] == "invalid_grant", response.content

    def test_the_exchange_stops_when_the_membership_ends(self, rp, confidential_app, code, acme):
        acme.memberships.update(is_active=False)
        self._refused(exchange(rp, confidential_app, code))

    def test_the_exchange_stops_when_the_tenant_is_disabled(self, rp, confidential_app, code, acme):
        acme.is_active = False
        acme.save()
        self._refused(exchange(rp, confidential_app, code))

    def test_another_users_membership_does_not_count(self, rp, user, confidential_app, code, acme):
        acme.memberships.update(is_active=False)
        TenantMembershipFactory(tenant=acme, user=UserFactory())  # someone else is still a member
        self._refused(exchange(rp, confidential_app, code))

    def test_a_membership_of_another_tenant_does_not_count(
        self, rp, user, confidential_app, code, acme, globex
    ):
        acme.memberships.update(is_active=False)
        TenantMembershipFactory(tenant=globex, user=user)
        self._refused(exchange(rp, confidential_app, code))

    def test_the_refresh_stops_when_the_tenant_is_disabled(self, rp, confidential_app, code, acme):
        refresh_token = exchange(rp, confidential_app, code).json()["refresh_token"]
        acme.is_active = False
        acme.save()
        auth = (confidential_app.client_id, confidential_app.raw_secret)
        self._refused(
            token_request(rp, {"grant_type": "refresh_token", "refresh_token": refresh_token}, auth=auth)
        )

    def test_a_member_still_gets_tokens(self, rp, confidential_app, code):
        tokens = exchange(rp, confidential_app, code).json()
        assert verify_jwt(tokens["id_token"])["tenant"] == "acme"
        auth = (confidential_app.client_id, confidential_app.raw_secret)
        refreshed = token_request(
            rp, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, auth=auth
        )
        assert verify_jwt(refreshed.json()["id_token"])["tenant"] == "acme"
