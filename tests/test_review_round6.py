"""Review round 6 (6a351bd..03c8b4a): the hashed cache/cached_db session engines, tenants kept in
Django's cache, and the membership rule answered with the OP-session check (member_hint)."""

import pytest
from django.contrib.sessions.backends.base import UpdateError
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from oidc_provider_ext.adapter import DefaultOIDCAdapter, get_adapter
from oidc_provider_ext.models import OPSession, TenantMembership
from oidc_provider_ext.sessions import stored_key

from .conftest import oidc_settings
from .factories import TenantFactory, TenantMembershipFactory
from .flow import authorize_url, query_of, signed_in
from .test_tenants import code_from, sign_in_through, tenant_url

pytestmark = pytest.mark.django_db

CACHE_ENGINES = ["oidc_provider_ext.sessions.cache", "oidc_provider_ext.sessions.cached_db"]


@pytest.fixture
def acme(user):
    tenant = TenantFactory(code="acme", name="Acme Corporation")
    TenantMembershipFactory(tenant=tenant, user=user)
    return tenant


# --- member_hint ---------------------------------------------------------------------------------


def test_member_hint_is_the_membership_of_the_op_sessions_own_tenant(
    browser, user, confidential_app, acme, settings
):
    """Attack: the OP-session check's SQL answers the membership rule for the tenant in each OP
    session's ROW (``s.tenant``), but browser_entries filed that answer under the tenant the
    BROWSER's entry names. The two differ when the same unscoped sign-in is rescoped twice: two
    tabs answering the tenant chooser at once (the session written last is not the one whose
    UPDATE of the row ran last), or, deterministically, an old signed cookie replayed
    (SESSION_ENGINE signed_cookies, which the example project offers). The browser then holds
    ``{"acme": <session>}`` for a session whose row says ``globex``; when the acme membership ends,
    end_access(tenant="acme") does not end that row, and the authorization endpoint took the
    user's *globex* membership as the acme answer: a new acme code (and remembered consent) with
    prompt=none. Expected, as before (6a351bd): the rule is asked for acme itself
    (login_required)."""
    globex = TenantFactory(code="globex", name="Globex")
    TenantMembershipFactory(tenant=globex, user=user)
    chooser = sign_in_through(browser, authorize_url(confidential_app), user)
    assert chooser.templates[0].name == "oidc_provider_ext/tenant_chooser.html"
    choose = reverse("oidc_provider_ext:authorize-continue", args=[chooser.context["request_id"]])
    code_from(browser, browser.post(choose, {"tenant": "acme"}))  # the browser: {"acme": <sign-in>}
    # The other tab's rescope to globex ran its UPDATE last (the race, made deterministic here).
    (op_session,) = OPSession.objects.filter(user=user, ended__isnull=True)
    OPSession.objects.filter(pk=op_session.pk).update(tenant="globex")
    membership = acme.memberships.get(user=user)
    membership.is_active = False  # the user leaves acme (end_access(user, tenant="acme") runs)
    membership.save()
    assert not get_adapter().is_member_of(user, "acme")
    response = browser.get(tenant_url(confidential_app, "acme", prompt="none"))
    assert response.status_code == 302
    query = query_of(response["Location"])
    assert "code" not in query and query["error"] == "login_required"


def test_two_tenants_sessions_in_one_browser_are_answered_apart(browser, user, confidential_app, acme):
    """One browser signed in to two tenants: the OP-session check reads both memberships in one
    statement, and each tenant's authorization gets its own (globex's seat ended behind the ORM's
    back: no globex code, acme's still issued)."""
    globex = TenantFactory(code="globex", name="Globex")
    TenantMembershipFactory(tenant=globex, user=user)
    code_from(browser, sign_in_through(browser, tenant_url(confidential_app, "acme"), user))
    code_from(browser, sign_in_through(browser, tenant_url(confidential_app, "globex"), user))
    assert set(OPSession.objects.filter(ended__isnull=True).values_list("tenant", flat=True)) == {
        "acme",
        "globex",
    }
    globex.memberships.update(is_active=False)
    query = query_of(browser.get(tenant_url(confidential_app, "globex", prompt="none"))["Location"])
    assert "code" not in query and query["error"] == "login_required"
    query = query_of(browser.get(tenant_url(confidential_app, "acme", prompt="none"))["Location"])
    assert "code" in query


