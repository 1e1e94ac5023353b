"""``/connect/introspect``: token introspection (RFC 7662)."""

from __future__ import annotations

import calendar

from django.db.models import Q
from django.http import JsonResponse
from django.views.generic import View
from oauth2_provider.models import get_refresh_token_model
from oauth2_provider.views.mixins import OAuthLibMixin

from oidc_provider_ext.adapter import get_adapter
from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.models import AuthorizationGrant
from oidc_provider_ext.tokens import subject_for
from oidc_provider_ext.validator import access_token_with_grant, checksum, stored_token_may_be_used
from oidc_provider_ext.views.backchannel import JsonErrorsMixin, form_endpoint, form_post_only, oauth_error


def _audiences(client) -> list[str]:
    # The OIDC profile's introspection audiences: client ids whose tokens ``client`` may inspect.
    profile = getattr(client, "oidc_profile", None)
    return profile.introspection_audiences.split() if profile is not None else []


def _visible_to(client) -> Q:
    """RFC 7662 4: a client learns only about its own tokens, unless an operator made it a resource
    server for other clients' tokens (OIDC profile: introspection audiences = their client ids,
    the ``aud`` of their access tokens)."""
    return Q(application=client) | Q(application__client_id__in=_audiences(client))


def _access_token_visible_to(access, client) -> bool:
    """:func:`_visible_to` for an access token already loaded with its client."""
    if access.application_id is None:
        return False
    return access.application_id == client.pk or access.application.client_id in _audiences(client)


@form_endpoint(sensitive=("client_secret", "token"))
class IntrospectionView(JsonErrorsMixin, OAuthLibMixin, View):
    """RFC 7662. Only an authenticated confidential client may ask, and only about its own tokens;
    anything else is ``{"active": false}`` (2.2: nothing more is said about inactive tokens)."""

    http_method_names = ["post", "options"]

    def post(self, request, *args, **kwargs):
        problem = form_post_only(request)
        if problem:
            return problem
        client = self._authenticated_client(request)
        if client is None:
            return oauth_error(
                "invalid_client",
                "Client authentication failed.",
                status=401,  # with form_endpoint's Basic challenge (RFC 6749 5.2)
            )
        token = request.POST.get("token")
        if not token:
            return oauth_error("invalid_request", "The token parameter is missing.")
        data = self._introspect(token, request.POST.get("token_type_hint"), client)
        response = JsonResponse(data)
        response["Cache-Control"] = "no-store"
        return response

    def _authenticated_client(self, request):
        # RFC 7662 2.1: a confidential client authenticates; oauthlib is behind server.py.
        client = self.get_oauthlib_core().authenticated_client(request)
        return client if client is not None and client.client_type == client.CLIENT_CONFIDENTIAL else None

    @staticmethod
    def _introspect(token: str, hint: str | None, client) -> dict:
        token_checksum = checksum(token)
        # The token with its client, user and grant's tenant (one statement, validator.py); one
        # another client may not see is treated as unknown (RFC 7662 4), as before.
        access = access_token_with_grant(token)
        if access is not None and not _access_token_visible_to(access, client):
            access = None
        if access is not None and access.is_valid():
            data = {
                "active": True,
                "token_type": "Bearer",
                "scope": access.scope,
                "client_id": access.application.client_id,
                # RFC 7662 2.2 / RFC 8707: the resource the token is for, else the client (tokens.py).
                "aud": access.resource[0] if access.resource else access.application.client_id,
                "exp": int(calendar.timegm(access.expires.utctimetuple())),
                "iat": int(calendar.timegm(access.created.utctimetuple())),
                "iss": app_settings.ISSUER,
            }
            if access.user is not None:
                tenant = access.grant_tenant if access.grant_pk is not None else ""
                # The account-state rule: a deactivated user's or ended member's token is inactive.
                if not stored_token_may_be_used(access, tenant):
                    return {"active": False}
                data.update(sub=subject_for(access.user), username=access.user.get_username())
                data.update(get_adapter().get_tenant_claims(access.user, tenant))
            elif get_adapter().may_use_client(None, access.application, ""):
                data["sub"] = access.application.client_id
            else:
                return {"active": False}  # the account-state rule for a client acting for itself
            return data
        refresh = (
            get_refresh_token_model()
            .objects.select_related("user", "application")
            .filter(_visible_to(client), token_checksum=token_checksum, revoked__isnull=True)
            .first()
        )
        if refresh is not None and refresh.access_token_id is not None:
            grant = (
                AuthorizationGrant.objects.filter(token_family=refresh.token_family).only("tenant").first()
            )
            tenant = grant.tenant if grant else ""
            if not get_adapter().may_use_client(refresh.user, refresh.application, tenant):
                return {"active": False}
            tenant_claims = get_adapter().get_tenant_claims(refresh.user, tenant)
            return {
                **tenant_claims,
                "active": True,
                "token_type": "refresh_token",
                "client_id": refresh.application.client_id,
                "sub": subject_for(refresh.user),
                "username": refresh.user.get_username(),
                "iss": app_settings.ISSUER,
            }
        return {"active": False}
