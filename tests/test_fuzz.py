"""Property-based attack on every endpoint: whatever parameters, headers and bodies arrive, the
answer is never a 500 and always a well-formed error (RFC 6749 5.2 JSON on the back channel, an
HTML page or a redirect to a registered URI on the front channel)."""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .factories import REDIRECT_URI, USER_PASSWORD, ApplicationFactory, TenantFactory, UserFactory
from .flow import authorize_url, basic_auth, exchange, get_code, login, pkce_pair, token_request

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


# --- Mutations of valid requests, one parameter at a time, at every endpoint ----------------------
# Each scenario builds a request that succeeds, then replaces, repeats or extends one of its
# parameters with a hostile value. Every answer must be the endpoint's own protocol error (or a
# success): never a 5xx. Deterministic: an exhaustive product plus derandomized Hypothesis.

HOSTILE = [  # already percent-encoded: sent as they are
    "%00", "a%00b", "%01", "%1F", "%7F", "%C2%85", "%0A", "%zz", "%", "%e", "%FF%FE", "%C3%28", "%ED%A0%80",
    "%F4%90%80%80", "x" * 1_000_000, quote("[" * 10000 + "]" * 10000),
    quote('{"a":' * 10000 + "1" + "}" * 10000),
    "1e999", "9" * 5000, "NaN", quote('{"a":NaN}'), quote('{"a":1e999}'), quote('{"a":"\\u0000"}'),
    quote('{"\\ud800":1}'), "", quote("ünïcødé €"),
]  # fmt: skip
MODES = ("replace", "repeat", "append")
LOGGED_OUT_URI = "https://rp.example.com/logged-out"


@dataclass
class Scenario:
    name: str
    method: str
    path: str
    params: list  # [(name, value)] of the valid request, unencoded
    kind: str  # "json" (back channel) or "page" (front channel)
    client: Client
    headers: dict = field(default_factory=dict)
    others: dict = field(default_factory=dict)  # parameter -> another user's / client's value
    refresh: Callable | None = None  # makes the request valid again (a new code, token, ...)


class World:
    """Users, clients, tenants and live credentials for the mutation scenarios."""

    def __init__(self):
        self.sent = 0
        self.user = UserFactory(username="fuzz-user")
        self.other_user = UserFactory(username="fuzz-other-user")
        TenantFactory(code="other-org")
        self.app = ApplicationFactory(client_id="fuzz-rp", profile__consent_policy="skip")
        self.other_app = ApplicationFactory(client_id="fuzz-other", profile__consent_policy="skip")
        self.consent_app = ApplicationFactory(client_id="fuzz-consent")
        self.browser = Client()
        login(self.browser, self.user)
        self.other_browser = Client()
        login(self.other_browser, self.other_user)
        self.verifier, self.challenge = pkce_pair()

    def code(self, app=None, browser=None):
        code, _query = get_code(
            browser or self.browser, app or self.app, self.user, code_challenge=self.challenge,
            code_challenge_method="S256", scope="openid profile offline_access",
        )  # fmt: skip
        self.sent += 1
        return code

    def tokens(self, app=None, browser=None):
        app = app or self.app
        response = exchange(Client(), app, self.code(app, browser), self.verifier)
        self.sent += 1
        assert response.status_code == 200 and "refresh_token" in response.json(), response.content
        return response.json()

    def pending_consent(self) -> str:
        response = self.browser.get(authorize_url(self.consent_app, scope="openid profile", prompt="consent"))
        self.sent += 1
        assert response.status_code == 200, response.content[:300]
        return response.context["form"].initial["request_id"]


def _basic(app):
    return {"HTTP_AUTHORIZATION": basic_auth(app.client_id, app.raw_secret)}


def _authorize_params(world):
    return [
        ("response_type", "code"), ("client_id", world.app.client_id), ("redirect_uri", REDIRECT_URI),
        ("scope", "openid profile"), ("state", "st-1"), ("nonce", "n-1"), ("code_challenge", world.challenge),
        ("code_challenge_method", "S256"), ("claims", '{"id_token":{"acr":null}}'),
        ("login_hint", world.user.username), ("ui_locales", "en"), ("max_age", "3600"),
    ]  # fmt: skip


