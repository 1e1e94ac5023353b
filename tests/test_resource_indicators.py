"""RFC 8707 resource indicators: audience-bound access tokens for registered resource servers."""

import re
from urllib.parse import urlencode

import pytest
from django.urls import reverse

from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.models import AuthorizationGrant, Consent
from oidc_provider_ext.resource import InvalidToken, validate_access_token

from . import presets
from .factories import (
    REDIRECT_URI,
    USER_PASSWORD,
    ApplicationFactory,
    ResourceServerFactory,
    TenantFactory,
    TenantMembershipFactory,
)
from .flow import (
    authorize_url,
    consent,
    exchange,
    get_code,
    introspect,
    login,
    pkce_pair,
    query_of,
    refresh,
    token_request,
    userinfo,
    verify_jwt,
)

pytestmark = [pytest.mark.django_db, pytest.mark.oidc_settings(presets.API_SCOPES)]

API = "https://api.example.com/mcp"
OTHER_API = "https://other.example.com/"

# RFC 6749 4.1.2.1 / 5.2: error_description is limited to %x20-21 / %x23-5B / %x5D-7E.
ERROR_DESCRIPTION = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")


@pytest.fixture
def api(confidential_app):
    return ResourceServerFactory(
        identifier=API, name="Example MCP", scopes="api:read", allowed_clients=[confidential_app]
    )


@pytest.fixture
def other_api(confidential_app):
    return ResourceServerFactory(
        identifier=OTHER_API, name="Other API", scopes="api:write", allowed_clients=[confidential_app]
    )


def authorize_error(browser, app, user, **params) -> dict:
    """Sign in, send an authorization request, return the error redirect's query."""
    login(browser, user)
    response = browser.get(authorize_url(app, **params))
    assert response.status_code == 302, response.content[:500]
    assert response["Location"].startswith(REDIRECT_URI), response["Location"]
    return query_of(response["Location"])


# --- the HTTP 500 of the issue ----------------------------------------------------------------------


def test_resource_at_code_exchange_is_an_oauth_error_not_a_500(browser, rp, user, confidential_app):
    # Every MCP SDK client sends `resource` on the code exchange; DOT 3.4 used to crash on it.
    code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
    response = exchange(rp, confidential_app, code, resource=API)
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid_target"


def test_resource_at_refresh_is_an_oauth_error_not_a_500(browser, rp, user, confidential_app):
    code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
    tokens = exchange(rp, confidential_app, code).json()
    response = refresh(rp, confidential_app, tokens["refresh_token"], resource=API)
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid_target"


# --- the flow -------------------------------------------------------------------------------------


def test_token_for_a_resource_has_it_as_audience_scopes_and_lifetime(
    browser, rp, user, confidential_app, api
):
    api.access_token_lifetime = 600
    api.save()
    code, _ = get_code(
        browser, confidential_app, user, scope="openid profile api:read offline_access", resource=API
    )
    grant = AuthorizationGrant.objects.get()
    assert grant.resource == [API]
    response = exchange(rp, confidential_app, code, resource=API)
    assert response.status_code == 200, response.content
    body = response.json()
    claims = verify_jwt(body["access_token"], typ="at+jwt")
    assert claims["aud"] == API  # byte-exact, one audience: a string
    assert claims["client_id"] == confidential_app.client_id
    assert claims["scope"] == "api:read"  # the sign-in scopes are not the API's
    assert body["scope"] == "api:read"
    assert body["expires_in"] == 600 and claims["exp"] - claims["iat"] == 600
    assert verify_jwt(body["id_token"])["aud"] == confidential_app.client_id  # OIDC sign-in unchanged
    assert "refresh_token" in body
    data = introspect(rp, confidential_app, body["access_token"])
    assert data["active"] is True and data["aud"] == API and data["scope"] == "api:read"


def test_exchange_without_resource_gets_the_grants_only_resource(browser, rp, user, confidential_app, api):
    code, _ = get_code(browser, confidential_app, user, scope="openid api:read", resource=API)
    body = exchange(rp, confidential_app, code).json()
    assert verify_jwt(body["access_token"], typ="at+jwt")["aud"] == API