class StaffAdapter(DefaultOIDCAdapter):
    """A site rule that forwards ``**kwargs`` (docs/adapter.md) and asks about another tenant."""

    def may_use_client(self, user, application, tenant, **kwargs):
        if not super().may_use_client(user, application, tenant, **kwargs):
            return False
        return not tenant or self.is_member_of(user, f"{tenant}staff", **kwargs)


def test_the_authorization_endpoints_hint_answers_only_for_its_own_tenant(
    browser, user, confidential_app, acme, settings
):
    """member_hint at the authorization endpoint: a may_use_client override that forwards the hint
    while asking about another tenant gets that tenant's own answer (the staff seat ended: no code
    from the old session), not the session tenant's."""
    oidc_settings(settings, ADAPTER=f"{__name__}.StaffAdapter")
    staff = TenantMembershipFactory(tenant=TenantFactory(code="acmestaff"), user=user)
    code_from(browser, sign_in_through(browser, tenant_url(confidential_app, "acme"), user))
    TenantMembership.objects.filter(pk=staff.pk).update(is_active=False)  # no signal: the rule alone
    query = query_of(browser.get(tenant_url(confidential_app, "acme", prompt="none"))["Location"])
    assert "code" not in query and query["error"] == "login_required"


def test_without_the_sql_the_rule_is_asked(browser, user, confidential_app, acme, monkeypatch):
    """Where the OP-session check falls back to the ORM (a vendor the SQL is not written for) it
    reads no membership, and the rule's own query decides: a membership ended behind the ORM's back
    (no end_access) still gives no code from the old session."""
    from oidc_provider_ext.internal import lookups, op_sessions

    code_from(browser, sign_in_through(browser, tenant_url(confidential_app, "acme"), user))
    monkeypatch.setattr(lookups, "supported_vendor", lambda alias: False)
    ids = list(OPSession.objects.values_list("pk", flat=True))
    assert op_sessions._live_with_second_factor(ids, user.pk) is None  # the ORM answers
    acme.memberships.update(is_active=False)
    query = query_of(browser.get(tenant_url(confidential_app, "acme", prompt="none"))["Location"])
    assert "code" not in query and query["error"] == "login_required"


# --- tenants in the cache ------------------------------------------------------------------------


def test_a_renamed_tenant_is_not_served_under_its_old_code(acme, django_assert_num_queries):
    adapter = get_adapter()
    assert adapter.get_tenant("acme") is not None  # kept in the cache
    with django_assert_num_queries(0):
        assert adapter.get_tenant("ACME").code == "acme"
    acme.code = "acme-corp"
    acme.save()
    assert adapter.get_tenant("acme") is None
    assert adapter.get_tenant("acme-corp").pk == acme.pk


# --- sessions in the cache -----------------------------------------------------------------------


@pytest.mark.parametrize("engine", CACHE_ENGINES, ids=["cache", "cached_db"])
def test_a_request_in_flight_does_not_bring_back_a_signed_out_session(engine, settings, user):
    """A request that read the session before a sign-out elsewhere (another server, another tab)
    and writes it afterwards must not write it back: Django's UpdateError (SessionInterrupted),
    through the composed classes (cached_db: our table write, then the cache)."""
    from importlib import import_module

    settings.SESSION_ENGINE = engine
    store_class = import_module(engine).SessionStore
    browser = signed_in(user)
    key = browser.cookies["sessionid"].value
    in_flight = store_class(key)
    assert in_flight["_auth_user_id"] == str(user.pk)  # read
    browser.logout()  # the sign-out elsewhere
    in_flight["seen"] = True
    with pytest.raises(UpdateError):
        in_flight.save()
    assert not store_class().exists(key)
    assert store_class(key).load() == {}
    assert not Session.objects.filter(session_key=stored_key(key)).exists()


