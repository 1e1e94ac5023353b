"""Settings of the example IdP. Everything that differs between machines comes from the environment:

DATABASE_URL     default sqlite:///<repo>/db.sqlite3 (WAL, busy timeout, IMMEDIATE transactions)
OIDC_ISSUER      default http://127.0.0.1:8000
OIDC_CODE_EXPIRE_SECONDS  authorization code lifetime, default 60 (1..600; benchmarks/ raises it)
OIDC_CLIENT_CACHE_SECONDS  how long a process may cache a client, default 30 (tests shorten it)
DJANGO_DEBUG     "1" to turn DEBUG on (off by default)
DJANGO_SECRET_KEY, DJANGO_ALLOWED_HOSTS (comma-separated)
REDIS_URL        the cache shared by every app server, e.g. redis://127.0.0.1:6379/0 (default: per process)
DJANGO_CACHE_KEY_PREFIX  prefix of every cache key in that Redis database (default none)
DJANGO_SESSION_ENGINE  db (default), cached_db, cache or signed_cookies
DEMO_RP_CLIENT_ID, DEMO_RP_CLIENT_SECRET, DEMO_RP_CREDENTIALS_FILE  the demo relying party's client
"""

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
import django
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from oidc_provider_ext.dot import dot_settings

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, "1" if default else "0").lower() in ("1", "true", "yes", "on")


DEBUG = env_bool("DJANGO_DEBUG")
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-example-key-change-me-" + "x" * 32)
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver").split(",")

INSTALLED_APPS = [
    # The example IdP itself (profile model, adapter, demo relying party). First, so its oidc_demo
    # command (which extends the app's) is the one manage.py runs.
    "idp_project.apps.IdpProjectConfig",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "crispy_forms",
    "crispy_bootstrap5",
    "oauth2_provider",
    "oidc_provider_ext",  # after oauth2_provider: it re-registers the client admin
    "axes",
    "csp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # django-csp's, with the bearer endpoints' (unchanging) header built once.
    "oidc_provider_ext.middleware.CSPMiddleware",
    # Userinfo, introspection, token and revocation are answered here, with every header above and
    # without the browser's middleware below (sessions, CSRF, sign-in state, messages, lockouts):
    # docs/operations.md.
    "oidc_provider_ext.middleware.BearerEndpointsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Signs a browser out once its OP sessions were ended elsewhere (another device, an operator).
    "oidc_provider_ext.middleware.OPSessionMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Last, as django-axes requires: it turns lockouts into the lockout page.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # Login throttling (docs/operations.md): an attacker must only ever lock out the attacker.
    # django-axes locks a (username, client address) pair after AXES_FAILURE_LIMIT failures: the
    # attacker's own address, never the victim's, on every sign-in path (hosted login, tenant
    # logins, /admin/login/). Locking by username alone would let anyone lock anyone out; locking
    # by address at the same low limit would lock out everyone behind one NAT or proxy.
    "axes.backends.AxesStandaloneBackend",
    # Refuses an address with LOGIN_ADDRESS_FAILURE_LIMIT (50) failures over any usernames in the
    # window: only a password-spraying source gets there.
    "oidc_provider_ext.throttle.LoginThrottleBackend",
    # Django's ModelBackend, which takes the user's row from the OP-session check of the same
    # request: one statement for both on every signed-in request (oidc_provider_ext/backends.py).
    "oidc_provider_ext.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]  # the pair, not either one
AXES_RESET_ON_SUCCESS = True
# No axes_accesslog row per successful sign-in (one INSERT each, and a table that grows without
# bound): lockouts come from axes_accessattempt, which this does not touch. The OP sessions
# (oidc_provider_ext_opsession: user, time, user agent, acr/amr) already record each sign-in.
AXES_DISABLE_ACCESS_LOG = True
# axes' database handler, without its clean-up statements on a sign-in that had no failures to
# reset (oidc_provider_ext/contrib/axes.py): the same records and lockouts.
AXES_HANDLER = "oidc_provider_ext.contrib.axes.AxesHandler"
# The lockout page in the sign-in's language (ui_locales, Accept-Language), the wait in minutes.
AXES_LOCKOUT_CALLABLE = "oidc_provider_ext.views.login.lockout_response"
AXES_USERNAME_FORM_FIELD = "username"
# The one definition of the client address, shared with the other throttles: REMOTE_ADDR, or
# behind OIDC_PROVIDER_EXT["TRUSTED_PROXY_COUNT"] proxies the X-Forwarded-For entry the first of
# them appended (never the leftmost, client-controlled one); an IPv6 address counts as its /64
# (else one customer rotates through 2**64 addresses), an IPv4-mapped one as the IPv4 address.
AXES_CLIENT_IP_CALLABLE = "oidc_provider_ext.throttle.throttle_address"

# Content Security Policy (django-csp): no inline scripts, no framing, only our own assets.
# Tenant and client logos are https URLs configured by operators.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, NONCE],  # the per-tenant brand colour is a nonce'd <style>
        "img-src": [SELF, "https:", "data:"],
        "object-src": [NONE],
        "base-uri": [NONE],
        "frame-ancestors": [NONE],
    }
}

