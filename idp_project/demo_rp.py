"""The demo relying party ("OIDC playground") of the example project, at ``/demo-rp/``.

A real, separate client of the IdP that happens to be served by the same Django process, so that
``make run`` needs no second server: it talks to the IdP only over HTTP (discovery, token, JWKS,
userinfo, end-session), as the confidential client ``demo-confidential``, and keeps its own state in
its own server-side session (cookie ``demo_rp_session``, path ``/demo-rp/``), never in the IdP's.

* ``/demo-rp/`` shows the sign-in button, then what the last sign-in returned: the ID token and the
  access token decoded (header, claims, signature verified against the JWKS), userinfo, a refresh
  button and a sign-out button (RP-initiated logout).
* ``start`` sends the browser to the authorization endpoint (code flow, PKCE S256, state, nonce).
* ``callback`` checks state and ``iss`` (RFC 9207), redeems the code server-side with
  client_secret_basic and the code verifier, verifies the ID token (OIDC Core 3.1.3.7) and reads
  userinfo.

Credentials (docs/demo.md): ``DEMO_RP["CLIENT_ID"]`` / ``["CLIENT_SECRET"]`` (environment
``DEMO_RP_CLIENT_ID`` / ``DEMO_RP_CLIENT_SECRET``), else the JSON file ``DEMO_RP["CREDENTIALS_FILE"]``
that ``manage.py oidc_demo`` writes on every run. ``DEMO_RP = None`` turns the playground off
(``settings_production`` does).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import path, reverse
from django.views.decorators.http import require_GET, require_POST
from jwcrypto import jwk, jws
from jwcrypto.common import JWException

from oidc_provider_ext.conf import app_settings

app_name = "demo_rp"

COOKIE = "demo_rp_session"
COOKIE_PATH = "/demo-rp/"
SCOPE = "openid profile email address phone offline_access"
SIGNING_ALGS = ("RS256", "PS256", "ES256")
MAX_PENDING = 5
HTTP_TIMEOUT = 10


# --- credentials -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    client_id: str
    client_secret: str
    source: str  # where they came from, shown on the page


def _config() -> dict[str, Any]:
    config = getattr(settings, "DEMO_RP", None)
    if not config:
        raise Http404("The demo relying party is turned off (DEMO_RP).")
    return config


def credentials() -> Credentials | None:
    """The settings (environment) first; else the file ``oidc_demo`` writes; None if neither."""
    config = _config()
    client_id, secret = config.get("CLIENT_ID") or "", config.get("CLIENT_SECRET") or ""
    if secret:
        return Credentials(client_id or "demo-confidential", secret, "settings (DEMO_RP_CLIENT_SECRET)")
    file = config.get("CREDENTIALS_FILE")
    try:
        stored = json.loads(Path(file).read_text()) if file else {}
    except (OSError, ValueError):
        return None
    if not stored.get("client_secret"):
        return None
    return Credentials(client_id or stored["client_id"], stored["client_secret"], str(file))


def write_credentials(confidential: dict[str, str]) -> None:
    """Called by ``oidc_demo``: the confidential client's credentials, readable by the owner only."""
    config = getattr(settings, "DEMO_RP", None)
    if not config or not config.get("CREDENTIALS_FILE"):
        return
    file = Path(config["CREDENTIALS_FILE"])
    payload = {key: confidential[key] for key in ("client_id", "client_secret", "redirect_uri")}
    descriptor = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(payload, handle)
    os.chmod(file, 0o600)  # an existing file keeps its mode through os.open


# --- the RP's own state ------------------------------------------------------------------------------


class RPState:
    """The relying party's session: server-side, separate from the IdP's (signing out at the IdP,
    or signing in as someone else, must not be what clears it)."""

    def __init__(self, request: HttpRequest):
        engine = import_module(settings.SESSION_ENGINE)
        self.request = request
        self.store = engine.SessionStore(session_key=request.COOKIES.get(COOKIE))

    def get(self, name: str, default: Any = None) -> Any:
        return self.store.get(name, default)

    def set(self, name: str, value: Any) -> None:
        self.store[name] = value

    def pop(self, name: str, default: Any = None) -> Any:
        return self.store.pop(name, default)

    def respond(self, response: HttpResponse) -> HttpResponse:
        if self.store.modified:
            self.store.set_expiry(3600)
            self.store.save()
            response.set_cookie(
                COOKIE,
                self.store.session_key,
                max_age=3600,
                path=COOKIE_PATH,
                secure=self.request.is_secure(),
                httponly=True,
                samesite="Lax",
            )
        return response


