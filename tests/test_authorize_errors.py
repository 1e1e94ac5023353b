"""Errors at the authorization endpoint: before the client and redirect_uri are validated they are an
HTML page at the IdP (never a redirect); after, they go back to the client with state (RFC 6749
4.1.2.1, OIDC Core 3.1.2.6)."""

from urllib.parse import urlencode

import pytest
from django.urls import reverse

from . import presets
from .factories import REDIRECT_URI, ApplicationFactory, PublicApplicationFactory
from .flow import authorize_url, consent, continue_url, login, pkce_pair, query_of

pytestmark = pytest.mark.django_db


def assert_error_page(response):
    assert response.status_code == 400
    assert "Location" not in response
    assert response.templates[0].name == "oidc_provider_ext/error.html"
    return response.context["error"]


def assert_client_error(response, error, state="state-123"):
    assert response.status_code == 302
    assert response["Location"].startswith(REDIRECT_URI + "?")
    query = query_of(response["Location"])
    assert query["error"] == error, query
    if state is None:
        assert "state" not in query
    else:
        assert query["state"] == state
    assert "code" not in query
    return query


@pytest.mark.parametrize("signed_in", [False, True])
def test_unknown_client_gets_error_page(client, user, signed_in):
    if signed_in:
        login(client, user)
    response = client.get(authorize_url(type("App", (), {"client_id": "no-such-client"})))
    assert (
        assert_error_page(response) == "invalid_request" or response.context["error"] == "invalid_client_id"
    )


def test_missing_client_id_gets_error_page(client, confidential_app):
    assert_error_page(client.get(authorize_url(confidential_app, client_id=None)))


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example.com/callback",
        REDIRECT_URI + "/extra",
        REDIRECT_URI + "?x=1",
        REDIRECT_URI.upper(),
        "https://rp.example.com/CALLBACK",
        "http://rp.example.com/callback",
    ],
)
def test_unregistered_redirect_uri_gets_error_page_not_redirect(client, user, confidential_app, redirect_uri):
    login(client, user)
    response = client.get(authorize_url(confidential_app, redirect_uri=redirect_uri))
    assert_error_page(response)
    assert "evil" not in response.content.decode()


LOOPBACK_CALLBACKS = "http://127.0.0.1/callback http://[::1]/callback http://localhost/callback"


def loopback_client(public: bool):
    factory = PublicApplicationFactory if public else ApplicationFactory
    return factory(redirect_uris=LOOPBACK_CALLBACKS)


def authorize_loopback(client, app, redirect_uri):
    _, challenge = pkce_pair()  # required of public clients; harmless for confidential ones
    return client.get(
        authorize_url(app, redirect_uri=redirect_uri, code_challenge=challenge, code_challenge_method="S256")
    )


def assert_consent_page(response):
    assert response.status_code == 200, response.content[:300]
    assert response.templates[0].name == "oidc_provider_ext/consent.html"


@pytest.mark.parametrize("public", [False, True])
@pytest.mark.parametrize("redirect_uri", LOOPBACK_CALLBACKS.split())
def test_registered_loopback_redirect_uri_is_accepted(client, user, public, redirect_uri):
    login(client, user)
    assert_consent_page(authorize_loopback(client, loopback_client(public), redirect_uri))


@pytest.mark.parametrize(
    "redirect_uri",
    ["http://127.0.0.1:9999/callback", "http://[::1]:51004/callback", "http://127.0.0.1:80/callback"],
)
def test_confidential_client_gets_no_loopback_port_exception(client, user, redirect_uri):
    # RFC 8252 7.3 lets the port vary for native apps only; a web client's redirect URI is matched
    # exactly (RFC 9700 2.1, 4.1.3), so another port is an unregistered redirect URI: no redirect.
    login(client, user)
    assert_error_page(authorize_loopback(client, loopback_client(public=False), redirect_uri))


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://127.0.0.1:9999/callback",
        "http://127.0.0.1:1/callback",
        "http://127.0.0.1:65535/callback",
        "http://[::1]:51004/callback",
    ],
)
def test_public_client_may_use_any_loopback_port(client, user, redirect_uri):
    login(client, user)
    assert_consent_page(authorize_loopback(client, loopback_client(public=True), redirect_uri))


