"""The reusable app installed as a site would: Django's startproject settings plus exactly what
README.md ("Install into your existing Django site") adds. No example-project pieces (axes, csp,
whitenoise, idp_project): what the app needs must be in the README, not in idp_project.

Run with ``make test-minimal`` (tests/minimal/pytest.ini); the normal suite never loads it.
"""

import os
from pathlib import Path

from django.conf import global_settings

from oidc_provider_ext.dot import dot_settings

BASE_DIR = Path(__file__).resolve().parent

# --- What `django-admin startproject` writes -----------------------------------------------------
SECRET_KEY = "minimal-settings-test-key-" + "m" * 40
DEBUG = False
ALLOWED_HOSTS = ["testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "tests.minimal.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db_minimal.sqlite3"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"

# --- What README.md adds ------------------------------------------------------------------------
INSTALLED_APPS += [
    "crispy_forms",
    "crispy_bootstrap5",
    "oauth2_provider",
    "oidc_provider_ext",  # after oauth2_provider
]
CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"

OIDC_PROVIDER_EXT = {
    "ISSUER": "https://id.example.com",
    "SECRET_KEYS": ["minimal-settings-oidc-secret-" + "s" * 40],
}
OAUTH2_PROVIDER = dot_settings()

MIDDLEWARE.insert(
    MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1,
    "oidc_provider_ext.middleware.OPSessionMiddleware",
)
AUTHENTICATION_BACKENDS = [
    "oidc_provider_ext.backends.ModelBackend" if path == "django.contrib.auth.backends.ModelBackend" else path
    for path in globals().get("AUTHENTICATION_BACKENDS", global_settings.AUTHENTICATION_BACKENDS)
]

PASSWORD_HASHERS = [*global_settings.PASSWORD_HASHERS, "oidc_provider_ext.hashers.ClientSecretHasher"]
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        # README reads REDIS_URL; a database of its own here, so the run starts empty.
        "LOCATION": os.environ.get("MINIMAL_REDIS_URL", "redis://127.0.0.1:6379/15"),
        "KEY_PREFIX": "oidc-minimal-test",
    }
}
SESSION_ENGINE = "oidc_provider_ext.sessions"
