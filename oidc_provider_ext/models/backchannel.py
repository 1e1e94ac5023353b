from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from oauth2_provider.settings import oauth2_settings


class BackchannelDelivery(models.Model):
    """One logout token sent (or to be sent again) to one client for one ended OP session.

    A durable outbox row (oidc_provider_ext.internal.backchannel): PENDING when recorded with the
    logout, SENDING while a worker holds its lease (until ``next_attempt``), then DELIVERED, or
    FAILED with ``next_attempt`` set to when it is due again.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        SENDING = "sending", _("sending")
        DELIVERED = "delivered", _("delivered")
        FAILED = "failed", _("failed")

    id = models.BigAutoField(primary_key=True)
    # SET_NULL, and what the logout token says is copied below: deleting the user (which deletes
    # their OP sessions) must not delete the news that their sessions ended.
    op_session = models.ForeignKey(
        "oidc_provider_ext.OPSession",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="deliveries",
    )
    subject = models.CharField(_("subject (sub)"), max_length=255, blank=True)
    sid = models.CharField(_("session ID (sid)"), max_length=64, blank=True)
    application = models.ForeignKey(
        oauth2_settings.APPLICATION_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    uri = models.URLField(_("back-channel logout URI"))
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    last_error = models.TextField(_("last error"), blank=True)
    created = models.DateTimeField(_("created"), auto_now_add=True)
    last_attempt = models.DateTimeField(_("last attempt"), null=True, blank=True)
    # Due time of a PENDING/FAILED row; end of the lease of a SENDING row (stale once passed).
    next_attempt = models.DateTimeField(_("next attempt"), default=timezone.now)

    class Meta:
        verbose_name = _("back-channel logout delivery")
        verbose_name_plural = _("back-channel logout deliveries")
        indexes = [models.Index(fields=["status", "next_attempt"], name="oidc_delivery_due")]

    def __str__(self) -> str:
        return f"logout of {self.op_session_id} to {self.application_id}: {self.status}"
