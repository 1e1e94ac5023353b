"""The oauthlib server this provider runs: only what RFC 9700 and OIDC Core leave standing.

Compared with ``oauthlib.openid.Server`` (what DOT uses by default):

* response type ``code`` only; no implicit or hybrid flows (RFC 9700 2.1.2);
* grants ``authorization_code``, ``refresh_token``, ``client_credentials`` and the device grant
  (RFC 8628, for clients whose profile allows it); no password grant (RFC 9700 2.4);
* PKCE ``S256`` only: ``plain`` is refused at the authorization endpoint (RFC 9700 2.1.1), and a
  ``code_verifier`` for a code issued without ``code_challenge`` is refused (RFC 9700 4.8.2);
* protected resources accept our access tokens as ``Bearer`` only. oauthlib's ``JWT`` token type
  would validate an *ID token* presented as a bearer token, which OIDC does not allow;
* a refresh token only when ``offline_access`` was granted (OIDC Core 11);
* lifetimes and token generators come from ``OIDC_PROVIDER_EXT``, not from DOT's settings.
"""

from __future__ import annotations

import json

from oauth2_provider.oauth2_backends import OAuthLibCore as DOTOAuthLibCore
from oauthlib.common import Request
from oauthlib.oauth2.rfc6749 import errors
from oauthlib.oauth2.rfc6749.endpoints import (
    AuthorizationEndpoint,
    IntrospectEndpoint,
    ResourceEndpoint,
    RevocationEndpoint,
    TokenEndpoint,
)
from oauthlib.oauth2.rfc6749.grant_types import AuthorizationCodeGrant as OAuth2AuthorizationCodeGrant
from oauthlib.oauth2.rfc6749.grant_types import ClientCredentialsGrant
from oauthlib.oauth2.rfc6749.grant_types.authorization_code import code_challenge_method_s256
from oauthlib.oauth2.rfc6749.tokens import BearerToken
from oauthlib.oauth2.rfc8628.endpoints import DeviceAuthorizationEndpoint
from oauthlib.oauth2.rfc8628.grant_types import DeviceCodeGrant as OAuth2DeviceCodeGrant
from oauthlib.openid.connect.core.endpoints.userinfo import UserInfoEndpoint
from oauthlib.openid.connect.core.grant_types import AuthorizationCodeGrant, RefreshTokenGrant
from oauthlib.openid.connect.core.grant_types.base import GrantTypeBase as OpenIDGrantTypeBase
from oauthlib.openid.connect.core.grant_types.dispatchers import (
    AuthorizationCodeGrantDispatcher,
    AuthorizationTokenGrantDispatcher,
)

from .conf import app_settings
from .scopes import OFFLINE_ACCESS
from .tokens import generate_refresh_token
from .validator import DEVICE_CODE_GRANT

S256_ONLY = {"S256": code_challenge_method_s256}


class S256OnlyCodeGrant(OAuth2AuthorizationCodeGrant):
    _code_challenge_methods = S256_ONLY

    def validate_token_request(self, request):
        super().validate_token_request(request)
        # RFC 9700 4.8.2 (PKCE downgrade): a code_verifier for a code whose authorization request
        # had no code_challenge is refused. The code was consumed above, so it cannot be retried.
        if request.code_verifier is not None and not self.request_validator.get_code_challenge(
            request.code, request
        ):
            raise errors.InvalidGrantError(
                description="code_verifier sent, but the authorization request had no code_challenge.",
                request=request,
            )


class S256OnlyOIDCCodeGrant(AuthorizationCodeGrant):
    # Same as oauthlib's __init__, with the S256-only grant as proxy target. (Replacing the target
    # after super().__init__ would drop the OIDC validator and the ID-token modifier it registers.)
    def __init__(self, request_validator=None, **kwargs):
        self.proxy_target = S256OnlyCodeGrant(request_validator=request_validator, **kwargs)
        self.custom_validators.post_auth.append(self.openid_authorization_validator)
        self.register_token_modifier(self.add_id_token)

    def _inflate_claims(self, request):
        # oauthlib raises without the request, so the error could not go back to the client with
        # its state; OIDC Core 5.5 also requires a JSON object with object members.
        if not request.claims or isinstance(request.claims, dict):
            return
        try:
            claims = json.loads(request.claims)
        except ValueError:
            claims = None
        if not isinstance(claims, dict) or any(
            not isinstance(claims.get(member, {}), dict | None) for member in ("id_token", "userinfo")
        ):
            raise errors.InvalidRequestError(
                description="The claims parameter must be a JSON object (OIDC Core 5.5).", request=request
            )
        request.claims = claims


