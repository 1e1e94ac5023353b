from django.db import models
from django.utils.translation import gettext_lazy as _
from oauth2_provider.settings import oauth2_settings


class BackchannelDelivery(models.Model):
    """One logout token sent (or to be sent again) to one client for one ended OP session."""

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        DELIVERED = "delivered", _("delivered")
        FAILED = "failed", _("failed")

    id = models.BigAutoField(primary_key=True)
    op_session = models.ForeignKey(
        "oidc_provider_ext.OPSession", on_delete=models.CASCADE, related_name="deliveries"
    )
    application = models.ForeignKey(
        oauth2_settings.APPLICATION_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    uri = models.URLField(_("back-channel logout URI"))
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    last_error = models.TextField(_("last error"), blank=True)
    created = models.DateTimeField(_("created"), auto_now_add=True)
    last_attempt = models.DateTimeField(_("last attempt"), null=True, blank=True)

    class Meta:
        verbose_name = _("back-channel logout delivery")
        verbose_name_plural = _("back-channel logout deliveries")
        indexes = [models.Index(fields=["status", "attempts"], name="oidc_delivery_retry")]

    def __str__(self) -> str:
        return f"logout of {self.op_session_id} to {self.application_id}: {self.status}"