def test_without_resource_the_audience_is_the_client_as_before(browser, rp, user, confidential_app, api):
    code, _ = get_code(browser, confidential_app, user, scope="openid api:read")
    body = exchange(rp, confidential_app, code).json()
    claims = verify_jwt(body["access_token"], typ="at+jwt")
    assert claims["aud"] == confidential_app.client_id
    assert claims["scope"] == "openid api:read"
    assert body["expires_in"] == app_settings.ACCESS_TOKEN_EXPIRE_SECONDS
    assert introspect(rp, confidential_app, body["access_token"])["aud"] == confidential_app.client_id


def test_refresh_keeps_the_audience_and_may_narrow_to_another_authorized_resource(
    browser, rp, user, confidential_app, api, other_api
):
    code, _ = get_code(
        browser,
        confidential_app,
        user,
        scope="openid offline_access api:read api:write",
        resource=[API, OTHER_API],
    )
    body = exchange(rp, confidential_app, code, resource=API).json()
    assert verify_jwt(body["access_token"], typ="at+jwt")["aud"] == API
    body = refresh(rp, confidential_app, body["refresh_token"]).json()
    claims = verify_jwt(body["access_token"], typ="at+jwt")
    assert (claims["aud"], claims["scope"]) == (API, "api:read")  # refresh keeps the audience
    response = refresh(rp, confidential_app, body["refresh_token"], resource=OTHER_API)
    assert response.status_code == 200, response.content
    body = response.json()
    claims = verify_jwt(body["access_token"], typ="at+jwt")
    assert (claims["aud"], claims["scope"]) == (OTHER_API, "api:write")
    assert body["scope"] == "api:write"
    assert "refresh_token" in body  # offline_access is the grant's, not the API token's


def test_a_token_for_a_second_resource_does_not_revoke_the_first(
    browser, rp, user, confidential_app, two_apis
):
    # Review 1 F4. RFC 8707 2.2 / docs: "the client asks one token per resource (a refresh token can
    # be exchanged for each)". Asking for B must not end the live token for A.
    code, _ = get_code(
        browser, confidential_app, user, scope="openid offline_access api:read", resource=[API, OTHER_API]
    )
    first = exchange(rp, confidential_app, code, resource=API).json()
    assert validate_access_token(first["access_token"], resource=API)
    second = refresh(rp, confidential_app, first["refresh_token"], resource=OTHER_API)
    assert second.status_code == 200, second.content
    assert validate_access_token(second.json()["access_token"], resource=OTHER_API)
    validate_access_token(first["access_token"], resource=API)  # raised "expired" before the fix


def test_a_refresh_for_the_same_resource_still_retires_the_previous_token(
    browser, rp, user, confidential_app, two_apis
):
    code, _ = get_code(browser, confidential_app, user, scope="openid offline_access api:read", resource=API)
    first = exchange(rp, confidential_app, code).json()
    second = refresh(rp, confidential_app, first["refresh_token"], resource=API)
    assert second.status_code == 200, second.content
    with pytest.raises(InvalidToken):
        validate_access_token(first["access_token"], resource=API)
    # And after a detour through B, the token that replaces B's retires B's (rotation per audience).
    third = refresh(rp, confidential_app, second.json()["refresh_token"], resource=API).json()
    assert validate_access_token(third["access_token"], resource=API)
    with pytest.raises(InvalidToken):
        validate_access_token(second.json()["access_token"], resource=API)


def test_refresh_never_widens_to_a_resource_not_authorized(
    browser, rp, user, confidential_app, api, other_api
):
    code, _ = get_code(browser, confidential_app, user, scope="openid offline_access api:read", resource=API)
    body = exchange(rp, confidential_app, code).json()
    response = refresh(rp, confidential_app, body["refresh_token"], resource=OTHER_API)
    assert response.status_code == 400 and response.json()["error"] == "invalid_target"
    # The refused request did not consume the refresh token (no family revocation).
    assert refresh(rp, confidential_app, body["refresh_token"]).status_code == 200