class OfflineAccessBearerToken(BearerToken):
    def create_token(self, request, refresh_token=False, **kwargs):
        # OIDC Core 11: a refresh token is the grant of offline_access, and nothing else.
        refresh_token = refresh_token and OFFLINE_ACCESS in (request.scopes or [])
        token = super().create_token(request, refresh_token=refresh_token, **kwargs)
        # RFC 6749 5.1: "scope" is the access token's, which RFC 8707 narrows to its resource.
        if "scope" in token:
            token["scope"] = " ".join(self.request_validator.get_access_token_scopes(request))
        return token


def _client_id_mismatch(request) -> errors.OAuth2Error:
    return errors.InvalidRequestError(
        description="client_id is not the client that authenticated.", request=request
    )


class DeviceCodeGrant(OAuth2DeviceCodeGrant):
    """oauthlib's device grant with the two things it lacks: token modifiers (the ID token) run on
    the token response, and a confidential client may authenticate with HTTP Basic alone at the
    device authorization endpoint (RFC 8628 3.1 applies RFC 6749 3.2.1 there, which oauthlib's
    "client_id is required" check does not allow)."""

    def create_token_response(self, request, token_handler):
        headers = self._get_default_headers()
        try:
            self.validate_token_request(request)
        except errors.OAuth2Error as e:
            headers.update(e.headers)
            return headers, e.json, e.status_code
        token = token_handler.create_token(request, self.refresh_token)
        for modifier in self._token_modifiers:
            token = modifier(token, token_handler, request)
        self.request_validator.save_token(token, request)
        return headers, json.dumps(token), 200

    # oauthlib answers a body client_id other than the authenticated client's with server_error
    # ("Discrepency found"); RFC 6749 5.2: the request is malformed, invalid_request (HTTP 400).
    def validate_client_confidential(self, request) -> None:
        try:
            super().validate_client_confidential(request)
        except errors.ServerError as exc:
            raise _client_id_mismatch(request) from exc

    def validate_client_public(self, request) -> None:
        try:
            super().validate_client_public(request)
        except errors.ServerError as exc:
            raise _client_id_mismatch(request) from exc

    def validate_device_authorization_request(self, request) -> None:
        for param in ("client_id", "scope", "acr_values"):
            if param in request.duplicate_params:
                raise errors.InvalidRequestFatalError(
                    description=f"Duplicate {param} parameter.", request=request
                )
        if self.request_validator.client_authentication_required(request):
            self.validate_client_confidential(request)  # sets request.client_id from the credentials
        elif not request.client_id:
            raise errors.MissingClientIdError(request=request)
        else:
            self.validate_client_public(request)
        if not self.request_validator.validate_grant_type(
            request.client_id, DEVICE_CODE_GRANT, request.client, request
        ):
            raise errors.UnauthorizedClientError(request=request)
        self.validate_scopes(request)


class OIDCDeviceCodeGrant(OpenIDGrantTypeBase):
    """The device grant with an ID token when ``openid`` was granted (as for a code exchange)."""

    def __init__(self, request_validator=None, **kwargs):
        self.proxy_target = DeviceCodeGrant(request_validator=request_validator, **kwargs)
        self.register_token_modifier(self.add_id_token)


# The values of DOT's Application.authorization_grant_type this server can serve: the code flow
# (with its refresh grant) and client credentials. DOT also offers implicit, password, device and
# hybrid; Server has no such grant (RFC 9700 2.1.2, 2.4), so a client registered with one could
# only ever get `unsupported_grant_type`. The admin and oidc_createclient offer only these.
CLIENT_GRANT_TYPES = ("authorization-code", "client-credentials")


