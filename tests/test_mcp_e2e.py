"""The proof of issue 16: a real MCP client, the official MCP Python SDK's OAuth client, connects
unaided to an MCP server protected by this package's resource helper, with the example IdP on a
live server as its authorization server and real Chromium (Playwright) as the user's browser.

What the SDK does on its own (``mcp/client/auth/oauth2.py``), and what is asserted of each step:

1. calls the MCP server without a token and gets 401 with ``WWW-Authenticate: Bearer
   resource_metadata="…"`` (RFC 9728 5.1);
2. reads the protected-resource metadata at that URL: ``resource`` and ``authorization_servers``
   (the IdP's issuer, byte for byte);
3. reads the IdP's RFC 8414 metadata (``/.well-known/oauth-authorization-server``) and checks its
   ``issuer`` (RFC 8414 3.3);
4. gets a client_id: a pre-registered public client, dynamic client registration (RFC 7591,
   ``REGISTRATION="open"``: MCP clients send no initial access token), or a client ID metadata
   document served over https on 127.0.0.1 (a certificate from a CA made for the test, trusted
   through ``SSL_CERT_FILE``; loopback allowed by ``OUTBOUND_ALLOWED_NETWORKS``); a self-registered
   client's consent page carries the unreviewed-client warning;
5. sends the user's browser to the authorization endpoint with PKCE (S256) and ``resource``; the
   user signs in and consents in Chromium, the consent page names the MCP server; the browser lands
   on the client's loopback callback (RFC 8252 7.3), which hands the code (and RFC 9207 ``iss``)
   back;
6. exchanges the code with ``code_verifier`` and ``resource`` (RFC 8707 2.2), calls the tool with
   the access token, whose ``aud`` is the resource exactly as sent;
7. refreshes when the token has expired (``resource`` again) and keeps the audience.

A token the same IdP issued for another resource server is refused by the MCP server (401).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
import requests
from oauth2_provider.models import get_application_model

from .factories import USER_PASSWORD, PublicApplicationFactory, ResourceServerFactory, UserFactory
from .flow import pkce_pair
from .live import UserAgent, chromium_binary, http_session, query_of

mcp = pytest.importorskip("mcp", reason="the MCP SDK is not installed (pip install -e '.[test]')")

from .mcp_server import MCP_SCOPE, RunningMcpServer  # noqa: E402

MCP_NAME = "Invoices (MCP)"
OTHER_SCOPE = "ledger:read"
SCOPES = {
    "openid": "Sign you in",
    "profile": "See your profile",
    "email": "See your email address",
    "offline_access": "Stay connected",
    MCP_SCOPE: "Use the invoice tools",
    OTHER_SCOPE: "Read the ledger",
}

pytestmark = [pytest.mark.live, pytest.mark.oidc_settings(SCOPES=SCOPES)]


# --- the client's side: a loopback callback and a browser ------------------------------------------


class _ServedInAThread:
    """A ThreadingHTTPServer (``self.server``) served from a daemon thread while in a ``with``."""

    server: ThreadingHTTPServer

    def __enter__(self):
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)


class LoopbackCallback(_ServedInAThread):
    """The native client's redirect URI, ``http://127.0.0.1:<port>/callback`` (RFC 8252 7.3): a
    real listener, as MCP clients on a desktop run one; it keeps the query of the first request."""

    def __init__(self) -> None:
        received = self.received = threading.Event()
        self.query: dict[str, str] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == "/callback" and not received.is_set():
                    outer.query = {key: values[0] for key, values in parse_qs(parts.query).items()}
                    received.set()
                body = b"<!doctype html><title>Signed in</title><p id=done>You can close this window."
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/callback"

    def reset(self) -> None:
        self.query = {}
        self.received.clear()

    async def result(self) -> Any:
        """The SDK's ``callback_handler``: waits for the browser to arrive."""
        from mcp.shared.auth import AuthorizationCodeResult

        arrived = await asyncio.to_thread(self.received.wait, 30)
        assert arrived, "the browser never reached the client's callback"
        assert "error" not in self.query, f"the IdP answered an error: {self.query}"
        return AuthorizationCodeResult(
            code=self.query["code"], state=self.query.get("state"), iss=self.query.get("iss")
        )


