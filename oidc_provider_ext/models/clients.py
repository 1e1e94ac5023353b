from django.db import models
from django.utils.translation import gettext_lazy as _
from oauth2_provider.settings import oauth2_settings


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

    class Meta:
        verbose_name = _("client OIDC profile")
        verbose_name_plural = _("client OIDC profiles")

    def __str__(self) -> str:
        return f"OIDC profile of {self.application}"