ROOT_URLCONF = "idp_project.urls"
WSGI_APPLICATION = "idp_project.wsgi.application"
ASGI_APPLICATION = "idp_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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


def _database() -> dict[str, Any]:
    default_sqlite = f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
    config = dj_database_url.parse(os.environ.get("DATABASE_URL", default_sqlite), conn_max_age=60)
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # Embedded default that survives concurrent requests: WAL lets readers run beside the
        # writer, IMMEDIATE takes the write lock at BEGIN (no lock upgrade deadlocks), and the
        # busy timeout makes a second writer wait instead of failing with "database is locked".
        # Connections are kept (conn_max_age above) as on PostgreSQL: opening one and running the
        # three PRAGMAs again on every request was ~0.9 ms of a 2 ms userinfo call
        # (docs/performance.md).
        config["OPTIONS"] = {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;",
        }
        # Tests get a file too, not Django's shared-cache in-memory database: there a second
        # thread (the back-channel logout pool, a live server) hits table locks that fail at once
        # ("database table is locked") instead of waiting like WAL and the busy timeout do.
        config["TEST"] = {"NAME": str(BASE_DIR / f"test_db_{os.getpid()}.sqlite3")}
    elif config["ENGINE"] == "django.db.backends.postgresql":
        config["OPTIONS"] = {**config.get("OPTIONS", {}), **postgresql_options(os.environ)}
    return dict(config)


def postgresql_options(environ) -> dict[str, Any]:
    """psycopg 3 prepared statements: parameters bound on the server, and a statement a connection
    has run five times (psycopg's default threshold) is prepared, so PostgreSQL parses and plans it
    once per connection, not per request. Planning was most of the database's work on the hot
    paths: 1.0 ms of a 1.2 ms userinfo statement (docs/performance.md). Django leaves both off for
    connection poolers that cannot keep a prepared statement on its connection (PgBouncer in
    transaction mode before 1.21): set DATABASE_PREPARED_STATEMENTS=off there (docs/operations.md)."""
    if environ.get("DATABASE_PREPARED_STATEMENTS", "on").lower() in {"off", "0", "false", "no"}:
        return {}
    return {"server_side_binding": True, "prepare_threshold": 5}


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def _caches(environ) -> dict[str, Any] | None:
    """The cache every app server shares (docs/operations.md, "Running several app servers"):
    signing-key and client changes, throttle counters. None without REDIS_URL: each process then
    has Django's LocMemCache, which check --deploy reports (oidc_provider_ext.W044)."""
    if not environ.get("REDIS_URL"):
        return None
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": environ["REDIS_URL"],
            # Several sites (or test clusters) on one Redis database keep apart by prefix.
            "KEY_PREFIX": environ.get("DJANGO_CACHE_KEY_PREFIX", ""),
            # A Redis that hangs must fail fast: the provider then works from each process's
            # memory (oidc_provider_ext.internal.shared_cache) instead of holding every worker.
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }


# Where browser sessions live: Django's database table by default, shared by every app server.
# "cached_db" reads through the cache and writes through to the table; "cache" keeps them in Redis
# only (nothing durable to dump, but a Redis restart signs everyone out; no SQL per session read or
# write); "signed_cookies" keeps them in the browser. Only with a shared cache may the cache-based
# engines serve several servers. The first three are Django's engines with each row and cache entry
# keyed by the session key's hash, never by the key (oidc_provider_ext/sessions/).
_SESSION_ENGINES = {
    "db": "oidc_provider_ext.sessions",
    "cached_db": "oidc_provider_ext.sessions.cached_db",
    "cache": "oidc_provider_ext.sessions.cache",
    "signed_cookies": "django.contrib.sessions.backends.signed_cookies",
}


