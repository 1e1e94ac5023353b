"""Production profile of the example IdP: ``DJANGO_SETTINGS_MODULE=idp_project.settings_production``.

Everything in settings.py, plus the transport and cookie hardening `manage.py check --deploy`
asks for. Requires DJANGO_SECRET_KEY and an https OIDC_ISSUER in the environment.
"""

import os

from oidc_provider_ext.conf import dot_settings

from .settings import *  # noqa: F403
from .settings import OIDC_PROVIDER_EXT

DEBUG = False
SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]  # no default in production: fail loudly

# Outbound requests (back-channel logout) reach public https addresses only: the example's
# loopback allowance is for development. List a network here only if an RP really lives in it.
OIDC_PROVIDER_EXT = {k: v for k, v in OIDC_PROVIDER_EXT.items() if k != "OUTBOUND_ALLOWED_NETWORKS"}

if not OIDC_PROVIDER_EXT["ISSUER"].startswith("https://"):
    raise RuntimeError("OIDC_ISSUER must be an https URL in production.")

SECURE_SSL_REDIRECT = True
SECURE_HSTS_SECONDS = 365 * 24 * 3600
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
if os.environ.get("DJANGO_BEHIND_TLS_PROXY"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

SESSION_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
# Lax, not Strict: the IdP's session cookie must reach /connect/authorize on the top-level
# navigation that comes from the relying party's site.
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SECURE = True
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"

# RFC 9700 2.1: https redirect URIs only. (A site serving native apps adds their private-use
# schemes; loopback http redirects for native apps would need "http" back, see docs/operations.md.)
OAUTH2_PROVIDER = dot_settings(ALLOWED_REDIRECT_URI_SCHEMES=["https"])
