"""The single bridge between this app and DOT/oauthlib: the only module that touches oauthlib's
request object. Views and models never reach into oauthlib internals."""

from __future__ import annotations

import hashlib
import logging
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.db import router
from django.db.models import F
from django.urls import reverse
from django.utils import timezone
from jwcrypto import jws
from jwcrypto.common import JWException
from oauth2_provider.models import (
    AbstractApplication,
    get_access_token_model,
    get_application_model,
    get_refresh_token_model,
)
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.settings import oauth2_settings
from oauthlib.oauth2.rfc6749 import errors, utils
from oauthlib.openid.connect.core.grant_types.base import GrantTypeBase

from . import keys, throttle
from .adapter import MemberHint, get_adapter
from .conf import app_settings
from .internal import cors, devices, lookups, resources, token_writes
from .internal.clients import get_client, is_slow_hash, upgrade_secret_hash
from .internal.lookups import Lookup
from .internal.requests import error_description
from .models import AuthorizationGrant, DeviceAuthorization
from .models.grants import grant_extras, grant_tenant_member_extra, revoke_issued, with_grant
from .tenants import TenantError, default_tenant, parse_acr_values, resolve_requested_tenant
from .tokens import mint_access_token, subject_for

log = logging.getLogger(__name__)

Application = get_application_model()
AccessToken = get_access_token_model()
RefreshToken = get_refresh_token_model()

_NOT_LOADED = object()


@dataclass
class _State:
    """What the validator's hooks pass to each other during one oauthlib request (one attribute,
    instead of ad-hoc ones on oauthlib's request)."""

    grant: Any = _NOT_LOADED  # the AuthorizationGrant behind the code / refresh token / access token
    client_auth: throttle.ClientAuthAttempt | None = None  # set only while authenticating a client
    audience: resources.Audience | None = None  # RFC 8707: the resource server of this token
    op_session_live: bool = False  # the code's OP session exists and has not ended
    # A code exchange's tokens, signed before its write transaction: (access token, ID token)
    signed_ahead: tuple[str, str | None] | None = None


def _state(request) -> _State:
    # Not getattr: oauthlib's Request answers unknown attributes with the request's parameters, so
    # a client could send "oidc_state=x". The instance dict holds only what we set.
    return vars(request).setdefault("_oidc_state", _State())