def _session_engine(name: str) -> str:
    if name not in _SESSION_ENGINES:
        raise ImproperlyConfigured(
            f"DJANGO_SESSION_ENGINE={name!r}: use one of {', '.join(_SESSION_ENGINES)}."
        )
    return _SESSION_ENGINES[name]


_shared_cache = _caches(os.environ)
if _shared_cache is not None:
    CACHES = _shared_cache
SESSION_ENGINE = _session_engine(os.environ.get("DJANGO_SESSION_ENGINE", "db"))

PASSWORD_HASHERS = [
    # Users' passwords: Django's default, deliberately slow.
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
    # Generated client secrets only (>= 256 bits): never first, see docs/client-secrets.md.
    "oidc_provider_ext.hashers.ClientSecretHasher",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Static files are served by the app itself (WhiteNoise): an IdP loads nothing from a CDN.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # no collectstatic step needed for `make run`

LOGIN_URL = "oidc_provider_ext:login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"
# The client admin shows a new client secret once, as a message: keep it out of cookies.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
# Mail goes to the console. Django 6.1 replaces EMAIL_BACKEND by MAILERS (EMAIL_BACKEND warns, and
# both together are an error); 5.2 and 6.0 know only EMAIL_BACKEND.
if django.VERSION >= (6, 1):
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.console.EmailBackend"}}
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"

X_FRAME_OPTIONS = "DENY"
# "same-origin", not "no-referrer": under no-referrer browsers send "Origin: null" with form
# POSTs (Fetch, serializing a request origin) and Django's CSRF check refuses every sign-in.
# Responses that carry a code (authorization responses) set no-referrer themselves.
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

OIDC_PROVIDER_EXT: dict[str, Any] = {
    "ISSUER": os.environ.get("OIDC_ISSUER", "http://127.0.0.1:8000"),
    # Django's user plus idp_project.models.Profile: every claim of every advertised scope
    # (profile, email, address, phone) can be released (docs/adapter.md).
    "ADAPTER": "idp_project.adapter.ExampleAdapter",
    # The demo clients' back-channel logout endpoints (and the test suite's receivers) listen on
    # loopback over http. Outbound requests refuse that by default; production settings drop it.
    "OUTBOUND_ALLOWED_NETWORKS": ["127.0.0.0/8", "::1/128"],
}
if os.environ.get("OIDC_CODE_EXPIRE_SECONDS"):
    # A lifetime, not a performance setting: benchmarks/ mints codes ahead of the timed phase.
    # Out-of-range values are reported by check oidc_provider_ext.E006.
    OIDC_PROVIDER_EXT["CODE_EXPIRE_SECONDS"] = int(os.environ["OIDC_CODE_EXPIRE_SECONDS"])
if os.environ.get("OIDC_REGISTRATION"):
    # Self-registering clients (docs/registration.md): "open" lets an MCP client register itself
    # against `make run` (OIDC_REGISTRATION=open make run). Other values: check E070.
    OIDC_PROVIDER_EXT["REGISTRATION"] = os.environ["OIDC_REGISTRATION"]
if os.environ.get("OIDC_CLIENT_CACHE_SECONDS"):
    # How stale a client may be in a process without a shared cache (docs/operations.md).
    OIDC_PROVIDER_EXT["CLIENT_CACHE_SECONDS"] = int(os.environ["OIDC_CLIENT_CACHE_SECONDS"])
OAUTH2_PROVIDER = dot_settings()

# The demo relying party at /demo-rp/ (idp_project/demo_rp.py, docs/demo.md): the confidential
# demo client's credentials from the environment, else from the file `manage.py oidc_demo` writes
# on every run (mode 0600, ignored by git). None turns the playground off.
DEMO_RP: dict[str, Any] | None = {
    "CLIENT_ID": os.environ.get("DEMO_RP_CLIENT_ID", ""),
    "CLIENT_SECRET": os.environ.get("DEMO_RP_CLIENT_SECRET", ""),
    "CREDENTIALS_FILE": Path(os.environ.get("DEMO_RP_CREDENTIALS_FILE", BASE_DIR / ".demo-rp.json")),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