def test_exchange_for_a_resource_not_authorized_is_refused(
    browser, rp, user, confidential_app, api, other_api
):
    code, _ = get_code(browser, confidential_app, user, scope="openid api:read", resource=API)
    response = exchange(rp, confidential_app, code, resource=OTHER_API)
    assert response.status_code == 400 and response.json()["error"] == "invalid_target"
    assert response["Cache-Control"] == "no-store"
    # Refused before the code was consumed: the right resource still redeems it.
    assert exchange(rp, confidential_app, code, resource=API).status_code == 200


def test_several_resources_in_one_token_request_are_refused(
    browser, rp, user, confidential_app, api, other_api
):
    code, _ = get_code(
        browser, confidential_app, user, scope="openid api:read api:write", resource=[API, OTHER_API]
    )
    response = exchange(rp, confidential_app, code, resource=[API, OTHER_API])
    assert response.status_code == 400 and response.json()["error"] == "invalid_target"
    # A grant for two resources must name one.
    response = exchange(rp, confidential_app, code)
    assert response.status_code == 400 and response.json()["error"] == "invalid_target"
    assert exchange(rp, confidential_app, code, resource=OTHER_API).status_code == 200


def test_a_resource_disabled_after_authorization_gets_no_token(browser, rp, user, confidential_app, api):
    code, _ = get_code(browser, confidential_app, user, scope="openid api:read", resource=API)
    api.enabled = False
    api.save()
    response = exchange(rp, confidential_app, code, resource=API)
    assert response.status_code == 400 and response.json()["error"] == "invalid_target"


# --- refused at the authorization endpoint ------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "https://unknown.example.com/",
        API + "/",  # compared exactly: not the registered identifier
        "HTTPS://api.example.com/mcp",
        "/mcp",  # relative
        API + "#fragment",
        "https://user@api.example.com/mcp",
        "https://api.example.com/mcp\x00",
        "https://api.example.com/mcp\x7f",
        "https://api.example.com/" + "a" * 3000,  # longer than any identifier
        "",
    ],
)
def test_authorize_refuses_a_resource_that_is_not_registered_or_malformed(
    browser, user, confidential_app, api, value
):
    query = authorize_error(browser, confidential_app, user, scope="openid api:read", resource=value)
    assert query["error"] == "invalid_target", query
    assert query["state"] == "state-123"
    assert not AuthorizationGrant.objects.exists()


def test_a_megabyte_resource_is_a_400_page_not_a_500(browser, user, confidential_app, api):
    login(browser, user)
    response = browser.get(authorize_url(confidential_app, resource="https://a.example/" + "a" * 1_000_000))
    assert response.status_code == 400


def test_too_many_resources_are_refused(browser, user, confidential_app, api):
    login(browser, user)
    response = browser.get(authorize_url(confidential_app, resource=[f"{API}/{n}" for n in range(11)]))
    assert response.status_code == 400  # a request that repeats a parameter 11 times is not trusted


def test_a_resource_the_client_is_not_allowed_is_refused(browser, user, confidential_app):
    ResourceServerFactory(identifier=API, allowed_clients=[ApplicationFactory()])
    query = authorize_error(browser, confidential_app, user, scope="openid api:read", resource=API)
    assert query["error"] == "invalid_target"


def test_any_client_flag_allows_every_client(browser, rp, user, confidential_app):
    ResourceServerFactory(identifier=API, any_client=True)
    code, _ = get_code(browser, confidential_app, user, scope="openid api:read", resource=API)
    assert verify_jwt(exchange(rp, confidential_app, code).json()["access_token"], typ="at+jwt")["aud"] == API


def test_a_disabled_resource_is_refused(browser, user, confidential_app, api):
    api.enabled = False
    api.save()
    query = authorize_error(browser, confidential_app, user, scope="openid api:read", resource=API)
    assert query["error"] == "invalid_target"


