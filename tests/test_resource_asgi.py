"""The ASGI wrapper (oidc_provider_ext.resource.asgi) and the MCP integration (contrib/mcp.py).

An MCP server written with the official SDK runs behind the wrapper on 127.0.0.1
(tests/mcp_server.py) and is called by the SDK's own client; the hostile inputs are sent straight
to the ASGI callable, as a server would pass them on."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from oidc_provider_ext import keys
from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.resource import ProtectedResource, asgi
from oidc_provider_ext.resource.asgi import ProtectedResourceMiddleware
from oidc_provider_ext.tokens import mint_access_token

mcp = pytest.importorskip("mcp", reason="the MCP SDK is not installed (pip install -e '.[test]')")

from .mcp_server import MCP_SCOPE, RunningMcpServer, call_tool  # noqa: E402

pytestmark = [
    # Validation runs in worker threads (and uvicorn's): they see committed data only.
    pytest.mark.django_db(transaction=True),
    # Minted tokens have no DOT row; revocation is tests/test_resource.py's subject.
    pytest.mark.oidc_settings(RESOURCE_SERVER_CHECK_REVOCATION=False),
]

ALPHA = ProtectedResource("https://alpha.example.com/mcp", scopes_supported=["alpha"], name="Alpha")
BETA = ProtectedResource("https://beta.example.com", scopes_supported=["beta"])


def token_for(audience: str | list[str], *scopes: str, client_id: str = "agent") -> str:
    return mint_access_token(client_id=client_id, subject="42", scopes=list(scopes), extra={"aud": audience})


# --- calling an ASGI app directly ---------------------------------------------------------------


async def echo(scope, receive, send) -> None:
    """The protected app: answers with what the wrapper put in the scope."""
    claims = scope["auth"]
    body = json.dumps({"sub": claims.sub, "aud": list(claims.audience), "user": str(scope.get("user"))})
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": body.encode()})


class Answer:
    def __init__(self, messages: list[dict[str, Any]]) -> None:
        start = messages[0]
        self.status = start["status"]
        self.headers: dict[str, str] = {}
        for name, value in start["headers"]:
            assert name.decode().lower() not in self.headers, name  # one of each
            self.headers[name.decode().lower()] = value.decode("latin-1")
        self.body = b"".join(message.get("body", b"") for message in messages[1:])

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    app,
    path: str = "/mcp",
    *,
    token: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
    method: str = "GET",
    query: bytes = b"",
) -> Answer:
    raw = list(headers or [])
    if token is not None:
        raw.append((b"authorization", f"Bearer {token}".encode("latin-1")))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode("latin-1", "replace"),
        "query_string": query,
        "root_path": "",
        "headers": raw,
        "server": ("alpha.example.com", 443),
    }
    messages: list[dict[str, Any]] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        messages.append(message)

    asyncio.run(app(scope, receive, send))
    return Answer(messages)


@pytest.fixture
def alpha():
    return ProtectedResourceMiddleware(echo, resource=ALPHA, required_scopes=["alpha"])


@pytest.fixture
def beta():
    return ProtectedResourceMiddleware(echo, resource=BETA)


ALPHA_METADATA = "https://alpha.example.com/.well-known/oauth-protected-resource/mcp"


def test_no_token_is_401_with_resource_metadata(alpha):
    answer = call(alpha)
    assert answer.status == 401
    assert answer.headers["www-authenticate"] == (
        f'Bearer realm="api", scope="alpha", resource_metadata="{ALPHA_METADATA}"'
    )
    assert answer.headers["cache-control"] == "no-store"
    assert "error" not in answer.json()  # RFC 6750 3.1


def test_valid_token_reaches_the_app_with_its_claims(alpha):
    answer = call(alpha, token=token_for(ALPHA.identifier, "alpha"))
    assert answer.status == 200
    assert answer.json()["sub"] == "42"
    assert answer.json()["aud"] == [ALPHA.identifier]


def test_validation_runs_off_the_event_loop(alpha, monkeypatch):
    loop_thread = threading.get_ident()
    seen = []
    real = asgi.validate_access_token

    def spy(*args, **kwargs):
        seen.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(asgi, "validate_access_token", spy)
    assert call(alpha, token=token_for(ALPHA.identifier, "alpha")).status == 200
    assert seen and loop_thread not in seen


def test_insufficient_scope_is_403_with_scope(alpha):
    answer = call(alpha, token=token_for(ALPHA.identifier, "beta"))
    assert answer.status == 403
    assert answer.json()["error"] == "insufficient_scope"
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="api", error="insufficient_scope", error_description="')
    assert challenge.endswith(f'scope="alpha", resource_metadata="{ALPHA_METADATA}"')


def test_audience_confusion_between_two_resource_servers(alpha, beta):
    for_alpha = token_for(ALPHA.identifier, "alpha", "beta")
    for_beta = token_for(BETA.identifier, "alpha", "beta")
    assert call(alpha, token=for_alpha).status == 200
    assert call(beta, token=for_beta).status == 200
    for app, token in ((alpha, for_beta), (beta, for_alpha)):
        answer = call(app, token=token)
        assert answer.status == 401
        assert answer.json()["error"] == "invalid_token"
        assert 'error="invalid_token"' in answer.headers["www-authenticate"]


def test_an_id_token_is_refused(alpha):
    id_token = keys.sign(
        {
            "iss": app_settings.ISSUER,
            "sub": "42",
            "aud": ALPHA.identifier,
            "client_id": "agent",
            "iat": 1,
            "exp": 2**31,
            "jti": "j",
            "scope": "alpha",
        },
        typ="JWT",
    )
    assert call(alpha, token=id_token).json()["error"] == "invalid_token"


def _unsigned(header: dict, claims: dict) -> str:
    import base64

    def b64(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{b64(header)}.{b64(claims)}."


def test_alg_none_and_hs256_are_refused(alpha):
    from jwcrypto import jwk, jws

    claims = {
        "iss": app_settings.ISSUER,
        "sub": "42",
        "aud": ALPHA.identifier,
        "client_id": "agent",
        "iat": 1,
        "exp": 2**31,
        "jti": "j",
        "scope": "alpha",
    }
    kid = keys.signing_key()[0]
    none = _unsigned({"alg": "none", "typ": "at+jwt", "kid": kid}, claims)
    public = keys.verification_key(kid).export_public().encode()
    secret = jwk.JWK(kty="oct", k=jwk.base64url_encode(public))
    hs = jws.JWS(json.dumps(claims).encode())
    hs.add_signature(secret, alg="HS256", protected=json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": kid}))
    for token in (none, hs.serialize(compact=True)):
        answer = call(alpha, token=token)
        assert answer.status == 401
        assert answer.json()["error"] == "invalid_token"


@pytest.mark.parametrize(
    "authorization",
    [
        b"Bearer abc",
        b"Bearer a.b.c",
        b"Bearer \x00",
        b"Bearer eyJ\x00.eyJ.x",
        b"Bearer " + b"a" * 1_000_000,
        b"Bearer " + "é".encode(),
        b"Bearer " + b"\xff\xfe",
        b"Bearer {{{{" + b"[" * 10_000,
    ],
)
def test_garbled_tokens_are_invalid_token(alpha, authorization):
    answer = call(alpha, headers=[(b"authorization", authorization)])
    assert answer.status == 401
    assert answer.json()["error"] == "invalid_token"


@pytest.mark.parametrize("authorization", [b"Basic YTpi", b"", b"Bearer", b"\x00"])
def test_other_schemes_count_as_no_token(alpha, authorization):
    answer = call(alpha, headers=[(b"authorization", authorization)])
    assert answer.status in (400, 401)
    assert "resource_metadata" in answer.headers["www-authenticate"]


def test_two_authorization_headers_are_invalid_request(alpha):
    good = token_for(ALPHA.identifier, "alpha")
    headers = [(b"authorization", f"Bearer {good}".encode()), (b"authorization", b"Bearer other")]
    answer = call(alpha, headers=headers)
    assert answer.status == 400
    assert answer.json()["error"] == "invalid_request"


@pytest.mark.parametrize("query", [b"access_token=x", b"a=1&access%5Ftoken=x", b"access_token"])
def test_token_in_the_query_string_is_invalid_request(alpha, query):
    answer = call(alpha, token=token_for(ALPHA.identifier, "alpha"), query=query)
    assert answer.status == 400
    assert answer.json()["error"] == "invalid_request"


def test_a_huge_query_string_is_no_problem(alpha):
    answer = call(alpha, token=token_for(ALPHA.identifier, "alpha"), query=b"a=1&" * 250_000)
    assert answer.status == 200


def test_websocket_without_a_token_is_closed():
    sent: list[dict] = []

    async def receive():
        return {"type": "websocket.connect"}

    async def send(message):
        sent.append(message)

    app = ProtectedResourceMiddleware(echo, resource=ALPHA)
    asyncio.run(app({"type": "websocket", "path": "/mcp", "headers": [], "query_string": b""}, receive, send))
    assert sent == [{"type": "websocket.close", "code": 1008}]


def test_lifespan_passes_through():
    seen = []

    async def inner(scope, receive, send):
        seen.append(scope["type"])

    asyncio.run(ProtectedResourceMiddleware(inner, resource=ALPHA)({"type": "lifespan"}, None, None))
    assert seen == ["lifespan"]


# --- metadata served by the wrapper -------------------------------------------------------------


def test_metadata_is_served_without_a_token(alpha):
    answer = call(alpha, "/.well-known/oauth-protected-resource/mcp")
    assert answer.status == 200
    assert answer.json() == {
        "resource": "https://alpha.example.com/mcp",
        "authorization_servers": [app_settings.ISSUER],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["alpha"],
        "resource_name": "Alpha",
    }
    assert call(alpha, "/.well-known/oauth-protected-resource/mcp", method="HEAD").body == b""
    assert call(alpha, "/.well-known/oauth-protected-resource/mcp", method="POST").status == 405


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/",
        "/.well-known/oauth-protected-resource/mcp/",
        "/.well-known/oauth-protected-resource/../mcp",
        "/.well-known/oauth-protected-resource/%2e%2e/mcp",
        "/.well-known/oauth-protected-resource/mcp\x00",
        "/.well-known/oauth-protected-resource/MCP",
        "/.well-known/oauth-protected-resource/" + "a" * 1_000_000,
    ],
)
def test_metadata_for_another_path_is_404(alpha, path):
    assert call(alpha, path).status == 404


@pytest.mark.oidc_settings(
    RESOURCE_SERVER_IDENTIFIER="https://gamma.example.com/api", RESOURCE_SERVER_AUDIENCE="legacy"
)
def test_without_resource_the_settings_name_it():
    app = ProtectedResourceMiddleware(echo)
    assert (
        call(app, "/.well-known/oauth-protected-resource/api").json()["resource"]
        == "https://gamma.example.com/api"
    )
    assert call(app, token=token_for("https://gamma.example.com/api")).status == 200
    assert call(app, token=token_for("legacy")).status == 200
    assert call(app, token=token_for(ALPHA.identifier)).status == 401


def test_without_any_identifier_every_token_is_refused():
    app = ProtectedResourceMiddleware(echo)
    assert call(app).status == 401  # no token: the plain challenge
    with pytest.raises(ImproperlyConfigured):
        call(app, token=token_for(ALPHA.identifier))


@pytest.mark.parametrize("resource", ["http://alpha.example.com", "*", "https://a.example.com/x?y=1"])
def test_malformed_resource_is_refused_when_wrapping(resource):
    with pytest.raises(ImproperlyConfigured):
        ProtectedResourceMiddleware(echo, resource=resource)


# --- the SDK's TokenVerifier --------------------------------------------------------------------


def test_token_verifier_protocol():
    from oidc_provider_ext.contrib.mcp import TokenVerifier

    verifier = TokenVerifier(ALPHA)
    verified = asyncio.run(verifier.verify_token(token_for(ALPHA.identifier, "alpha")))
    assert verified is not None
    assert (verified.subject, verified.client_id, verified.scopes, verified.resource) == (
        "42",
        "agent",
        ["alpha"],
        ALPHA.identifier,
    )
    assert asyncio.run(verifier.verify_token(token_for(BETA.identifier, "alpha"))) is None
    assert asyncio.run(verifier.verify_token("garbage")) is None


# --- a real MCP server and the SDK's client -----------------------------------------------------


@pytest.fixture
def mcp_server():
    with RunningMcpServer() as server:
        yield server


def test_mcp_server_behind_the_helper(mcp_server):
    import requests

    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    accept = {"Accept": "application/json, text/event-stream"}

    # No token: 401 pointing at the metadata (RFC 9728 5.1), which describes this very URL.
    response = requests.post(mcp_server.url, json=initialize, headers=accept, timeout=10)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer realm="api", scope="{MCP_SCOPE}", resource_metadata="{mcp_server.metadata_url}"'
    )
    metadata = requests.get(mcp_server.metadata_url, timeout=10)
    assert metadata.status_code == 200
    assert metadata.json() == {
        "resource": mcp_server.url,  # RFC 9728 3.3: the client checks it equals the URL it called
        "authorization_servers": [app_settings.ISSUER],
        "bearer_methods_supported": ["header"],
        "scopes_supported": [MCP_SCOPE],
        "resource_name": "oidc-provider-ext test MCP server",
    }

    # A token for this resource: the SDK client initialises and calls a tool.
    good = token_for(mcp_server.url, MCP_SCOPE, client_id="mcp-agent")
    result = asyncio.run(call_tool(mcp_server.url, good, "add", {"a": 2, "b": 3}))
    assert not result.is_error
    assert result.structured_content == {"result": 5}
    who = asyncio.run(call_tool(mcp_server.url, good, "whoami"))
    assert who.structured_content == {"sub": "42", "client_id": "mcp-agent", "resource": mcp_server.url}

    # A token minted for another resource: 401 invalid_token.
    other = token_for("https://other.example.com/mcp", MCP_SCOPE)
    response = requests.post(
        mcp_server.url, json=initialize, headers={**accept, "Authorization": f"Bearer {other}"}
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert f'resource_metadata="{mcp_server.metadata_url}"' in response.headers["WWW-Authenticate"]

    # Without the scope: 403 naming it.
    narrow = token_for(mcp_server.url, "profile")
    response = requests.post(
        mcp_server.url, json=initialize, headers={**accept, "Authorization": f"Bearer {narrow}"}
    )
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    assert f'scope="{MCP_SCOPE}"' in response.headers["WWW-Authenticate"]


def test_mcp_session_is_bound_to_the_principal_that_opened_it(mcp_server, settings):
    import requests

    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    accept = {"Accept": "application/json, text/event-stream"}
    mine = token_for(mcp_server.url, MCP_SCOPE, client_id="agent-a")
    response = requests.post(
        mcp_server.url, json=initialize, headers={**accept, "Authorization": f"Bearer {mine}"}
    )
    assert response.status_code == 200, response.text
    session = response.headers["mcp-session-id"]
    theirs = mint_access_token(
        client_id="agent-b", subject="43", scopes=[MCP_SCOPE], extra={"aud": mcp_server.url}
    )
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    headers = {**accept, "Authorization": f"Bearer {theirs}", "mcp-session-id": session}
    headers["mcp-protocol-version"] = response.json()["result"]["protocolVersion"]
    assert requests.post(mcp_server.url, json=ping, headers=headers).status_code == 404
    headers["Authorization"] = f"Bearer {mine}"
    assert requests.post(mcp_server.url, json=ping, headers=headers).status_code == 200


def test_an_api_project_without_the_provider_app(tmp_path):
    # The API as a separate project: only the resource part (metadata URLconf, ASGI wrapper), no
    # oidc_provider_ext or DOT in INSTALLED_APPS, keys from the provider's JWKS URL.
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "api_urls.py").write_text(
        "from django.urls import include, path\n"
        'urlpatterns = [path("", include("oidc_provider_ext.resource.urls"))]\n'
    )
    script = """