def _scenario(world, name) -> Scenario:
    authorize = reverse("oidc_provider_ext:authorize")
    authorize_others = {
        "client_id": [world.other_app.client_id, world.consent_app.client_id],
        "acr_values": ["tenant:other-org", "tenant:missing"],
        "login_hint": [world.other_user.username],
    }
    if name in ("authorize-get", "authorize-post"):
        method = "GET" if name == "authorize-get" else "POST"
        return Scenario(
            name, method, authorize, _authorize_params(world), "page", world.browser, others=authorize_others
        )
    if name == "consent":
        scenario = Scenario(name, "POST", authorize, [], "page", world.browser)

        def refresh():
            request_id = world.pending_consent()
            # The consent form posts to the pending request's own URL.
            scenario.path = reverse("oidc_provider_ext:authorize-continue", args=[request_id])
            scenario.params = [("request_id", request_id), ("decision", "allow"), ("scope", "profile")]

        scenario.refresh = refresh
        other = Client()
        login(other, world.other_user)
        response = other.get(authorize_url(world.consent_app, scope="openid profile"))
        scenario.others = {"request_id": [response.context["form"].initial["request_id"]]}
        return scenario
    if name == "login":
        params = [("username", world.user.username), ("password", USER_PASSWORD), ("next", "/connect/apps")]
        return Scenario(
            name, "POST", reverse("oidc_provider_ext:login"), params, "page", Client(),
            others={"username": [world.other_user.username]},
        )  # fmt: skip
    token = reverse("oidc_provider_ext:token")
    if name == "token-code":
        scenario = Scenario(name, "POST", token, [], "json", Client(), headers=_basic(world.app))

        def refresh():
            scenario.params = [
                ("grant_type", "authorization_code"), ("code", world.code()), ("redirect_uri", REDIRECT_URI),
                ("code_verifier", world.verifier),
            ]  # fmt: skip

        scenario.refresh = refresh
        scenario.others = {"code": [world.code(world.other_app, world.other_browser)]}
        return scenario
    if name == "token-refresh":
        scenario = Scenario(name, "POST", token, [], "json", Client(), headers=_basic(world.app))

        def refresh():
            scenario.params = [
                ("grant_type", "refresh_token"), ("refresh_token", world.tokens()["refresh_token"]),
                ("scope", "openid profile offline_access"),
            ]  # fmt: skip

        scenario.refresh = refresh
        scenario.others = {
            "refresh_token": [world.tokens(world.other_app, world.other_browser)["refresh_token"]]
        }
        return scenario
    tokens = world.tokens()
    other_tokens = world.tokens(world.other_app, world.other_browser)
    if name == "userinfo":
        return Scenario(
            name, "POST", reverse("oidc_provider_ext:userinfo"), [("access_token", tokens["access_token"])],
            "json", Client(), others={"access_token": [other_tokens["access_token"], tokens["id_token"]]},
        )  # fmt: skip
    if name in ("introspect", "revocation"):
        return Scenario(
            name, "POST", reverse(f"oidc_provider_ext:{name}"),
            [("token", tokens["access_token"]), ("token_type_hint", "access_token")], "json", Client(),
            headers=_basic(world.app),
            others={"token": [other_tokens["access_token"], other_tokens["refresh_token"]]},
        )  # fmt: skip
    if name == "endsession":
        browser = Client()
        login(browser, world.user)
        params = [
            ("id_token_hint", tokens["id_token"]), ("client_id", world.app.client_id),
            ("post_logout_redirect_uri", LOGGED_OUT_URI), ("state", "st-2"), ("ui_locales", "en"),
        ]  # fmt: skip
        return Scenario(
            name, "GET", reverse("oidc_provider_ext:endsession"), params, "page", browser,
            others={"id_token_hint": [other_tokens["id_token"]], "client_id": [world.other_app.client_id]},
        )  # fmt: skip
    raise AssertionError(name)


SCENARIOS = [
    "authorize-get", "authorize-post", "consent", "login", "token-code", "token-refresh", "userinfo",
    "introspect", "revocation", "endsession",
]  # fmt: skip


def _mutations(scenario):
    """(parameter, mode, raw value) for every parameter of the valid request."""
    names = [name for name, _value in scenario.params] + list(
        set(scenario.others) - {n for n, _ in scenario.params}
    )
    for name in names:
        for raw in HOSTILE:
            for mode in MODES:
                yield name, mode, raw
        for other in scenario.others.get(name, ()):
            yield name, "replace", quote(other, safe="")
    yield "%00name", "replace", "1"
    yield "x" * 300, "replace", "1"
    yield None, "utf-16", None


def _send(world, scenario, name, mode, raw):
    if scenario.refresh is not None:
        scenario.refresh()
    pairs = [(quote(n, safe=""), quote(v, safe="")) for n, v in scenario.params]
    if mode != "utf-16":
        encoded_name = name if name in ("%00name",) or name.startswith("xxx") else quote(name, safe="")
        if mode == "replace":
            pairs = [(n, v) for n, v in pairs if n != encoded_name] + [(encoded_name, raw)]
        elif mode == "repeat":
            pairs = pairs + [(encoded_name, raw)]
        else:  # append to the valid value
            pairs = [(n, v + raw if n == encoded_name else v) for n, v in pairs]
            if encoded_name not in {n for n, _v in pairs}:
                pairs.append((encoded_name, raw))
    raw_params = "&".join(f"{n}={v}" for n, v in pairs)
    world.sent += 1
    if scenario.method == "GET":
        return scenario.client.get(f"{scenario.path}?{raw_params}", **scenario.headers)
    content_type = "application/x-www-form-urlencoded"
    body = raw_params.encode()
    if mode == "utf-16":
        body, content_type = raw_params.encode("utf-16"), content_type + "; charset=utf-16"
    return scenario.client.generic("POST", scenario.path, body, content_type=content_type, **scenario.headers)


