"""A tiny relying party web site for the browser tests: a home page with "Sign in" links, a
``/callback`` that redeems the code (client_secret_basic + PKCE) and shows who signed in, a
"Sign out" link to the IdP's end-session endpoint (with the ID token as hint, and one with only the
client_id) and a ``/logged-out`` page. It runs in a thread
on 127.0.0.1, so the browser really lands on the RP after each redirect."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import requests


class RelyingParty:
    def __init__(self, issuer: str):
        self.issuer = issuer
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.rp = self
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.client_id = self.client_secret = ""
        self.pending: dict[str, dict] = {}  # state -> what the callback needs
        self.http = requests.Session()
        self.meta: dict = {}
        self.last: dict = {}  # what the last callback saw, for the tests
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def callback(self) -> str:
        return f"{self.url}/callback"

    @property
    def logged_out(self) -> str:
        return f"{self.url}/logged-out"

    def start(self, client_id: str, client_secret: str) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.meta = self.http.get(f"{self.issuer}/.well-known/openid-configuration", timeout=10).json()
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.http.close()

    def authorization_url(self, **extra) -> str:
        state, nonce = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
        self.pending[state] = {"verifier": verifier, "nonce": nonce}
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.callback,
            "scope": "openid profile email",
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge.decode(),
            "code_challenge_method": "S256",
            **extra,
        }
        return f"{self.meta['authorization_endpoint']}?{urlencode(query)}"

    def redeem(self, query: dict) -> dict:
        """The callback's back channel: code → tokens → userinfo."""
        pending = self.pending.pop(query.get("state", ""), None)
        if pending is None:
            return {"error": "unknown_state"}
        if "error" in query:
            return {"error": query["error"], "error_description": query.get("error_description", "")}
        response = self.http.post(
            self.meta["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": query["code"],
                "redirect_uri": self.callback,
                "code_verifier": pending["verifier"],
            },
            auth=(self.client_id, self.client_secret),
            timeout=10,
        )
        tokens = response.json()
        if response.status_code != 200:
            return {"error": tokens.get("error", "token_error"), "status": response.status_code}
        payload = tokens["id_token"].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        info = self.http.get(
            self.meta["userinfo_endpoint"],
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
            timeout=10,
        ).json()
        return {
            "tokens": tokens,
            "claims": claims,
            "userinfo": info,
            "nonce_ok": claims.get("nonce") == pending["nonce"],
        }

    def end_session_url(self, id_token: str | None) -> str:
        """RP-Initiated Logout 1.0 §2: with the ID token as hint, or (``None``) only the client_id."""
        hint = {"id_token_hint": id_token} if id_token else {"client_id": self.client_id}
        query = {**hint, "post_logout_redirect_uri": self.logged_out, "state": "bye"}
        return f"{self.meta['end_session_endpoint']}?{urlencode(query)}"


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:3rem}} a{{display:inline-block;margin:.5rem 0}}</style>
</head><body><h1>{title}</h1>{body}</body></html>"""


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def log_message(self, format, *args):  # keep the test output quiet
        pass

    def _send(self, title: str, body: str) -> None:
        content = _PAGE.format(title=html.escape(title), body=body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def do_GET(self):
        rp: RelyingParty = self.server.rp
        url = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        if url.path == "/":
            links = (
                f'<a id="sign-in" href="{html.escape(rp.authorization_url())}">Sign in</a><br>'
                f'<a id="sign-in-acme" href="{html.escape(rp.authorization_url(acr_values="tenant:acme"))}">'
                "Sign in to Acme</a>"
            )
            self._send("Demo relying party", links)
        elif url.path == "/callback":
            rp.last = {"query": query, **rp.redeem(query)}
            if "error" in rp.last:
                self._send(
                    "Sign-in failed", f'<p>Error: <code id="error">{html.escape(rp.last["error"])}</code></p>'
                )
                return
            name = rp.last["userinfo"].get("name", rp.last["claims"]["sub"])
            logout = html.escape(rp.end_session_url(rp.last["tokens"]["id_token"]))
            logout_without_hint = html.escape(rp.end_session_url(None))
            self._send(
                "Signed in",
                f'<p>Signed in as <strong id="who">{html.escape(name)}</strong>.</p>'
                f'<p>Code: <code id="code">{html.escape(query["code"])}</code></p>'
                f'<a id="sign-out" href="{logout}">Sign out</a><br>'
                f'<a id="sign-out-without-hint" href="{logout_without_hint}">'
                "Sign out (without the ID token)</a>",
            )
        elif url.path == "/logged-out":
            rp.last = {"query": query}
            self._send(
                "Signed out", f'<p>State: <code id="state">{html.escape(query.get("state", ""))}</code></p>'
            )
        else:
            self.send_error(404)
