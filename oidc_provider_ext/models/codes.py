from django.db import models
from django.utils.translation import gettext_lazy as _
from oauth2_provider.settings import oauth2_settings


class RedeemedCode(models.Model):
    """One row per authorization code that was presented at the token endpoint.

    The unique ``code_checksum`` is the single-use lock: the first redemption inserts the row, a
    concurrent or later one hits the constraint and gets ``invalid_grant``. The row also remembers
    the access token issued for the code, so a replay can revoke it (RFC 6749 4.1.2, 10.5).
    """

    id = models.BigAutoField(primary_key=True)
    code_checksum = models.CharField(_("code checksum"), max_length=64, unique=True)
    application = models.ForeignKey(
        oauth2_settings.APPLICATION_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    access_token = models.ForeignKey(
        oauth2_settings.ACCESS_TOKEN_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    token_family = models.UUIDField(_("refresh token family"), null=True, blank=True)
    reuse_detected = models.BooleanField(_("reuse detected"), default=False)
    created = models.DateTimeField(_("redeemed at"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("redeemed authorization code")
        verbose_name_plural = _("redeemed authorization codes")

    def __str__(self) -> str:
        return f"code {self.code_checksum[:12]}… for {self.application_id}"
