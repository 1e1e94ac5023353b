from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _
from oauth2_provider.settings import oauth2_settings


class Consent(models.Model):
    """A user's remembered consent for a client (and tenant): which scopes, since when."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oidc_consents")
    application = models.ForeignKey(
        oauth2_settings.APPLICATION_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    # The tenant's code, not a foreign key: the adapter may serve tenants from the site's own
    # organisation model. "" means no tenant.
    tenant = models.CharField(_("tenant"), max_length=64, blank=True, db_index=True)
    scope = models.TextField(_("granted scopes"))
    # RFC 8707: the scopes allowed per API, {resource identifier: [scopes]}, "" for requests that
    # name no resource. A scope allowed for one API covers no other (``scope`` is the union).
    resource = models.JSONField(_("scopes per resource"), default=dict, blank=True)
    granted = models.DateTimeField(_("granted"))
    expires = models.DateTimeField(_("expires"), null=True, blank=True)
    revoked = models.DateTimeField(_("revoked"), null=True, blank=True)
    last_used = models.DateTimeField(_("last used"), null=True, blank=True)

    class Meta:
        verbose_name = _("consent")
        verbose_name_plural = _("consents")
        indexes = [models.Index(fields=["user", "application"], name="oidc_consent_lookup")]

    def __str__(self) -> str:
        return f"{self.user} → {self.application_id}: {self.scope}"

    @property
    def scopes(self) -> set[str]:
        return set(self.scope.split())