def _assert_protocol_answer(scenario, response, case):
    assert response.status_code < 500, (scenario.name, case, response.content[:300])
    if scenario.kind == "json":
        if response.status_code >= 400:
            assert response["Content-Type"].startswith("application/json"), (scenario.name, case)
            body = json.loads(response.content)
            assert isinstance(body.get("error"), str) and body["error"], (scenario.name, case, body)
        if scenario.name == "userinfo" and response.status_code in (400, 401, 403):
            assert response["WWW-Authenticate"].startswith("Bearer"), (scenario.name, case)
        return
    assert response.status_code in (200, 302, 400, 403), (scenario.name, case, response.status_code)
    if response.status_code == 302:
        location = response["Location"]
        if location.startswith(REDIRECT_URI):
            query = parse_qs(urlsplit(location).query)
            assert "code" in query or "error" in query, (scenario.name, case, location)
            assert query.get("iss"), (scenario.name, case, location)  # RFC 9207
        else:
            # Our own pages only (a relative URL), or the registered post-logout URI.
            parts = urlsplit(location)
            assert location.startswith(LOGGED_OUT_URI) or not (parts.scheme or parts.netloc), (
                scenario.name,
                case,
                location,
            )
    elif response.status_code in (400, 403):
        assert response["Content-Type"].startswith("text/html"), (scenario.name, case)


@pytest.fixture
def world(db, settings):
    # django-axes stays on (it stores the username: part of what is attacked) but never locks out.
    settings.AXES_FAILURE_LIMIT = 10**9
    return World()


MIN_REQUESTS = {
    "authorize-get": 1000, "authorize-post": 1000, "consent": 470, "login": 235, "token-code": 630,
    "token-refresh": 700, "userinfo": 85, "introspect": 160, "revocation": 160, "endsession": 400,
}  # fmt: skip
RANDOM_EXAMPLES = 60


def test_mutation_budget_is_at_least_5000_requests_per_database():
    assert sum(MIN_REQUESTS.values()) + RANDOM_EXAMPLES * len(SCENARIOS) >= 5000


@pytest.mark.parametrize("name", SCENARIOS)
def test_mutated_valid_requests(world, name):
    scenario = _scenario(world, name)
    if scenario.refresh is not None:
        scenario.refresh()  # the parameters of a valid request
    else:  # the valid request itself succeeds
        response = _send(world, scenario, scenario.params[0][0], "append", "")
        assert response.status_code in (200, 302), response.content[:300]
    for case in _mutations(scenario):
        _assert_protocol_answer(scenario, _send(world, scenario, *case), case)
    assert world.sent >= MIN_REQUESTS[name], world.sent


hostile_text = st.text(alphabet=st.characters(codec=None), min_size=1, max_size=40)


@pytest.mark.parametrize("name", SCENARIOS)
@settings(
    max_examples=RANDOM_EXAMPLES, derandomize=True, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
@given(data=st.data())
def test_randomly_mutated_valid_requests(world, name, data):
    scenario = _scenario_cache(world, name)
    names = [n for n, _v in scenario.params] or ["x"]
    param = data.draw(st.sampled_from(names))
    mode = data.draw(st.sampled_from(MODES))
    text = data.draw(hostile_text)
    raw = quote(text.encode("utf-8", "surrogatepass"), safe="")  # lone surrogates: invalid UTF-8
    case = (param, mode, raw)
    _assert_protocol_answer(scenario, _send(world, scenario, *case), case)


def _scenario_cache(world, name):
    cache = world.__dict__.setdefault("scenarios", {})
    if name not in cache:
        cache[name] = _scenario(world, name)
        if cache[name].refresh is not None:
            cache[name].refresh()
    return cache[name]


def test_refresh_narrowed_without_offline_access(world):
    refresh_token = world.tokens()["refresh_token"]
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, "scope": "openid profile"}
    response = token_request(Client(), data, auth=(world.app.client_id, world.app.raw_secret))
    # Found by the mutation fuzzer (was HTTP 500): narrowing away offline_access gives up offline
    # access, so the answer is an access token without a refresh token, and the old one is spent.
    assert response.status_code == 200, response.content
    body = response.json()
    assert "refresh_token" not in body and body["scope"] == "openid profile"
    again = token_request(
        Client(), {**data, "scope": "openid"}, auth=(world.app.client_id, world.app.raw_secret)
    )
    assert again.json()["error"] == "invalid_grant"