@pytest.mark.parametrize("public", [False, True])
@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://127.0.0.1:99999/callback",
        "http://127.0.0.1:65536/callback",
        "http://127.0.0.1:0/callback",
        "http://[::1]:0/callback",
        "http://127.0.0.1:00080/callback",
        "http://127.0.0.1:/callback",
        "http://127.0.0.1:80x/callback",
    ],
)
def test_invalid_loopback_ports_are_refused(client, user, public, redirect_uri):
    login(client, user)
    assert_error_page(authorize_loopback(client, loopback_client(public), redirect_uri))


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://127.0.0.1:9999/callback/extra",
        "http://127.0.0.1:9999/callback?x=1",
        "http://127.0.0.1:9999/callback?",
        "http://127.0.0.1:9999/callback#frag",
        "http://127.0.0.1:9999/CALLBACK",
        "https://127.0.0.1:9999/callback",
        "HTTP://127.0.0.1:9999/callback",
        "http://127.0.0.2:9999/callback",
        "http://user@127.0.0.1:9999/callback",
        "http://127.0.0.1:9999@evil.example.com/callback",
        "http://[::1]:9999/callback/../evil",
    ],
)
def test_loopback_port_exception_varies_the_port_only(client, user, redirect_uri):
    login(client, user)
    assert_error_page(authorize_loopback(client, loopback_client(public=True), redirect_uri))


def test_localhost_is_not_a_loopback_ip_literal(client, user, settings):
    # RFC 8252 8.3: "localhost" may resolve elsewhere; only IP literals get the port exception,
    # even where DOT's own ALLOW_LOCALHOST_LOOPBACK is switched on.
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "ALLOW_LOCALHOST_LOOPBACK": True}
    login(client, user)
    assert_error_page(
        authorize_loopback(client, loopback_client(public=True), "http://localhost:9999/callback")
    )


def test_missing_redirect_uri_gets_error_page(client, user, confidential_app):
    login(client, user)
    assert_error_page(client.get(authorize_url(confidential_app, redirect_uri=None)))


def test_error_page_before_login_for_bad_client(client):
    # The user is not bounced through the login page for a request that can never succeed.
    response = client.get(authorize_url(type("App", (), {"client_id": "nope"})))
    assert_error_page(response)


def test_duplicated_parameter_is_invalid_request(client, user, confidential_app):
    login(client, user)
    url = authorize_url(confidential_app) + "&" + urlencode({"client_id": confidential_app.client_id})
    assert_error_page(client.get(url))


def test_public_client_without_pkce_gets_error_with_state(client, user, public_app):
    login(client, user)
    query = assert_client_error(client.get(authorize_url(public_app)), "invalid_request")
    assert "code_challenge" in query["error_description"].lower() or "challenge" in query["error_description"]


def test_plain_pkce_is_rejected(client, user, public_app):
    login(client, user)
    response = client.get(authorize_url(public_app, code_challenge="a" * 43, code_challenge_method="plain"))
    assert_client_error(response, "invalid_request")


def test_pkce_challenge_without_method_means_plain_and_is_rejected(client, user, public_app):
    # RFC 7636 4.3: the method defaults to "plain", which this provider does not support.
    login(client, user)
    response = client.get(authorize_url(public_app, code_challenge="a" * 43))
    assert_client_error(response, "invalid_request")


def test_client_requiring_pkce_rejects_request_without_it(client, user):
    app = ApplicationFactory(profile__require_pkce=True)
    login(client, user)
    assert_client_error(client.get(authorize_url(app)), "invalid_request")
    _, challenge = pkce_pair()
    response = client.get(authorize_url(app, code_challenge=challenge, code_challenge_method="S256"))
    assert response.status_code == 200  # consent page


@pytest.mark.parametrize(
    "response_type", ["token", "id_token", "code id_token", "code token", "id_token token"]
)
def test_implicit_and_hybrid_response_types_are_refused(client, user, confidential_app, response_type):
    login(client, user)
    response = client.get(authorize_url(confidential_app, response_type=response_type))
    assert_client_error(response, "unsupported_response_type")
    assert "#" not in response["Location"]