class BrowserUser:
    """The SDK's ``redirect_handler``: the user's Chromium opens the authorization URL, signs in
    on the IdP's login page (unless already signed in), reads and accepts the consent page, and
    follows the redirect to the client's callback."""

    def __init__(self, page: Any, callback: LoopbackCallback, username: str, password: str) -> None:
        self.page, self.callback = page, callback
        self.username, self.password = username, password
        self.authorization_urls: list[str] = []
        self.consents: list[dict[str, Any]] = []
        self.untick_once: list[str] = []  # scopes the user unticks on the next consent page

    async def redirect(self, url: str) -> None:
        self.authorization_urls.append(url)
        self.callback.reset()
        page = self.page
        await page.goto(url)
        allow = 'button[name="decision"][value="allow"]'
        await page.wait_for_selector(f"#id_username, {allow}")
        if await page.locator("#id_username").count():
            await page.fill("#id_username", self.username)
            await page.fill("#id_password", self.password)
            await page.click("button[type=submit]")
            await page.wait_for_selector(allow)
        self.consents.append(
            {
                "heading": await page.inner_text("h1"),
                "resources": [
                    (await item.get_attribute("data-resource"), await item.inner_text())
                    for item in await page.locator("[data-resource]").all()
                ],
                "scopes": await page.locator('input[name="scope"]').evaluate_all(
                    "boxes => boxes.map(box => box.value)"
                ),
                "self_registered": [
                    await warning.inner_text()
                    for warning in await page.locator("[data-self-registered]").all()
                ],
            }
        )
        while self.untick_once:
            await page.uncheck(f'input[name="scope"][value="{self.untick_once.pop()}"]')
        await page.click(allow)
        await page.wait_for_selector("#done")
        assert page.url.startswith(self.callback.url + "?"), page.url


class MemoryStorage:
    """The SDK's ``TokenStorage``: every token set it was given, in order."""

    def __init__(self, client_info: Any = None) -> None:
        self.client_info = client_info
        self.tokens: list[Any] = []

    async def get_tokens(self) -> Any:
        return self.tokens[-1] if self.tokens else None

    async def set_tokens(self, tokens: Any) -> None:
        self.tokens.append(tokens)

    async def get_client_info(self) -> Any:
        return self.client_info

    async def set_client_info(self, client_info: Any) -> None:
        self.client_info = client_info


class Wire:
    """Every request the SDK's HTTP client sent (its OAuth requests included) and the answer."""

    def __init__(self) -> None:
        self.exchanges: list[tuple[str, str, dict[str, str], int, dict[str, str]]] = []

    async def on_response(self, response: Any) -> None:
        request = response.request
        form: dict[str, str] = {}
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            form = {key: values[0] for key, values in parse_qs(request.content.decode()).items()}
        self.exchanges.append(
            (request.method, str(request.url), form, response.status_code, dict(response.headers))
        )

    def to(self, url: str) -> list[tuple[str, str, dict[str, str], int, dict[str, str]]]:
        return [exchange for exchange in self.exchanges if exchange[1].split("?")[0] == url]


