"""DOT scopes backend that reads the scopes of this app's settings."""

from oauth2_provider.scopes import BaseScopes

from .conf import app_settings


class ScopesBackend(BaseScopes):
    def get_all_scopes(self):
        return app_settings.SCOPES

    def get_available_scopes(self, application=None, request=None, *args, **kwargs):
        return list(app_settings.SCOPES)

    def get_default_scopes(self, application=None, request=None, *args, **kwargs):
        return app_settings.DEFAULT_SCOPES
