"""DOT scopes backend that reads the scopes of this app's settings."""

from oauth2_provider.scopes import BaseScopes

from .conf import app_settings

OPENID = "openid"  # OIDC Core 3.1.2.1: the scope that makes a request an OpenID Connect sign-in
OFFLINE_ACCESS = "offline_access"  # OIDC Core 11: the one scope that yields a refresh token

# OIDC Core 3.1.2.1 / 11: these ask about a user (sign-in, offline access), so a client acting for
# itself (client credentials, RFC 6749 4.4) can never be granted them.
USER_ONLY_SCOPES = frozenset({OPENID, OFFLINE_ACCESS})


def _for(request, scopes) -> list[str]:
    if getattr(request, "grant_type", None) == "client_credentials":
        return [scope for scope in scopes if scope not in USER_ONLY_SCOPES]
    return list(scopes)


class ScopesBackend(BaseScopes):
    def get_all_scopes(self):
        return app_settings.SCOPES

    def get_available_scopes(self, application=None, request=None, *args, **kwargs):
        return _for(request, app_settings.SCOPES)

    def get_default_scopes(self, application=None, request=None, *args, **kwargs):
        return _for(request, app_settings.DEFAULT_SCOPES)
