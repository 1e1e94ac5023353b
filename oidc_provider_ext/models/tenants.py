from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Lower
from django.utils.translation import gettext_lazy as _

from oidc_provider_ext import acr

# The levels of oidc_provider_ext.acr.LEVELS an operator can require (admin choices).
ACR_CHOICES = [
    (acr.PASSWORD, _("Password")),
    (acr.MFA, _("Multi-factor")),
    (acr.PHISHING_RESISTANT, _("Phishing-resistant (passkey)")),
]


class Tenant(models.Model):
    """An organisation users sign in to, selected by ``acr_values=tenant:<code>``."""

    id = models.BigAutoField(primary_key=True)
    code = models.SlugField(_("organisation code"), max_length=64, help_text=_("Case-insensitive, unique."))
    name = models.CharField(_("display name"), max_length=200)
    is_active = models.BooleanField(_("active"), default=True)
    logo_url = models.URLField(_("logo URL"), blank=True, help_text=_("Shown on the sign-in page."))
    brand_colour = models.CharField(
        _("brand colour"),
        max_length=7,
        blank=True,
        validators=[RegexValidator(r"^#[0-9a-fA-F]{6}$", _("Use a hex colour such as #0a58ca."))],
    )
    support_url = models.URLField(_("support link"), blank=True)
    minimum_acr = models.CharField(
        _("minimum authentication level"),
        max_length=255,
        blank=True,
        choices=ACR_CHOICES,
        help_text=_(
            "Every sign-in to this organisation reaches at least this level, whatever the application "
            "asks for. Empty: no minimum."
        ),
    )
    created = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("tenant")
        verbose_name_plural = _("tenants")
        ordering = ["code"]
        constraints = [
            models.UniqueConstraint(
                Lower("code"),
                name="oidc_tenant_code_ci_unique",
                violation_error_message=_("An organisation with this code already exists (any case)."),
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    def save(self, *args, **kwargs):
        self.code = self.code.lower()
        super().save(*args, **kwargs)


class TenantMembership(models.Model):
    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oidc_tenant_memberships"
    )
    is_active = models.BooleanField(_("active"), default=True)
    created = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("tenant membership")
        verbose_name_plural = _("tenant memberships")
        constraints = [models.UniqueConstraint(fields=["tenant", "user"], name="oidc_membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant}"
