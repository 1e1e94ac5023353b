import secrets

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


def default_sid() -> str:
    return secrets.token_urlsafe(24)


class OPSession(models.Model):
    """One sign-in at this OpenID Provider: the ``sid`` of OIDC Front/Back-Channel Logout, and the
    ``auth_time``, ``acr`` and ``amr`` every token issued in it reports (OIDC Core 2).

    The row does not know the browser's Django session key, not even hashed: the browser's session
    names its OP sessions (``sessions.SESSION_KEY``), and ending one here (``ended``) signs that
    browser out on its next request (``sessions.browser_entries``). A database dump or a view-only
    admin therefore holds nothing a session cookie can be made from."""

    id = models.BigAutoField(primary_key=True)
    sid = models.CharField(_("session ID"), max_length=64, unique=True, default=default_sid)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oidc_sessions")
    # The tenant's code, not a foreign key: the adapter may serve tenants from the site's own
    # organisation model. "" means no tenant.
    tenant = models.CharField(_("tenant"), max_length=64, blank=True, db_index=True)
    auth_time = models.DateTimeField(_("authenticated at"))
    acr = models.CharField(_("authentication context class"), max_length=255, blank=True)
    amr = models.JSONField(_("authentication methods"), default=list, blank=True)
    user_agent = models.CharField(_("browser"), max_length=255, blank=True)
    created = models.DateTimeField(_("created"), auto_now_add=True)
    ended = models.DateTimeField(_("ended"), null=True, blank=True, db_index=True)
    # When the browser session that holds it expires (at sign-in). Past it the OP session is over
    # even if no logout said so (the browser's session expired or was flushed: another account
    # signed in, the password changed elsewhere); oidc_cleanup ends it and tells the clients.
    expires = models.DateTimeField(_("expires"), null=True, blank=True, db_index=True)

    class Meta:
        verbose_name = _("OP session")
        verbose_name_plural = _("OP sessions")

    def __str__(self) -> str:
        return f"{self.user} since {self.auth_time:%Y-%m-%d %H:%M}"