def test_a_resource_of_another_tenant_is_refused(browser, user, confidential_app, api):
    ours, theirs = TenantFactory(code="ours"), TenantFactory(code="theirs")
    TenantMembershipFactory(user=user, tenant=ours)
    TenantMembershipFactory(user=user, tenant=theirs)
    api.tenant_codes = "theirs"
    api.save()
    query = authorize_error(
        browser, confidential_app, user, scope="openid api:read", resource=API, acr_values="tenant:ours"
    )
    assert query["error"] == "invalid_target"
    code, _ = get_code(
        browser, confidential_app, user, scope="openid api:read", resource=API, acr_values="tenant:theirs"
    )
    assert code


def test_a_resource_of_another_tenant_is_refused_when_the_tenant_is_chosen_after_sign_in(
    browser, user, confidential_app, api
):
    ours = TenantFactory(code="ours")
    TenantFactory(code="theirs")
    TenantMembershipFactory(user=user, tenant=ours)  # the only tenant: chosen without a chooser
    api.tenant_codes = "theirs"
    api.save()
    response = browser.get(authorize_url(confidential_app, scope="openid api:read", resource=API))
    response = browser.post(response["Location"], {"username": user.username, "password": USER_PASSWORD})
    response = browser.get(response["Location"])
    assert response.status_code == 302, response.content[:300]
    assert query_of(response["Location"])["error"] == "invalid_target"


# Review 1 F3: the value is not echoed, and no error_description leaves RFC 6749's character set.
@pytest.mark.parametrize(
    "value", ["https://ex\u00e4mple.com/api", "https://example.com/a\\b", 'https://example.com/"x"']
)
def test_token_endpoint_error_description_stays_in_rfc6749_charset(rp, value):
    machine = ApplicationFactory(authorization_grant_type="client-credentials")
    response = token_request(
        rp, {"grant_type": "client_credentials", "resource": value}, (machine.client_id, machine.raw_secret)
    )
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_target"
    assert ERROR_DESCRIPTION.fullmatch(body["error_description"]), body["error_description"]


@pytest.mark.parametrize("value", ["https://ex\u00e4mple.com/api", "https://example.com/a\\b"])
def test_authorize_error_description_stays_in_rfc6749_charset(browser, user, confidential_app, value):
    login(browser, user)
    response = browser.get(authorize_url(confidential_app, scope="openid", resource=value))
    assert response.status_code == 302
    query = query_of(response["Location"])
    assert query["error"] == "invalid_target"
    assert ERROR_DESCRIPTION.fullmatch(query["error_description"]), query["error_description"]


@pytest.mark.parametrize(
    "text", ['say "hi"', "a\\b", "\u00e4\u00f6\u00fc \u2028", "nul\x00 tab\t nl\n", "x" * 10_000]
)
def test_every_error_description_is_reduced_to_the_rfc6749_charset(text):
    from oidc_provider_ext.internal.requests import error_description
    from oidc_provider_ext.views.backchannel import oauth_error

    reduced = error_description(text)
    assert ERROR_DESCRIPTION.fullmatch(reduced) and 0 < len(reduced) <= 500
    import json

    assert ERROR_DESCRIPTION.fullmatch(
        json.loads(oauth_error("invalid_request", text).content)["error_description"]
    )


# Review 1 F5: one answer for "no such API" and "an API of another organisation", before sign-in.
def test_unknown_and_other_tenants_resource_get_the_same_answer(client, confidential_app):
    TenantFactory(code="ours")
    TenantFactory(code="theirs")
    ResourceServerFactory(
        identifier=API, scopes="api:read", allowed_clients=[confidential_app], tenant_codes="theirs"
    )
    answers = []
    for value in (API, "https://does-not-exist.example.com/mcp"):
        # Anonymous: no sign-in needed, the answer is in the Location header.
        response = client.get(
            authorize_url(confidential_app, scope="openid api:read", resource=value, acr_values="tenant:ours")
        )
        assert response.status_code == 302
        query = query_of(response["Location"])
        assert query["error"] == "invalid_target"
        answers.append(query["error_description"].replace(value, "<resource>"))
    assert answers[0] == answers[1], answers


