"""The HTTP conversations of the benchmark, written once for both projects and both transports
(a real socket to gunicorn, or Django's test client in-process): a browser signing in and
consenting, and a relying party exchanging codes, refreshing and calling userinfo.

Standard library only: the load generator shares two cores with the server, so it stays thin
(http.client, one connection per request, as gunicorn's sync workers close it anyway)."""

from __future__ import annotations

import base64
import hashlib
import http.client
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, quote, urlencode, urlsplit

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
SCOPE = "openid offline_access"
REDIRECT_URI = "http://127.0.0.1:8765/callback"


@dataclass(frozen=True)
class Project:
    """Where a project serves each endpoint and how its pages are answered."""

    name: str
    authorize_path: str
    token_path: str
    userinfo_path: str
    introspection_path: str
    ready_path: str
    login_path: str
    consent_field: str  # an input that only the consent form has
    consent_decision: dict[str, str]  # what the Allow button submits


OURS = Project(
    name="ours",
    authorize_path="/connect/authorize",
    token_path="/connect/token",
    userinfo_path="/connect/userinfo",
    introspection_path="/connect/introspect",
    ready_path="/.well-known/openid-configuration",
    login_path="/connect/login",
    consent_field="request_id",
    consent_decision={"decision": "allow"},
)
STOCK = Project(
    name="stock",
    authorize_path="/o/authorize/",
    token_path="/o/token/",
    userinfo_path="/o/userinfo/",
    introspection_path="/o/introspect/",
    ready_path="/o/.well-known/openid-configuration",
    login_path="/accounts/login/",
    consent_field="redirect_uri",
    consent_decision={"allow": "Authorize"},
)
# node-oidc-provider (benchmarks/node_op/provider.mjs): no login page or consent form, its
# interaction logs the benchmark user in and consents with redirects only.
NODE = Project(
    name="node",
    authorize_path="/auth",
    token_path="/token",
    userinfo_path="/me",
    introspection_path="/token/introspection",
    ready_path="/.well-known/openid-configuration",
    login_path="/interaction/",
    consent_field="",
    consent_decision={},
)
PROJECTS = {p.name: p for p in (OURS, STOCK, NODE)}
DJANGO_PROJECTS = ("ours", "stock")


@dataclass(frozen=True)
class Client:
    client_id: str
    client_secret: str
    redirect_uri: str
    username: str
    password: str

    @classmethod
    def from_seed(cls, data: dict) -> Client:
        """From the JSON of ``oidc_demo --json`` or ``stock_dot_seed``."""
        return cls(
            client_id=data["confidential"]["client_id"],
            client_secret=data["confidential"]["client_secret"],
            redirect_uri=data["confidential"]["redirect_uri"],
            username=data["user"]["username"],
            password=data["user"]["password"],
        )


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    cookies: list[str] = field(default_factory=list)  # Set-Cookie headers

    @property
    def location(self) -> str:
        return self.headers.get("location", "")

    def text(self, limit: int = 300) -> str:
        return self.body[:limit].decode("utf-8", "replace")


# --- pure helpers --------------------------------------------------------------------------------


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge), RFC 7636 4.1-4.2."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def basic_auth(client_id: str, secret: str) -> str:
    # RFC 6749 2.3.1: both parts form-urlencoded before Base64.
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def authorize_path(project: Project, client: Client, challenge: str) -> str:
    query = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": client.redirect_uri,
        "scope": SCOPE,
        "state": secrets.token_urlsafe(8),
        "nonce": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if project is NODE:
        # OIDC Core 11: node-oidc-provider drops offline_access unless consent is prompted for.
        query["prompt"] = "consent"
    return f"{project.authorize_path}?{urlencode(query)}"


def token_headers(client: Client) -> dict[str, str]:
    return {
        "Authorization": basic_auth(client.client_id, client.client_secret),
        "Content-Type": FORM_CONTENT_TYPE,
    }


def exchange_body(client: Client, code: str, verifier: str) -> bytes:
    return urlencode(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": client.redirect_uri,
            "code_verifier": verifier,
        }
    ).encode()


def refresh_body(refresh_token: str) -> bytes:
    return urlencode({"grant_type": "refresh_token", "refresh_token": refresh_token}).encode()


def introspection_body(token: str, hint: str) -> bytes:
    return urlencode({"token": token, "token_type_hint": hint}).encode()


