"""Review 2: OIDC Core 5.5.1.1: "If the acr Claim was requested as an Essential Claim ... the
Authorization Server MUST return an acr Claim Value that matches one of the requested values."
A session stronger than every requested value satisfies the request here (a level meets the ones
below it), but the ID token then carries the session's own acr, which is none of the values the
relying party asked for: an RP that checks ``acr in requested`` (as 5.5.1.1 lets it) refuses the
sign-in of a user who did more than was asked (a passkey user at an RP that asks for multi-factor)."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from oidc_provider_ext import acr
from oidc_provider_ext.conf import app_settings

from .flow import authorize_url, consent, exchange, query_of, verify_jwt
from .soft_authenticator import SoftAuthenticator

pytestmark = pytest.mark.django_db


def essential(*values):
    return json.dumps({"id_token": {"acr": {"essential": True, "values": list(values)}}})


def passkey_user_browser(user) -> Client:
    key = SoftAuthenticator(app_settings.WEBAUTHN_RP_ID, app_settings.WEBAUTHN_ORIGINS[0])
    owner = Client()
    owner.force_login(user)
    options = owner.post(reverse("oidc_provider_ext:passkey-registration-options")).json()
    assert owner.post(reverse("oidc_provider_ext:passkeys"), {"name": "k", "credential": key.create(options)}).status_code == 302
    browser = Client()
    options = browser.post(reverse("oidc_provider_ext:passkey-options")).json()
    response = browser.post(reverse("oidc_provider_ext:login"), {"credential": key.get(options)})
    assert response.status_code == 302
    (entry,) = browser.session["oidc_op_sessions"].values()
    assert entry["acr"] == acr.PHISHING_RESISTANT
    return browser


def test_essential_acr_returns_one_of_the_requested_values(user, confidential_app, rp):
    browser = passkey_user_browser(user)
    response = browser.get(authorize_url(confidential_app, claims=essential(acr.MFA)))
    if response.status_code == 200:
        response = consent(browser, response)
    query = query_of(response["Location"])
    assert "code" in query, query
    id_token = verify_jwt(exchange(rp, confidential_app, query["code"]).json()["id_token"])
    assert id_token["acr"] in [acr.MFA], (
        f"essential acr [{acr.MFA}] answered with acr {id_token['acr']} (OIDC Core 5.5.1.1: MUST match)"
    )


def test_an_essential_acr_request_with_malformed_values_is_not_silently_dropped(user, confidential_app):
    """``values`` as a string (a common RP mistake) or an object: the essential requirement is
    ignored and a password-only sign-in gets a code, rather than invalid_request (OIDC Core 5.5:
    "values" is a JSON array) or unmet_authentication_requirements."""
    browser = Client()
    browser.force_login(user)
    for values in (acr.MFA, {"0": acr.MFA}):
        claims = json.dumps({"id_token": {"acr": {"essential": True, "values": values}}})
        response = browser.get(authorize_url(confidential_app, claims=claims))
        if response.status_code == 200:
            response = consent(browser, response)
        query = query_of(response["Location"])
        assert "code" not in query, f"essential acr with values={values!r}: a password-only code was issued"