async def call_tools(server_url: str, provider: Any, wire: Wire, *calls: tuple[str, dict]) -> list[Any]:
    """One MCP session through the SDK's streamable-HTTP client with its OAuth provider."""
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    results = []
    async with (
        httpx2.AsyncClient(auth=provider, timeout=30, event_hooks={"response": [wire.on_response]}) as http,
        streamable_http_client(server_url, http_client=http) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        for name, arguments in calls:
            results.append(await session.call_tool(name, arguments))
    return results


def claims_of(token: str) -> dict[str, Any]:
    """The access token's claims as sent (the MCP server verified the signature)."""
    return jwt.decode(token, options={"verify_signature": False})


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def mcp_server(live_issuer):
    """The MCP server (tests/mcp_server.py) behind protect_mcp_app; its authorization server is the
    live IdP (RESOURCE_SERVER_ISSUER defaults to ISSUER, set to the live server's URL)."""
    with RunningMcpServer() as server:
        yield server


@pytest.fixture
def callback():
    with LoopbackCallback() as listener:
        yield listener


@pytest.fixture
def person(live_issuer):
    return UserFactory(username="dana", first_name="Dana", last_name="Demo")


@pytest.fixture
def agent(callback):
    """A pre-registered public client, as an operator registers a desktop MCP client."""
    return PublicApplicationFactory(
        client_id="desktop-agent", name="Desktop agent", redirect_uris=callback.url
    )


@pytest.fixture
def mcp_api(mcp_server, agent):
    """The MCP server registered as a resource server: its identifier is the server's URL."""
    return ResourceServerFactory(
        identifier=mcp_server.url, name=MCP_NAME, scopes=MCP_SCOPE, allowed_clients=[agent]
    )


@pytest.fixture
def other_api(agent):
    return ResourceServerFactory(
        identifier="https://ledger.example.com/api",
        name="Ledger",
        scopes=OTHER_SCOPE,
        allowed_clients=[agent],
    )


# --- the proof ------------------------------------------------------------------------------------


def sdk_flow(
    mcp_server,
    callback,
    person,
    *,
    client_info: Any = None,
    client_metadata_url: str | None = None,
    untick: tuple[str, ...] = (),
    first_fails: bool = False,
) -> dict[str, Any]:
    """Run the SDK's OAuth client against the MCP server with Chromium as the user's browser:
    one session calling two tools, then (the access token expired) a second session that refreshes.
    ``client_info``: a pre-registered client; ``client_metadata_url``: the client's metadata
    document; neither: dynamic registration. Returns what was observed."""
    executable = chromium_binary()
    from mcp.client.auth import OAuthClientProvider
    from mcp.shared.auth import OAuthClientMetadata
    from playwright.async_api import async_playwright

    from tests.e2e.conftest import CHROMIUM_ARGS

    storage = MemoryStorage(client_info)
    metadata = OAuthClientMetadata(
        client_name="Desktop agent",
        redirect_uris=[callback.url],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
    )
    wire = Wire()

    async def run() -> dict[str, Any]:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=executable, headless=True, args=CHROMIUM_ARGS
            )
            try:
                context = await browser.new_context(locale="en-US")
                page = await context.new_page()
                page.set_default_timeout(20_000)
                user = BrowserUser(page, callback, person.username, USER_PASSWORD)
                user.untick_once = list(untick)
                provider = OAuthClientProvider(
                    server_url=mcp_server.url,
                    client_metadata=metadata,
                    storage=storage,
                    redirect_handler=user.redirect,
                    callback_handler=callback.result,
                    client_metadata_url=client_metadata_url,
                )
                calls = (("whoami", {}), ("add", {"a": 2, "b": 40}))
                if first_fails:
                    with pytest.raises(BaseException) as failed:  # noqa: PT011 (the SDK's ExceptionGroup)
                        await call_tools(mcp_server.url, provider, wire, *calls)
                    first: Any = failed.value
                else:
                    first = await call_tools(mcp_server.url, provider, wire, *calls)
                callback_query = dict(callback.query)
                # The access token has expired (as far as the client knows): the next session
                # makes the SDK refresh it before calling.
                provider.context.token_expiry_time = time.time() - 1
                second = await call_tools(mcp_server.url, provider, wire, ("whoami", {}))
                return {"first": first, "second": second, "user": user, "callback_query": callback_query}
            finally:
                await browser.close()

    observed = asyncio.run(run())
    observed.update(storage=storage, wire=wire)
    return observed


