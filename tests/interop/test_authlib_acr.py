"""Authlib as a relying party asking for a stronger sign-in (docs/mfa.md): ``acr_values`` and an
essential ``acr`` in the ``claims`` parameter (OIDC Core 3.1.2.1, 5.5.1.1), with Authlib's own
ID-token validation checking the ``acr`` it asked for."""

from __future__ import annotations

import json

import pyotp
import pytest
from authlib.common.security import generate_token
from django.contrib.auth import get_user_model
from django.utils import timezone

from oidc_provider_ext import acr
from oidc_provider_ext.internal import totp
from oidc_provider_ext.models import TOTPDevice
from tests.live import UserAgent, query_of

from .test_authlib import AuthlibRP

pytestmark = pytest.mark.live


def give_authenticator_app(demo) -> pyotp.TOTP:
    secret = pyotp.random_base32(32)
    user = get_user_model().objects.get(username=demo["user"]["username"])
    TOTPDevice.objects.create(user=user, encrypted_secret=totp._encrypt(secret), confirmed=timezone.now())
    return pyotp.TOTP(secret)


def checked_claims(rp: AuthlibRP, token: dict, wanted_acr: str):
    claims = rp.id_token_claims(token, nonce=rp.nonce)
    # Authlib checks a claim against the values the RP asked for (JWTClaims.validate).
    claims.options = {**claims.options, "acr": {"essential": True, "values": [wanted_acr]}}
    claims.validate(leeway=5)
    return claims


def test_acr_values_multi_factor(demo):
    rp = AuthlibRP(demo, "confidential", "client_secret_basic")
    # Without a second factor, a voluntary request is answered with the acr achieved.
    token = rp.sign_in(UserAgent(demo["issuer"], **demo["user"]), acr_values=acr.MFA)
    claims = checked_claims(rp, token, acr.PASSWORD)
    assert claims["amr"] == ["pwd"], "RFC 8176: a password sign-in"

    app = give_authenticator_app(demo)
    user_agent = UserAgent(demo["issuer"], **demo["user"], totp=app)
    token = rp.sign_in(user_agent, acr_values=f"tenant:{demo['tenant']} {acr.MFA}")
    assert user_agent.pages[:2] == ["login", "second-factor"], user_agent.pages
    claims = checked_claims(rp, token, acr.MFA)
    assert claims["amr"] == ["pwd", "otp", "mfa"], "RFC 8176: password, one-time code, multi-factor"
    assert claims["tenant"] == demo["tenant"], "the tenant of acr_values is the tenant claim, not the acr"
    refreshed = rp.session.refresh_token(rp.meta["token_endpoint"], refresh_token=token["refresh_token"])
    again = rp.id_token_claims(refreshed)
    assert (again["acr"], again["amr"]) == (claims["acr"], claims["amr"]), "OIDC Core 12.2"


def test_essential_acr_that_cannot_be_met(demo):
    rp = AuthlibRP(demo, "confidential", "client_secret_basic")
    app = give_authenticator_app(demo)  # an app, no passkey: phishing-resistant is out of reach
    claims = json.dumps({"id_token": {"acr": {"essential": True, "values": [acr.PHISHING_RESISTANT]}}})
    url, state = rp.session.create_authorization_url(
        rp.meta["authorization_endpoint"], code_verifier=generate_token(48), nonce="n", claims=claims
    )
    callback = UserAgent(demo["issuer"], **demo["user"], totp=app).authorize(url)
    assert callback.startswith(rp.client["redirect_uri"] + "?"), callback
    answer = query_of(callback)
    assert answer["error"] == "unmet_authentication_requirements", "OIDC Core 3.1.2.6 (errata set 2)"
    assert answer["state"] == state and "code" not in answer
