from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from oauth2_provider.settings import oauth2_settings

MAX_IDENTIFIER_LENGTH = 2048  # internal/requests.py PARAMETER_LIMITS["resource"]


def identifier_problem(value: str) -> str | None:
    """Why ``value`` cannot be a resource indicator (RFC 8707 2), or None.

    An absolute URI with a host, no fragment (2: MUST NOT), no userinfo, no whitespace or control
    characters. Stored and compared exactly as written: ``https://api.example.com`` and
    ``https://api.example.com/`` are two resources (the ``aud`` a resource server checks is a string).
    """
    if not value or len(value) > MAX_IDENTIFIER_LENGTH:
        limit = {"max": MAX_IDENTIFIER_LENGTH}
        return gettext("The identifier must be 1 to %(max)d characters long.") % limit
    if any(char.isspace() or ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F for char in value):
        return gettext("The identifier must not contain spaces or control characters.")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        return gettext("The identifier is not a valid URI.")
    if "#" in value:
        return gettext("The identifier must not have a fragment (RFC 8707 section 2).")
    if not parts.scheme or not parts.hostname:
        return gettext("The identifier must be an absolute URI with a host, e.g. https://api.example.com/.")
    if parts.username is not None or parts.password is not None:
        return gettext("The identifier must not contain a user name or password.")
    return None


def validate_identifier(value: str) -> None:
    problem = identifier_problem(value)
    if problem:
        raise ValidationError(problem, code="invalid")


class ResourceServer(models.Model):
    """An API (or MCP server) that accepts this provider's access tokens: the target of an RFC 8707
    ``resource`` indicator and the ``aud`` of the tokens issued for it (RFC 9068 3)."""

    id = models.BigAutoField(primary_key=True)
    identifier = models.CharField(
        _("identifier"),
        max_length=MAX_IDENTIFIER_LENGTH,
        unique=True,
        validators=[validate_identifier],
        help_text=_(
            "The resource indicator clients send and the aud of its tokens, an absolute URI such as "
            "https://api.example.com/mcp. Compared exactly: a trailing slash makes another resource."
        ),
    )
    name = models.CharField(
        _("name"), max_length=200, help_text=_("Shown to users on the consent page (“access to …”).")
    )
    scopes = models.TextField(
        _("scopes"),
        blank=True,
        help_text=_(
            "Space-separated scopes this API accepts. Its access tokens carry only the granted scopes "
            "listed here (sign-in scopes such as openid stay out unless listed)."
        ),
    )
    access_token_lifetime = models.PositiveIntegerField(
        _("access-token lifetime (seconds)"),
        null=True,
        blank=True,
        help_text=_("Empty: the site default (ACCESS_TOKEN_EXPIRE_SECONDS)."),
    )
    any_client = models.BooleanField(
        _("any client"),
        default=False,
        help_text=_("Every client may ask for tokens for this API. Off: only the allowed clients below."),
    )
    allowed_clients = models.ManyToManyField(
        oauth2_settings.APPLICATION_MODEL,
        blank=True,
        related_name="+",
        verbose_name=_("allowed clients"),
        help_text=_(
            "The clients that may ask for tokens for this API. None and “any client” off: no client."
        ),
    )
    # Tenant codes, like ClientProfile.allowed_tenant_codes: the adapter decides what a code means.
    tenant_codes = models.TextField(
        _("tenants"),
        blank=True,
        help_text=_(
            "Space-separated codes of the organisations this API belongs to: a sign-in to another "
            "organisation (or to none) cannot get tokens for it. Empty: any organisation."
        ),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    created = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("resource server")
        verbose_name_plural = _("resource servers")
        ordering = ["identifier"]

    def __str__(self) -> str:
        return f"{self.name} ({self.identifier})"

    def save(self, *args, **kwargs):
        self.tenant_codes = " ".join(self.tenants)
        self.scopes = " ".join(self.scope_list)
        super().save(*args, **kwargs)

    @property
    def scope_list(self) -> list[str]:
        return list(dict.fromkeys(self.scopes.split()))

    @property
    def tenants(self) -> list[str]:
        """Lower-cased tenant codes, without repeats; empty: any tenant."""
        return list(dict.fromkeys(self.tenant_codes.lower().split()))

    def clean(self):
        from oidc_provider_ext.adapter import get_adapter  # the adapter module imports the models
        from oidc_provider_ext.conf import app_settings

        super().clean()
        errors: dict[str, Any] = {}
        unknown_scopes = [scope for scope in self.scope_list if scope not in app_settings.SCOPES]
        if unknown_scopes:
            errors["scopes"] = _("Not in the SCOPES setting: %(scopes)s.") % {
                "scopes": ", ".join(unknown_scopes)
            }
        adapter = get_adapter()
        unknown = [code for code in self.tenants if adapter.get_tenant(code) is None]
        if unknown:
            errors["tenant_codes"] = _("No organisation has the code(s): %(codes)s.") % {
                "codes": ", ".join(unknown)
            }
        from oauth2_provider.models import get_application_model

        identifier = self.identifier
        if (
            identifier
            and not identifier_problem(identifier)  # never a NUL in a query (PostgreSQL refuses it)
            and get_application_model().objects.filter(client_id=identifier).exists()
        ):
            # A token requested without resource has aud = client_id: an API named like a client
            # would accept that client's tokens (audience confusion).
            errors["identifier"] = _("A client has this identifier as its client_id; choose another.")
        if errors:
            raise ValidationError(errors)
