import secrets

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


def default_kid() -> str:
    return secrets.token_urlsafe(12)


class SigningKey(models.Model):
    """A JWS signing key. Lifecycle: next (published) -> active (signs) -> retired (published)."""

    class State(models.TextChoices):
        NEXT = "next", _("next (published, not signing yet)")
        ACTIVE = "active", _("active (signs new tokens)")
        RETIRED = "retired", _("retired (published until its tokens expire)")

    class Algorithm(models.TextChoices):
        RS256 = "RS256", "RS256"
        PS256 = "PS256", "PS256"
        ES256 = "ES256", "ES256"

    id = models.BigAutoField(primary_key=True)
    kid = models.CharField(_("key ID"), max_length=64, unique=True, default=default_kid)
    alg = models.CharField(_("algorithm"), max_length=8, choices=Algorithm.choices, default=Algorithm.RS256)
    state = models.CharField(_("state"), max_length=8, choices=State.choices, default=State.NEXT)
    public_jwk = models.JSONField(_("public JWK"))
    private_jwk_encrypted = models.TextField(_("private JWK (encrypted)"), editable=False)
    created = models.DateTimeField(_("created"), auto_now_add=True)
    activated = models.DateTimeField(_("activated"), null=True, blank=True)
    retired = models.DateTimeField(_("retired"), null=True, blank=True)

    class Meta:
        verbose_name = _("signing key")
        verbose_name_plural = _("signing keys")
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(
                fields=["alg"],
                condition=models.Q(state="active"),
                name="oidc_one_active_key_per_alg",
            )
        ]

    def __str__(self) -> str:
        return f"{self.alg} {self.kid} ({self.state})"

    def save(self, *args, **kwargs):
        # The timestamps follow the state whoever changes it (keys.rotate(), the admin): a retired
        # key without ``retired`` would have no end to its publication window and never be pruned.
        now = timezone.now()
        if self.state == self.State.ACTIVE and self.activated is None:
            self.activated = now
        if self.state == self.State.RETIRED and self.retired is None:
            self.retired = now
        super().save(*args, **kwargs)
