from django.apps import AppConfig


class IdpProjectConfig(AppConfig):
    """The example IdP as an app: its users' profile (address, phone number), the adapter that
    releases it, the demo relying party (``/demo-rp/``) and an ``oidc_demo`` that fills both."""

    name = "idp_project"
    verbose_name = "Example IdP"
    default_auto_field = "django.db.models.BigAutoField"