def checksum(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def one(queryset):
    """The row of a lookup that matches at most one (a unique checksum): ``.first()`` without the
    ``ORDER BY pk`` it adds, whose compilation is a quarter of such a query's ORM cost."""
    return next(iter(queryset[:1]), None)


_access_token_lookups: dict[type, Lookup] = {}


def _access_token_lookup() -> Lookup:
    model = get_access_token_model()  # per call: a test may swap the model
    lookup = _access_token_lookups.get(model)
    if lookup is None:
        lookup = _access_token_lookups[model] = Lookup(
            model,
            by=["token_checksum"],
            joins=["application", "user"],
            extras=[*grant_extras(model, "claims", "tenant"), grant_tenant_member_extra(model)],
        )
    return lookup


def access_token_with_grant(token: str):
    """The stored access token ``token`` (+client, user) with ``grant_pk``, ``grant_claims`` and
    ``grant_tenant`` of its grant (models/grants.py with_grant), or None: one statement, its SQL
    written once per process (internal/lookups.py) where the database allows."""
    lookup = _access_token_lookup()
    using = router.db_for_read(lookup.model)
    if lookup.supported(using):
        return lookup.one(checksum(token), using=using)
    return one(
        with_grant(
            get_access_token_model()
            .objects.using(using)
            .select_related("application", "user")
            .filter(token_checksum=checksum(token)),
            "claims",
            "tenant",
        )
    )


def _requested(claims: dict | None, member: str) -> list[str]:
    """Claim names requested for ``member`` ("id_token" or "userinfo") by the claims parameter."""
    section = (claims or {}).get(member) or {}
    return list(section) if isinstance(section, dict) else []


def pkce_required_for(client) -> bool:
    if client is None:
        return True
    # RFC 7636 / RFC 9700 2.1.1: public clients cannot authenticate, so PKCE binds the code.
    if client.client_type == AbstractApplication.CLIENT_PUBLIC:
        return True
    profile = getattr(client, "oidc_profile", None)
    return bool(profile and profile.require_pkce)


# RFC 8252 7.3: a loopback IP literal (not "localhost", 8.3) with an optional port of 1-65535
# written without leading zeros.
_LOOPBACK_AUTHORITY = re.compile(r"(127\.0\.0\.1|\[::1\])(?::([1-9][0-9]{0,4}))?")


def _loopback_parts(uri: str) -> tuple[str, str] | None:
    """(host, everything after the authority) of an ``http://`` loopback URI, else None."""
    if not uri.startswith("http://"):
        return None
    authority, sep, rest = uri[len("http://") :].partition("/")
    match = _LOOPBACK_AUTHORITY.fullmatch(authority)
    if match is None:
        return None
    if match[2] and int(match[2]) > 65535:
        return None
    return match[1], sep + rest


def redirect_uri_allowed(client, uri: str) -> bool:
    """Whether ``uri`` may receive ``client``'s authorization response.

    RFC 9700 2.1 / 4.1.3 and OIDC Core 3.1.2.1: simple string comparison with a registered URI.
    The only exception is RFC 8252 7.3: for a native (public) client, a registered ``http``
    loopback IP literal matches the same URI on any port 1-65535. Replaces DOT's matcher, which
    lets every client's loopback port vary, and did not check the port's range.
    """
    if "#" in uri:  # RFC 6749 3.1.2: never a fragment
        return False
    try:
        if urlsplit(uri).port == 0:  # RFC 6335 6: ports are 1-65535
            return False
    except ValueError:  # above 65535, or not a number
        return False
    registered = client.redirect_uris.split()
    if uri in registered:
        return True
    requested = _loopback_parts(uri)
    if requested is None or client.client_type != AbstractApplication.CLIENT_PUBLIC:
        return False
    return any(_loopback_parts(candidate) == requested for candidate in registered)


DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class TooManyPendingError(errors.OAuth2Error):
    """The device authorization endpoint's answer when its storage bound is reached (DESIGN.md
    "Anonymous requests"): RFC 6749's temporarily_unavailable, as 429 with Retry-After."""

    error = "temporarily_unavailable"
    status_code = 429
    description = "Too many device authorizations are waiting for users; try again later."

    @property
    def headers(self):
        return {**super().headers, "Retry-After": "60"}


class TooManyFromAddressError(TooManyPendingError):
    """One address started too many device authorizations (throttle.device_authorization_allowed)."""

    description = "Too many device authorizations were started from this address; try again later."


def device_flow_allowed(client) -> bool:
    """Whether ``client`` may use the device authorization grant (RFC 8628): its profile says so
    and it is a client of the code flow (users sign in to it, it is no machine client)."""
    profile = getattr(client, "oidc_profile", None)
    return bool(
        client is not None
        and profile is not None
        and profile.allow_device_flow
        and client.allows_grant_type(AbstractApplication.GRANT_AUTHORIZATION_CODE)
    )


def _registration_still_allowed(client) -> bool:
    """A client ID metadata document client stands on its document, which is only re-read while
    CLIENT_ID_METADATA_DOCUMENTS is on: off, such clients are unknown (docs/registration.md)."""
    return (
        client.registration_source != Application.RegistrationSource.CIMD
        or app_settings.CLIENT_ID_METADATA_DOCUMENTS
    )


class OIDCValidator(OAuth2Validator):
    # --- clients -------------------------------------------------------------------------------

    def authenticate_client(self, request, *args, **kwargs):
        # RFC 6749 2.3.1 client authentication, throttled per (client_id, address) and per address
        # (oidc_provider_ext.throttle; an IPv6 address counts as its /64): DOT's Basic and body
        # paths both load the client through _load_application before checking a secret, which
        # refuses there when over a limit. Refused or wrong, the answer is the same RFC 6749 5.2
        # invalid_client. A success marks the (client_id, address) pair as proven.
        attempt = throttle.ClientAuthAttempt(throttle.client_ip(request.headers))
        _state(request).client_auth = attempt
        try:
            authenticated = super().authenticate_client(request, *args, **kwargs)
        finally:
            _state(request).client_auth = None
        if not authenticated:
            attempt.failed()
        elif request.client is not None:
            attempt.succeeded(request.client.client_id)
        return authenticated

    def _load_application(self, client_id, request):
        attempt = _state(request).client_auth
        if attempt is not None and client_id and not attempt.allows(client_id):
            request.client = None
            return None  # DOT answers "not authenticated" without checking a secret
        client = request.client
        if isinstance(client, Application) and client.client_id == client_id:
            return client
        client = get_client(client_id)
        if client is None or not client.is_usable(request) or not _registration_still_allowed(client):
            request.client = None
            if attempt is not None and client_id:
                # No secret to check: pay what a wrong secret costs, so timing does not tell
                # which client ids exist.
                throttle.dummy_verify(client_id)
            return None
        request.client = client
        return client

    def _check_secret(self, provided_secret, stored_secret):
        valid = super()._check_secret(provided_secret, stored_secret)
        if valid:
            upgrade_secret_hash(stored_secret, provided_secret)
        elif not is_slow_hash(stored_secret):
            # A fast hash (generated secret) or a plain value failed: pay the slow hasher's cost
            # like a wrong human-chosen secret and an unknown client do. Success stays fast.
            throttle.dummy_verify(provided_secret)
        return valid

    def _extract_basic_auth(self, request):
        # RFC 7617 credentials are base64, i.e. ASCII; DOT passes anything else to b64decode, which
        # raises a ValueError DOT does not catch (a 500). Not ASCII: no Basic credentials at all.
        auth_string = super()._extract_basic_auth(request)
        return auth_string if auth_string is None or auth_string.isascii() else None

    def is_origin_allowed(self, client_id, origin, request, *args, **kwargs):
        # The CORS rule is internal/cors.py's (the views apply it to every response, errors too);
        # oauthlib asks here only for successful token responses, and gets the same answer.
        return cors.origin_allowed(origin, [client_id])

    def validate_grant_type(self, client_id, grant_type, client, request, *args, **kwargs):
        if grant_type == DEVICE_CODE_GRANT:
            # RFC 8628: only clients the operator allowed (ClientProfile.allow_device_flow).
            return device_flow_allowed(client)
        if not super().validate_grant_type(client_id, grant_type, client, request, *args, **kwargs):
            return False
        if grant_type != "client_credentials":
            return True
        # The account-state rule for a client acting for itself (adapter.may_use_client).
        if not get_adapter().may_use_client(None, client, ""):
            return False
        # RFC 8707 2.2 for a client acting for itself: any resource it is allowed, no tenant.
        self._bind_audience(request, client, "", authorized=None, previous=[])
        return True

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
        return pkce_required_for(request.client or self._load_application(client_id, request))

    def validate_redirect_uri(self, client_id, redirect_uri, request, *args, **kwargs):
        return redirect_uri_allowed(request.client, redirect_uri)

    # --- authorization codes -------------------------------------------------------------------

    def save_authorization_code(self, client_id, code, request, *args, **kwargs):
        context = request.oidc_context  # set by the authorization view through credentials
        grant = AuthorizationGrant(
            code_checksum=checksum(code["code"]),
            application=request.client,
            user=request.user,
            op_session_id=context["op_session_id"],
            tenant=context["tenant"],
            sid=context["sid"],
            auth_time=datetime.fromtimestamp(context["auth_time"], tz=UTC),
            acr=context["acr"],
            amr=context["amr"],
            redirect_uri=request.redirect_uri,
            scope=" ".join(request.scopes),
            code_challenge=request.code_challenge or "",
            code_challenge_method=request.code_challenge_method or "",
            nonce=request.nonce or "",
            claims=request.claims or {},
            resource=list(context.get("resource") or ()),
            expires=timezone.now() + timedelta(seconds=app_settings.CODE_EXPIRE_SECONDS),
        )
        lookups.insert(grant)  # objects.create(), its INSERT written once

    def _grant(self, code, request) -> AuthorizationGrant | None:
        """The grant behind ``code``, loaded once per token request."""
        code_checksum = checksum(code)
        state = _state(request)
        grant = state.grant
        if grant is _NOT_LOADED or (grant is not None and grant.code_checksum != code_checksum):
            # With its user, and whether its OP session is live: one statement, SQL built once.
            grant, state.op_session_live = lookups.grant_by_code(code_checksum)
            state.grant = grant
        return grant

    def validate_code(self, client_id, code, client, request, *args, **kwargs):
        grant = self._grant(code, request)
        if grant is None or grant.application_id != client.pk:
            return False
        if grant.redeemed is not None:
            self._code_replayed(grant)
            return False
        if grant.expires <= timezone.now():
            return False
        # A code dies with the OP session it was issued in (logout, sign-out elsewhere) and with the
        # user's right to use the client (deactivation, end of the tenant membership).
        if not _state(request).op_session_live:
            return False
        if not get_adapter().may_use_client(
            grant.user, client, grant.tenant, **member_hint(grant, grant.tenant)
        ):
            return False
        # Before the lock: a refused resource leaves the code redeemable with the right one.
        self._bind_audience(request, client, grant.tenant, authorized=grant.resource, previous=[])
        request.scopes = grant.scopes
        request.user = grant.user
        request.nonce = grant.nonce or None
        request.claims = grant.claims
        # Signed before the write transaction, which then holds the SQLite write lock for the
        # writes alone (internal/token_writes.py). A request that loses the lock below discards them.
        self._sign_ahead(request)
        token_writes.begin()
        # The single-use lock: exactly one concurrent request turns redeemed from NULL to a time.
        # The row's expiry is part of it: a logout, consent revocation or deactivation committing
        # between the checks above and this UPDATE expired the code in this very row
        # (AuthorizationGrant.objects.revoke_tokens), and PostgreSQL re-checks a row it waited for.
        now = timezone.now()
        won = lookups.update(
            AuthorizationGrant, grant.pk, {"redeemed": now}, redeemed__isnull=True, expires__gt=now
        )
        if not won:
            _state(request).signed_ahead = None
            self._code_replayed(grant)
            return False
        return True

    def _sign_ahead(self, request) -> None:
        """Sign the code exchange's access token and ID token now (see validate_code); oauthlib
        then takes them from generate_access_token and get_id_token."""
        access_token = self._mint_access_token(request)
        id_token = None
        if "openid" in request.scopes:
            # What oauthlib's add_id_token starts from (OIDC Core 3.1.3.6), then finalize_id_token.
            claims: dict[str, Any] = {
                "aud": request.client.client_id,
                "iat": int(time.time()),
                # oauthlib's own at_hash (its id_token_hash uses nothing of its instance).
                "at_hash": GrantTypeBase.id_token_hash(None, access_token),
            }
            if request.nonce is not None:
                claims["nonce"] = request.nonce
            id_token = self.finalize_id_token(claims, {"access_token": access_token}, None, request)
        _state(request).signed_ahead = (access_token, id_token)

    def _code_replayed(self, grant: AuthorizationGrant) -> None:
        # RFC 6749 4.1.2: deny, and revoke the tokens previously issued from this code.
        token_writes.begin()
        log.warning("Authorization code replayed for client %s; revoking its tokens.", grant.application_id)
        if not AuthorizationGrant.objects.filter(pk=grant.pk).update(reuse_detected=True):
            # Read before the transaction, deleted since (its client or user deleted, cleanup):
            # nothing left to revoke, and refresh_from_db would raise DoesNotExist (a 500).
            return
        grant.refresh_from_db(fields=["access_token", "token_family"])
        self._revoke_grant_tokens(grant)

    @staticmethod
    def _revoke_grant_tokens(grant: AuthorizationGrant) -> None:
        revoke_issued([grant.access_token_id], [grant.token_family])

    def invalidate_authorization_code(self, client_id, code, request, *args, **kwargs):
        # Nothing to do: validate_code already consumed the code, atomically.
        pass

    def confirm_redirect_uri(self, client_id, code, redirect_uri, client, request, *args, **kwargs):
        grant = self._grant(code, request)
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
        return grant.scopes if grant else []

    def get_authorization_code_nonce(self, client_id, code, redirect_uri, request):
        grant = self._grant(code, request)
        return (grant.nonce or None) if grant else None

    # --- refresh tokens ----------------------------------------------------------------------------

    def validate_refresh_token(self, refresh_token, client, request, *args, **kwargs):
        """Replaces DOT's: its reuse protection revokes the family without the grant lock and
        deadlocks against a concurrent rotation on PostgreSQL; this one is race-free."""
        # With its user and access token (get_original_scopes reads it); the live row first.
        rt = lookups.refresh_token_by_checksum(checksum(refresh_token))
        if rt is None:
            return False
        if rt.revoked is not None:
            # RFC 9700 4.14.2: a used or revoked token presented again means it was stolen.
            if oauth2_settings.REFRESH_TOKEN_REUSE_PROTECTION:
                self._refresh_token_replayed(rt.token_family)
            return False
        if rt.application_id != client.pk or rt.access_token_id is None:
            return False  # another client's token, or an orphan whose access token was revoked
        if rt.created + timedelta(seconds=app_settings.REFRESH_TOKEN_EXPIRE_SECONDS) <= timezone.now():
            return False
        # Lock order, everywhere: the grant (the family's lock), then refresh tokens. The request's
        # write transaction opens here (internal/token_writes.py), so the lock holds until our new
        # tokens are committed.
        family = rt.token_family
        token_writes.begin()
        grant = lookups.grant_of_family_for_update(family) if family else None
        if grant is not None:
            # Before the token is consumed: a refused resource does not cost the client its family.
            previous = rt.access_token.resource if rt.access_token is not None else []
            self._bind_audience(request, client, grant.tenant, authorized=grant.resource, previous=previous)
        if request.scope and grant is not None:
            # RFC 6749 6: a scope not originally granted is invalid_scope. oauthlib checks it only
            # after this method consumed the token, and the retry would then be taken for a replay
            # (RFC 9700 4.14.2) and revoke the family: refused here, before the token is consumed.
            original = set(utils.scope_to_list(self._original_scopes(rt, grant)))
            if not set(utils.scope_to_list(request.scope)) <= original:
                raise errors.InvalidScopeError(request=request)
        # The single-use lock, as for codes: exactly one concurrent request consumes the token. A
        # loser presents an already-used token, which RFC 9700 4.14.2 treats as theft.
        # Still bound to the access token read above: one revoked since (RFC 7009; DOT deletes it
        # and SET NULLs this column) left an orphan, refused as above, read before this transaction.
        if not lookups.update(
            RefreshToken,
            rt.pk,
            {"revoked": timezone.now()},
            revoked__isnull=True,
            access_token=rt.access_token_id,
        ):
            if RefreshToken.objects.filter(pk=rt.pk, revoked__isnull=True).exists():
                return False  # orphaned meanwhile, not used: no replay (the rare path's one query)
            self._refresh_token_replayed(family)
            return False
        if grant is None:
            # Every refresh token this provider issues descends from a grant (its auth_time, acr,
            # tenant and the family's revocation): without it the token cannot be honoured.
            return False
        request.user = rt.user
        request.refresh_token = refresh_token
        request.refresh_token_instance = rt
        # Tokens live only as long as the user may use the client (in that tenant): a deactivated
        # user or an ended membership refreshes nothing.
        # Asked here, after the grant's row lock: the locking statement reads in a snapshot taken
        # before it waited (PostgreSQL), which would miss a membership ended meanwhile.
        if not get_adapter().may_use_client(request.user, client, grant.tenant):
            return False
        _state(request).grant = grant
        request.claims = grant.claims
        return True

    def get_original_scopes(self, refresh_token, request, *args, **kwargs):
        grant = _state(request).grant
        if grant is not None and grant is not _NOT_LOADED:
            return self._original_scopes(request.refresh_token_instance, grant)
        return super().get_original_scopes(refresh_token, request, *args, **kwargs)

    @staticmethod
    def _original_scopes(rt, grant: AuthorizationGrant):
        if grant.resource:
            # An access token for a resource carries only that resource's scopes; the grant holds
            # what the user granted (RFC 6749 6: "originally granted by the resource owner").
            return grant.scopes
        return rt.access_token.scope

    @staticmethod
    def _refresh_token_replayed(family) -> None:
        if not family:
            return
        token_writes.begin()
        log.warning("Refresh token replayed; revoking its family %s.", family)
        # Marking the grant takes its row lock first (the lock order of every token path): it waits
        # for a concurrent winner still minting in this family, so the revocation catches its tokens.
        AuthorizationGrant.objects.filter(token_family=family).update(reuse_detected=True)
        RefreshToken.revoke_family(family)

    # --- resource indicators (RFC 8707) -----------------------------------------------------------

    @staticmethod
    def _requested_resources(request) -> list[str]:
        # RFC 8707 2: the parameter may repeat; oauthlib keeps only its last value.
        values = [value for key, value in (getattr(request, "decoded_body", None) or []) if key == "resource"]
        single = request.resource
        return values or ([single] if isinstance(single, str) and single else [])

    def _bind_audience(self, request, client, tenant: str, *, authorized, previous) -> None:
        """Decide the one resource server this token request's access token is for.

        RFC 8707 2.2: a token request names at most one of the resources ``authorized`` (the
        grant's; None: any registered one, for client credentials). One audience per token: a
        token request naming several is refused (invalid_target), the client asks one token per
        resource (a refresh token can be exchanged for each). Naming none: the previous access
        token's resource (a refresh keeps its audience), else the grant's only one; a grant for
        several resources must name one. No resource anywhere: ``aud`` is the client, as before.
        Every resource is checked again (still enabled, client still allowed, tenant).
        """
        requested = self._requested_resources(request)
        request.resource = list(authorized or [])  # what DOT's refresh-token row stores: the grant's
        if len(requested) > 1:
            raise self._invalid_target(
                request, "Request one resource per token request (RFC 8707 section 2.2)."
            )
        if requested:
            identifier = requested[0]
            if authorized is not None and identifier not in authorized:
                raise self._invalid_target(request, "The resource was not part of the authorization request.")
        elif previous:
            identifier = previous[0]
        elif authorized and len(authorized) == 1:
            identifier = authorized[0]
        elif authorized:
            raise self._invalid_target(
                request, "The grant is for several resources: name one with the resource parameter."
            )
        else:
            # The token's aud would be the client_id: never one a resource server answers to.
            if resources.is_identifier_of_a_resource_server(client.client_id):
                raise self._invalid_target(request, resources.CLIENT_ID_IS_A_RESOURCE)
            _state(request).audience = None
            return
        try:
            (server,) = resources.resolve([identifier], client, tenant)
        except resources.InvalidTarget as exc:
            raise self._invalid_target(request, exc.description) from exc
        _state(request).audience = resources.Audience.of(server)
        if authorized is None:
            request.resource = [server.identifier]

    @staticmethod
    def _invalid_target(request, description: str) -> errors.OAuth2Error:
        return errors.CustomOAuth2Error(
            error=resources.INVALID_TARGET, description=error_description(description), request=request
        )

    def get_access_token_lifetime(self, request) -> int:
        """``expires_in`` of the access token (server.py): the resource server's, else the site's."""
        audience = _state(request).audience
        return (audience.lifetime if audience else None) or app_settings.ACCESS_TOKEN_EXPIRE_SECONDS

    def get_access_token_scopes(self, request) -> list[str]:
        """The access token's scopes: of those granted, the ones its resource server accepts (the
        ID token and the refresh token still follow the whole grant)."""
        audience = _state(request).audience
        scopes = list(request.scopes or ())
        return [scope for scope in scopes if scope in audience.scopes] if audience else scopes

    # --- tokens ----------------------------------------------------------------------------------

    def generate_access_token(self, request) -> str:
        """oauthlib token generator (see server.py): an RFC 9068 JWT access token."""
        state = _state(request)
        if state.signed_ahead is not None:
            return state.signed_ahead[0]
        return self._mint_access_token(request)

    def get_id_token(self, token, token_handler, request):
        """oauthlib asks this first (add_id_token): the ID token signed ahead with this very access
        token, else None and oauthlib builds one through finalize_id_token."""
        ahead = _state(request).signed_ahead
        if ahead is not None and ahead[0] == token.get("access_token"):
            return ahead[1]
        return None

    def _mint_access_token(self, request) -> str:
        client_id = request.client.client_id
        audience = _state(request).audience
        common: dict[str, Any] = {
            "client_id": client_id,
            "scopes": self.get_access_token_scopes(request),
            "audience": audience.identifier if audience else None,
            "expires_in": self.get_access_token_lifetime(request),
        }
        if request.grant_type == "client_credentials":
            # RFC 9068 2.2: with no resource owner, sub identifies the client.
            return mint_access_token(subject=client_id, **common)
        extra = {}
        grant = _state(request).grant if _state(request).grant is not _NOT_LOADED else None
        if grant is not None:
            extra = {"auth_time": int(grant.auth_time.timestamp()), "acr": grant.acr, "amr": grant.amr}
            if grant.sid:
                extra["sid"] = grant.sid
            extra.update(get_adapter().get_tenant_claims(request.user, grant.tenant))
        return mint_access_token(subject=subject_for(request.user), extra=extra, **common)

    def _create_access_token(self, expires, request, token, source_refresh_token=None):
        access_token = AccessToken(
            user=request.user,
            scope=token["scope"],
            expires=expires,
            application=request.client,
            source_refresh_token=source_refresh_token,
            # RFC 8707: DOT's audience field (AccessToken.allows_audience) holds the token's aud.
            resource=[audience.identifier] if (audience := _state(request).audience) else [],
        )
        self._set_token_value(access_token, token["access_token"])
        lookups.insert(access_token)
        return access_token

    def _create_refresh_token(self, request, refresh_token_code, access_token, previous_refresh_token):
        # DOT's, with the INSERT written once (internal/lookups.py) instead of compiled.
        refresh_token = RefreshToken(
            user=request.user,
            application=request.client,
            access_token=access_token,
            token_family=previous_refresh_token.token_family if previous_refresh_token else uuid.uuid4(),
            resource=getattr(request, "resource", []),  # RFC 8707
        )
        self._set_token_value(refresh_token, refresh_token_code)
        lookups.insert(refresh_token)
        return refresh_token

    def save_bearer_token(self, token, request, *args, **kwargs):
        """Store the tokens just minted. Replaces DOT's path, which costs a dozen queries per
        refresh; the writes are one transaction (internal/token_writes.py)."""
        if "scope" not in token:
            raise errors.FatalClientError("Failed to issue the token: missing scope", request=request)
        token_writes.begin()  # (opened already where a single-use lock came first)
        expires = timezone.now() + timedelta(
            seconds=token.get("expires_in", app_settings.ACCESS_TOKEN_EXPIRE_SECONDS)
        )
        if request.grant_type == "client_credentials":
            request.user = None
            self._create_access_token(expires, request, token)
        elif request.grant_type in ("authorization_code", DEVICE_CODE_GRANT):
            self._save_code_exchange(token, request, expires)
        elif request.grant_type == "refresh_token":
            self._save_rotation(token, request, expires)

    def _save_code_exchange(self, token, request, expires) -> None:
        grant = _state(request).grant
        access_token = self._create_access_token(expires, request, token)
        family = None
        if token.get("refresh_token"):
            family = self._create_refresh_token(
                request, token["refresh_token"], access_token, None
            ).token_family
        # The grant row is locked since validate_code redeemed it; a replay waits and then sees
        # the tokens to revoke. reuse_detected can only be set already if it came first.
        linked = lookups.update(
            AuthorizationGrant,
            grant.pk,
            {"access_token": access_token.pk, "token_family": family},
            reuse_detected=False,
        )
        if not linked:
            grant.access_token_id, grant.token_family = access_token.pk, family
            self._revoke_grant_tokens(grant)

    def _save_rotation(self, token, request, expires) -> None:
        previous = request.refresh_token_instance
        access_token = self._create_access_token(expires, request, token, source_refresh_token=previous)
        if "refresh_token" in token:
            self._create_refresh_token(request, token["refresh_token"], access_token, previous)
        # else: the client narrowed the scope to leave out offline_access (RFC 6749 6 allows
        # narrowing), so it gave up offline access: an access token only, and the family ends here.
        if previous.access_token_id and list(previous.access_token.resource or []) == list(
            access_token.resource
        ):
            # Rotation retires the previous access token (expired now: introspection and userinfo
            # treat it as revoked; oidc_cleanup deletes it later without a cascade on this path)
            # when the new one replaces it: same audience. RFC 8707 2.2: a client holds one token
            # per resource, each obtained with the refresh token; a token for B leaves A's alone.
            lookups.update(AccessToken, previous.access_token_id, {"expires": timezone.now()})
        grant = _state(request).grant
        if grant is not None and grant.reuse_detected:
            RefreshToken.revoke_family(grant.token_family)

    # --- device authorization grant (RFC 8628) -----------------------------------------------------

    def device_verification_uri(self) -> str:
        """The code-entry page (RFC 8628 3.2 verification_uri), from the issuer, never the Host."""
        issuer = urlsplit(app_settings.ISSUER)
        return f"{issuer.scheme}://{issuer.netloc}{reverse('oidc_provider_ext:device')}"

    def save_device_authorization(self, request) -> tuple[str, str, int]:
        """Store a validated device authorization request: (device_code, user_code, expires_in)."""
        client = request.client
        try:
            # As at the authorization endpoint: acr_values=tenant:<code> names the organisation.
            acr = parse_acr_values(request.acr_values)
            tenant = (
                resolve_requested_tenant(acr.tenant, client)
                if acr.tenant is not None
                else default_tenant(client)
            )
        except ValueError as exc:
            raise errors.InvalidRequestError(description=str(exc), request=request) from exc
        except TenantError as exc:
            raise errors.InvalidRequestError(description=exc.message, request=request) from exc
        if not throttle.device_authorization_allowed(request.headers):
            raise TooManyFromAddressError(request=request)
        try:
            return devices.start(
                client,
                list(request.scopes),
                tenant.code if tenant is not None else "",
                tenant_deferred=tenant is None and get_adapter().has_tenants(),
            )
        except devices.TooManyPending as exc:
            raise TooManyPendingError(request=request) from exc

    def validate_device_code(self, client_id, code, request, *args, **kwargs):
        """RFC 8628 3.4/3.5: the device's poll. Returns oauthlib's status for the device code."""
        token_writes.begin()
        device = (
            DeviceAuthorization.objects.select_for_update()
            .filter(device_code_checksum=devices.device_code_checksum(code))
            .first()
        )
        if device is None or device.application_id != request.client.pk:
            return None  # invalid_grant: unknown, or another client's device_code
        now = timezone.now()
        if device.status == DeviceAuthorization.Status.APPROVED and device.grant_id is None:
            return None  # its grant was cleaned up: long past
        if device.status != DeviceAuthorization.Status.APPROVED and device.expires <= now:
            return "expired_token"
        # RFC 8628 3.5: polling faster than the interval gets slow_down, and the interval grows by
        # 5 seconds for this and every later request (stored, so it lasts across polls).
        if device.last_polled is not None and now - device.last_polled < timedelta(seconds=device.interval):
            DeviceAuthorization.objects.filter(pk=device.pk).update(
                interval=F("interval") + 5, last_polled=now
            )
            return "slow_down"
        DeviceAuthorization.objects.filter(pk=device.pk).update(last_polled=now)
        if device.status == DeviceAuthorization.Status.DENIED:
            return "access_denied"
        if device.status == DeviceAuthorization.Status.PENDING:
            return "authorization_pending"
        return self._redeem_device_grant(device, request)

    def _redeem_device_grant(self, device, request):
        grant = AuthorizationGrant.objects.select_related("user", "op_session").get(pk=device.grant_id)
        if grant.redeemed is not None:
            # Single use, as for codes (RFC 6749 4.1.2): a second poll after the tokens were issued
            # gets invalid_grant, and what the first one issued is revoked.
            self._code_replayed(grant)
            return None
        if grant.expires <= timezone.now():
            # Expired unredeemed, or killed by a logout / consent revocation / deactivation since
            # the approval (revoke_tokens expires unredeemed grants).
            return "expired_token"
        if grant.op_session is None or grant.op_session.ended is not None:
            # As for a code: the approval dies with the sign-in it was given in (a logout).
            return "expired_token"
        if not get_adapter().may_use_client(grant.user, request.client, grant.tenant):
            # The account-state rule at issue time: deactivated, membership ended, client disabled.
            return "access_denied"
        # RFC 8707 2.2 as for a code: a resource the approval did not name is invalid_target, and
        # refused before the approval is used up.
        self._bind_audience(request, request.client, grant.tenant, authorized=grant.resource, previous=[])
        now = timezone.now()
        if not AuthorizationGrant.objects.filter(pk=grant.pk, redeemed__isnull=True, expires__gt=now).update(
            redeemed=now
        ):
            self._code_replayed(grant)
            return None
        _state(request).grant = grant
        request.user = grant.user
        request.scopes = grant.scopes
        request.claims = grant.claims
        request.nonce = None
        return "authorized"

    # --- OpenID Connect --------------------------------------------------------------------------

    def get_oidc_issuer_endpoint(self, request):
        # The issuer is a setting, never derived from the Host header or DOT's URL names.
        return app_settings.ISSUER

    def validate_silent_login(self, request):
        # prompt=none is decided by the authorization view, which knows the browser session.
        return True

    def validate_silent_authorization(self, request):
        return True

    def validate_user_match(self, id_token_hint, scopes, claims, request):
        # id_token_hint is checked by the authorization view against the browser's session.
        return True

    def _load_access_token(self, token):
        # DOT's, without .first()'s ORDER BY: token_checksum is unique; with the grant's requested
        # claims and tenant in the same statement (validate_bearer_token); compiled once.
        return access_token_with_grant(token)

    def validate_bearer_token(self, token, scopes, request):
        if not super().validate_bearer_token(token, scopes, request):
            return False
        access_token = request.access_token
        if access_token.resource and "openid" in (scopes or ()):
            # RFC 8707 / RFC 9068 4: a token for an API is not a token for this provider's userinfo
            # (audience confusion), whatever its scopes and whatever DOT's prefix match says.
            return False
        if access_token.user is None:
            # OIDC Core 5.3: userinfo (the resource that asks for "openid") answers about a user;
            # a token a client obtained for itself has none.
            return "openid" not in (scopes or ())
        # One grant per token: its first access token, or its refresh-token family; loaded with
        # the token (_load_access_token).
        if getattr(access_token, "grant_pk", None) is None:  # (a token from remote introspection: none)
            return False  # a user's token always descends from a grant (cleanup keeps it as long)
        grant = AuthorizationGrant(
            pk=access_token.grant_pk, claims=access_token.grant_claims, tenant=access_token.grant_tenant
        )
        _state(request).grant = grant
        return stored_token_may_be_used(access_token, grant.tenant)

    def get_userinfo_claims(self, request):
        grant = _state(request).grant  # loaded by validate_bearer_token
        return userinfo_claims(request.user, request.scopes, grant.claims, grant.tenant)

    def get_id_token_dictionary(self, token, token_handler, request):
        adapter = get_adapter()
        grant = _state(request).grant
        claims: dict[str, Any] = {"sub": subject_for(request.user)}
        claims.update(
            adapter.get_user_claims(
                request.user, request.scopes, requested=_requested(request.claims, "id_token")
            )
        )
        now = int(time.time())
        # OIDC Core 2: auth_time is when this OP session authenticated; a refreshed ID token keeps
        # it, and acr/amr/sid of the original (12.2).
        claims.update(
            iss=app_settings.ISSUER,
            iat=now,
            exp=now + app_settings.ID_TOKEN_EXPIRE_SECONDS,
            auth_time=int(grant.auth_time.timestamp()),
            azp=request.client.client_id,
            jti=str(uuid.uuid4()),
        )
        if grant.acr:
            claims["acr"] = grant.acr
        if grant.amr:
            claims["amr"] = grant.amr
        if grant.sid:
            claims["sid"] = grant.sid
        claims.update(adapter.get_tenant_claims(request.user, grant.tenant))
        return claims, timezone.now() + timedelta(seconds=app_settings.ID_TOKEN_EXPIRE_SECONDS)

    def finalize_id_token(self, id_token, token, token_handler, request):
        claims, expires = self.get_id_token_dictionary(token, token_handler, request)
        id_token.update(claims)
        if request.grant_type == "refresh_token":
            id_token.pop("nonce", None)  # OIDC Core 12.2: a refreshed ID token SHOULD NOT carry nonce
        elif "nonce" not in id_token and request.nonce:
            id_token["nonce"] = request.nonce
        # No IDToken row: an ID token is verified by its signature wherever it comes back
        # (id_token_hint), so storing it would cost a query per token for nothing.
        return keys.sign(id_token, typ="JWT", alg=keys.alg_for_client(request.client))

    def _get_key_for_token(self, token):
        """The published key named by the token's ``kid`` (any state), or None."""
        try:
            unverified = jws.JWS()
            unverified.deserialize(token)
            kid = unverified.jose_header.get("kid")
        except (JWException, ValueError, TypeError):
            return None
        return keys.verification_key(kid) if kid else None


# --- userinfo without oauthlib (views/userinfo.py) -----------------------------------------------


def userinfo_claims(user, scopes, grant_claims: dict | None, tenant: str) -> dict[str, Any]:
    """OIDC Core 5.3.2: ``sub``, the claims of the granted ``scopes`` and those the grant's claims
    parameter requested for userinfo (5.5), and the tenant's."""
    adapter = get_adapter()
    claims = {"sub": subject_for(user)}
    claims.update(adapter.get_user_claims(user, scopes, requested=_requested(grant_claims, "userinfo")))
    claims.update(adapter.get_tenant_claims(user, tenant))
    return claims


def userinfo_served_directly() -> bool:
    """Whether views/userinfo.py may answer without oauthlib: DOT's validator is ours as shipped
    (a site's subclass may override the bearer checks; it keeps oauthlib's path) and DOT does not
    ask a remote server about unknown tokens (RESOURCE_SERVER_INTROSPECTION_URL)."""
    return oauth2_settings.OAUTH2_VALIDATOR_CLASS is OIDCValidator and not (
        oauth2_settings.RESOURCE_SERVER_INTROSPECTION_URL
    )


def userinfo_access_token(access_token, django_request) -> bool:
    """What ``OIDCValidator.validate_bearer_token`` (DOT's checks, then ours) decides for the
    ``openid`` scope the UserInfo endpoint asks for (oauthlib's UserInfoEndpoint), on a token
    already loaded by :func:`access_token_with_grant`."""
    if access_token is None or not access_token.is_valid(["openid"]):
        return False  # unknown (revoked, logged out), expired, or without openid
    if access_token.resource:
        # RFC 8707 / RFC 9068 4: a token for an API is not a token for this provider's userinfo.
        return False
    application = access_token.application
    if application is not None and not application.is_usable(django_request):
        return False  # DOT's rule for a swapped Application model that can be disabled
    if access_token.user is None or access_token.grant_pk is None:
        # OIDC Core 5.3: userinfo answers about a user; a user's token always has a grant.
        return False
    return stored_token_may_be_used(access_token, access_token.grant_tenant)


def stored_token_may_be_used(access_token, tenant: str) -> bool:
    """The account-state rule (``adapter.may_use_client``) for a stored access token loaded by
    :func:`access_token_with_grant`, in ``tenant``: its client from the client cache, which
    carries the profile (no query for the tenant rule), and the membership answer the token's own
    statement read (:func:`member_hint`). Userinfo, introspection, bearer-protected views and the
    resource server's revocation check all ask it this way."""
    application = access_token.application
    client = get_client(application.client_id) or application
    return get_adapter().may_use_client(
        access_token.user, client, tenant, **member_hint(access_token, access_token.grant_tenant)
    )


def member_hint(row, tenant: str) -> dict[str, Any]:
    """``adapter.is_member_of``'s ``member_hint`` for ``row``'s user in ``tenant``, when ``row``
    came with the rule's answer read in its own statement (``lookups.TENANT_MEMBER``: an access
    token from :func:`access_token_with_grant`, a grant from the token endpoint's lookups), else
    nothing (the rule asks)."""
    member = getattr(row, lookups.TENANT_MEMBER, None)
    if member is None:
        return {}
    # Bound to the (user, tenant) it answers for: an adapter may ask about another tenant with
    # the same kwargs (a staff tenant, say), and must get that tenant's own answer.
    return {"member_hint": MemberHint(row.user_id, tenant, bool(member))}


def invalid_token_error() -> tuple[int, dict[str, str], str]:
    """oauthlib's RFC 6750 3.1 ``invalid_token`` answer of the UserInfo endpoint, exactly: status,
    headers (the Bearer challenge) and JSON body."""
    error = errors.InvalidTokenError()
    return error.status_code, error.headers, error.json