def assert_unaided(seen: dict[str, Any], issuer: str, mcp_server, client_id: str) -> None:
    """What every way of getting a client_id has in common: discovery from the 401, PKCE and
    ``resource``, consent naming the MCP server, the tool call, ``aud``, the refresh."""
    wire: Wire = seen["wire"]
    user: BrowserUser = seen["user"]
    resource = mcp_server.url

    # 1. The unauthenticated call: 401 pointing at the metadata (RFC 9728 5.1).
    method, url, _form, status, headers = wire.exchanges[0]
    assert (method, url, status) == ("POST", resource, 401), wire.exchanges[0][:4]
    assert f'resource_metadata="{mcp_server.metadata_url}"' in headers["www-authenticate"]
    # 2. The protected-resource metadata, read from the header's URL, names the IdP exactly.
    (prm,) = wire.to(mcp_server.metadata_url)
    assert prm[3] == 200
    document = requests.get(mcp_server.metadata_url, timeout=10).json()
    assert document["resource"] == resource
    assert document["authorization_servers"] == [issuer], "the issuer without an added slash"
    # 3. RFC 8414 metadata of the issuer, the first URL the SDK tries (RFC 8414 3.1: the issuer's
    # path, if any, after the well-known name); nothing else needed.
    parts = urlsplit(issuer)
    (asm,) = wire.to(f"{parts.scheme}://{parts.netloc}/.well-known/oauth-authorization-server{parts.path}")
    assert asm[3] == 200
    assert not [exchange for exchange in wire.exchanges if "/openid-configuration" in exchange[1]]

    # 5. One authorization in the browser: PKCE S256 and the resource, the consent names the API.
    (authorization,) = user.authorization_urls
    assert authorization.startswith(f"{issuer}/connect/authorize?")
    query = query_of(authorization)
    assert query["client_id"] == client_id
    assert query["code_challenge_method"] == "S256" and query["code_challenge"]
    assert query["resource"] == resource, "RFC 8707 2.1: the SDK names the MCP server"
    assert MCP_SCOPE in query["scope"].split()
    (consent,) = user.consents
    assert "Desktop agent" in consent["heading"], "the consent page names the client"
    assert [identifier for identifier, _text in consent["resources"]] == [resource]
    assert MCP_NAME in consent["resources"][0][1], "the consent page names the MCP server"
    assert seen["callback_query"].get("iss") == issuer, "RFC 9207: iss in the response"

    # 6. The code exchange sent the verifier and the resource; the tools ran with the token.
    (exchange, refresh) = wire.to(f"{issuer}/connect/token")
    assert exchange[2]["grant_type"] == "authorization_code"
    assert exchange[2]["client_id"] == client_id
    assert exchange[2]["resource"] == resource and exchange[2]["code_verifier"]
    assert exchange[3] == 200
    whoami, added = seen["first"]
    assert not whoami.is_error and not added.is_error
    assert added.structured_content == {"result": 42}
    storage: MemoryStorage = seen["storage"]
    first_token = storage.tokens[0].access_token
    claims = claims_of(first_token)
    assert whoami.structured_content == {"sub": claims["sub"], "client_id": client_id, "resource": resource}
    assert claims["sub"], "the user the tool acts for"
    assert claims["aud"] == resource, "RFC 8707 2 / RFC 9068 3: aud is the resource, byte for byte"
    assert claims["iss"] == issuer
    assert claims["client_id"] == client_id
    assert claims["scope"].split() == [MCP_SCOPE], "only the API's own scopes"

    # 7. The refresh: the SDK sent the resource again, the new token keeps the audience.
    assert refresh[2]["grant_type"] == "refresh_token"
    assert refresh[2]["resource"] == resource
    assert refresh[3] == 200, refresh
    refreshed = storage.tokens[-1]
    assert refreshed.access_token != first_token
    assert refreshed.refresh_token != storage.tokens[0].refresh_token, (
        "a public client's refresh token rotates"
    )
    assert claims_of(refreshed.access_token)["aud"] == resource, "a refresh keeps the audience"
    (again,) = seen["second"]
    assert not again.is_error and again.structured_content["resource"] == resource
    assert len(user.authorization_urls) == 1, "the refresh needed no new sign-in"


def test_sdk_client_with_a_pre_registered_client(
    live_issuer, mcp_server, mcp_api, other_api, callback, person, agent
):
    from mcp.shared.auth import OAuthClientInformationFull

    client_info = OAuthClientInformationFull(
        client_id=agent.client_id, redirect_uris=[callback.url], token_endpoint_auth_method="none"
    )
    seen = sdk_flow(mcp_server, callback, person, client_info=client_info)
    assert_unaided(seen, live_issuer, mcp_server, agent.client_id)
    assert not seen["wire"].to(f"{live_issuer}/connect/register"), "a known client registers nothing"
    assert not seen["user"].consents[0]["self_registered"], "an operator's client is not flagged"

    # A token the same IdP issued to the same client and user for another resource server: valid,
    # signed, unexpired, and refused by the MCP server because its aud is not the MCP server.
    resource = mcp_server.url
    other = token_for_other_resource(live_issuer, agent, callback, person, other_api.identifier)
    assert claims_of(other)["aud"] == other_api.identifier
    answer = post_initialize(resource, other)
    assert answer.status_code == 401, answer.text
    challenge = answer.headers["WWW-Authenticate"]
    assert 'error="invalid_token"' in challenge
    assert f'resource_metadata="{mcp_server.metadata_url}"' in challenge
    refreshed = seen["storage"].tokens[-1].access_token
    assert post_initialize(resource, refreshed).status_code == 200, "control: the right token"