import asyncio, json, sys
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
    DATABASES={},
    ALLOWED_HOSTS=["testserver"],
    ROOT_URLCONF="api_urls",
    OIDC_PROVIDER_EXT={
        "RESOURCE_SERVER_ISSUER": "https://id.example.com",
        "RESOURCE_SERVER_JWKS_URL": "https://id.example.com/connect/jwks",
        "RESOURCE_SERVER_IDENTIFIER": "https://api.example.com/v1",
    },
)
import django
django.setup()
from django.test import Client
from oidc_provider_ext.resource.asgi import ProtectedResourceMiddleware
document = Client().get("/.well-known/oauth-protected-resource/v1").json()
sent = []
async def send(message):
    sent.append(message)
async def app(scope, receive, send):
    raise AssertionError("reached without a token")
scope = {"type": "http", "method": "GET", "path": "/v1/x", "headers": [], "query_string": b""}
asyncio.run(ProtectedResourceMiddleware(app)(scope, None, send))
challenge = dict(sent[0]["headers"])[b"www-authenticate"].decode()
modules = ("rest_framework", "mcp", "oauth2_provider.models", "oidc_provider_ext.models")
loaded = [name for name in modules if name in sys.modules]
status = sent[0]["status"]
print(json.dumps({"document": document, "status": status, "challenge": challenge, "loaded": loaded}))
"""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(Path(__file__).resolve().parent.parent)])
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["document"]["resource"] == "https://api.example.com/v1"
    assert output["document"]["authorization_servers"] == ["https://id.example.com"]
    assert output["status"] == 401
    assert output["challenge"] == (
        'Bearer realm="api", resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/v1"'
    )
    assert output["loaded"] == []


def test_mcp_server_with_the_sdks_own_auth_and_our_token_verifier():
    import requests

    with RunningMcpServer(sdk_auth=True) as server:
        response = requests.post(server.url, json={}, timeout=10)
        assert response.status_code == 401
        assert f'resource_metadata="{server.metadata_url}"' in response.headers["WWW-Authenticate"]
        document = requests.get(server.metadata_url, timeout=10).json()
        assert document["resource"] == server.url
        assert document["authorization_servers"] == [app_settings.ISSUER]

        good = token_for(server.url, MCP_SCOPE, client_id="mcp-agent")
        who = asyncio.run(call_tool(server.url, good, "whoami"))
        assert who.structured_content == {"sub": "42", "client_id": "mcp-agent", "resource": server.url}

        other = token_for("https://other.example.com/mcp", MCP_SCOPE)
        response = requests.post(
            server.url, json={}, headers={"Authorization": f"Bearer {other}"}, timeout=10
        )
        assert response.status_code == 401
        narrow = token_for(server.url, "profile")
        response = requests.post(
            server.url, json={}, headers={"Authorization": f"Bearer {narrow}"}, timeout=10
        )
        assert response.status_code == 403
