"""Django REST framework integration: authenticate API requests with this provider's access tokens.

Needs ``djangorestframework``, which this package does not depend on: only this module imports it.

::

    from oidc_provider_ext.contrib.drf import HasScopes, JWTAccessTokenAuthentication

    class InvoiceList(APIView):
        authentication_classes = [JWTAccessTokenAuthentication]
        permission_classes = [HasScopes]
        required_scopes = ["invoices:read"]

``request.auth`` is the token's :class:`~oidc_provider_ext.resource.AccessTokenClaims` and
``request.user`` the user named by ``sub`` (see :meth:`JWTAccessTokenAuthentication.get_user`).
Validation is :func:`oidc_provider_ext.resource.validate_access_token`, with the same settings.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ImproperlyConfigured
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from oidc_provider_ext.adapter import get_adapter
from oidc_provider_ext.conf import resource_audiences
from oidc_provider_ext.resource import (
    AUDIENCE_MARK,
    RESOURCE_MARK,
    AccessTokenClaims,
    Audience,
    InsufficientScope,
    InvalidToken,
    KeySetUnavailable,
    ProtectedResource,
    Resource,
    ResourceServerError,
    bearer_challenge,
    bearer_token,
    challenge_resource,
    validate_access_token,
)
from oidc_provider_ext.resource.metadata import as_resource

__all__ = ["HasScopes", "JWTAccessTokenAuthentication"]

_ERROR_ATTRIBUTE = "_oidc_provider_ext_bearer_error"


class _BearerError(exceptions.APIException):
    """An RFC 6750 error as DRF renders it: ``{"error": ..., "error_description": ...}``."""

    def __init__(
        self, error: ResourceServerError, realm: str | None = None, resource: ProtectedResource | None = None
    ) -> None:
        self.status_code = error.status_code
        super().__init__(detail={"error": error.error, "error_description": error.description})
        if not isinstance(error, KeySetUnavailable):
            # RFC 6750 3: 400, 401 and 403 answers all carry the challenge; RFC 9728 5.1 its
            # resource_metadata.
            self.auth_header = bearer_challenge(error, realm=realm, resource=resource)


class _InvalidToken(_BearerError, exceptions.AuthenticationFailed):
    """401: an AuthenticationFailed, so DRF's own handling (and other code) recognises it."""


def _api_exception(
    error: ResourceServerError, realm: str | None = None, resource: ProtectedResource | None = None
) -> exceptions.APIException:
    if isinstance(error, InvalidToken):
        return _InvalidToken(error, realm, resource)
    return _BearerError(error, realm, resource)


_Authenticated = tuple[AbstractBaseUser | AnonymousUser, AccessTokenClaims]


class JWTAccessTokenAuthentication(BaseAuthentication):
    """Authenticates ``Authorization: Bearer <access token>`` (RFC 6750 2.1).

    A request without a Bearer header is left to the next authentication class. A Bearer token
    that fails validation is a 401 ``invalid_token``; a token in the query string a 400
    ``invalid_request``. Set ``resource`` (a :class:`~oidc_provider_ext.resource.ProtectedResource`
    or its identifier) and/or ``audience`` (further ``aud`` values) on a subclass to replace
    ``RESOURCE_SERVER_IDENTIFIER`` / ``RESOURCE_SERVER_AUDIENCE``, and ``www_authenticate_realm``
    to override ``RESOURCE_SERVER_REALM``. With none of them, a request with a token raises
    ImproperlyConfigured (RFC 9068 4: fail closed) and system check E011 reports the views.
    """

    audience: Audience | None = None
    resource: Resource | None = None
    www_authenticate_realm: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A malformed audience ("*", empty) or identifier is refused when the class is defined.
        where = cls.__qualname__
        audience = cls.audience
        marked = None if audience is None else resource_audiences(audience, f"{where}.audience")
        if cls.resource is not None:
            cls.resource = as_resource(cls.resource, f"{where}.resource")
            marked = (*cls.resource.accepted_audiences, *(marked or ()))
        setattr(cls, AUDIENCE_MARK, marked)
        setattr(cls, RESOURCE_MARK, cls.resource)

    def protected_resource(self) -> ProtectedResource | None:
        """The resource server this class authenticates for (None: audiences without identity)."""
        return challenge_resource(self.audience, self.resource)

    def authenticate(
        self, request: Request
    ) -> tuple[AbstractBaseUser | AnonymousUser, AccessTokenClaims] | None:
        try:
            token = bearer_token(request)
            if token is None:
                return None
            claims = validate_access_token(token, audience=self.audience, resource=self.resource)
        except ResourceServerError as error:
            # authenticate_header() is asked for the challenge of the 401 DRF sends.
            setattr(request._request, _ERROR_ATTRIBUTE, error)
            raise _api_exception(error, self.www_authenticate_realm, self.protected_resource()) from error
        return self.get_user(claims) or AnonymousUser(), claims

    def get_user(self, claims: AccessTokenClaims, **kwargs: Any) -> AbstractBaseUser | None:
        """The user the token was issued to, or None (``request.user`` is then AnonymousUser).

        None for a client-credentials token (no resource owner); otherwise the adapter's
        ``get_user_by_subject``. If the API does not share the provider's users table, override
        that hook (or this method): the default maps ``sub`` to a local primary key.
        """
        if not claims.has_resource_owner:
            return None
        return get_adapter().get_user_by_subject(claims.sub, claims=claims)

    def authenticate_header(self, request: Request) -> str:
        error = getattr(request._request, _ERROR_ATTRIBUTE, None)
        view = (getattr(request, "parser_context", None) or {}).get("view")
        scopes = getattr(view, "required_scopes", None)
        return bearer_challenge(
            error if isinstance(error, InvalidToken) else None,
            realm=self.www_authenticate_realm,
            resource=self.protected_resource(),
            # A hint on the 401 without a token (RFC 6750 3, MCP: which scopes to ask for).
            scopes=scopes if error is None and isinstance(scopes, list | tuple) else (),
        )


class HasScopes(BasePermission):
    """Allows a request whose access token grants every scope in the view's ``required_scopes``.

    Without a validated access token (``request.auth`` is not :class:`AccessTokenClaims`) the
    request is refused: 401 if it was not authenticated at all. A token lacking a scope is a 403
    ``insufficient_scope`` naming the required scopes (RFC 6750 3.1).
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        claims = request.auth
        if not isinstance(claims, AccessTokenClaims):
            return False
        required = self.get_required_scopes(request, view)
        if not claims.has_scopes(*required):
            authenticator = request.successful_authenticator
            realm = getattr(authenticator, "www_authenticate_realm", None)
            resource = (
                authenticator.protected_resource()
                if isinstance(authenticator, JWTAccessTokenAuthentication)
                else None
            )
            raise _api_exception(InsufficientScope(required), realm, resource)
        return True

    def get_required_scopes(self, request: Request, view: Any) -> tuple[str, ...]:
        """The scopes ``view`` requires: its ``required_scopes`` attribute."""
        scopes = getattr(view, "required_scopes", None)
        if scopes is None or isinstance(scopes, str):
            raise ImproperlyConfigured(
                f"{type(view).__name__} uses HasScopes: give it required_scopes = ['scope', ...]."
            )
        return tuple(scopes)


setattr(JWTAccessTokenAuthentication, AUDIENCE_MARK, None)  # relies on the settings
setattr(JWTAccessTokenAuthentication, RESOURCE_MARK, None)
