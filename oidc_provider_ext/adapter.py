"""The extension class: everything a host site may customise about identities and claims.

Point ``OIDC_PROVIDER_EXT["ADAPTER"]`` at a subclass of :class:`DefaultOIDCAdapter` and override
the hooks you need. Every hook takes ``**kwargs`` so new arguments can be added without breaking
subclasses.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from functools import lru_cache
from typing import Any, NamedTuple

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import router
from django.http import HttpRequest
from django.utils.module_loading import import_string
from django.utils.translation import gettext

from . import acr
from .conf import app_settings
from .models import Tenant, TenantMembership

# OIDC Core 5.4: the claims each scope value requests.
SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "profile": (
        "name", "family_name", "given_name", "middle_name", "nickname", "preferred_username", "profile",
        "picture", "website", "gender", "birthdate", "zoneinfo", "locale", "updated_at",
    ),
    "email": ("email", "email_verified"),
    "address": ("address",),
    "phone": ("phone_number", "phone_number_verified"),
}  # fmt: skip

PASSWORD_ACR = acr.PASSWORD  # kept as an alias: oidc_provider_ext.acr.PASSWORD
_TENANTS_READ = "oidc_tenants_read"  # request attribute: the tenants get_tenant read, by code


@lru_cache(maxsize=1)
def _membership_lookup():
    from .internal.lookups import Lookup

    return Lookup(
        TenantMembership, by=["user", "is_active", "tenant__code", "tenant__is_active"], joins=["tenant"]
    )


@lru_cache(maxsize=1)
def _tenant_lookup():
    from .internal.lookups import Lookup

    # code is unique (case-insensitively, and stored lower-case): at most one row, as first()
    return Lookup(Tenant, by=["code"])


class MemberHint(NamedTuple):
    """The membership rule's answer for one user and tenant, read with an access token."""

    user_pk: Any
    tenant_code: str
    member: bool


