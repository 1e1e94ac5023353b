from django.apps import AppConfig


class OidcProviderExtConfig(AppConfig):
    name = "oidc_provider_ext"
    verbose_name = "OpenID Connect provider"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks, keys  # noqa: F401  (registers system checks and key signals)
