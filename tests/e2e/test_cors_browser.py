"""CORS in a real browser: a single-page app served from another origin (a tiny server on
127.0.0.1:<another port>, i.e. ``http://127.0.0.1:PORT``, a loopback origin registered for local
development) calls the token, userinfo and revocation endpoints with ``fetch()``. Chromium enforces
the CORS protocol itself (preflight for the ``Authorization`` header, the response check), so a
missing or wrong header is a ``TypeError: Failed to fetch`` in the page. The header rules are
tested in detail in tests/test_cors.py."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlencode

import pytest
from oauth2_provider.models import get_application_model

from tests.live import CALLBACK, UserAgent, query_of, run_demo

pytestmark = pytest.mark.live


class _Page(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        body = b"<!doctype html><title>SPA</title><h1>single-page app</h1>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def origin_server():
    """Serves a blank page on 127.0.0.1 at a port of its own: an origin other than the IdP's."""
    servers = []

    def start() -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def spa_page(chromium, live_issuer, origin_server):  # noqa: F811
    demo = run_demo(CALLBACK)
    spa_origin, stranger_origin = origin_server(), origin_server()
    client = get_application_model().objects.get(client_id=demo["public"]["client_id"])
    client.allowed_origins = spa_origin
    client.save()  # through the ORM: the client cache is dropped
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page, demo, spa_origin, stranger_origin
    context.close()


def _code(issuer: str, demo: dict) -> tuple[str, str]:
    """An authorization code for the public demo client (signed in and consented through the hosted
    pages by a browser without JavaScript), and its PKCE verifier."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = {
        "response_type": "code",
        "client_id": demo["public"]["client_id"],
        "redirect_uri": CALLBACK,
        "scope": "openid profile offline_access",
        "state": "s",
        "nonce": "n",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "prompt": "consent",
    }
    agent = UserAgent(issuer, demo["user"]["username"], demo["user"]["password"])
    location = agent.authorize(f"/connect/authorize?{urlencode(query)}")
    return query_of(location)["code"], verifier


# What a browser app does: fetch() with a form body (token, revocation) and a bearer header
# (userinfo: a non-safelisted header, so Chromium sends a preflight first).
_SPA_JS = """
async ({issuer, clientId, code, verifier, redirectUri}) => {
  const form = (data) => ({method: "POST", body: new URLSearchParams(data)});
  const read = async (promise) => {
    try {
      const r = await promise;
      return {status: r.status, body: await r.text(), wwwAuthenticate: r.headers.get("WWW-Authenticate")};
    } catch (e) { return {failed: String(e)}; }
  };
  const out = {};
  out.token = await read(fetch(issuer + "/connect/token", form({
    grant_type: "authorization_code", code, code_verifier: verifier, redirect_uri: redirectUri,
    client_id: clientId})));
  if (out.token.status !== 200) {
    return out;
  }
  const tokens = JSON.parse(out.token.body);
  out.userinfo = await read(fetch(issuer + "/connect/userinfo",
    {headers: {Authorization: "Bearer " + tokens.access_token}}));
  out.badToken = await read(fetch(issuer + "/connect/userinfo",
    {headers: {Authorization: "Bearer not-a-token"}}));
  out.refresh = await read(fetch(issuer + "/connect/token", form({
    grant_type: "refresh_token", refresh_token: tokens.refresh_token, client_id: clientId})));
  out.revoke = await read(fetch(issuer + "/connect/revocation", form({
    token: JSON.parse(out.refresh.body).refresh_token, client_id: clientId})));
  // Last: a replayed code is invalid_grant and revokes what it gave (RFC 6749 4.1.2).
  out.replay = await read(fetch(issuer + "/connect/token", form({
    grant_type: "authorization_code", code, code_verifier: verifier, redirect_uri: redirectUri,
    client_id: clientId})));
  return out;
}
"""


def _run(page, origin: str, issuer: str, demo: dict, code: str, verifier: str) -> dict:
    page.goto(origin)
    args = {
        "issuer": issuer,
        "clientId": demo["public"]["client_id"],
        "code": code,
        "verifier": verifier,
        "redirectUri": CALLBACK,
    }
    return page.evaluate(_SPA_JS, args)


def test_spa_on_another_origin_uses_token_userinfo_revocation(spa_page, live_issuer):
    page, demo, spa_origin, _stranger = spa_page
    code, verifier = _code(live_issuer, demo)
    out = _run(page, spa_origin, live_issuer, demo, code, verifier)
    assert out["token"]["status"] == 200, out
    assert out["replay"]["status"] == 400 and '"invalid_grant"' in out["replay"]["body"], (
        "RFC 6749 5.2: the browser app reads the error, not a network failure"
    )
    assert out["userinfo"]["status"] == 200 and '"sub"' in out["userinfo"]["body"], (
        "OIDC Core 5.3: userinfo after a CORS preflight"
    )
    assert out["badToken"]["status"] == 401
    assert "invalid_token" in (out["badToken"]["wwwAuthenticate"] or ""), "RFC 6750 3, exposed to the app"
    assert out["refresh"]["status"] == 200, out
    assert out["revoke"]["status"] == 200, "RFC 7009 2.2"


def test_unregistered_origin_cannot_read(spa_page, live_issuer):
    page, demo, _spa, stranger_origin = spa_page
    code, verifier = _code(live_issuer, demo)
    out = _run(page, stranger_origin, live_issuer, demo, code, verifier)
    assert "Failed to fetch" in out["token"].get("failed", ""), "another origin reads nothing"
