from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Passkey(models.Model):
    """A WebAuthn credential a user registered (docs/passkeys.md).

    Nothing here is a bearer secret: the credential ID is sent to anyone who asks to sign in with
    it and the public key only verifies signatures. The private key never leaves the user's
    authenticator."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oidc_passkeys")
    # WebAuthn L3 5.1 (credential ID): at most 1023 bytes; stored as base64url (<= 1364 chars).
    credential_id = models.CharField(_("credential ID"), max_length=1400, unique=True)
    # The user.id the authenticator stores with a discoverable credential (WebAuthn L3 5.4.3):
    # random, the same for all of a user's passkeys, never the primary key or a name.
    user_handle = models.CharField(_("user handle"), max_length=128, db_index=True)
    public_key = models.BinaryField(_("public key (COSE)"))
    sign_count = models.PositiveBigIntegerField(_("signature counter"), default=0)
    transports = models.JSONField(_("transports"), default=list, blank=True)
    name = models.CharField(_("name"), max_length=64)
    aaguid = models.CharField(_("authenticator model (AAGUID)"), max_length=36, blank=True)
    # WebAuthn L3 6.1.3: BE is fixed at registration; BS may change at each use.
    backup_eligible = models.BooleanField(_("backup eligible"), default=False)
    backed_up = models.BooleanField(_("backed up"), default=False)
    created = models.DateTimeField(_("created"), auto_now_add=True)
    last_used = models.DateTimeField(_("last used"), null=True, blank=True)

    class Meta:
        verbose_name = _("passkey")
        verbose_name_plural = _("passkeys")
        ordering = ("created", "id")

    def __str__(self) -> str:
        return f"{self.name} ({self.user})"