class _DeviceAuthorizationEndpoint(DeviceAuthorizationEndpoint):
    """RFC 8628 3.1/3.2 with our settings (read per request, so override_settings works), our
    codes (internal/devices.py: the user code of RFC 8628 6.1, both stored hashed) and storage."""

    @property
    def verification_uri(self) -> str:
        return self.request_validator.device_verification_uri()

    @property
    def interval(self) -> int:
        return app_settings.DEVICE_POLL_INTERVAL_SECONDS

    def create_device_authorization_response(self, uri, http_method="POST", body=None, headers=None):
        request = Request(uri, http_method, body, headers)
        try:
            self.device_code_grant.validate_device_authorization_request(request)
            device_code, user_code, expires_in = self.request_validator.save_device_authorization(request)
        except errors.OAuth2Error as error:
            return {**error.headers}, error.json, error.status_code
        verification_uri = self.verification_uri
        data = {
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": verification_uri,
            # RFC 8628 3.3.1: for a QR code; the page still asks the user to confirm (5.4).
            "verification_uri_complete": f"{verification_uri}?user_code={user_code}",
            "expires_in": expires_in,
            "interval": self.interval,
        }
        return {"Content-Type": "application/json", "Cache-Control": "no-store"}, json.dumps(data), 200


class Server(
    _DeviceAuthorizationEndpoint,
    AuthorizationEndpoint,
    IntrospectEndpoint,
    TokenEndpoint,
    ResourceEndpoint,
    RevocationEndpoint,
    UserInfoEndpoint,
):
    """Constructed by DOT with its ``server_kwargs``; lifetimes and generators are ours, so the
    DOT keys that would set them are ignored on purpose (one source of truth)."""

    def __init__(self, request_validator, *args, **kwargs):
        self.bearer = OfflineAccessBearerToken(
            request_validator,
            token_generator=request_validator.generate_access_token,
            # RFC 8707: the resource server's lifetime when the token is for one, else the site's.
            expires_in=request_validator.get_access_token_lifetime,
            refresh_token_generator=generate_refresh_token,
        )
        self.auth_grant = S256OnlyCodeGrant(request_validator)
        self.openid_connect_auth = S256OnlyOIDCCodeGrant(request_validator)
        self.refresh_grant = RefreshTokenGrant(request_validator)
        self.credentials_grant = ClientCredentialsGrant(request_validator)
        self.device_grant = OIDCDeviceCodeGrant(request_validator)

        AuthorizationEndpoint.__init__(
            self,
            default_response_type="code",
            response_types={
                "code": AuthorizationCodeGrantDispatcher(
                    default_grant=self.auth_grant, oidc_grant=self.openid_connect_auth
                )
            },
            default_token_type=self.bearer,
        )
        TokenEndpoint.__init__(
            self,
            default_grant_type="authorization_code",
            grant_types={
                "authorization_code": AuthorizationTokenGrantDispatcher(
                    request_validator, default_grant=self.auth_grant, oidc_grant=self.openid_connect_auth
                ),
                "refresh_token": self.refresh_grant,
                "client_credentials": self.credentials_grant,
                DEVICE_CODE_GRANT: self.device_grant,
            },
            default_token_type=self.bearer,
        )
        ResourceEndpoint.__init__(self, default_token="Bearer", token_types={"Bearer": self.bearer})
        RevocationEndpoint.__init__(self, request_validator)
        IntrospectEndpoint.__init__(self, request_validator)
        UserInfoEndpoint.__init__(self, request_validator)
        # verification_uri comes from the issuer per request (the property above), not from here.
        _DeviceAuthorizationEndpoint.__init__(self, request_validator, verification_uri=None)  # type: ignore[call-arg]
        self.device_code_grant = self.device_grant.proxy_target


class OAuthLibCore(DOTOAuthLibCore):
    """DOT's bridge from Django requests to our oauthlib ``Server`` (``OAUTH2_BACKEND_CLASS``), with
    the one thing our views need that DOT does not offer publicly."""

    def authenticated_client(self, request):
        """The client that authenticated ``request`` (RFC 6749 2.3.1), or None."""
        uri, http_method, body, headers = self._extract_params(request)  # DOT private: docs/architecture.md
        oauth_request = Request(uri, http_method, body, headers)
        if not self.server.request_validator.authenticate_client(oauth_request):
            return None
        return oauth_request.client
