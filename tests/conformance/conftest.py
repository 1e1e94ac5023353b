"""What the OpenID Foundation's conformance suite does as a relying party, as pytest fixtures.

``op`` plays the suite: it reads discovery, sends authorization requests through a user agent
(``tests.live.UserAgent``, the hosted pages filled in like the suite's browser automation), redeems
codes, and checks every response the way the suite's conditions do. The ID token signature is
verified with ``cryptography`` directly (not the jwcrypto the provider signs with), so the check is
independent of the provider's own JOSE library. Each failure names the rule it enforces.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

import pytest
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.factories import ApplicationFactory
from tests.live import CALLBACK, UserAgent, http_session, query_of


def b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, b64url(hashlib.sha256(verifier.encode()).digest())


@dataclass
class Client:
    client_id: str
    client_secret: str = ""
    redirect_uri: str = CALLBACK

    @property
    def is_public(self) -> bool:
        return not self.client_secret


@dataclass
class AuthorizationResult:
    """One authorization request and where the user agent ended up."""

    url: str
    params: dict
    location: str
    pages: list[str] = field(default_factory=list)

    @property
    def query(self) -> dict[str, str]:
        return query_of(self.location)

    @property
    def code(self) -> str:
        return self.query["code"]


class OP:
    def __init__(self, issuer: str, demo: dict, client2: Client):
        self.issuer = issuer
        self.demo = demo
        self.http = http_session()
        response = self.http.get(f"{issuer}/.well-known/openid-configuration", timeout=10)
        assert response.status_code == 200, "OIDC Discovery 4.2: the configuration answers 200"
        self.meta = response.json()
        self.client = Client(demo["confidential"]["client_id"], demo["confidential"]["client_secret"])
        self.client2 = client2
        self.public = Client(demo["public"]["client_id"])
        self.username = demo["user"]["username"]
        self.password = demo["user"]["password"]

    # --- the front channel ----------------------------------------------------------------------

    def user_agent(self) -> UserAgent:
        return UserAgent(self.issuer, self.username, self.password)

    def request_params(self, client: Client | None = None, **params) -> dict:
        client = client or self.client
        query = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": client.redirect_uri,
            "scope": "openid",
            "state": secrets.token_urlsafe(12),
            "nonce": secrets.token_urlsafe(12),
        }
        query.update(params)
        return {key: value for key, value in query.items() if value is not None}

    def authorization_url(self, client: Client | None = None, **params) -> tuple[str, dict]:
        query = self.request_params(client, **params)
        return f"{self.meta['authorization_endpoint']}?{urlencode(query)}", query

    def authorize(
        self, user_agent: UserAgent, client: Client | None = None, *, uncheck=(), **params
    ) -> AuthorizationResult:
        """Send an authorization request, sign in and consent as needed (unticking the scopes in
        ``uncheck``); return the redirect."""
        client = client or self.client
        url, query = self.authorization_url(client, **params)
        location = user_agent.authorize(url, uncheck=uncheck)
        return AuthorizationResult(url, query, location, list(user_agent.pages))

    def expect_code(self, result: AuthorizationResult, client: Client | None = None) -> str:
        client = client or self.client
        assert result.location.startswith(client.redirect_uri + "?"), (
            f"RFC 6749 4.1.2 / OIDC Core 3.1.2.5: the response must go to the registered redirect_uri, "
            f"went to {result.location}"
        )
        query = result.query
        assert "error" not in query, f"OIDC Core 3.1.2.5: a successful response was expected, got {query}"
        assert query.get("code"), "OIDC Core 3.1.2.5: the successful response carries code"
        assert query.get("state") == result.params["state"], (
            "RFC 6749 4.1.2 / OIDC Core 3.1.2.5: state must be returned exactly as sent"
        )
        assert query.get("iss") == self.issuer, (
            "RFC 9207 2: iss is in every authorization response (the OP advertises "
            "authorization_response_iss_parameter_supported)"
        )
        return query["code"]

    def expect_error(self, result: AuthorizationResult, *allowed: str, client: Client | None = None) -> str:
        client = client or self.client
        assert result.location.startswith(client.redirect_uri + "?"), (
            f"OIDC Core 3.1.2.6: the error must go to the validated redirect_uri, went to {result.location}"
        )
        query = result.query
        assert "code" not in query, "OIDC Core 3.1.2.6: an error response carries no code"
        assert query.get("error") in allowed, (
            f"OIDC Core 3.1.2.6: expected error {' or '.join(allowed)}, got {query}"
        )
        assert query.get("state") == result.params.get("state"), (
            "RFC 6749 4.1.2.1: state must be returned in the error response exactly as sent"
        )
        assert query.get("iss") == self.issuer, "RFC 9207 2: iss is in error responses too"
        return query["error"]

    # --- the back channel -----------------------------------------------------------------------

    def token_request(self, data: dict, client: Client | None = None, method: str = "basic"):
        client = client or self.client
        data = dict(data)
        auth = None
        if client.is_public or method == "none":
            data["client_id"] = client.client_id
        elif method == "basic":
            auth = (client.client_id, client.client_secret)
        elif method == "post":
            data.update(client_id=client.client_id, client_secret=client.client_secret)
        return self.http.post(self.meta["token_endpoint"], data=data, auth=auth, timeout=10)

    def exchange(
        self, code: str, client: Client | None = None, method: str = "basic", verifier: str | None = None
    ) -> dict:
        client = client or self.client
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": client.redirect_uri}
        if verifier:
            data["code_verifier"] = verifier
        response = self.token_request(data, client, method)
        return self.check_token_response(response)

    def check_token_response(self, response: requests.Response, id_token: bool = True) -> dict:
        assert response.status_code == 200, (
            f"RFC 6749 5.1: a successful token response is HTTP 200, got {response.status_code}: "
            f"{response.text[:300]}"
        )
        assert response.headers.get("Content-Type", "").startswith("application/json"), (
            "RFC 6749 5.1: the token response is application/json"
        )
        assert "no-store" in response.headers.get("Cache-Control", ""), (
            "RFC 6749 5.1 / OIDC Core 3.1.3.3: Cache-Control: no-store on responses with tokens"
        )
        assert response.headers.get("Pragma") == "no-cache", "RFC 6749 5.1: Pragma: no-cache"
        body = response.json()
        assert isinstance(body.get("access_token"), str) and body["access_token"], (
            "RFC 6749 5.1: access_token"
        )
        assert body.get("token_type", "").lower() == "bearer", "OIDC Core 3.1.3.3: token_type must be Bearer"
        assert isinstance(body.get("expires_in"), int) and body["expires_in"] > 0, (
            "RFC 6749 5.1: expires_in is a positive number of seconds"
        )
        if id_token:
            assert isinstance(body.get("id_token"), str), "OIDC Core 3.1.3.3: the response carries id_token"
        return body

    def jwks(self) -> dict:
        response = self.http.get(self.meta["jwks_uri"], timeout=10)
        assert response.status_code == 200, "OIDC Discovery 3: jwks_uri must serve the JWK Set"
        return response.json()

    def verify_signature(self, token: str) -> tuple[dict, dict]:
        """(header, claims) of a JWS verified against the published JWKS (RS256)."""
        header_b64, payload_b64, signature_b64 = token.split(".")
        header = json.loads(b64url_decode(header_b64))
        alg = header.get("alg")
        assert alg != "none", "OIDC Core 2: ID tokens MUST be signed (alg none only if requested)"
        assert alg in self.meta["id_token_signing_alg_values_supported"], (
            "OIDC Discovery 3: the alg must be one of id_token_signing_alg_values_supported"
        )
        assert alg == "RS256", f"this suite verifies RS256 (OIDC Core 15.1 mandatory); token uses {alg}"
        keys = [key for key in self.jwks()["keys"] if key.get("kid") == header.get("kid")]
        assert len(keys) == 1, (
            "OIDC Core 10.1: the kid in the header must identify exactly one key of the JWKS"
        )
        jwk = keys[0]
        public = rsa.RSAPublicNumbers(
            int.from_bytes(b64url_decode(jwk["e"]), "big"), int.from_bytes(b64url_decode(jwk["n"]), "big")
        ).public_key()
        try:
            public.verify(
                b64url_decode(signature_b64),
                f"{header_b64}.{payload_b64}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature as exc:
            raise AssertionError("OIDC Core 3.1.3.7 item 6: the signature must verify with the JWKS") from exc
        return header, json.loads(b64url_decode(payload_b64))

    def check_id_token(
        self,
        token: str,
        *,
        client: Client | None = None,
        nonce: str | None = None,
        access_token: str | None = None,
        max_age: int | None = None,
    ) -> dict:
        """OIDC Core 3.1.3.7: the ID token validation an RP performs, rule by rule."""
        client = client or self.client
        _header, claims = self.verify_signature(token)
        now = time.time()
        assert claims.get("iss") == self.issuer, "OIDC Core 3.1.3.7 item 2: iss must equal the issuer"
        audiences = claims["aud"] if isinstance(claims.get("aud"), list) else [claims.get("aud")]
        assert client.client_id in audiences, "OIDC Core 3.1.3.7 item 3: aud must contain the client_id"
        if len(audiences) > 1:
            assert "azp" in claims, "OIDC Core 3.1.3.7 item 4: azp is required with several audiences"
        if "azp" in claims:
            assert claims["azp"] == client.client_id, "OIDC Core 3.1.3.7 item 5: azp must be the client_id"
        assert isinstance(claims.get("exp"), int) and claims["exp"] > now, (
            "OIDC Core 3.1.3.7 item 9: exp must be in the future"
        )
        assert isinstance(claims.get("iat"), int) and now - 300 <= claims["iat"] <= now + 5, (
            "OIDC Core 3.1.3.7 item 10: iat must be a recent time"
        )
        sub = claims.get("sub")
        assert isinstance(sub, str) and 0 < len(sub) <= 255 and sub.isascii(), (
            "OIDC Core 2: sub is a string of at most 255 ASCII characters"
        )
        if nonce is None:
            assert "nonce" not in claims, "OIDC Core 2: no nonce in the ID token when none was sent"
        else:
            assert claims.get("nonce") == nonce, "OIDC Core 3.1.3.7 item 11: nonce must equal the one sent"
        if max_age is not None:
            assert isinstance(claims.get("auth_time"), int), (
                "OIDC Core 3.1.3.7 item 13: auth_time is required when max_age was requested"
            )
            assert now - claims["auth_time"] <= max_age + 5, (
                "OIDC Core 3.1.2.1: the authentication is no older than max_age"
            )
        if "auth_time" in claims:
            assert claims["auth_time"] <= now + 5, "OIDC Core 2: auth_time is not in the future"
        if access_token is not None and "at_hash" in claims:
            digest = hashlib.sha256(access_token.encode()).digest()
            assert claims["at_hash"] == b64url(digest[:16]), (
                "OIDC Core 3.1.3.8: at_hash must be the left half of SHA-256 of the access token"
            )
        return claims

    def code_flow(
        self,
        user_agent: UserAgent | None = None,
        client: Client | None = None,
        method: str = "basic",
        **params,
    ) -> tuple[AuthorizationResult, dict, dict]:
        """The happy path: (authorization result, token response, verified ID token claims)."""
        client = client or self.client
        user_agent = user_agent or self.user_agent()
        verifier = None
        if client.is_public and "code_challenge" not in params:
            verifier, params["code_challenge"] = pkce_pair()
            params["code_challenge_method"] = "S256"
        result = self.authorize(user_agent, client, **params)
        code = self.expect_code(result, client)
        tokens = self.exchange(code, client, method, verifier=verifier)
        claims = self.check_id_token(
            tokens["id_token"],
            client=client,
            nonce=result.params.get("nonce"),
            access_token=tokens["access_token"],
            max_age=int(params["max_age"]) if "max_age" in params else None,
        )
        return result, tokens, claims

    def userinfo(self, access_token: str, how: str = "get") -> requests.Response:
        endpoint = self.meta["userinfo_endpoint"]
        bearer = {"Authorization": f"Bearer {access_token}"}
        if how == "get":
            return self.http.get(endpoint, headers=bearer, timeout=10)
        if how == "post-header":
            return self.http.post(endpoint, headers=bearer, timeout=10)
        return self.http.post(endpoint, data={"access_token": access_token}, timeout=10)

    def check_userinfo(self, response: requests.Response, sub: str) -> dict:
        assert response.status_code == 200, (
            f"OIDC Core 5.3.2: userinfo answers 200 to a valid token, got {response.status_code}"
        )
        assert response.headers.get("Content-Type", "").startswith("application/json"), (
            "OIDC Core 5.3.2: an unsigned userinfo response is application/json"
        )
        info = response.json()
        assert info.get("sub") == sub, "OIDC Core 5.3.2: userinfo sub must equal the ID token's sub"
        return info


@pytest.fixture
def op(demo) -> OP:
    # The suite's second client (client2 in its configuration), registered like the first.
    second = ApplicationFactory(
        client_id="conformance-client2", redirect_uris=CALLBACK, post_logout_redirect_uris=CALLBACK
    )
    return OP(demo["issuer"], demo, Client(second.client_id, second.raw_secret))