# --- consent ----------------------------------------------------------------------------------------


def test_consent_page_names_the_api(browser, user, confidential_app, api):
    login(browser, user)
    response = browser.get(authorize_url(confidential_app, scope="openid api:read", resource=API))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Example MCP" in page and f'data-resource="{API}"' in page


def test_a_remembered_consent_does_not_cover_a_new_resource(browser, user, confidential_app, api, other_api):
    get_code(browser, confidential_app, user, scope="openid api:read api:write", resource=API)
    assert Consent.objects.get().resource == {API: ["api:read", "api:write", "openid"]}
    # Same scopes, the same resource: remembered.
    response = browser.get(authorize_url(confidential_app, scope="openid api:read api:write", resource=API))
    assert response.status_code == 302 and "code=" in response["Location"]
    # Same scopes for another API: asked again, everything, with the API named.
    response = browser.get(
        authorize_url(confidential_app, scope="openid api:read api:write", resource=OTHER_API)
    )
    assert response.status_code == 200
    assert "Other API" in response.content.decode()
    assert {s["name"] for s in response.context["scopes"]} == {"openid", "api:read", "api:write"}
    consent(browser, response)
    assert Consent.objects.get().resource == {
        API: ["api:read", "api:write", "openid"],
        OTHER_API: ["api:read", "api:write", "openid"],
    }


@pytest.fixture
def two_apis(confidential_app):
    # Two APIs that both accept both scopes.
    api = ResourceServerFactory(
        identifier=API, name="Example MCP", scopes="api:read api:write", allowed_clients=[confidential_app]
    )
    other = ResourceServerFactory(
        identifier=OTHER_API,
        name="Other API",
        scopes="api:read api:write",
        allowed_clients=[confidential_app],
    )
    return api, other


def test_a_scope_unticked_for_an_api_is_not_granted_for_it_without_asking(
    browser, rp, user, confidential_app, two_apis
):
    # Review 1 F1. The user allows api:write for API A.
    get_code(browser, confidential_app, user, scope="openid api:read api:write", resource=API)
    # For API B the user is asked (new resource) and UNTICKS api:write.
    login(browser, user)
    response = browser.get(
        authorize_url(confidential_app, scope="openid api:read api:write", resource=OTHER_API)
    )
    assert response.status_code == 200
    response = consent(browser, response, untick=("api:write",))
    assert response.status_code == 302 and "code=" in response["Location"]
    grant = AuthorizationGrant.objects.order_by("-pk").first()
    assert grant.scopes == ["openid", "api:read"]  # the refusal was honoured for this code
    # The client simply asks again: the consent it was refused must be asked again,
    # never remembered as granted for API B.
    response = browser.get(
        authorize_url(confidential_app, scope="openid api:read api:write", resource=OTHER_API)
    )
    if response.status_code == 302:
        code = query_of(response["Location"])["code"]
        token = exchange(rp, confidential_app, code).json()["access_token"]
        claims = verify_jwt(token, typ="at+jwt")
        pytest.fail(
            "api:write for Other API was refused by the user, yet a code was issued without asking; "
            f"its token: aud={claims['aud']} scope={claims['scope']!r}"
        )
    assert response.status_code == 200


def test_consent_for_a_scope_on_one_api_does_not_cover_that_scope_on_another(
    browser, rp, user, confidential_app, two_apis
):
    # Review 1 F1. A: read only. B: write.  Never "write on A".
    get_code(browser, confidential_app, user, scope="openid api:read", resource=API)
    get_code(browser, confidential_app, user, scope="openid api:write", resource=OTHER_API)
    assert set(Consent.objects.get().resource) == {API, OTHER_API}
    login(browser, user)
    response = browser.get(authorize_url(confidential_app, scope="openid api:write", resource=API))
    if response.status_code == 302:
        code = query_of(response["Location"])["code"]
        token = exchange(rp, confidential_app, code).json()["access_token"]
        claims = verify_jwt(token, typ="at+jwt")
        pytest.fail(f"No consent asked; token for {claims['aud']} with scope {claims['scope']!r}")
    assert response.status_code == 200