def query_of(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


class _FormParser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({"action": attrs.get("action") or "", "fields": {}})
        elif tag == "input" and self.forms and attrs.get("name") and "disabled" not in attrs:
            kind = (attrs.get("type") or "text").lower()
            fields = self.forms[-1]["fields"]
            if kind in ("hidden", "text"):
                fields[attrs["name"]] = attrs.get("value") or ""
            elif kind == "checkbox" and "checked" in attrs:
                # As a browser submits them: one value per ticked box (the consent page's scopes).
                fields.setdefault(attrs["name"], []).append(attrs.get("value") or "on")


def find_form(html: str, field_name: str) -> tuple[str, dict[str, str]]:
    """``(action, hidden and text inputs)`` of the first form that has an input ``field_name``."""
    parser = _FormParser()
    parser.feed(html)
    for form in parser.forms:
        if field_name in form["fields"]:
            return form["action"], form["fields"]
    raise FlowError(f"no form with a {field_name!r} input on the page: {html[:300]!r}")


class FlowError(Exception):
    """The server answered something a browser or client would not have continued from."""


# --- transports ----------------------------------------------------------------------------------


def send(host: str, port: int, method: str, path: str, body: bytes | None = None, headers=None, timeout=60):
    """One request on a fresh connection: (Response, seconds)."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        raw = conn.getresponse()
        data = raw.read()
        response = Response(
            raw.status,
            {k.lower(): v for k, v in raw.getheaders()},
            data,
            raw.headers.get_all("Set-Cookie") or [],
        )
    finally:
        conn.close()
    return response, time.perf_counter() - started


@dataclass
class HttpTransport:
    """A browser: one cookie jar for one host."""

    host: str
    port: int
    cookies: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, body: bytes | None = None, headers=None) -> Response:
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response, _seconds = send(self.host, self.port, method, path, body, headers)
        for header in response.cookies:
            for name, morsel in SimpleCookie(header).items():
                if morsel["max-age"] == "0" or not morsel.value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return response


class DjangoTransport:
    """The same conversation through Django's test client, for in-process measurements."""

    def __init__(self):
        from django.test import Client as TestClient

        self.client = TestClient()

    def request(self, method: str, path: str, body: bytes | None = None, headers=None) -> Response:
        headers = dict(headers or {})
        content_type = headers.pop("Content-Type", FORM_CONTENT_TYPE)
        extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
        response = self.client.generic(method, path, data=body or b"", content_type=content_type, **extra)
        return Response(response.status_code, {k.lower(): v for k, v in response.items()}, response.content)

    def forget_cookies(self) -> None:
        """A new browser, without building a new handler (and middleware chain) for it."""
        self.client.cookies.clear()


Observe = Callable[[str, Callable[[], Response]], Response]


def unobserved(step: str, call: Callable[[], Response]) -> Response:
    return call()


# --- the browser's side --------------------------------------------------------------------------


def authorize(transport, project: Project, client: Client, observe: Observe = unobserved) -> tuple[str, str]:
    """Authorize → (login) → consent → code; returns ``(code, verifier)``.

    ``observe(step, call)`` wraps each HTTP step (``authorize``, ``login_page``, ``login``,
    ``resume``, ``consent``) so callers can time them."""
    verifier, challenge = pkce_pair()
    path = authorize_path(project, client, challenge)
    response = observe("authorize", lambda: transport.request("GET", path))
    if project is NODE:
        response = _follow(transport, client, response, observe)
    if response.status == 302 and urlsplit(response.location).path == project.login_path:
        response = _log_in(transport, project, client, response.location, observe)
    if response.status == 200:
        action, fields = find_form(response.body.decode(), project.consent_field)
        fields.update(project.consent_decision)
        target = _local(action) or path  # DOT's form posts back to the authorize URL
        response = observe("consent", lambda: _post(transport, target, fields))
    if response.status not in (302, 303) or not response.location.startswith(client.redirect_uri):
        raise FlowError(f"expected a redirect to the client, got {response.status}: {response.text()!r}")
    query = query_of(response.location)
    if "code" not in query:
        raise FlowError(f"no code in {response.location}")
    return query["code"], verifier


def _follow(transport, client: Client, response: Response, observe: Observe, limit: int = 10) -> Response:
    """Follow redirects inside the provider (node-oidc-provider's interaction and resume) until
    the one back to the client."""
    for _ in range(limit):
        if response.status not in (302, 303) or response.location.startswith(client.redirect_uri):
            return response
        target = _local(response.location)
        response = observe("interaction", lambda target=target: transport.request("GET", target))
    raise FlowError(f"more than {limit} redirects inside the provider")


def _log_in(transport, project: Project, client: Client, login_url: str, observe: Observe) -> Response:
    login_url = _local(login_url)
    page = observe("login_page", lambda: transport.request("GET", login_url))
    if page.status != 200:
        raise FlowError(f"login page answered {page.status}: {page.text()!r}")
    action, fields = find_form(page.body.decode(), "username")
    fields.update(username=client.username, password=client.password)
    response = observe("login", lambda: _post(transport, _local(action) or login_url, fields))
    if response.status != 302:
        raise FlowError(f"login answered {response.status}: {response.text()!r}")
    return observe("resume", lambda: transport.request("GET", _local(response.location)))


def _local(url: str) -> str:
    """Path and query of ``url`` (the servers answer with absolute or relative URLs)."""
    if not url:
        return ""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _post(transport, path: str, fields: dict[str, str]) -> Response:
    body = urlencode(fields, doseq=True).encode()
    return transport.request("POST", path, body, {"Content-Type": FORM_CONTENT_TYPE})
