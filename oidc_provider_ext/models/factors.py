from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class TOTPDevice(models.Model):
    """A user's authenticator app (RFC 6238). The shared secret is a bearer secret: it is stored
    encrypted with the provider's own key (internal/crypto.py), never in clear, and the admin never
    shows it. One per user; it counts only once confirmed with a code."""

    id = models.BigAutoField(primary_key=True)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oidc_totp_device"
    )
    encrypted_secret = models.TextField(_("encrypted secret"))
    confirmed = models.DateTimeField(_("confirmed"), null=True, blank=True)
    # The RFC 6238 time step of the last code accepted: that code and older ones are refused
    # (RFC 6238 5.2, "the verifier MUST NOT accept the second attempt of the same OTP").
    last_counter = models.BigIntegerField(_("last time step used"), null=True, blank=True)
    last_used = models.DateTimeField(_("last used"), null=True, blank=True)
    created = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("authenticator app")
        verbose_name_plural = _("authenticator apps")

    def __str__(self) -> str:
        return f"Authenticator app of {self.user}"


class RecoveryCode(models.Model):
    """A single-use recovery code, stored as a keyed hash (HMAC-SHA-256 with the provider's own
    key): a database dump holds nothing a user could type."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oidc_recovery_codes"
    )
    code_hash = models.CharField(_("code hash"), max_length=64)
    used = models.DateTimeField(_("used"), null=True, blank=True)
    created = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("recovery code")
        verbose_name_plural = _("recovery codes")
        constraints = [
            models.UniqueConstraint(fields=["user", "code_hash"], name="oidc_recovery_code_unique")
        ]

    def __str__(self) -> str:
        return f"Recovery code of {self.user}"
