"""Production profile of the example IdP: ``DJANGO_SETTINGS_MODULE=idp_project.settings_production``.

Everything in settings.py, plus the transport and cookie hardening `manage.py check --deploy`
asks for. Requires in the environment: DJANGO_SECRET_KEY, OIDC_SECRET_KEYS (the provider's own
secrets, comma-separated, newest first: see docs/operations.md, "Secrets") and an https OIDC_ISSUER.
"""

import os

import django
from django.core.exceptions import ImproperlyConfigured

from oidc_provider_ext.dot import dot_settings

from .settings import *  # noqa: F403
from .settings import OIDC_PROVIDER_EXT

_missing = [name for name in ("DJANGO_SECRET_KEY", "OIDC_SECRET_KEYS") if not os.environ.get(name)]
if _missing:
    # No defaults in production: the example's are public (check --deploy refuses them too, E021).
    raise ImproperlyConfigured(
        f"Set {' and '.join(_missing)} in the environment for idp_project.settings_production "
        "(long random values, e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))')."
    )

DEBUG = False
SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
OIDC_PROVIDER_EXT["SECRET_KEYS"] = os.environ["OIDC_SECRET_KEYS"].split(",")

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

# How many reverse proxies (load balancer, nginx, ...) each request passes through; each must
# append the address it received the request from to X-Forwarded-For. The client address used by
# every throttle (django-axes included, via AXES_CLIENT_IP_CALLABLE) is then the entry the first
# proxy appended, counted from the right; entries to its left come from the client and are ignored.
# 0 (the default) uses REMOTE_ADDR: right without a proxy, but behind one every request would share
# the proxy's address, i.e. one global counter. Too high a number lets clients pick their address.
OIDC_PROVIDER_EXT["TRUSTED_PROXY_COUNT"] = int(os.environ.get("DJANGO_TRUSTED_PROXY_COUNT", "0"))

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

# No demo relying party in production: it is a client of this IdP holding a client secret.
DEMO_RP = None

# Mail (e.g. password reset) goes out by SMTP: settings.py's console backend is for development
# (Django 6.1's check --deploy refuses it, mail.E001). Django 6.1 configures it with MAILERS.
_SMTP = {
    "host": os.environ.get("DJANGO_EMAIL_HOST", "localhost"),
    "port": int(os.environ.get("DJANGO_EMAIL_PORT", "25")),
    "username": os.environ.get("DJANGO_EMAIL_HOST_USER", ""),
    "password": os.environ.get("DJANGO_EMAIL_HOST_PASSWORD", ""),
    "use_tls": os.environ.get("DJANGO_EMAIL_USE_TLS", "") == "1",
}
if django.VERSION >= (6, 1):
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend", "OPTIONS": _SMTP}}
else:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST, EMAIL_PORT = _SMTP["host"], _SMTP["port"]
    EMAIL_HOST_USER, EMAIL_HOST_PASSWORD = _SMTP["username"], _SMTP["password"]
    EMAIL_USE_TLS = _SMTP["use_tls"]
