"""The login round trip carries the pending authorization request signed (internal/authorization.py,
``travelling_id``): attacked over HTTP. A signed request is the one the client sent, validated, and
nothing more: it answers no consent, tenant choice or step-up, and it cannot be altered."""

from urllib.parse import quote, unquote

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse

from oidc_provider_ext.models import AuthorizationGrant, Consent

from .factories import USER_PASSWORD, ApplicationFactory
from .flow import authorize_url, consent

pytestmark = pytest.mark.django_db


def next_of(response) -> str:
    assert response.status_code == 302 and "/login" in response["Location"], response
    return unquote(response["Location"].split("next=", 1)[1])


def signed_request_id(next_url: str) -> str:
    return next_url.rstrip("/").rsplit("/", 1)[-1]


@pytest.fixture
def app(db):
    return ApplicationFactory(profile__consent_policy="ask")  # asks every time: a page each run


def test_the_sign_in_works_from_the_url_alone(user, app):
    browser = Client()
    continue_url = next_of(browser.get(authorize_url(app, scope="openid email")))
    assert ":" in signed_request_id(continue_url) and not Session.objects.exists()
    login_url = reverse("oidc_provider_ext:login") + "?next=" + quote(continue_url)
    response = browser.post(login_url, {"username": user.username, "password": USER_PASSWORD})
    assert response.status_code == 302 and response["Location"] == continue_url
    page = browser.get(continue_url)
    assert page.templates[0].name == "oidc_provider_ext/consent.html"
    # The consent form answers the request waiting in the session under its opaque id, not the URL.
    assert page.context["form_action"] != continue_url and ":" not in page.context["form_action"]
    assert "code=" in consent(browser, page)["Location"]


def test_a_consent_answer_to_the_signed_url_is_refused(user, app):
    browser = Client()
    continue_url = next_of(browser.get(authorize_url(app)))
    browser.post(reverse("oidc_provider_ext:login"), {"username": user.username, "password": USER_PASSWORD})
    request_id = signed_request_id(continue_url)
    for form_id in (request_id, "x" * 32):
        answer = browser.post(continue_url, {"request_id": form_id, "decision": "allow"})
        assert answer.status_code == 400 and "Location" not in answer
    step_up = browser.get(reverse("oidc_provider_ext:authorize-step-up", args=[request_id]))
    assert step_up.status_code == 400
    tenant = browser.post(continue_url, {"tenant": "acme"})
    assert tenant.status_code == 400
    assert not AuthorizationGrant.objects.exists() and not Consent.objects.exists()


def test_an_altered_signed_url_is_expired_not_followed(user, app):
    browser = Client()
    browser.post(reverse("oidc_provider_ext:login"), {"username": user.username, "password": USER_PASSWORD})
    request_id = signed_request_id(next_of(Client().get(authorize_url(app))))
    value, signature = request_id.rsplit(":", 1)
    for altered in (f"{value}x:{signature}", f"{value}:{signature[::-1]}", f"{value}:", value + "\u00e9:x"):
        response = browser.get(reverse("oidc_provider_ext:authorize-continue", args=[altered]))
        assert response.status_code == 400 and "expired" in response.content.decode()


def test_a_replayed_signed_url_asks_again(user, app):
    """The signed URL is the client's request as sent: following it again is sending the request
    again (a consent page to answer anew), never a second answer to the first page."""
    browser = Client()
    continue_url = next_of(browser.get(authorize_url(app)))
    browser.post(reverse("oidc_provider_ext:login"), {"username": user.username, "password": USER_PASSWORD})
    first = browser.get(continue_url)
    assert "code=" in consent(browser, first)["Location"]
    assert consent(browser, first).status_code == 400  # the answered page stays answered
    again = browser.get(continue_url)
    assert again.templates[0].name == "oidc_provider_ext/consent.html"
    assert AuthorizationGrant.objects.count() == 1
