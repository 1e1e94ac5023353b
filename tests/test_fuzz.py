"""Property-based attack on every endpoint: whatever parameters, headers and bodies arrive, the
answer is never a 500 and always a well-formed error (RFC 6749 5.2 JSON on the back channel, an
HTML page or a redirect to a registered URI on the front channel)."""

import json
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .factories import REDIRECT_URI, ApplicationFactory

pytestmark = pytest.mark.django_db

NAMES = [
    "client_id", "client_secret", "grant_type", "code", "redirect_uri", "refresh_token", "scope", "state",
    "nonce", "response_type", "code_challenge", "code_challenge_method", "code_verifier", "prompt", "max_age",
    "id_token_hint", "login_hint", "claims", "acr_values", "token", "token_type_hint", "access_token",
    "post_logout_redirect_uri", "ui_locales", "request", "request_uri",
]  # fmt: skip
KNOWN_VALUES = [
    "client-fuzz", REDIRECT_URI, "code", "openid", "authorization_code", "refresh_token", "none", "S256",
    "plain", "0", "-1", "{}", '{"id_token":{"acr":{"essential":true}}}', "tenant:x tenant:y",
]  # fmt: skip

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)
values = st.one_of(st.sampled_from(KNOWN_VALUES), text)
params = st.lists(st.tuples(st.one_of(st.sampled_from(NAMES), text), values), max_size=8)
auth_headers = st.one_of(
    st.none(),
    st.sampled_from(["Basic", "Basic Og==", "Bearer", "Bearer x.y.z", "Basic Y2xpZW50LWZ1eno6c2VjcmV0"]),
    text.map(lambda t: "Basic " + t),
    text.map(lambda t: "Bearer " + t),
)
content_types = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "application/json",
        "text/plain",
        "multipart/form-data; boundary=zz",
        "",
    ]
)
raw_bodies = st.one_of(st.binary(max_size=200), params.map(lambda p: urlencode(p).encode()))

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def fuzz_client(db):
    ApplicationFactory(client_id="client-fuzz", client_secret="secret", profile__consent_policy="skip")
    return Client()


def _request(client, path, method, query, body, content_type, auth):
    extra = {"HTTP_AUTHORIZATION": auth} if auth is not None else {}
    url = f"{path}?{urlencode(query)}" if query else path
    if method == "GET":
        return client.get(url, **extra)
    return client.post(url, body, content_type=content_type, **extra)


def _assert_json_error(response):
    assert response.status_code < 500, response.content[:300]
    if response.status_code >= 400:
        assert response["Content-Type"].startswith("application/json"), (
            response.status_code,
            response.content[:200],
        )
        body = json.loads(response.content)
        assert isinstance(body.get("error"), str) and body["error"], body


@pytest.mark.parametrize("endpoint", ["token", "introspect", "revocation", "userinfo"])
@FUZZ
@given(
    method=st.sampled_from(["GET", "POST"]),
    query=params,
    body=raw_bodies,
    content_type=content_types,
    auth=auth_headers,
)
def test_back_channel_endpoints(fuzz_client, endpoint, method, query, body, content_type, auth):
    response = _request(
        fuzz_client, reverse(f"oidc_provider_ext:{endpoint}"), method, query, body, content_type, auth
    )
    _assert_json_error(response)
    if endpoint == "userinfo" and response.status_code == 401:
        assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("endpoint", ["authorize", "endsession"])
@FUZZ
@given(method=st.sampled_from(["GET", "POST"]), query=params, body=raw_bodies, content_type=content_types)
def test_front_channel_endpoints(fuzz_client, endpoint, method, query, body, content_type):
    response = _request(
        fuzz_client, reverse(f"oidc_provider_ext:{endpoint}"), method, query, body, content_type, None
    )
    assert response.status_code in (200, 302, 400, 403, 405), (response.status_code, response.content[:300])
    if response.status_code == 302:
        # Only to our own pages or to the client's registered redirect URI: never an open redirect.
        location = response["Location"]
        assert (
            location.startswith("/") and not location.startswith("//") or location.startswith(REDIRECT_URI)
        ), location


@FUZZ
@given(query=params, auth=auth_headers)
def test_jwks_and_discovery(fuzz_client, query, auth):
    for path in (reverse("oidc_provider_ext:jwks"), "/.well-known/openid-configuration"):
        response = _request(fuzz_client, path, "GET", query, b"", "", auth)
        assert response.status_code == 200
        assert json.loads(response.content)