def test_a_consent_for_an_api_does_not_cover_a_request_without_resource(
    browser, user, confidential_app, two_apis
):
    get_code(browser, confidential_app, user, scope="openid api:read", resource=API)
    login(browser, user)
    response = browser.get(authorize_url(confidential_app, scope="openid api:read"))
    assert response.status_code == 200
    # Answered: remembered for "no resource" too, without touching the API's entry.
    consent(browser, response)
    assert Consent.objects.get().resource == {"": ["api:read", "openid"], API: ["api:read", "openid"]}
    assert browser.get(authorize_url(confidential_app, scope="openid api:read")).status_code == 302


def test_connected_apps_page_shows_the_scopes_per_api(browser, user, confidential_app, two_apis):
    get_code(browser, confidential_app, user, scope="openid")
    get_code(browser, confidential_app, user, scope="openid api:write", resource=OTHER_API)
    page = browser.get(reverse("oidc_provider_ext:connected-apps")).content.decode()
    assert 'data-api="Other API"' in page and 'data-api="Example MCP"' not in page


@pytest.mark.parametrize(
    ("stored", "scope"),
    [([], "openid profile"), ([API], "openid api:write"), ({API: "not a list"}, "openid api:write")],
)
def test_consents_of_the_pooled_format_are_migrated_fail_closed(
    browser, user, confidential_app, two_apis, stored, scope
):
    import importlib

    from django.apps import apps
    from django.utils import timezone

    migration = importlib.import_module("oidc_provider_ext.migrations.0010_consent_resources")
    row = Consent.objects.create(
        user=user,
        application=confidential_app,
        tenant="",
        scope=scope,
        resource=stored,
        granted=timezone.now(),
    )
    migration.per_resource(apps, None)
    row.refresh_from_db()
    if isinstance(stored, list):
        # The scopes stay allowed without a resource; no API keeps a pooled grant.
        assert row.resource == {"": sorted(scope.split())}
    login(browser, user)
    response = browser.get(authorize_url(confidential_app, scope="openid api:write", resource=API))
    assert response.status_code == 200  # asked


# --- audience confusion -------------------------------------------------------------------------------


def test_a_token_for_one_api_is_refused_by_another(browser, rp, user, confidential_app, api, other_api):
    code, _ = get_code(browser, confidential_app, user, scope="openid api:read", resource=API)
    token = exchange(rp, confidential_app, code).json()["access_token"]
    assert validate_access_token(token, audience=API).audience == (API,)
    with pytest.raises(InvalidToken):
        validate_access_token(token, audience=OTHER_API)
    with pytest.raises(InvalidToken):
        validate_access_token(token, audience=confidential_app.client_id)


@pytest.mark.parametrize(
    "identifier",
    [
        API,
        # A prefix of the userinfo URL (DOT's audience check is a URL prefix match; it refuses only
        # because oauthlib hands it a relative URI here; our own rule refuses regardless).
        "http://testserver/connect",
    ],
)
def test_userinfo_refuses_a_token_for_an_api(browser, rp, user, confidential_app, identifier):
    # Even for a resource that lists openid among its scopes.
    ResourceServerFactory(identifier=identifier, scopes="openid api:read", allowed_clients=[confidential_app])
    code, _ = get_code(browser, confidential_app, user, scope="openid api:read", resource=identifier)
    token = exchange(rp, confidential_app, code).json()["access_token"]
    assert verify_jwt(token, typ="at+jwt")["scope"] == "openid api:read"
    assert userinfo(rp, token).status_code == 401


