from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _
from oauth2_provider.settings import oauth2_settings


class DeviceAuthorization(models.Model):
    """One device authorization request (RFC 8628 3.1): a CLI or TV asked for access and shows the
    user a code to enter at ``/connect/device``.

    Ours rather than DOT's ``DeviceGrant``, which stores ``device_code`` and ``user_code`` in clear
    and looks the user code up by plain equality: here the device code is stored as its SHA-256
    (it has 256 bits of entropy), the user code as an HMAC under a key derived from SECRET_KEYS
    (it has only ~34 bits, so a plain hash of a database dump would be reversed in seconds). On
    approval the row points at the :class:`AuthorizationGrant` every token derives from, so
    refresh, revocation, logout and consent revocation treat a device sign-in like any other.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Waiting for the user")
        APPROVED = "approved", _("Approved")
        DENIED = "denied", _("Denied")

    id = models.BigAutoField(primary_key=True)
    device_code_checksum = models.CharField(_("device code checksum"), max_length=64, unique=True)
    user_code_hmac = models.CharField(_("user code HMAC"), max_length=64, unique=True)
    application = models.ForeignKey(
        oauth2_settings.APPLICATION_MODEL,
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("client"),
    )
    scope = models.TextField(_("scope"), blank=True)
    # The tenant the request named (acr_values=tenant:<code>) or the client's default; "" with
    # tenant_deferred: decided after sign-in, as at the authorization endpoint.
    tenant = models.CharField(_("tenant"), max_length=64, blank=True)
    tenant_deferred = models.BooleanField(_("tenant chosen at sign-in"), default=False)
    status = models.CharField(_("status"), max_length=8, choices=Status.choices, default=Status.PENDING)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    grant = models.ForeignKey(
        "oidc_provider_ext.AuthorizationGrant",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("authorization grant"),
    )
    # RFC 8628 3.5: the least seconds between two polls; slow_down adds 5 (stored, so it lasts).
    interval = models.PositiveIntegerField(_("polling interval (seconds)"))
    last_polled = models.DateTimeField(_("last polled"), null=True, blank=True)
    created = models.DateTimeField(_("created"), auto_now_add=True)
    expires = models.DateTimeField(_("expires"), db_index=True)

    class Meta:
        verbose_name = _("device authorization")
        verbose_name_plural = _("device authorizations")
        indexes = [models.Index(fields=["application", "status", "expires"], name="oidc_device_pending")]

    def __str__(self) -> str:
        return f"device authorization {self.pk} for {self.application_id}"

    @property
    def scopes(self) -> list[str]:
        return self.scope.split()