@pytest.mark.parametrize("engine", CACHE_ENGINES, ids=["cache", "cached_db"])
@pytest.mark.parametrize(
    "cookie", ["a\x00" * 8, "x" * 100_000, "\x7f\x01\x1b[31m", "0" * 40, "ab cd;ef=gh,ij"], ids=repr
)
def test_any_cookie_value_is_no_session(engine, settings, cookie):
    """Whatever the cookie holds (NUL and control characters, 100 kB, a hash), the engines look it
    up by its hash and find nothing: an empty session, no error from the cache or the database."""
    from importlib import import_module

    settings.SESSION_ENGINE = engine
    store = import_module(engine).SessionStore(cookie)
    assert store.load() == {}
    assert not store.exists(cookie)
    store.delete(cookie)
    assert all(cookie not in str(k) for k in cache._cache)  # type: ignore[attr-defined]


def test_cached_db_a_sign_out_racing_a_cache_refill_still_signs_the_browser_out(settings, user):
    """cached_db's refill race (Django's engine has it too): a request that missed the cache reads
    the row, a sign-out elsewhere deletes the row and the cache entry, then the request puts what
    it read back in the cache, so the store serves the ended session again until it expires.
    What keeps that harmless here is the OP-session check of every signed-in request
    (OPSessionMiddleware): the session's OP sessions were ended by the sign-out, so the browser
    is signed out at its next request."""
    from importlib import import_module

    settings.SESSION_ENGINE = "oidc_provider_ext.sessions.cached_db"
    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    browser = signed_in(user)
    key = browser.cookies["sessionid"].value
    cache.clear()  # evicted, or a Redis restart
    refilling = store_class(key)
    read_row = refilling._get_session_from_db

    def read_then_signed_out_elsewhere():
        row = read_row()
        browser.logout()  # the row and the cache entry deleted, the OP sessions ended
        return row

    refilling._get_session_from_db = read_then_signed_out_elsewhere
    assert refilling.load()["_auth_user_id"] == str(user.pk)
    assert not Session.objects.filter(session_key=stored_key(key)).exists()
    assert store_class(key).load()["_auth_user_id"] == str(user.pk)  # the store serves it again...
    thief = Client()
    thief.cookies["sessionid"] = key
    response = thief.get(reverse("oidc_provider_ext:connected-apps"))
    assert response.status_code == 302 and reverse("oidc_provider_ext:login") in response["Location"]
    assert store_class(key).load() == {}  # ...until that request: signed out, the entry gone


def test_a_browser_entry_whose_op_session_moved_to_another_tenant_is_not_live(
    browser, user, confidential_app, acme
):
    """The gap the first finding left: the browser files an OP session under acme while its row
    was rescoped to globex meanwhile. That entry is not an acme sign-in any more: it is dropped at
    the next request (the browser, left with none, is signed out), so a user who is still, or
    again, a member of acme is not signed in to acme by it."""
    globex = TenantFactory(code="globex", name="Globex")
    TenantMembershipFactory(tenant=globex, user=user)
    chooser = sign_in_through(browser, authorize_url(confidential_app), user)
    choose = reverse("oidc_provider_ext:authorize-continue", args=[chooser.context["request_id"]])
    code_from(browser, browser.post(choose, {"tenant": "acme"}))
    (op_session,) = OPSession.objects.filter(user=user, ended__isnull=True)
    OPSession.objects.filter(pk=op_session.pk).update(tenant="globex")
    query = query_of(browser.get(tenant_url(confidential_app, "acme", prompt="none"))["Location"])
    assert "code" not in query and query["error"] == "login_required"


def test_a_replayed_unscoped_cookie_cannot_give_the_sign_in_to_another_tenant(
    browser, user, confidential_app, acme, settings
):
    """With signed-cookie sessions an old cookie can be sent again: the one from before the tenant
    was chosen names the sign-in as unscoped, its row says acme. The replay is not a sign-in any
    more (signed out, the OP session ended), so it cannot move the sign-in to globex."""
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    globex = TenantFactory(code="globex", name="Globex")
    TenantMembershipFactory(tenant=globex, user=user)
    chooser = sign_in_through(browser, authorize_url(confidential_app), user)
    choose = reverse("oidc_provider_ext:authorize-continue", args=[chooser.context["request_id"]])
    unscoped = browser.cookies["sessionid"].value
    code_from(browser, browser.post(choose, {"tenant": "acme"}))
    browser.cookies["sessionid"] = unscoped
    assert browser.post(choose, {"tenant": "globex"}).status_code == 400  # this request has expired
    assert not OPSession.objects.filter(user=user, tenant="globex").exists()
    assert not OPSession.objects.filter(user=user, ended__isnull=True).exists()
