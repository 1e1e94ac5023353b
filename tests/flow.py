"""Drives the authorization code flow through Django's test client, like a browser + RP would."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

from django.test import Client
from django.urls import reverse

from .factories import REDIRECT_URI, USER_PASSWORD


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_url(app, **params) -> str:
    query = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile email",
        "state": "state-123",
        "nonce": "nonce-456",
    }
    query.update(params)
    query = {k: v for k, v in query.items() if v is not None}
    return f"{reverse('oidc_provider_ext:authorize')}?{urlencode(query, doseq=True)}"


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def login(client, user, password: str = USER_PASSWORD, next_url: str = "/"):
    return client.post(
        f"{reverse('oidc_provider_ext:login')}?{urlencode({'next': next_url})}",
        {"username": user.username, "password": password},
    )


def signed_in(user) -> Client:
    """A new browser signed in as ``user`` with the password on the sign-in page."""
    browser = Client()
    assert login(browser, user).status_code == 302
    return browser


def consent(client, response, decision: str = "allow", untick: tuple[str, ...] = ()):
    """POST the consent form in ``response`` as a browser does: every enabled scope checkbox is
    ticked by default (``untick`` some), the disabled openid one is not sent."""
    assert response.status_code == 200, response.content[:500]
    request_id = response.context["form"].initial["request_id"]
    ticked = [s["name"] for s in response.context["scopes"] if not s["required"] and s["name"] not in untick]
    data = {"request_id": request_id, "decision": decision, "scope": ticked}
    return client.post(response.context["form_action"], data)


def continue_url(request_id: str) -> str:
    """Where the browser's answers to a pending authorization request go."""
    return reverse("oidc_provider_ext:authorize-continue", args=[request_id])


def get_code(client, app, user, **params) -> tuple[str, dict]:
    """Sign in (if needed), consent, and return (code, redirect query)."""
    url = authorize_url(app, **params)
    response = client.get(url)
    if response.status_code == 302 and reverse("oidc_provider_ext:login") in response["Location"]:
        # Sign in on the page the IdP sent us to (it knows the pending request and its tenant).
        response = client.post(response["Location"], {"username": user.username, "password": USER_PASSWORD})
        assert response.status_code == 302, response.content[:500]
        response = client.get(response["Location"])
    if response.status_code == 200:
        response = consent(client, response)
    assert response.status_code == 302, response.content[:500]
    location = response["Location"]
    assert location.startswith(params.get("redirect_uri", REDIRECT_URI)), location
    query = query_of(location)
    assert "code" in query, query
    return query["code"], query


def basic_auth(client_id: str, secret: str) -> str:
    from urllib.parse import quote

    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def token_request(client, data, auth: tuple[str, str] | None = None, **extra):
    """POST to the token endpoint; ``data`` is a dict or an already-encoded body."""
    if auth is not None:
        extra["HTTP_AUTHORIZATION"] = basic_auth(*auth)
    body = data if isinstance(data, str) else urlencode(data, doseq=True)
    return client.post(
        reverse("oidc_provider_ext:token"), body, content_type="application/x-www-form-urlencoded", **extra
    )


def exchange(
    client,
    app,
    code: str,
    verifier: str | None = None,
    redirect_uri: str = REDIRECT_URI,
    resource: str | list[str] | None = None,
    **extra,
):
    """Redeem ``code``; ``resource`` (RFC 8707) is sent once per value."""
    data: dict = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    if verifier:
        data["code_verifier"] = verifier
    if resource is not None:
        data["resource"] = resource
    if app.client_type == "public":
        data["client_id"] = app.client_id
        return token_request(client, data, **extra)
    return token_request(client, data, auth=(app.client_id, app.raw_secret), **extra)