# --- talking to the IdP ------------------------------------------------------------------------------


def issuer() -> str:
    return app_settings.ISSUER


def own_url(name: str) -> str:
    return issuer() + reverse(f"demo_rp:{name}")


def _http() -> requests.Session:
    return requests.Session()


def discovery() -> dict[str, Any]:
    with _http() as http:
        response = http.get(f"{issuer()}/.well-known/openid-configuration", timeout=HTTP_TIMEOUT)
    response.raise_for_status()
    return response.json()


def _b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class DecodedToken:
    raw: str
    header: dict[str, Any] = field(default_factory=dict)
    claims: dict[str, Any] = field(default_factory=dict)
    verified: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def header_json(self) -> str:
        return json.dumps(self.header, indent=2)

    @property
    def claims_json(self) -> str:
        return json.dumps(self.claims, indent=2, ensure_ascii=False)

    @property
    def expires_in(self) -> int | None:
        exp = self.claims.get("exp")
        return int(exp - time.time()) if isinstance(exp, int | float) else None


def decode_and_verify(token: str, jwks: dict[str, Any]) -> DecodedToken:
    """Header and claims of a compact JWS, and whether its signature verifies with the key of the
    JWKS its ``kid`` names (OIDC Core 3.1.3.7 item 6, 10.1)."""
    decoded = DecodedToken(raw=token)
    try:
        header_b64, payload_b64, _signature = token.split(".")
        decoded.header = json.loads(_b64url_decode(header_b64))
        decoded.claims = json.loads(_b64url_decode(payload_b64))
    except ValueError:
        decoded.problems.append("not a compact JWS (three base64url parts)")
        return decoded
    alg, kid = decoded.header.get("alg"), decoded.header.get("kid")
    if alg not in SIGNING_ALGS:
        decoded.problems.append(f"alg {alg!r} is not one this RP accepts ({', '.join(SIGNING_ALGS)})")
        return decoded
    key = jwk.JWKSet.from_json(json.dumps(jwks)).get_key(kid) if kid else None
    if key is None:
        decoded.problems.append(f"no key with kid {kid!r} in the JWKS")
        return decoded
    signed = jws.JWS()
    try:
        signed.deserialize(token)
        signed.verify(key, alg=alg)
    except (JWException, ValueError) as exc:
        decoded.problems.append(f"the signature does not verify: {exc}")
        return decoded
    decoded.verified = True
    return decoded


def check_id_token(decoded: DecodedToken, client_id: str, nonce: str | None) -> None:
    """OIDC Core 3.1.3.7 items 2, 3, 9 and 11 (item 6, the signature, is decode_and_verify)."""
    claims = decoded.claims
    if claims.get("iss") != issuer():
        decoded.problems.append("iss is not the issuer (item 2)")
    audiences = claims.get("aud") if isinstance(claims.get("aud"), list) else [claims.get("aud")]
    if client_id not in audiences:
        decoded.problems.append("aud does not contain this client's client_id (item 3)")
    if not isinstance(claims.get("exp"), int) or claims["exp"] <= time.time():
        decoded.problems.append("the token has expired (item 9)")
    if nonce is not None and claims.get("nonce") != nonce:
        decoded.problems.append("nonce is not the one this RP sent (item 11)")


def check_access_token(decoded: DecodedToken) -> None:
    # RFC 9068 2.1 and 4: typ at+jwt, iss the authorization server.
    if decoded.header.get("typ", "").lower() not in ("at+jwt", "application/at+jwt"):
        decoded.problems.append("typ is not at+jwt (RFC 9068 2.1)")
    if decoded.claims.get("iss") != issuer():
        decoded.problems.append("iss is not the issuer (RFC 9068 4)")


