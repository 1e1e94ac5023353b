import logging

from django.apps import AppConfig, apps
from django.core.exceptions import ImproperlyConfigured

# Apps our models import from: without them Django fails while importing models, before any system
# check can run, with a traceback that does not say what to do. Checked first, with the fix.
REQUIRED_BEFORE_MODELS = {
    "django.contrib.auth": "users sign in through Django's auth",
    "django.contrib.contenttypes": "django.contrib.auth needs it",
    "oauth2_provider": "this app extends django-oauth-toolkit's clients and tokens",
}


class OidcProviderExtConfig(AppConfig):
    name = "oidc_provider_ext"
    verbose_name = "OpenID Connect provider"
    default_auto_field = "django.db.models.BigAutoField"

    def import_models(self):
        missing = [name for name in REQUIRED_BEFORE_MODELS if not apps.is_installed(name)]
        if missing:
            reasons = "; ".join(f"{name!r}: {REQUIRED_BEFORE_MODELS[name]}" for name in missing)
            raise ImproperlyConfigured(
                f"oidc_provider_ext needs {', '.join(map(repr, missing))} in INSTALLED_APPS ({reasons}). "
                "Add them before 'oidc_provider_ext' (README.md, 'Install into your existing Django site')."
            )
        super().import_models()

    def ready(self):
        from django.contrib.auth.signals import user_logged_in
        from django.db.backends.signals import connection_created

        from . import checks, keys  # noqa: F401  (system checks and signal receivers)
        from .internal import clients, op_sessions, receivers, sign_in, sqlite_checkpoints  # noqa: F401

        receivers.connect()
        # Django's last_login receiver, its UPDATE written once (internal/sign_in.py); a site that
        # disconnected Django's (dispatch_uid "update_last_login") or connected its own under that
        # uid keeps what it chose.
        if sign_in.djangos_last_login_receiver_connected() and user_logged_in.disconnect(
            dispatch_uid="update_last_login"
        ):
            user_logged_in.connect(sign_in.update_last_login, dispatch_uid="update_last_login")
        # SQLite in WAL mode: checkpoints in a background thread, not inside a token request.
        connection_created.connect(
            sqlite_checkpoints.connection_created, dispatch_uid="oidc_provider_ext.sqlite_checkpoints"
        )

        # oauthlib's DEBUG records contain authorization codes and tokens ("Saving grant {'code':
        # ...}"). Unless the site configured that logger itself, keep it at INFO.
        oauthlib_logger = logging.getLogger("oauthlib")
        if oauthlib_logger.level == logging.NOTSET:
            oauthlib_logger.setLevel(logging.INFO)
