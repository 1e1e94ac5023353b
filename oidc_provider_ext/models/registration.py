from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class InitialAccessToken(models.Model):
    """RFC 7591 3: a bearer token the operator hands to a developer so that the holder may register
    clients while REGISTRATION is "initial_access_token". Stored as a keyed hash only
    (``manage.py oidc_registration_token create`` prints it once)."""

    id = models.BigAutoField(primary_key=True)
    description = models.CharField(_("description"), max_length=255, blank=True)
    token_hash = models.CharField(max_length=128, unique=True, editable=False)
    created = models.DateTimeField(_("created"), auto_now_add=True)
    expires = models.DateTimeField(_("expires"))
    max_uses = models.PositiveIntegerField(_("registrations allowed"), default=1)
    uses = models.PositiveIntegerField(_("registrations made"), default=0, editable=False)
    revoked = models.DateTimeField(_("revoked"), null=True, blank=True)

    class Meta:
        verbose_name = _("initial access token")
        verbose_name_plural = _("initial access tokens")

    def __str__(self) -> str:
        return self.description or f"initial access token {self.pk}"

    @property
    def usable(self) -> bool:
        return self.revoked is None and self.expires > timezone.now() and self.uses < self.max_uses