def _error_of(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    description = body.get("error_description")
    return f"{body.get('error', 'error')}" + (f": {description}" if description else "")


# --- views -------------------------------------------------------------------------------------------


def _home(request: HttpRequest, state: RPState, status: int = 200) -> HttpResponse:
    creds = credentials()
    tokens = state.get("tokens")
    context: dict[str, Any] = {
        "issuer": issuer(),
        "credentials": creds,
        "credentials_file": _config().get("CREDENTIALS_FILE"),
        "callback": own_url("callback"),
        "scope": SCOPE,
        "notice": state.pop("notice"),
        "error": state.pop("error"),
        "tokens": tokens,
        "code_lifetime": app_settings.CODE_EXPIRE_SECONDS,
    }
    if tokens:
        meta = discovery()
        with _http() as http:
            jwks = http.get(meta["jwks_uri"], timeout=HTTP_TIMEOUT).json()
        id_token = decode_and_verify(tokens["id_token"], jwks)
        check_id_token(id_token, creds.client_id if creds else "", None)
        access_token = decode_and_verify(tokens["access_token"], jwks)
        check_access_token(access_token)
        context.update(
            id_token=id_token,
            access_token=access_token,
            userinfo_json=json.dumps(state.get("userinfo"), indent=2, ensure_ascii=False),
            nonce_ok=state.get("nonce_ok"),
            refreshed=state.get("refreshed", 0),
            jwks_uri=meta["jwks_uri"],
        )
    return state.respond(render(request, "demo_rp/home.html", context, status=status))


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return _home(request, RPState(request))


@require_GET
def start(request: HttpRequest) -> HttpResponse:
    """One click: a fresh state, nonce and PKCE verifier (RFC 7636 4.1-4.2, S256), remembered in the
    RP's session, and the browser goes to the authorization endpoint."""
    # Browse the playground at the issuer's host, or its cookie is not sent back to the callback.
    if urlsplit(issuer()).netloc != request.get_host():
        return HttpResponseRedirect(own_url("home"))
    state = RPState(request)
    creds = credentials()
    if creds is None:
        state.set("error", "No client credentials: run `python manage.py oidc_demo` (see below).")
        return state.respond(HttpResponseRedirect(reverse("demo_rp:home")))
    verifier = secrets.token_urlsafe(48)
    nonce, request_state = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    pending = state.get("pending", {})
    # A few tabs may be mid-flow; each callback consumes its own entry (single use).
    pending = dict(list(pending.items())[-(MAX_PENDING - 1) :])
    pending[request_state] = {"nonce": nonce, "verifier": verifier}
    state.set("pending", pending)
    query = {
        "response_type": "code",
        "client_id": creds.client_id,
        "redirect_uri": own_url("callback"),
        "scope": SCOPE,
        "state": request_state,
        "nonce": nonce,
        "code_challenge": _b64url(hashlib.sha256(verifier.encode()).digest()),
        "code_challenge_method": "S256",
        # OIDC Core 11: offline_access is granted through consent; show the page every time.
        "prompt": "consent",
    }
    authorize = discovery()["authorization_endpoint"]
    return state.respond(HttpResponseRedirect(f"{authorize}?{urlencode(query)}"))


@require_GET
def callback(request: HttpRequest) -> HttpResponse:
    state = RPState(request)
    pending = state.get("pending", {})
    entry = pending.pop(request.GET.get("state", ""), None)
    state.set("pending", pending)
    creds = credentials()
    if entry is None:
        # Not a flow this playground started (e.g. the URL oidc_demo prints): never redeem a code
        # without its state (RFC 6749 10.12), but show how to redeem it by hand.
        context = {
            "code": request.GET.get("code", ""),
            "error": request.GET.get("error", ""),
            "error_description": request.GET.get("error_description", ""),
            "credentials": creds,
            "callback": own_url("callback"),
            "token_endpoint": issuer() + reverse("oidc_provider_ext:token"),
            "code_lifetime": app_settings.CODE_EXPIRE_SECONDS,
        }
        return state.respond(render(request, "demo_rp/callback_unknown.html", context, status=400))
    if request.GET.get("iss") != issuer():
        state.set("error", "The response's iss is not the issuer (RFC 9207 2.4): not redeemed.")
    elif "error" in request.GET:
        error = request.GET["error"]
        description = request.GET.get("error_description", "")
        state.set("error", f"The IdP answered {error}" + (f": {description}" if description else ""))
    elif creds is None:
        state.set("error", "No client credentials: run `python manage.py oidc_demo`.")
    else:
        _redeem(state, creds, request.GET.get("code", ""), entry)
    return state.respond(HttpResponseRedirect(reverse("demo_rp:home")))


def _redeem(state: RPState, creds: Credentials, code: str, entry: dict[str, str]) -> None:
    meta = discovery()
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": own_url("callback"),
        "code_verifier": entry["verifier"],
    }
    response = _token_request(meta, creds, data)
    if response.status_code != 200:
        state.set("error", f"The token endpoint refused the code: {_error_of(response)}")
        return
    tokens = response.json()
    with _http() as http:
        jwks = http.get(meta["jwks_uri"], timeout=HTTP_TIMEOUT).json()
    id_token = decode_and_verify(tokens.get("id_token", ""), jwks)
    check_id_token(id_token, creds.client_id, entry["nonce"])
    if id_token.problems:
        # OIDC Core 3.1.3.7: an RP that cannot validate the ID token does not sign the user in.
        state.set("error", "The ID token is not valid: " + "; ".join(id_token.problems))
        return
    state.set("tokens", tokens)
    state.set("nonce_ok", True)
    state.set("refreshed", 0)
    state.set("userinfo", _userinfo(meta, tokens["access_token"]))
    state.set("notice", "Signed in: the code was redeemed server-side and the ID token verified.")


