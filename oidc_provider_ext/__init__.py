"""oidc-provider-ext: a complete OpenID Connect provider on top of django-oauth-toolkit."""

__version__ = "0.1.0"