def token_for_other_resource(issuer: str, client, callback: LoopbackCallback, person, resource: str) -> str:
    """The authorization code flow for ``resource`` with a browser without JavaScript
    (tests/live.py), the public client and PKCE; the access token."""
    verifier, challenge = pkce_pair()
    agent = UserAgent(issuer, person.username, USER_PASSWORD)
    query = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": callback.url,
        "scope": OTHER_SCOPE,
        "state": "other",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "resource": resource,
    }
    landed = agent.authorize(f"{issuer}/connect/authorize?{urlencode(query)}")
    code = query_of(landed)["code"]
    response = http_session().post(
        f"{issuer}/connect/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": callback.url,
            "client_id": client.client_id,
            "code_verifier": verifier,
            "resource": resource,
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def post_initialize(url: str, token: str) -> requests.Response:
    """An MCP ``initialize`` request with ``token``, as any MCP client sends it first."""
    message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "probe", "version": "1"},
        },
    }
    return http_session().post(
        url,
        data=json.dumps(message),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        },
        timeout=10,
    )


# --- clients that register themselves (docs/registration.md) -------------------------------------


@pytest.fixture
def open_mcp_api(mcp_server):
    """The MCP server as a resource server open to any client: self-registered clients are not
    known in advance (docs/mcp.md)."""
    return ResourceServerFactory(identifier=mcp_server.url, name=MCP_NAME, scopes=MCP_SCOPE, any_client=True)


@pytest.mark.oidc_settings(REGISTRATION="open")
def test_sdk_client_registers_itself(live_issuer, mcp_server, open_mcp_api, callback, person):
    seen = sdk_flow(mcp_server, callback, person)
    wire: Wire = seen["wire"]
    metadata = requests.get(f"{live_issuer}/.well-known/oauth-authorization-server", timeout=10).json()
    # MCP clients send no initial access token: the "open" policy is what they need, and the first
    # metadata document they read names the endpoint.
    (registration,) = wire.to(metadata["registration_endpoint"])
    assert registration[:2] == ("POST", f"{live_issuer}/connect/register")
    assert registration[3] == 201
    client_id = seen["storage"].client_info.client_id
    assert client_id and client_id != "desktop-agent"
    assert_unaided(seen, live_issuer, mcp_server, client_id)
    (consent,) = seen["user"].consents
    assert consent["self_registered"], "the consent page warns about an unreviewed client"
    client = get_application_model().objects.get(client_id=client_id)
    assert client.client_type == "public" and client.redirect_uris == callback.url
    assert client.registration_source == "dcr", "marked as self-registered (admin, consent)"


