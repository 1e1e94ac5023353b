from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _
from oauth2_provider.settings import oauth2_settings

from .keys import SigningKey
from .tenants import ACR_CHOICES


class ClientProfile(models.Model):
    """OIDC settings of a DOT Application, kept beside it so DOT's models are never swapped."""

    id = models.BigAutoField(primary_key=True)
    application = models.OneToOneField(
        oauth2_settings.APPLICATION_MODEL,
        on_delete=models.CASCADE,
        related_name="oidc_profile",
        verbose_name=_("client"),
    )
    require_pkce = models.BooleanField(
        _("require PKCE"),
        default=False,
        help_text=_(
            "Confidential clients may run the classic server-side flow without PKCE unless this is "
            "set. Public clients always need PKCE (S256)."
        ),
    )
    # OIDC Dynamic Client Registration 1.0 section 2 names this metadata and makes RS256 its
    # default; the key store holds a key per algorithm, so each client can pick its own.
    id_token_signed_response_alg = models.CharField(
        _("ID token signing algorithm"),
        max_length=8,
        choices=SigningKey.Algorithm.choices,
        default=SigningKey.Algorithm.RS256,
        help_text=_(
            "JWS algorithm of the ID tokens this client receives. Access tokens always use the "
            "provider's SIGNING_ALG."
        ),
    )

    # RFC 8628: off unless the operator turns it on (a device sign-in is phishable by design, 5.4).
    # A flag beside DOT's authorization_grant_type, which holds a single grant type: a CLI keeps
    # its code flow (loopback redirect) and may also sign in with a code typed on another device.
    allow_device_flow = models.BooleanField(
        _("allow device sign-in"),
        default=False,
        help_text=_(
            "The client may use the device authorization grant (RFC 8628): a CLI or TV shows a "
            "code the user enters at /connect/device. Needs the authorization code grant type."
        ),
    )

    class ConsentPolicy(models.TextChoices):
        ASK = "ask", _("Always ask")
        REMEMBER = "remember", _("Ask once, remember the answer")
        SKIP = "skip", _("Never ask (first-party client)")

    consent_policy = models.CharField(
        _("consent"),
        max_length=8,
        choices=ConsentPolicy.choices,
        default=ConsentPolicy.REMEMBER,
        help_text=_("“Never ask” is for the operator's own applications only."),
    )
    consent_lifetime_days = models.PositiveIntegerField(
        _("consent lifetime (days)"),
        null=True,
        blank=True,
        help_text=_("How long a remembered consent lasts. Empty: the site default (CONSENT_LIFETIME_DAYS)."),
    )
    # Shown on the consent page; names from OIDC Dynamic Client Registration 1.0 section 2.
    logo_uri = models.URLField(_("logo URL"), blank=True)
    client_uri = models.URLField(_("home page"), blank=True)
    policy_uri = models.URLField(_("privacy policy"), blank=True)
    tos_uri = models.URLField(_("terms of service"), blank=True)
    # OpenID Connect Back-Channel Logout 1.0 section 2.2 client metadata.
    backchannel_logout_uri = models.URLField(
        _("back-channel logout URI"),
        blank=True,
        help_text=_("Receives a signed logout token (POST) when a user's session with this client ends."),
    )
    backchannel_logout_session_required = models.BooleanField(
        _("back-channel logout needs sid"),
        default=False,
        help_text=_("The client needs the sid claim in logout tokens (it is always sent)."),
    )
    introspection_audiences = models.TextField(
        _("may introspect tokens of"),
        blank=True,
        help_text=_(
            "Space-separated client IDs whose access and refresh tokens this client (a resource "
            "server) may introspect. Empty: only its own tokens (RFC 7662 section 4)."
        ),
    )
    # Tenants are named by code, never by a key into the built-in Tenant table: the adapter decides
    # what a code means, so a site's own organisation model works (docs/tenants.md).
    allowed_tenant_codes = models.TextField(
        _("allowed tenants"),
        blank=True,
        help_text=_(
            "Space-separated codes of the organisations users of this client may sign in to. "
            "Empty: any active one."
        ),
    )
    minimum_acr = models.CharField(
        _("minimum authentication level"),
        max_length=255,
        blank=True,
        choices=ACR_CHOICES,
        help_text=_(
            "Every sign-in to this client reaches at least this level, whatever the application "
            "asks for. Empty: no minimum."
        ),
    )
    default_tenant_code = models.CharField(
        _("default tenant"),
        max_length=64,
        blank=True,
        help_text=_("Code of the organisation used when a request names none (acr_values=tenant:<code>)."),
    )

    # Clients that registered themselves (docs/registration.md); how is DOT's
    # Application.registration_source (manual, dcr, cimd), when is Application.created.
    registered_from = models.GenericIPAddressField(
        _("registered from"),
        null=True,
        blank=True,
        editable=False,
        help_text=_("Address (an IPv6 address's /64) the registration request came from."),
    )
    registration_policy = models.CharField(
        _("registered under"),
        max_length=24,
        blank=True,
        editable=False,
        help_text=_("The REGISTRATION policy in force when the client registered itself."),
    )
    # RFC 7592 2: the registration access token, stored as a keyed hash (never in clear).
    registration_token_hash = models.CharField(max_length=128, blank=True, editable=False)
    # A self-registered client's logo_uri, fetched once through the outbound client (PNG, JPEG,
    # GIF or WebP, never SVG) as a data: URI, so the consent page never hot-links its server.
    logo_data = models.TextField(blank=True, editable=False)
    # The RFC 7591 2 metadata as accepted (shown by RFC 7592 reads).
    registration_metadata = models.JSONField(default=dict, blank=True, editable=False)

    class Meta:
        verbose_name = _("client OIDC profile")
        verbose_name_plural = _("client OIDC profiles")

    def __str__(self) -> str:
        return f"OIDC profile of {self.application}"

    def save(self, *args, **kwargs):
        # Codes are case-insensitive (stored lower-case, like Tenant.code).
        self.allowed_tenant_codes = " ".join(self.tenant_codes)
        self.default_tenant_code = self.default_tenant_code.strip().lower()
        super().save(*args, **kwargs)

    @property
    def tenant_codes(self) -> list[str]:
        """The allowed tenant codes, lower-cased, in order, without repeats; empty: any tenant."""
        return list(dict.fromkeys(self.allowed_tenant_codes.lower().split()))

    def clean(self):
        """Every code names a tenant the adapter knows (the admin shows these errors)."""
        from oidc_provider_ext.adapter import get_adapter  # the adapter module imports the models

        super().clean()
        adapter = get_adapter()
        self.allowed_tenant_codes = " ".join(self.tenant_codes)
        self.default_tenant_code = self.default_tenant_code.strip().lower()
        errors = {}
        unknown = [code for code in self.tenant_codes if adapter.get_tenant(code) is None]
        if unknown:
            errors["allowed_tenant_codes"] = _("No organisation has the code(s): %(codes)s.") % {
                "codes": ", ".join(unknown)
            }
        code = self.default_tenant_code
        if code and adapter.get_tenant(code) is None:
            errors["default_tenant_code"] = _("No organisation has the code “%(code)s”.") % {"code": code}
        elif code and self.tenant_codes and code not in self.tenant_codes:
            errors["default_tenant_code"] = _(
                "The default tenant “%(code)s” is not one of this client's allowed tenants."
            ) % {"code": code}
        if errors:
            raise ValidationError(errors)
