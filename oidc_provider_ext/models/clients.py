from django.db import models
from django.utils.translation import gettext_lazy as _
from oauth2_provider.settings import oauth2_settings

from .keys import SigningKey


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
    allowed_tenants = models.ManyToManyField(
        "oidc_provider_ext.Tenant",
        blank=True,
        related_name="+",
        verbose_name=_("allowed tenants"),
        help_text=_("Organisations users of this client may sign in to. None selected: any active one."),
    )
    default_tenant = models.ForeignKey(
        "oidc_provider_ext.Tenant",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("default tenant"),
        help_text=_("Used when a request names no tenant (acr_values=tenant:<code>)."),
    )

    class Meta:
        verbose_name = _("client OIDC profile")
        verbose_name_plural = _("client OIDC profiles")

    def __str__(self) -> str:
        return f"OIDC profile of {self.application}"