def test_a_client_named_like_a_resource_server_cannot_mint_tokens_for_it(browser, rp, user, confidential_app):
    # Review 1 F2. The API allows only confidential_app.
    ResourceServerFactory(identifier=API, scopes="api:read", allowed_clients=[confidential_app])
    # A client whose client_id is the API's identifier, made before the API or behind the admin's
    # back (the admin, oidc_createclient and client ID metadata documents refuse it:
    # test_resource_servers.py, test_client_metadata_documents.py).
    intruder = ApplicationFactory(client_id=API)
    code, _ = get_code(browser, intruder, user, scope="openid api:read api:write")
    # Its tokens without a resource indicator would carry aud = its client_id = the API's
    # identifier, which the API accepts: refused at issuance, the code stays unused.
    response = exchange(rp, intruder, code)
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid_target"
    assert "access_token" not in response.json()
    # Naming the API does not help either: it does not allow this client.
    named = exchange(rp, intruder, code, resource=API)
    assert named.status_code == 400 and named.json()["error"] == "invalid_target"


def test_a_machine_client_named_like_a_resource_server_gets_no_token(rp):
    ResourceServerFactory(identifier=API, scopes="api:read", any_client=False)
    machine = ApplicationFactory(client_id=API, authorization_grant_type="client-credentials")
    response = token_request(
        rp, {"grant_type": "client_credentials"}, (machine.client_id, machine.raw_secret)
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_target"


# --- client credentials --------------------------------------------------------------------------------


def test_client_credentials_with_a_resource(rp):
    machine = ApplicationFactory(authorization_grant_type="client-credentials")
    ResourceServerFactory(identifier=API, scopes="api:read", allowed_clients=[machine])
    auth = (machine.client_id, machine.raw_secret)
    body = token_request(
        rp, {"grant_type": "client_credentials", "scope": "api:read", "resource": API}, auth
    ).json()
    claims = verify_jwt(body["access_token"], typ="at+jwt")
    assert (claims["aud"], claims["sub"], claims["scope"]) == (API, machine.client_id, "api:read")
    response = token_request(rp, {"grant_type": "client_credentials", "resource": OTHER_API}, auth)
    assert response.status_code == 400 and response.json()["error"] == "invalid_target"


def test_token_endpoint_refuses_hostile_resource_values(rp):
    machine = ApplicationFactory(authorization_grant_type="client-credentials")
    auth = (machine.client_id, machine.raw_secret)
    for value in ("https://api.example.com/\x00", "x" * 5000, "/relative"):
        body = urlencode({"grant_type": "client_credentials", "resource": value})
        response = token_request(rp, body, auth)
        assert response.status_code == 400, value
        assert response.json()["error"] == "invalid_target"
    response = rp.post(
        reverse("oidc_provider_ext:token"),
        "resource=" + "a" * 1_000_000,
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400


def test_mcp_style_public_client_without_openid(browser, rp, user, public_app):
    # What an MCP SDK client does: a public client, PKCE, no openid, `resource` on every request.
    ResourceServerFactory(identifier=API, scopes="api:read", allowed_clients=[public_app])
    verifier, challenge = pkce_pair()
    code, _ = get_code(
        browser,
        public_app,
        user,
        scope="api:read offline_access",
        resource=API,
        code_challenge=challenge,
        code_challenge_method="S256",
        nonce=None,
    )
    response = exchange(rp, public_app, code, verifier=verifier, resource=API)
    assert response.status_code == 200, response.content
    body = response.json()
    assert "id_token" not in body
    assert verify_jwt(body["access_token"], typ="at+jwt")["aud"] == API
    data = {
        "grant_type": "refresh_token",
        "refresh_token": body["refresh_token"],
        "client_id": public_app.client_id,
    }
    response = token_request(rp, {**data, "resource": API})
    assert response.status_code == 200, response.content
    rotated = response.json()
    assert rotated["refresh_token"] != body["refresh_token"]  # public clients' refresh tokens rotate
    assert verify_jwt(rotated["access_token"], typ="at+jwt")["aud"] == API