class MetadataDocumentHost(_ServedInAThread):
    """An https server on 127.0.0.1 serving the client's metadata document, with a certificate
    for 127.0.0.1 issued by a CA made for the test (``cryptography``). The provider's outbound
    client verifies TLS against the default trust store (``ssl.create_default_context()``), which
    OpenSSL reads from ``SSL_CERT_FILE``: the test points that at its CA, nothing is disabled."""

    def __init__(self, directory, callback: LoopbackCallback) -> None:
        import ssl

        ca_file, cert_file, key_file = make_certificates(directory)
        self.ca_file = ca_file
        self.requests: list[tuple[str, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append((self.path, dict(self.headers)))
                if self.path != "/clients/desktop-agent.json":
                    self.send_error(404)
                    return
                body = json.dumps(outer.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "max-age=300")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/clients/desktop-agent.json"
        self.document = {
            "client_id": self.url,
            "client_name": "Desktop agent",
            "redirect_uris": [callback.url],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }


def make_certificates(directory) -> tuple[str, str, str]:
    """A CA and a server certificate for IP 127.0.0.1 signed by it: (CA PEM, cert PEM, key PEM)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oidc-provider-ext test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(paths[0]), str(paths[1]), str(paths[2])


@pytest.fixture
def metadata_host(tmp_path, callback, monkeypatch):
    with MetadataDocumentHost(tmp_path, callback) as host:
        # The provider's outbound client trusts the test's CA the way an operator adds a private
        # CA: OpenSSL's default verify paths (read by ssl.create_default_context() at each call).
        monkeypatch.setenv("SSL_CERT_FILE", host.ca_file)
        yield host


@pytest.mark.oidc_settings(
    CLIENT_ID_METADATA_DOCUMENTS=True,
    # The document is served on loopback, which the SSRF policy refuses unless the operator allows it.
    OUTBOUND_ALLOWED_NETWORKS=["127.0.0.0/8"],
)
def test_sdk_client_with_a_client_id_metadata_document(
    live_issuer, mcp_server, open_mcp_api, callback, person, metadata_host
):
    metadata = requests.get(f"{live_issuer}/.well-known/oauth-authorization-server", timeout=10).json()
    assert metadata["client_id_metadata_document_supported"] is True
    seen = sdk_flow(mcp_server, callback, person, client_metadata_url=metadata_host.url)
    assert_unaided(seen, live_issuer, mcp_server, metadata_host.url)
    assert not seen["wire"].to(f"{live_issuer}/connect/register"), "no registration: the URL is the client_id"
    (consent,) = seen["user"].consents
    assert consent["self_registered"], "the consent page warns about an unreviewed client"
    fetched = [path for path, _headers in metadata_host.requests]
    assert fetched == ["/clients/desktop-agent.json"], "fetched once, then cached (Cache-Control)"
    client = get_application_model().objects.get(client_id=metadata_host.url)
    assert client.registration_source == "cimd" and client.client_type == "public"


def test_sdk_client_with_an_issuer_that_has_a_path(
    live_issuer, settings, mcp_server, mcp_api, callback, person, agent
):
    """The provider mounted under /idp/ (issuer ``…/idp``) with ``well_known_urlpatterns`` at the
    host's root (docs/operations.md): the SDK finds the RFC 8414 metadata at the path-inserted URL
    and every endpoint under /idp/."""
    from mcp.shared.auth import OAuthClientInformationFull

    from .conftest import oidc_settings

    settings.ROOT_URLCONF = "tests.prefixed_well_known_urls"
    issuer = f"{live_issuer}/idp"
    oidc_settings(settings, ISSUER=issuer)
    client_info = OAuthClientInformationFull(
        client_id=agent.client_id, redirect_uris=[callback.url], token_endpoint_auth_method="none"
    )
    seen = sdk_flow(mcp_server, callback, person, client_info=client_info)
    assert_unaided(seen, issuer, mcp_server, agent.client_id)


ADMIN_SCOPE = "mcp:admin"


@pytest.fixture
def admin_mcp_server(live_issuer):
    """An MCP server that needs ``mcp:admin`` as well."""
    with RunningMcpServer(required_scopes=(MCP_SCOPE, ADMIN_SCOPE)) as server:
        yield server


@pytest.mark.oidc_settings(SCOPES={**SCOPES, ADMIN_SCOPE: "Administer the invoice tools"})
def test_sdk_client_steps_up_on_insufficient_scope(live_issuer, admin_mcp_server, callback, person, agent):
    """The user unticks ``mcp:admin`` on the consent page: the token is too weak and the MCP server
    answers 403 ``insufficient_scope`` naming the scopes (RFC 6750 3.1). The SDK does not authorize
    twice for one request, so that session fails; the next one meets the 403 again, asks the user
    for the scopes (step-up), and succeeds. The audience never changes."""
    from mcp.shared.auth import OAuthClientInformationFull

    server = admin_mcp_server
    ResourceServerFactory(
        identifier=server.url, name=MCP_NAME, scopes=f"{MCP_SCOPE} {ADMIN_SCOPE}", allowed_clients=[agent]
    )
    client_info = OAuthClientInformationFull(
        client_id=agent.client_id, redirect_uris=[callback.url], token_endpoint_auth_method="none"
    )
    seen = sdk_flow(
        server, callback, person, client_info=client_info, untick=(ADMIN_SCOPE,), first_fails=True
    )
    wire: Wire = seen["wire"]
    refused = [exchange for exchange in wire.exchanges if exchange[3] == 403]
    assert len(refused) == 2, "the weak token, then its refreshed successor"
    for exchange in refused:
        challenge = exchange[4]["www-authenticate"]
        assert 'error="insufficient_scope"' in challenge
        assert f'scope="{MCP_SCOPE} {ADMIN_SCOPE}"' in challenge
    first, second = seen["user"].authorization_urls
    for authorization in (first, second):
        assert {MCP_SCOPE, ADMIN_SCOPE} <= set(query_of(authorization)["scope"].split())
        assert query_of(authorization)["resource"] == server.url
    assert ADMIN_SCOPE in seen["user"].consents[1]["scopes"], "the user is asked again"
    weak, refreshed, stepped = (claims_of(tokens.access_token) for tokens in seen["storage"].tokens)
    assert weak["scope"].split() == refreshed["scope"].split() == [MCP_SCOPE], "what the user allowed"
    assert set(stepped["scope"].split()) == {MCP_SCOPE, ADMIN_SCOPE}
    assert weak["aud"] == refreshed["aud"] == stepped["aud"] == server.url
    (again,) = seen["second"]
    assert not again.is_error and again.structured_content["resource"] == server.url