def test_missing_response_type(client, user, confidential_app):
    login(client, user)
    assert_client_error(client.get(authorize_url(confidential_app, response_type=None)), "invalid_request")


def test_unknown_scope_is_invalid_scope(client, user, confidential_app):
    login(client, user)
    assert_client_error(client.get(authorize_url(confidential_app, scope="openid admin")), "invalid_scope")


def test_state_is_omitted_from_errors_when_not_sent(client, user, confidential_app):
    login(client, user)
    assert_client_error(
        client.get(authorize_url(confidential_app, scope="openid admin", state=None)),
        "invalid_scope",
        state=None,
    )


def test_deny_redirects_with_access_denied_and_state(client, user, confidential_app):
    login(client, user)
    response = consent(client, client.get(authorize_url(confidential_app)), decision="deny")
    assert_client_error(response, "access_denied")


def test_prompt_none_when_not_signed_in_is_login_required(client, confidential_app):
    assert_client_error(client.get(authorize_url(confidential_app, prompt="none")), "login_required")


def test_prompt_none_without_consent_is_consent_required(client, user, confidential_app):
    login(client, user)
    assert_client_error(client.get(authorize_url(confidential_app, prompt="none")), "consent_required")


def test_prompt_none_with_other_value_is_invalid_request(client, user, confidential_app):
    login(client, user)
    assert_client_error(client.get(authorize_url(confidential_app, prompt="none login")), "invalid_request")