class DefaultOIDCAdapter:
    """Default mapping from Django users to OpenID Connect identities."""

    #: Claims :meth:`get_claim_values` can produce for some user (advertised in discovery, and
    #: deciding which claim-only scopes discovery advertises, :meth:`get_scopes_supported`).
    claims_supported: tuple[str, ...] = (
        "name", "given_name", "family_name", "preferred_username", "email", "email_verified", "updated_at",
    )  # fmt: skip
    #: Authentication context classes a sign-in here can satisfy (discovery ``acr_values_supported``).
    #: Ascending strength; see :mod:`oidc_provider_ext.acr` and docs/mfa.md.
    acr_values_supported: tuple[str, ...] = acr.LEVELS

    def get_subject(self, user: AbstractBaseUser, **kwargs: Any) -> str:
        """The ``sub`` claim: stable, never reassigned, at most 255 ASCII characters (OIDC Core 2).

        The default is the user's primary key as a string.
        """
        return str(user.pk)

    def get_user_by_subject(self, subject: str, **kwargs: Any) -> AbstractBaseUser | None:
        """The active user whose ``sub`` is ``subject``, or None: the inverse of :meth:`get_subject`.

        Used by resource servers (``oidc_provider_ext.contrib.drf``) to turn a validated access
        token into ``request.user``. ``kwargs`` carries ``claims``, the validated
        :class:`~oidc_provider_ext.resource.AccessTokenClaims`.

        The default looks the user up by primary key, which is right only where the users table is
        the provider's own (the same project, or an API sharing its database). A user is returned
        only if :meth:`get_subject` gives back exactly ``subject``, so a site that overrides
        ``get_subject`` but not this hook gets None rather than the wrong user. Inactive users get
        None, as Django's ``ModelBackend`` refuses them.
        """
        user_model = get_user_model()
        try:
            pk = user_model._meta.pk.to_python(subject)
        except (ValidationError, TypeError, ValueError):
            return None  # e.g. a non-numeric subject and an integer primary key
        user = user_model._default_manager.filter(pk=pk).first()
        if user is None or not getattr(user, "is_active", True):
            return None
        return user if self.get_subject(user) == subject else None

    def get_scope_description(self, scope: str, **kwargs: Any) -> str:
        """Human text for ``scope`` on the consent page, in the page's language (a site's own
        descriptions are looked up in its catalogues too)."""
        description = app_settings.SCOPES.get(scope)
        return gettext(str(description)) if description else scope

    def get_scope_claims(self, scope: str, **kwargs: Any) -> tuple[str, ...]:
        """Names of the claims ``scope`` releases (OIDC Core 5.4 for the standard scopes)."""
        return SCOPE_CLAIMS.get(scope, ())

    def get_claim_values(
        self, user: AbstractBaseUser, wanted: Collection[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Every standard claim this site knows about ``user``; empty values are left out, since an
        RP must not mistake an empty ``email`` for a real one. Override to add ``address``,
        ``phone_number``, ``picture`` … from your own profile model, and list them in
        :attr:`claims_supported` (the example project's ``idp_project/adapter.py`` does both).

        ``wanted``, when given, names the claims that will be released: an override may skip a
        lookup none of them needs (returning more is harmless, they are filtered)."""
        full_name = getattr(user, "get_full_name", lambda: "")()
        values: dict[str, Any] = {
            "name": full_name,
            "given_name": getattr(user, "first_name", ""),
            "family_name": getattr(user, "last_name", ""),
            "preferred_username": user.get_username(),
            "email": getattr(user, "email", ""),
        }
        if values["email"]:
            # Django does not record verification; say so rather than claim it.
            values["email_verified"] = False
        date_joined = getattr(user, "date_joined", None)
        if date_joined is not None:
            values["updated_at"] = int(date_joined.timestamp())
        return {name: value for name, value in values.items() if value not in ("", None)}

    def get_user_claims(
        self, user: AbstractBaseUser, scopes: Iterable[str], requested: Iterable[str] = (), **kwargs: Any
    ) -> dict[str, Any]:
        """Claims released for the granted ``scopes`` plus the individually ``requested`` ones
        (the ``claims`` request parameter, OIDC Core 5.5)."""
        wanted = {name for scope in scopes for name in self.get_scope_claims(scope)} | set(requested)
        values = self.get_claim_values(user, wanted=frozenset(wanted))
        return {name: value for name, value in values.items() if name in wanted}

    def get_scopes_supported(self, **kwargs: Any) -> list[str]:
        """The configured scopes (``SCOPES``) this site can honour: discovery's ``scopes_supported``.

        A scope that only releases claims (OIDC Core 5.4: ``profile``, ``email``, ``address``,
        ``phone``) is left out when none of its claims is in :attr:`claims_supported`: advertising
        ``address`` while no user can have one makes relying parties ask for nothing."""
        supported = set(self.claims_supported)
        return [
            scope
            for scope in app_settings.SCOPES
            if scope not in SCOPE_CLAIMS or supported.intersection(self.get_scope_claims(scope))
        ]

    # --- tenants ---------------------------------------------------------------------------------
    # A tenant is named by its CODE everywhere (requests, grants, sessions, consents, client
    # profiles); the adapter alone says what a code means. A tenant object is anything with
    # ``code``, ``name``, ``is_active`` and optional ``logo_url``, ``brand_colour``, ``support_url``.
    # To serve your own organisation model override exactly these four: has_tenants, get_tenant,
    # get_user_tenants and is_member_of (the one membership hook). See docs/tenants.md.

    def has_tenants(self, **kwargs: Any) -> bool:
        """Whether the site defines tenants at all; without any it is a single-tenant IdP and a
        request naming no tenant is not sent to a tenant chooser."""
        from .internal.clients import has_tenants

        return has_tenants()

    def get_tenant(self, code: str, **kwargs: Any) -> Any | None:
        """The tenant with ``code`` (case-insensitive), active or not, or None. Also validates the
        codes an operator puts on a client profile.

        The default keeps tenants in Django's cache like clients (``CLIENT_CACHE_SECONDS``, every
        change through the ORM seen at once by every server sharing the cache:
        ``internal/clients.py``), and pages of the sign-in pass their ``request`` (keyword) so that
        it is read once per request (the authorization endpoint's acr policy and its consent page
        both need it)."""
        from .internal.clients import tenant_by_code

        if "\x00" in code:  # no tenant has one, and PostgreSQL refuses it in a query
            return None
        request = kwargs.get("request")
        read = getattr(request, _TENANTS_READ, None) if request is not None else None
        code = code.lower()
        if read is not None and code in read:
            return read[code]

        def from_the_database():
            lookup = _tenant_lookup()
            using = router.db_for_read(Tenant)
            if lookup.supported(using):  # its SQL written once (internal/lookups.py)
                return lookup.one(code, using=using)
            return Tenant.objects.using(using).filter(code=code).first()

        tenant = tenant_by_code(code, from_the_database)
        if request is not None:
            setattr(request, _TENANTS_READ, {**(read or {}), code: tenant})
        return tenant

    def get_user_tenants(self, user: AbstractBaseUser, **kwargs: Any) -> list[Any]:
        """Active tenants ``user`` is an active member of, for the tenant chooser: exactly the
        tenants ``t`` with ``is_member_of(user, t.code)`` (anything else is refused later anyway)."""
        return list(
            Tenant.objects.filter(
                is_active=True, memberships__user_id=user.pk, memberships__is_active=True
            ).order_by("name")
        )

    def is_member_of(self, user: AbstractBaseUser, tenant_code: str, **kwargs: Any) -> bool:
        """THE membership rule: whether ``user`` is an active member of the active tenant
        ``tenant_code`` (lower-case). Asked at sign-in to a tenant (a non-member gets the
        wrong-password answer) and, through :meth:`may_use_client`, on every path that issues or
        honours a tenant token (so keep it to one query).

        ``member_hint``: a :class:`MemberHint`, what this very rule's query answered for one user
        and tenant as part of the access token's or the grant's own lookup (userinfo,
        introspection, a resource server's revocation check, code exchange) or of the
        sign-in's; used only for that user and tenant, and only by this default (an override
        that reads another organisation model ignores it)."""
        hint = kwargs.get("member_hint")
        if (
            isinstance(hint, MemberHint)
            and hint.user_pk == user.pk
            and hint.tenant_code == tenant_code
            and type(self).is_member_of is DefaultOIDCAdapter.is_member_of
        ):
            return hint.member
        lookup = _membership_lookup()
        using = router.db_for_read(TenantMembership)
        if lookup.supported(using):  # the same query, its SQL written once (internal/lookups.py)
            return lookup.exists(user.pk, True, tenant_code, True, using=using)
        return TenantMembership.objects.filter(
            user_id=user.pk, is_active=True, tenant__code=tenant_code, tenant__is_active=True
        ).exists()

    def client_tenant_codes(self, application: Any, **kwargs: Any) -> list[str]:
        """Codes of the tenants ``application`` accepts (lower-case); empty: any tenant. The
        default reads the client profile's *allowed tenants*."""
        profile = getattr(application, "oidc_profile", None)
        if profile is None or profile.pk is None:
            return []
        return profile.tenant_codes

    def client_allows_tenant(self, application: Any, tenant_code: str, **kwargs: Any) -> bool:
        """Whether ``application`` accepts sign-ins to the tenant with code ``tenant_code``."""
        allowed = self.client_tenant_codes(application)
        return not allowed or tenant_code.lower() in allowed

    def may_use_client(
        self, user: AbstractBaseUser | AnonymousUser | None, application: Any, tenant: str, **kwargs: Any
    ) -> bool:
        """Whether ``user`` may (still) use ``application`` in tenant ``tenant`` (a code, "" for
        none). ``user`` is None for a client acting for itself (client credentials).

        THE account-state rule: asked on every path that issues or honours a token — authorize with
        an existing session (``prompt=none`` too), code exchange, refresh, userinfo, introspection,
        client credentials. Override it to add your own conditions (a suspended account, a client an
        operator disabled); a refusal looks to the client like a revoked grant. The default: the
        user is active and, for a tenant, the client accepts it (:meth:`client_allows_tenant`) and
        the user is still a member of it (:meth:`is_member_of`).
        """
        if user is None:
            return True
        if isinstance(user, AnonymousUser) or not getattr(user, "is_active", True):
            return False
        if not tenant:
            # A client restricted to some tenants never acts for a user outside them.
            return not self.client_tenant_codes(application)
        return self.client_allows_tenant(application, tenant) and self.is_member_of(user, tenant, **kwargs)

    def get_tenant_claims(self, user: AbstractBaseUser, tenant_code: str, **kwargs: Any) -> dict[str, Any]:
        """Claims naming the tenant in ID tokens, access tokens, userinfo and introspection."""
        return {"tenant": tenant_code} if tenant_code else {}

    def get_authentication_context(self, request: HttpRequest, user: AbstractBaseUser, **kwargs: Any):
        """``(acr, amr)`` of a sign-in that just succeeded through ``request``.

        ``amr`` values come from RFC 8176. Whoever authenticated the user (the password page, the
        second-factor page, a passkey) set ``request.oidc_amr`` before ``login()``; anything else
        (the admin's login page, ``django.contrib.auth``'s) is a password sign-in.
        """
        amr = getattr(request, "oidc_amr", None) or ["pwd"]
        return acr.acr_for(amr), acr.amr_with_mfa(amr)

    def minimum_acr(
        self, user: AbstractBaseUser | AnonymousUser, application: Any, tenant: str, **kwargs: Any
    ) -> str | None:
        """The weakest ``acr`` (one of :attr:`acr_values_supported`) ``user`` may sign in to
        ``application`` in tenant ``tenant`` (a code, "" for none) with, whatever the client asks
        for; None: no minimum. Enforced at the authorization endpoint (a step-up for the missing
        factor, or a page asking the user to set one up).

        The default is the strongest of the tenant's and the client profile's *minimum
        authentication level* (admin), and :data:`~oidc_provider_ext.acr.MFA` for a user who has
        set up a second factor: once enrolled, every sign-in uses it, whichever page the password
        was typed into. The authorization endpoint passes its ``request`` (keyword): the default
        then takes the second-factor answer its OP session check already read.
        """
        from .internal import factors

        tenant_object = self.get_tenant(tenant, request=kwargs.get("request")) if tenant else None
        profile = getattr(application, "oidc_profile", None)
        return acr.strongest(
            getattr(tenant_object, "minimum_acr", None),
            getattr(profile, "minimum_acr", None) if profile is not None and profile.pk else None,
            acr.MFA if factors.has_second_factor(user, kwargs.get("request")) else None,
        )


def end_access(*, user: Any = None, tenant: str | None = None) -> None:
    """The user (or every member of ``tenant``, or one user in one tenant) may no longer use what
    they were given: end their OP sessions (their clients are told, Back-Channel Logout) and revoke
    every grant's tokens, offline access included. The provider calls it when a Django user is
    deactivated or deleted, a built-in membership ends and a tenant is disabled; a site whose
    adapter serves its own organisation model calls it when a membership ends there (without it,
    tokens are refused at their next use through :meth:`DefaultOIDCAdapter.may_use_client`)."""
    from .internal.op_sessions import end_access as end

    end(user=user, tenant=tenant)


@lru_cache(maxsize=8)
def _adapter_for(path: str) -> DefaultOIDCAdapter:
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"OIDC_PROVIDER_EXT['ADAPTER'] = {path!r} cannot be imported: {exc}"
        ) from exc
    return cls()


def get_adapter() -> DefaultOIDCAdapter:
    """The configured adapter instance (one per class path)."""
    return _adapter_for(app_settings.ADAPTER)