def _token_request(meta: dict[str, Any], creds: Credentials, data: dict[str, str]):
    """POST to the token endpoint as the confidential demo client (client_secret_basic)."""
    with _http() as http:
        return http.post(
            meta["token_endpoint"],
            data=data,
            auth=(creds.client_id, creds.client_secret),
            timeout=HTTP_TIMEOUT,
        )


def _userinfo(meta: dict[str, Any], access_token: str) -> Any:
    with _http() as http:
        response = http.get(
            meta["userinfo_endpoint"],
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=HTTP_TIMEOUT,
        )
    if response.status_code != 200:
        return {"error": _error_of(response)}
    return response.json()


@require_POST
def refresh(request: HttpRequest) -> HttpResponse:
    """The refresh token grant (RFC 6749 6): new tokens, the refresh token rotated."""
    state = RPState(request)
    tokens, creds = state.get("tokens"), credentials()
    if not tokens or creds is None:
        state.set("error", "Nothing to refresh: sign in first.")
    elif not tokens.get("refresh_token"):
        state.set("error", "No refresh token: offline_access was not granted.")
    else:
        meta = discovery()
        data = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        response = _token_request(meta, creds, data)
        if response.status_code != 200:
            state.set("error", f"The refresh was refused: {_error_of(response)}")
        else:
            fresh = response.json()
            state.set("tokens", {**tokens, **fresh})
            state.set("refreshed", state.get("refreshed", 0) + 1)
            state.set("userinfo", _userinfo(meta, fresh["access_token"]))
            state.set("notice", "Refreshed: a new access token and ID token, and a new refresh token.")
    return state.respond(HttpResponseRedirect(reverse("demo_rp:home")))


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    """RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0 section 2): forget the tokens
    here, then send the browser to the end-session endpoint with the ID token as hint."""
    state = RPState(request)
    tokens = state.pop("tokens") or {}
    state.pop("userinfo")
    logout_state = secrets.token_urlsafe(16)
    state.set("logout_state", logout_state)
    query = {"post_logout_redirect_uri": own_url("logged-out"), "state": logout_state}
    if tokens.get("id_token"):
        query["id_token_hint"] = tokens["id_token"]
    creds = credentials()
    if creds is not None:
        query["client_id"] = creds.client_id
    end_session = discovery()["end_session_endpoint"]
    return state.respond(HttpResponseRedirect(f"{end_session}?{urlencode(query)}"))


@require_GET
def logged_out(request: HttpRequest) -> HttpResponse:
    state = RPState(request)
    expected = state.pop("logout_state")
    if expected and secrets.compare_digest(request.GET.get("state", ""), expected):
        state.set("notice", "Signed out at the IdP (RP-initiated logout), and here.")
    else:
        state.set("notice", "Signed out here.")
    state.pop("tokens")
    state.pop("userinfo")
    return state.respond(HttpResponseRedirect(reverse("demo_rp:home")))


urlpatterns = [
    path("", home, name="home"),
    path("start", start, name="start"),
    path("callback", callback, name="callback"),
    path("refresh", refresh, name="refresh"),
    path("logout", logout, name="logout"),
    path("logged-out", logged_out, name="logged-out"),
]