def test_prompt_login_asks_for_password_again(client, user, confidential_app):
    login(client, user)
    response = client.get(authorize_url(confidential_app, prompt="login"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("oidc_provider_ext:login"))
    # After signing in again, the user continues without being asked to log in once more.
    response = login(client, user, next_url=query_of(response["Location"])["next"])
    response = client.get(response["Location"])
    assert response.status_code == 200
    assert response.templates[0].name == "oidc_provider_ext/consent.html"


class TestConsentPost:
    """Nothing from the consent form is trusted beyond an opaque, single-use request id."""

    def test_unknown_request_id(self, client, user):
        login(client, user)
        response = client.post(continue_url("forged"), {"request_id": "forged", "decision": "allow"})
        assert response.status_code == 400
        assert "Location" not in response

    def test_request_id_is_single_use(self, client, user, confidential_app):
        login(client, user)
        page = client.get(authorize_url(confidential_app))
        assert consent(client, page).status_code == 302
        assert consent(client, page).status_code == 400

    def test_extra_fields_cannot_change_redirect_or_scope(self, client, user, confidential_app):
        login(client, user)
        page = client.get(authorize_url(confidential_app, scope="openid"))
        response = client.post(
            page.context["form_action"],
            {
                "request_id": page.context["form"].initial["request_id"],
                "decision": "allow",
                "redirect_uri": "https://evil.example.com/",
                "scope": "openid email offline_access",
                "client_id": "other",
            },
        )
        assert response["Location"].startswith(REDIRECT_URI + "?")
        from oidc_provider_ext.models import AuthorizationGrant
        from oidc_provider_ext.validator import checksum

        grant = AuthorizationGrant.objects.get(code_checksum=checksum(query_of(response["Location"])["code"]))
        assert grant.scope == "openid"
        assert grant.application == confidential_app

    def test_request_of_another_session_user_is_refused(self, client, user, confidential_app):
        from .factories import UserFactory

        login(client, user)
        page = client.get(authorize_url(confidential_app))
        login(client, UserFactory())  # a different user signs in in the same browser
        assert consent(client, page).status_code == 400

    def test_post_requires_csrf_token(self, user, confidential_app):
        from django.test import Client

        browser = Client(enforce_csrf_checks=True)
        login_page = browser.get(reverse("oidc_provider_ext:login"))
        assert login_page.status_code == 200
        response = browser.post(continue_url("x"), {"request_id": "x", "decision": "allow"})
        assert response.status_code == 403

    def test_anonymous_post_is_refused(self, client):
        response = client.post(continue_url("x"), {"request_id": "x", "decision": "allow"})
        assert response.status_code == 400
        assert "Location" not in response


def test_login_with_wrong_password_is_400_with_generic_message(client, user):
    response = login(client, user, password="wrong")
    assert response.status_code == 400
    assert "username or password is not correct" in response.content.decode()
    response = client.post(reverse("oidc_provider_ext:login"), {"username": "nobody", "password": "wrong"})
    assert response.status_code == 400
    assert "username or password is not correct" in response.content.decode()


def test_login_does_not_redirect_to_other_sites(client, user):
    response = login(client, user, next_url="https://evil.example.com/")
    assert response.status_code == 302
    assert not response["Location"].startswith("https://evil.example.com")


def test_authorization_request_by_post(client, user, confidential_app):
    """OIDC Core 3.1.2.1: the authorization endpoint supports POST (form-encoded, cross-site)."""
    from django.test import Client

    from .flow import authorize_url

    rp_form_post = Client(enforce_csrf_checks=True)  # an RP's auto-submitting form has no CSRF token
    params = dict(pair.split("=", 1) for pair in authorize_url(confidential_app).split("?", 1)[1].split("&"))
    from urllib.parse import unquote_plus

    params = {key: unquote_plus(value) for key, value in params.items()}
    response = rp_form_post.post(reverse("oidc_provider_ext:authorize"), params)
    assert response.status_code == 302 and response["Location"].startswith(reverse("oidc_provider_ext:login"))
    bad = rp_form_post.post(
        reverse("oidc_provider_ext:authorize"), {**params, "redirect_uri": "https://evil.example/"}
    )
    assert bad.status_code == 400 and "Location" not in bad


def test_tenant_chooser_post_requires_csrf(user, confidential_app):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    response = strict.post(reverse("oidc_provider_ext:authorize-continue", args=["x"]), {"tenant": "acme"})
    assert response.status_code == 403


# --- self-registered clients: no automatic error redirect before the user acted -----------------
# RFC 9700 4.11.2: anyone may register https://phish.example/... (open registration, a metadata
# document) and link to /connect/authorize with an invalid request; the provider must not answer
# with a redirect there from its trusted origin. The error is a page at the IdP.


@pytest.mark.oidc_settings(REGISTRATION="open")
def test_self_registered_client_errors_are_not_automatic_redirects(client):
    from django.test import Client
    from oauth2_provider.models import get_application_model

    from .test_registration import register

    created = register(
        client, {"redirect_uris": ["https://phish.example/login"], "token_endpoint_auth_method": "none"}
    )
    application = get_application_model().objects.get(client_id=created.json()["client_id"])
    _verifier, challenge = pkce_pair()
    response = Client().get(
        authorize_url(
            application,
            redirect_uri="https://phish.example/login",
            scope="openid no-such-scope",
            code_challenge=challenge,
            code_challenge_method="S256",
        )
    )
    assert not (response.status_code == 302 and response["Location"].startswith("https://phish.example/")), (
        response["Location"]
    )
    assert assert_error_page(response) == "invalid_scope"


@pytest.mark.oidc_settings(presets.NO_LOOPBACK)
def test_self_registered_non_canonical_loopback_gets_no_error_redirect():
    """A client registered (before registration refused it) with https://127.1 (= 127.0.0.1): an
    invalid request is no error redirect into loopback for anyone's browser."""
    from django.test import Client
    from oauth2_provider.models import get_application_model

    application = PublicApplicationFactory(
        redirect_uris="https://127.1/cb", registration_source=get_application_model().RegistrationSource.DCR
    )
    response = Client().get(
        authorize_url(application, redirect_uri="https://127.1/cb", scope="openid no-such-scope")
    )
    assert not (response.status_code == 302 and response["Location"].startswith("https://127.1/cb")), (
        response["Location"]
    )


def test_self_registered_client_gets_its_error_after_the_user_answered(client, user):
    """Once the user answered the consent page (which names the redirect host), a denial goes back
    to the client as usual."""
    from oauth2_provider.models import get_application_model

    application = PublicApplicationFactory(registration_source=get_application_model().RegistrationSource.DCR)
    _verifier, challenge = pkce_pair()
    login(client, user)
    page = client.get(
        authorize_url(application, state="state-123", code_challenge=challenge, code_challenge_method="S256")
    )
    assert page.status_code == 200 and page.context["self_registered"]
    assert_client_error(consent(client, page, decision="deny"), "access_denied")