def verify_jwt(token: str, *, typ: str = "JWT", algs=("RS256", "PS256", "ES256")) -> dict:
    """Verify a JWT against the published JWKS, as a relying party does; return its claims."""
    import json

    from django.test import Client
    from jwcrypto import jwk, jwt

    jwks = Client().get(reverse("oidc_provider_ext:jwks")).json()
    keyset = jwk.JWKSet.from_json(json.dumps(jwks))
    parsed = jwt.JWT(jwt=token, key=keyset, algs=list(algs), check_claims=False)
    header = json.loads(parsed.header)
    assert header["typ"] == typ
    assert header["kid"] in {k["kid"] for k in jwks["keys"]}
    return json.loads(parsed.claims)


def set_auth_time(browser, seconds_ago: int, tenant: str = "") -> None:
    """Pretend the browser's OP session authenticated ``seconds_ago`` seconds ago."""
    import time

    session = browser.session
    entry = session["oidc_op_sessions"][tenant]
    entry["auth_time"] = int(time.time()) - seconds_ago
    session.save()


def refresh(client, app, refresh_token: str, **data):
    """POST a refresh-token grant as ``app`` (RFC 6749 6); the response."""
    body = {"grant_type": "refresh_token", "refresh_token": refresh_token, **data}
    return token_request(client, body, auth=(app.client_id, app.raw_secret))


def userinfo(client, access_token: str):
    return client.get(reverse("oidc_provider_ext:userinfo"), HTTP_AUTHORIZATION=f"Bearer {access_token}")


def introspect(client, app, token: str) -> dict:
    """RFC 7662 introspection by ``app``; the JSON answer."""
    response = client.post(
        reverse("oidc_provider_ext:introspect"),
        urlencode({"token": token}),
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=basic_auth(app.client_id, app.raw_secret),
    )
    assert response.status_code == 200, response.content
    return response.json()


def post_client_change(client, app, *, allowed_origins: str = "", **profile):
    """Save ``app``'s admin change form as a browser does (its current values), with
    ``allowed_origins`` and OIDC-profile fields (``id_token_signed_response_alg="ES256"``…) set."""
    url = f"/admin/oauth2_provider/application/{app.pk}/change/"
    page = client.get(url)
    data = {k: v for k, v in page.context["adminform"].form.initial.items() if v is not None}
    fields = {"id_token_signed_response_alg": "RS256", "consent_policy": "remember", **profile}
    data.update(
        {
            "client_secret": "",
            "allowed_origins": allowed_origins,
            "oidc_profile-TOTAL_FORMS": "1",
            "oidc_profile-INITIAL_FORMS": "1",
            "oidc_profile-MIN_NUM_FORMS": "0",
            "oidc_profile-MAX_NUM_FORMS": "1",
            "oidc_profile-0-id": str(app.oidc_profile.pk),
            "oidc_profile-0-application": str(app.pk),
            **{f"oidc_profile-0-{name}": value for name, value in fields.items()},
        }
    )
    data.pop("user", None)
    return client.post(url, data)


def enrol_totp(user):
    """Give ``user`` a confirmed authenticator app; the pyotp.TOTP an app would compute codes with."""
    import pyotp
    from django.utils import timezone

    from oidc_provider_ext.internal import totp
    from oidc_provider_ext.models import TOTPDevice

    secret = pyotp.random_base32(32)
    TOTPDevice.objects.create(user=user, encrypted_secret=totp._encrypt(secret), confirmed=timezone.now())
    return pyotp.TOTP(secret)


def totp_code(app_totp, steps: int = 0) -> str:
    """The code ``app_totp`` shows ``steps`` time steps from now (what the phone shows)."""
    import time

    return app_totp.at(time.time() + 30 * steps)


def forget_used_codes(user) -> None:
    """Let this test use the current time step's code again (replay protection is tested apart)."""
    from oidc_provider_ext.models import TOTPDevice

    TOTPDevice.objects.filter(user=user.pk).update(last_counter=None)


def sign_in_with_totp(client, user, app_totp, next_url: str = "/"):
    """Password, then the authenticator-app code: the response of the challenge page."""
    response = login(client, user, next_url=next_url)
    assert response.status_code == 302 and response["Location"] == reverse("oidc_provider_ext:login-verify")
    forget_used_codes(user)
    return client.post(response["Location"], {"factor": "totp", "code": totp_code(app_totp)})
