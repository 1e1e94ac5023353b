"""``acr_values`` parsing and tenant resolution (IdentityServer-style ``tenant:<org_code>``).

Unlike IdentityServer, where the tenant is an unvalidated hint, here it is validated and
authoritative: an unknown or disabled organisation, or one the client may not use, is an HTTP 400
page at the IdP, never a redirect to the client.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext as _

TENANT_PREFIX = "tenant:"
IDP_PREFIX = "idp:"


@dataclass(frozen=True)
class AcrValues:
    tenant: str | None
    idps: tuple[str, ...]
    classes: tuple[str, ...]  # authentication context classes actually requested


class TenantError(Exception):
    """The request names a tenant it may not use; shown to the user as a 400 page."""

    def __init__(self, title: str, message: str):
        super().__init__(message)
        self.title, self.message = title, message


def parse_acr_values(raw: str | None) -> AcrValues:
    """Split ``acr_values`` (space-separated, OIDC Core 3.1.2.1) into tenant, idp hints and classes.

    Raises ValueError when more than one tenant is named or a tenant code is empty.
    """
    tenants, idps, classes = [], [], []
    for value in (raw or "").split():
        if value[: len(TENANT_PREFIX)].lower() == TENANT_PREFIX:
            tenants.append(value[len(TENANT_PREFIX) :])
        elif value[: len(IDP_PREFIX)].lower() == IDP_PREFIX:
            idps.append(value[len(IDP_PREFIX) :])
        else:
            classes.append(value)
    if len(tenants) > 1:
        raise ValueError("acr_values may name one tenant only.")
    if tenants and not tenants[0]:
        raise ValueError("acr_values names an empty tenant code.")
    return AcrValues(tenants[0].lower() if tenants else None, tuple(idps), tuple(classes))


def resolve_requested_tenant(code: str, application):
    """The active tenant ``code`` names, if ``application`` may use it; else TenantError."""
    from .adapter import get_adapter

    adapter = get_adapter()
    tenant = adapter.get_tenant(code)
    if tenant is None:
        raise TenantError(
            _("Unknown organisation"),
            _(
                "There is no organisation with the code “%(code)s”. Check the link you followed or "
                "contact the application's support."
            )
            % {"code": code},
        )
    if not tenant.is_active:
        raise TenantError(
            _("Organisation not available"),
            _(
                "Sign-in to the organisation “%(code)s” is currently disabled. Contact your "
                "organisation's administrator."
            )
            % {"code": tenant.code},
        )
    if not adapter.client_allows_tenant(application, tenant.code):
        raise TenantError(
            _("Organisation not allowed"),
            _("This application does not accept sign-ins for the organisation “%(code)s”.")
            % {"code": tenant.code},
        )
    return tenant


def default_tenant(application):
    """The client's default tenant (a code on its profile), validated like a requested one; None
    when it has none."""
    profile = getattr(application, "oidc_profile", None)
    code = profile.default_tenant_code if profile is not None and profile.pk is not None else ""
    return resolve_requested_tenant(code, application) if code else None
