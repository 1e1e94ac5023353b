import logging

from django.apps import AppConfig


class OidcProviderExtConfig(AppConfig):
    name = "oidc_provider_ext"
    verbose_name = "OpenID Connect provider"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks, keys  # noqa: F401  (system checks and signal receivers)
        from .internal import clients, op_sessions, receivers  # noqa: F401

        receivers.connect()

        # oauthlib's DEBUG records contain authorization codes and tokens ("Saving grant {'code':
        # ...}"). Unless the site configured that logger itself, keep it at INFO.
        oauthlib_logger = logging.getLogger("oauthlib")
        if oauthlib_logger.level == logging.NOTSET:
            oauthlib_logger.setLevel(logging.INFO)
