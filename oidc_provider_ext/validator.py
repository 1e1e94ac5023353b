"""The single bridge between this app and DOT/oauthlib: the only module that touches oauthlib's
request object. Views and models never reach into oauthlib internals."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from jwcrypto import jws
from jwcrypto.common import JWException
from oauth2_provider.models import (
    AbstractApplication,
    get_access_token_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
    revoke_access_token,
)
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauthlib.oauth2.rfc6749 import errors

from . import keys
from .adapter import get_adapter
from .conf import app_settings
from .models import RedeemedCode

log = logging.getLogger(__name__)

Grant = get_grant_model()
AccessToken = get_access_token_model()
RefreshToken = get_refresh_token_model()
IDToken = get_id_token_model()

_NO_GRANT = object()


def checksum(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


class OIDCValidator(OAuth2Validator):
    # --- clients -------------------------------------------------------------------------------

    def get_default_redirect_uri(self, client_id, request, *args, **kwargs):
        # OIDC Core 3.1.2.1: redirect_uri is REQUIRED, so there is no default. At the token
        # endpoint, RFC 6749 4.1.3 requires it whenever the authorization request carried it,
        # which is always.
        return None

    def validate_response_type(self, client_id, response_type, client, request, *args, **kwargs):
        # RFC 9700 2.1.2: the authorization code flow only; hybrid types containing "code" reach
        # here too and are unsupported (RFC 6749 4.1.2.1), not merely unauthorized for this client.
        if response_type != "code":
            raise errors.UnsupportedResponseTypeError(request=request)
        return client.allows_grant_type(AbstractApplication.GRANT_AUTHORIZATION_CODE)

    def is_pkce_required(self, client_id, request):
        client = request.client or self._load_application(client_id, request)
        if client is None:
            return True
        # RFC 7636 / RFC 9700 2.1.1: public clients cannot authenticate, so PKCE binds the code.
        if client.client_type == AbstractApplication.CLIENT_PUBLIC:
            return True
        profile = getattr(client, "oidc_profile", None)
        return bool(profile and profile.require_pkce)

    # --- authorization codes -------------------------------------------------------------------

    def _create_authorization_code(self, request, code, expires=None):
        expires = timezone.now() + timedelta(seconds=app_settings.CODE_EXPIRE_SECONDS)
        return super()._create_authorization_code(request, code, expires=expires)

    def _grant(self, code, request):
        """The Grant row for ``code``, loaded once per token request."""
        cached = getattr(request, "_oidc_grant", _NO_GRANT)
        if cached is _NO_GRANT or (cached is not None and cached.code != code):
            cached = Grant.objects.select_related("user").filter(code=code).first()
            request._oidc_grant = cached
        return cached

    def validate_code(self, client_id, code, client, request, *args, **kwargs):
        grant = self._grant(code, request)
        code_checksum = checksum(code)
        if grant is None or grant.application_id != client.pk:
            # Unknown code, another client's code, or a code already redeemed (its Grant row is
            # deleted on redemption). RFC 6749 4.1.2: deny, and revoke what a redeemed code issued.
            if grant is None:
                self._code_replayed(code_checksum, client)
            return False
        if grant.is_expired():
            return False
        try:
            with transaction.atomic():
                redeemed = RedeemedCode.objects.create(code_checksum=code_checksum, application=client)
        except IntegrityError:
            # Lost the race against a concurrent redemption of the same code.
            self._code_replayed(code_checksum, client)
            return False
        request._oidc_redeemed_code = redeemed
        request.scopes = grant.scope.split(" ")
        request.user = grant.user
        if grant.nonce:
            request.nonce = grant.nonce
        if grant.claims:
            request.claims = json.loads(grant.claims)
        return True

    def _code_replayed(self, code_checksum, client):
        redeemed = (
            RedeemedCode.objects.filter(code_checksum=code_checksum, application=client)
            .select_related("access_token")
            .first()
        )
        if redeemed is None:
            return
        log.warning(
            "Authorization code replayed for client %s; revoking the tokens it issued.", client.client_id
        )
        RedeemedCode.objects.filter(pk=redeemed.pk).update(reuse_detected=True)
        self._revoke_redeemed(redeemed)

    @staticmethod
    def _revoke_redeemed(redeemed):
        if redeemed.token_family:
            RefreshToken.revoke_family(redeemed.token_family)
        if redeemed.access_token is not None:
            revoke_access_token(redeemed.access_token)

    def confirm_redirect_uri(self, client_id, code, redirect_uri, client, *args, **kwargs):
        request = kwargs.get("request") or (args[0] if args else None)
        grant = self._grant(code, request) if request is not None else Grant.objects.filter(code=code).first()
        # RFC 6749 4.1.3: identical to the redirect_uri of the authorization request.
        return grant is not None and grant.application_id == client.pk and grant.redirect_uri == redirect_uri

    def get_code_challenge(self, code, request):
        grant = self._grant(code, request)
        return (grant.code_challenge or None) if grant else None

    def get_code_challenge_method(self, code, request):
        grant = self._grant(code, request)
        return (grant.code_challenge_method or None) if grant else None

    def get_authorization_code_scopes(self, client_id, code, redirect_uri, request):
        grant = self._grant(code, request)
        return grant.scope.split(" ") if grant and grant.scope else []

    def get_authorization_code_nonce(self, client_id, code, redirect_uri, request):
        grant = self._grant(code, request)
        return (grant.nonce or None) if grant else None

    # --- tokens ----------------------------------------------------------------------------------

    def _create_access_token(self, expires, request, token, source_refresh_token=None):
        # Reuse the IDToken row finalize_id_token just saved instead of re-parsing the JWT.
        id_token = getattr(request, "id_token", None)
        access_token = AccessToken(
            user=request.user,
            scope=token["scope"],
            expires=expires,
            id_token=id_token if isinstance(id_token, IDToken) else None,
            application=request.client,
            source_refresh_token=source_refresh_token,
            resource=getattr(request, "resource", []),
        )
        self._set_token_value(access_token, token["access_token"])
        access_token.save()
        request._oidc_access_token = access_token
        return access_token

    def _create_refresh_token(self, request, refresh_token_code, access_token, previous_refresh_token):
        refresh_token = super()._create_refresh_token(
            request, refresh_token_code, access_token, previous_refresh_token
        )
        request._oidc_refresh_token = refresh_token
        return refresh_token

    def _save_bearer_token(self, token, request, *args, **kwargs):
        super()._save_bearer_token(token, request, *args, **kwargs)
        redeemed = getattr(request, "_oidc_redeemed_code", None)
        if redeemed is None:
            return
        access_token = getattr(request, "_oidc_access_token", None)
        refresh_token = getattr(request, "_oidc_refresh_token", None)
        linked = RedeemedCode.objects.filter(pk=redeemed.pk, reuse_detected=False).update(
            access_token=access_token, token_family=refresh_token.token_family if refresh_token else None
        )
        if not linked:
            # A replay of this code arrived while we were minting: revoke what we just issued.
            redeemed.access_token = access_token
            redeemed.token_family = refresh_token.token_family if refresh_token else None
            self._revoke_redeemed(redeemed)

    # --- OpenID Connect --------------------------------------------------------------------------

    def validate_silent_login(self, request):
        # prompt=none is decided by the authorization view, which knows the browser session.
        return True

    def validate_silent_authorization(self, request):
        return True

    def get_oidc_claims(self, token, token_handler, request):
        claims = {"sub": get_adapter().get_subject(request.user)}
        claims.update(get_adapter().get_user_claims(request.user, list(request.scopes or [])))
        return claims

    def get_discovery_claims(self, request):
        return ["sub", "name", "given_name", "family_name", "preferred_username", "email", "email_verified"]

    def get_id_token_dictionary(self, token, token_handler, request):
        claims = self.get_oidc_claims(token, token_handler, request)
        now = int(time.time())
        expires = timezone.now() + timedelta(seconds=app_settings.ID_TOKEN_EXPIRE_SECONDS)
        auth_time = request.user.last_login or timezone.now()
        claims.update(
            iss=app_settings.ISSUER,
            iat=now,
            exp=now + app_settings.ID_TOKEN_EXPIRE_SECONDS,
            auth_time=int(auth_time.timestamp()),
            azp=request.client.client_id,
            jti=str(uuid.uuid4()),
        )
        return claims, expires

    def finalize_id_token(self, id_token, token, token_handler, request):
        claims, expires = self.get_id_token_dictionary(token, token_handler, request)
        id_token.update(claims)
        if "nonce" not in id_token and request.nonce:
            id_token["nonce"] = request.nonce
        signed = keys.sign(id_token, typ="JWT", alg=keys.alg_for_client(request.client))
        with transaction.atomic():
            request.id_token = self._save_id_token(id_token["jti"], request, expires)
        return signed

    def _get_key_for_token(self, token):
        """The published key named by the token's ``kid`` (any state), or None."""
        try:
            unverified = jws.JWS()
            unverified.deserialize(token)
            kid = unverified.jose_header.get("kid")
        except (JWException, ValueError, TypeError):
            return None
        return keys.verification_key(kid) if kid else None
