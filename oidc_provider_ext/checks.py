"""System checks. IDs are stable and unique (tests/test_project.py::TestChecks asserts both)."""

from __future__ import annotations

import gettext
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.utils.module_loading import import_string

from .conf import (
    MAX_CODE_EXPIRE_SECONDS,
    MAX_DEVICE_CODE_EXPIRE_SECONDS,
    NUMERIC_SETTINGS,
    REGISTRATION_POLICIES,
    SETTINGS_NAME,
    app_settings,
)

E001 = "oidc_provider_ext.E001"  # OIDC not enabled in DOT
E002 = "oidc_provider_ext.E002"  # DOT validator is not ours
E003 = "oidc_provider_ext.E003"  # issuer missing
E004 = "oidc_provider_ext.E004"  # issuer malformed
E005 = "oidc_provider_ext.E005"  # unknown/invalid OIDC_PROVIDER_EXT keys
E006 = "oidc_provider_ext.E006"  # code lifetime above 10 minutes
E007 = "oidc_provider_ext.E007"  # adapter cannot be imported
E008 = "oidc_provider_ext.E008"  # DOT server class is not ours
E023 = "oidc_provider_ext.E023"  # DOT backend (OAuthLibCore) class is not ours
E009 = "oidc_provider_ext.E009"  # client-secret hasher missing from PASSWORD_HASHERS
E010 = "oidc_provider_ext.E010"  # client-secret hasher first in PASSWORD_HASHERS
E011 = "oidc_provider_ext.E011"  # resource server without an audience (or a malformed one)
E022 = "oidc_provider_ext.E022"  # a DOT setting makes DOT fetch URLs itself, outside the guarded client
W001 = "oidc_provider_ext.W001"  # issuer is not https
E020 = "oidc_provider_ext.E020"  # deploy: SECRET_KEYS not set (key encryption would derive from SECRET_KEY)
E021 = "oidc_provider_ext.E021"  # deploy: SECRET_KEY or one of SECRET_KEYS is an example or weak value
W020 = "oidc_provider_ext.W020"  # OPSessionMiddleware missing
W024 = "oidc_provider_ext.W024"  # the adapter overrides a hook that no longer exists
W050 = "oidc_provider_ext.W050"  # UI_LOCALES names a language no catalogue translates
W040 = "oidc_provider_ext.W040"  # a protected resource's RFC 9728 metadata URL is not routed here
E060 = "oidc_provider_ext.E060"  # WEBAUTHN_RP_ID is not the host (or a registrable suffix) of an origin
E061 = "oidc_provider_ext.E061"  # a WEBAUTHN_ORIGINS entry is not an https origin (http only on loopback)
W060 = "oidc_provider_ext.W060"  # WEBAUTHN_RP_ID is an IP address: browsers refuse passkeys there
E070 = "oidc_provider_ext.E070"  # REGISTRATION, its tenant list or statement issuers malformed
E071 = "oidc_provider_ext.E071"  # client ID metadata document fetch limits out of bounds
E080 = "oidc_provider_ext.E080"  # device: DEVICE_CODE_EXPIRE_SECONDS not 1..1800
E081 = "oidc_provider_ext.E081"  # device: DEVICE_POLL_INTERVAL_SECONDS not 1..60
E082 = "oidc_provider_ext.E082"  # device: a cap of pending device authorizations is not a positive int
E083 = "oidc_provider_ext.E083"  # device: DEVICE_USER_CODE_FAILURE_LIMIT is not a positive int
W044 = "oidc_provider_ext.W044"  # deploy: the default cache is per process (LocMemCache, DummyCache)
W046 = "oidc_provider_ext.W046"  # deploy: SESSION_ENGINE stores sessions under the cookie's value
W047 = "oidc_provider_ext.W047"  # a PostgreSQL database runs above READ COMMITTED

# Cache backends that live inside one process: what the provider coordinates through the cache
# (key and client changes, throttle counters, the remote-JWKS fetch lock) then stops at its edge.
PER_PROCESS_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


def _dot() -> dict:
    value = getattr(settings, "OAUTH2_PROVIDER", None)
    return value if isinstance(value, dict) else {}


# The DOT seams this app must own: (key, our class, why, check id).
_DOT_CLASSES = (
    (
        "OAUTH2_VALIDATOR_CLASS",
        "oidc_provider_ext.validator.OIDCValidator",
        "every token rule is in it",
        E002,
    ),
    (
        "OAUTH2_SERVER_CLASS",
        "oidc_provider_ext.server.Server",
        "it refuses implicit/password grants and PKCE plain",
        E008,
    ),
    ("OAUTH2_BACKEND_CLASS", "oidc_provider_ext.server.OAuthLibCore", "introspection needs it", E023),
)


@register(Tags.security, Tags.compatibility)
def check_settings(app_configs=None, **kwargs):
    errors: list[CheckMessage] = []
    dot = _dot()
    if not dot.get("OIDC_ENABLED"):
        errors.append(
            Error(
                "OpenID Connect is not enabled in django-oauth-toolkit.",
                hint="Set OAUTH2_PROVIDER = oidc_provider_ext.dot.dot_settings() in your settings.",
                id=E001,
            )
        )
    for key, ours, why, check_id in _DOT_CLASSES:
        path = dot.get(key, "")
        if not _is_subclass(path, ours):
            errors.append(
                Error(
                    f"OAUTH2_PROVIDER[{key!r}] is {path or 'unset'!r}, not {ours} "
                    f"or a subclass of it ({why}).",
                    hint=f"Use oidc_provider_ext.dot.dot_settings(), or subclass {ours}.",
                    id=check_id,
                )
            )
    try:
        issuer = app_settings.raw("ISSUER")
    except ImproperlyConfigured as exc:
        return [*errors, Error(str(exc), hint=f"Remove or fix the key in {SETTINGS_NAME}.", id=E005)]
    if not issuer:
        errors.append(
            Error(
                f"{SETTINGS_NAME}['ISSUER'] is not set.",
                hint="Set it to the https URL relying parties use, e.g. https://id.example.com.",
                id=E003,
            )
        )
    else:
        parts = urlsplit(str(issuer))
        if parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment:
            errors.append(
                Error(
                    f"{SETTINGS_NAME}['ISSUER'] = {issuer!r} is not a URL without query or fragment.",
                    hint="OIDC Discovery 3: the issuer is an https URL with no query or fragment.",
                    id=E004,
                )
            )
        elif parts.scheme != "https" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            errors.append(
                Warning(
                    f"{SETTINGS_NAME}['ISSUER'] = {issuer!r} is not https.",
                    hint="Relying parties require an https issuer outside local development.",
                    id=W001,
                )
            )
    for name, default in NUMERIC_SETTINGS.items():
        try:
            getattr(app_settings, name)  # read exactly as every request reads it
        except (TypeError, ValueError):
            errors.append(
                Error(
                    f"{SETTINGS_NAME}[{name!r}] = {app_settings.raw(name)!r} is not a number.",
                    hint=f"Give a number, as its default ({default!r}) is.",
                    id=E005,
                )
            )
        except ImproperlyConfigured:
            pass  # the setting's own check says why
    code_lifetime = app_settings.raw("CODE_EXPIRE_SECONDS")
    if not isinstance(code_lifetime, int) or not 0 < code_lifetime <= MAX_CODE_EXPIRE_SECONDS:
        errors.append(
            Error(
                f"{SETTINGS_NAME}['CODE_EXPIRE_SECONDS'] = {code_lifetime!r} "
                f"must be 1..{MAX_CODE_EXPIRE_SECONDS}.",
                hint="RFC 6749 4.1.2 recommends at most 10 minutes; the default is 60 seconds.",
                id=E006,
            )
        )
    hasher = "oidc_provider_ext.hashers.ClientSecretHasher"
    hashers = list(settings.PASSWORD_HASHERS)
    if hasher not in hashers:
        errors.append(
            Error(
                f"{hasher} is not in PASSWORD_HASHERS: generated client secrets cannot be hashed.",
                hint="Append it to PASSWORD_HASHERS (last, after your users' password hashers).",
                id=E009,
            )
        )
    elif hashers[0] == hasher:
        errors.append(
            Error(
                f"{hasher} is the first of PASSWORD_HASHERS: users' passwords would get a fast hash.",
                hint="Keep a slow password hasher (Django's default PBKDF2) first; put this one last.",
                id=E010,
            )
        )
    try:
        adapter_class = import_string(app_settings.ADAPTER)
    except ImportError as exc:
        errors.append(
            Error(
                f"{SETTINGS_NAME}['ADAPTER'] = {app_settings.ADAPTER!r} cannot be imported: {exc}.",
                hint="Point it at a subclass of oidc_provider_ext.adapter.DefaultOIDCAdapter.",
                id=E007,
            )
        )
    else:
        errors.extend(_retired_hooks(adapter_class))
    return errors


# Hooks the adapter no longer calls: an override of one is silently ignored, so say so.
_RETIRED_HOOKS = {
    "is_tenant_member": "is_member_of(user, tenant_code) is the one membership hook now",
}


def _retired_hooks(adapter_class) -> list[CheckMessage]:
    return [
        Warning(
            f"{adapter_class.__qualname__}.{name} is never called: {why}.",
            hint="Move its logic to the hook named; see docs/adapter.md and docs/tenants.md.",
            id=W024,
        )
        for name, why in _RETIRED_HOOKS.items()
        if any(name in vars(klass) for klass in getattr(adapter_class, "__mro__", ()))
    ]


# DOT settings that make DOT open HTTP connections of its own (read from DOT 3.4's settings.py,
# oauth2_validators.py and cimd.py), bypassing internal/outbound.py: no SSRF network policy, and
# for introspection no timeout at all, inside a user's request. Key -> (what DOT then does, hint).
DOT_OUTBOUND_SETTINGS = {
    "RESOURCE_SERVER_INTROSPECTION_URL": (
        "DOT POSTs every bearer token it does not know to that URL (requests.post: no timeout, "
        "redirects followed, no network policy) from inside userinfo and other API requests",
        "This provider verifies its own tokens. An API verifying another provider's tokens uses "
        f"{SETTINGS_NAME}['RESOURCE_SERVER_JWKS_URL'] (fetched by the guarded outbound client).",
    ),
    "CIMD_ENABLED": (
        "DOT fetches a client's metadata document from the URL a client sends as its client_id "
        "(DOT's own fetcher, outside this app's network policy)",
        "Client ID metadata documents are not supported; register clients in the admin.",
    ),
}


@register(Tags.security)
def check_dot_outbound(app_configs=None, **kwargs):
    """E022: every request the provider makes goes through the one guarded client (DESIGN.md,
    "Outbound requests"); a DOT setting that makes DOT fetch URLs itself is refused."""
    dot = _dot()
    return [
        Error(
            f"OAUTH2_PROVIDER[{key!r}] is set: {consequence}.",
            hint=f"Remove it. {hint} See docs/operations.md, 'Outbound requests'.",
            id=E022,
        )
        for key, (consequence, hint) in DOT_OUTBOUND_SETTINGS.items()
        if dot.get(key)
    ]


MIDDLEWARE_PATH = "oidc_provider_ext.middleware.OPSessionMiddleware"


@register(Tags.security)
def check_middleware(app_configs=None, **kwargs):
    if MIDDLEWARE_PATH in settings.MIDDLEWARE:
        return []
    return [
        Warning(
            f"{MIDDLEWARE_PATH} is not in MIDDLEWARE: a browser whose sign-in was ended elsewhere "
            "(another device, an operator, deactivation) stays signed in to the site's other pages.",
            hint="Add it to MIDDLEWARE after django.contrib.auth.middleware.AuthenticationMiddleware.",
            id=W020,
        )
    ]


def _weak_secret(value) -> bool:
    # Django's own check --deploy (security.W009) uses the same measure for SECRET_KEY; a value
    # that says it is insecure (the example project's default) is refused whatever its length.
    value = str(value or "")
    return len(value) < 50 or len(set(value)) < 5 or "insecure" in value.lower() or "change-me" in value


@register(Tags.security, deploy=True)
def check_secrets(app_configs=None, **kwargs):
    """The provider's secrets in production: its own, and none of them a published example."""
    errors: list[CheckMessage] = []
    configured = app_settings.raw("SECRET_KEYS")
    if not configured:
        errors.append(
            Error(
                f"{SETTINGS_NAME}['SECRET_KEYS'] is not set: signing keys are encrypted under a key "
                "derived from SECRET_KEY, so whoever knows SECRET_KEY can decrypt them from a database dump.",
                hint="Set it to a list with one long random secret of its own (python -c 'import secrets; "
                "print(secrets.token_urlsafe(50))'), then run manage.py oidc_keys reencrypt. "
                "See docs/operations.md, 'Secrets'.",
                id=E020,
            )
        )
    candidates = {"SECRET_KEY": settings.SECRET_KEY}
    if isinstance(configured, list | tuple):
        candidates.update({f"{SETTINGS_NAME}['SECRET_KEYS'][{i}]": v for i, v in enumerate(configured)})
    for name, value in candidates.items():
        if _weak_secret(value):
            errors.append(
                Error(
                    f"{name} is an example or weak value (short, few distinct characters, or says insecure).",
                    hint="Generate a long random secret for production and keep it out of the repository.",
                    id=E021,
                )
            )
    return errors


@register(Tags.caches, deploy=True)
def check_shared_cache(app_configs=None, **kwargs):
    """Production runs several processes (gunicorn workers, app servers): they must share a cache."""
    caches: dict = getattr(settings, "CACHES", None) or {}
    backend = str(caches.get("default", {}).get("BACKEND", ""))
    if settings.DEBUG or backend not in PER_PROCESS_CACHES:
        return []
    sessions = ""
    engine = f"{settings.SESSION_ENGINE}.SessionStore"  # Django's engines, ours, or a subclass
    if _is_subclass(engine, "django.contrib.sessions.backends.cached_db.SessionStore"):
        sessions = " Sessions are read through it (SESSION_ENGINE cached_db), so another process may "
        sessions += "go on reading a session that was changed or ended elsewhere."
    elif _is_subclass(engine, "django.contrib.sessions.backends.cache.SessionStore"):
        sessions = " Sessions are kept in it too (SESSION_ENGINE), so a browser is signed out whenever "
        sessions += "its next request reaches another process."
    return [
        Warning(
            f"The default cache is {backend.rsplit('.', 1)[-1]}, one per process. Other processes then "
            "learn of a signing-key change only after 60 s and of a client change only after "
            "CLIENT_CACHE_SECONDS, and every process counts failed sign-ins and client "
            f"authentications on its own (the limits are multiplied by the number of processes).{sessions}",
            hint="Use a cache every process shares: django.core.cache.backends.redis.RedisCache "
            "(REDIS_URL in the example project). A site that really runs a single process may "
            f"silence this with SILENCED_SYSTEM_CHECKS = [{W044!r}]. See docs/operations.md, "
            "'Running several app servers'.",
            id=W044,
        )
    ]


# Django's engines that store a session under the cookie's own value, and ours that store it under
# its hash (oidc_provider_ext.sessions: the same engines otherwise).
_CLEAR_KEY_ENGINES = tuple(
    f"django.contrib.sessions.backends.{name}.SessionStore" for name in ("db", "cache", "file")
)
_HASHED_KEY_ENGINES = tuple(
    f"oidc_provider_ext.sessions{name}.SessionStore" for name in ("", ".cache", ".cached_db")
)


@register(Tags.compatibility)
def check_isolation_level(app_configs=None, **kwargs):
    """W047: the token endpoint's single-use checks and the signing-key snapshot read what other
    transactions committed since their own began (READ COMMITTED, PostgreSQL's default). Above it,
    a request that reads a row another one changed fails with a serialization error (a 500), and
    a key snapshot loaded in an older read view can hide a rotation until its TTL."""
    return isolation_warnings(getattr(settings, "DATABASES", {}))


def isolation_warnings(databases: dict) -> list[Warning]:
    found = []
    for alias, database in databases.items():
        level = (database.get("OPTIONS") or {}).get("isolation_level")
        if level is None or "postgresql" not in str(database.get("ENGINE", "")):
            continue
        try:  # the installed driver's levels (psycopg 3 and psycopg2 number them differently)
            from django.db.backends.postgresql.psycopg_any import IsolationLevel

            name = IsolationLevel(level).name
        except (ImportError, ValueError):
            name = str(level)
        if name not in ("READ_COMMITTED", "READ_UNCOMMITTED"):  # PostgreSQL runs the latter as the former
            found.append(
                Warning(
                    f"DATABASES[{alias!r}] runs at isolation level {name}; this app needs READ COMMITTED.",
                    hint="Remove OPTIONS['isolation_level'] (PostgreSQL's default is READ COMMITTED). "
                    "Above it, concurrent token requests fail with serialization errors. See "
                    "docs/operations.md, 'Installing: what check catches'.",
                    id=W047,
                )
            )
    return found


@register(Tags.security, deploy=True)
def check_session_keys_stored(app_configs=None, **kwargs):
    """DESIGN.md "No bearer secret in clear": a copy of the session store (a backup, a Redis dump, a
    view-only admin of the sessions' table) must not hold cookies that sign people in."""
    engine = f"{settings.SESSION_ENGINE}.SessionStore"
    if any(_is_subclass(engine, hashed) for hashed in _HASHED_KEY_ENGINES):
        return []
    if not any(_is_subclass(engine, clear) for clear in _CLEAR_KEY_ENGINES):
        return []  # signed cookies (nothing stored), or an engine of the site's own
    return [
        Warning(
            f"SESSION_ENGINE {settings.SESSION_ENGINE!r} stores each session under the value of the "
            "browser's session cookie: a copy of the sessions (a database backup or replica, a "
            "cache dump, an admin that lists them) signs in as every user in it.",
            hint="Use the same engine with keys stored as their SHA-256: oidc_provider_ext.sessions "
            "(database), oidc_provider_ext.sessions.cached_db or oidc_provider_ext.sessions.cache. "
            "Browsers sign in once more after the switch. See docs/security.md.",
            id=W046,
        )
    ]


def _is_subclass(path, base_path: str) -> bool:
    try:
        cls = import_string(path) if isinstance(path, str) else path
        base = import_string(base_path)
    except ImportError:
        return False
    return isinstance(cls, type) and issubclass(cls, base)


_MAX_LISTED = 5


@register(Tags.security)
def check_resource_server_audience(app_configs=None, **kwargs):
    """E011: a resource server names itself (RFC 9068 4, RFC 9728 2); without an identifier or an
    audience it refuses every token, and a malformed one is an error.

    "In use" means a view in the URLconf protected by ``require_access_token`` or by the DRF
    ``JWTAccessTokenAuthentication`` without a ``resource`` or ``audience`` of its own, or
    ``RESOURCE_SERVER_JWKS_URL`` set while no view names one.
    """
    try:
        app_settings.raw("ISSUER")  # unknown keys are E005's to report
    except ImproperlyConfigured:
        return []
    hint = (
        f"Set {SETTINGS_NAME}['RESOURCE_SERVER_IDENTIFIER'] to this API's resource identifier (the "
        "https URL its tokens carry in aud), or resource= on each view; RESOURCE_SERVER_AUDIENCE "
        "lists further aud values (client_ids of clients that send no resource indicator)."
    )
    try:
        identifier = app_settings.RESOURCE_SERVER_IDENTIFIER
        # The metadata document's members (RFC 9728 2) are read only when it is fetched.
        app_settings.RESOURCE_SERVER_SCOPES_SUPPORTED  # noqa: B018
        if app_settings.RESOURCE_SERVER_AUDIENCE is not None or identifier is not None:
            return []
        jwks_url = app_settings.raw("RESOURCE_SERVER_JWKS_URL")
    except ImproperlyConfigured as exc:
        return [Error(str(exc), hint=hint, id=E011)]
    from .resource.urlconf import protected_views

    views = list(protected_views())
    relying = [route for route, audiences, _ in views if audiences is None]
    if relying:
        listed = ", ".join(repr(route) for route in relying[:_MAX_LISTED])
        more = f" and {len(relying) - _MAX_LISTED} more" if len(relying) > _MAX_LISTED else ""
        return [
            Error(
                f"{SETTINGS_NAME}['RESOURCE_SERVER_IDENTIFIER'] (and RESOURCE_SERVER_AUDIENCE) is not "
                f"set, so the access-token views {listed}{more} refuse every token "
                "(ImproperlyConfigured).",
                hint=hint,
                id=E011,
            )
        ]
    if jwks_url and not views:
        return [
            Error(
                f"{SETTINGS_NAME}['RESOURCE_SERVER_JWKS_URL'] is set (this project is a resource "
                "server) but neither RESOURCE_SERVER_IDENTIFIER nor RESOURCE_SERVER_AUDIENCE is: "
                "every access token is refused.",
                hint=hint,
                id=E011,
            )
        ]
    return []


@register(Tags.urls)
def check_protected_resource_metadata(app_configs=None, **kwargs):
    """W040: every resource this project names (``RESOURCE_SERVER_IDENTIFIER``, ``resource=`` on a
    view) has its metadata served where RFC 9728 3.1 puts it; else no client can discover the
    authorization server from a 401."""
    try:
        app_settings.raw("ISSUER")  # unknown keys are E005's to report
    except ImproperlyConfigured:
        return []
    from django.urls import Resolver404, resolve

    from .resource.metadata import configured_resource, unique
    from .resource.urlconf import resources_in_urlconf
    from .resource.views import ProtectedResourceMetadataView

    try:
        resources = list(unique((configured_resource(), *resources_in_urlconf())))
    except ImproperlyConfigured:  # a malformed identifier is E011's to report
        return []
    messages: list[CheckMessage] = []
    for resource in resources:
        path = unquote(resource.metadata_path)
        try:
            view_class = getattr(resolve(path).func, "view_class", None)
        except Resolver404:
            view_class = None
        if not (isinstance(view_class, type) and issubclass(view_class, ProtectedResourceMetadataView)):
            messages.append(
                Warning(
                    f"The metadata of the protected resource {resource.identifier!r} is not served: "
                    f"{path} does not resolve to ProtectedResourceMetadataView (RFC 9728 3.1), so a "
                    "client cannot find the authorization server from the 401.",
                    hint='Add path("", include("oidc_provider_ext.resource.urls")) to the root '
                    "URLconf (oidc_provider_ext.urls includes it already).",
                    id=W040,
                )
            )
    return messages


# --- Installing into a site (issue 14): what a new site gets wrong, with the fix in the message ---

E030 = "oidc_provider_ext.E030"  # an app the hosted pages need is not in INSTALLED_APPS
E031 = "oidc_provider_ext.E031"  # CRISPY_TEMPLATE_PACK / CRISPY_ALLOWED_TEMPLATE_PACKS not bootstrap5
E032 = "oidc_provider_ext.E032"  # discovery is not served where the issuer says (mount prefix)
W030 = "oidc_provider_ext.W030"  # PASSWORD_HASHERS cannot verify hashes stored for existing users
W041 = "oidc_provider_ext.W041"  # a resource server accepts a scope that is not in SCOPES
W042 = "oidc_provider_ext.W042"  # an enabled resource server no client may use
W045 = "oidc_provider_ext.W045"  # a resource identifier not in the normal form clients send back
W043 = "oidc_provider_ext.W043"  # RFC 8414 metadata is not served where the issuer says

# App label -> why it is needed. oauth2_provider (and django.contrib.auth, contenttypes) cannot be
# checked here: their absence fails at import, see OidcProviderExtConfig.import_models.
REQUIRED_APPS = {
    "django.contrib.sessions": "the sign-in, consent and logout pages keep the user's session",
    "crispy_forms": "the hosted pages render their forms with django-crispy-forms",
    "crispy_bootstrap5": "the hosted pages use crispy-forms' Bootstrap 5 template pack",
}


@register(Tags.templates, Tags.compatibility)
def check_installed_apps(app_configs=None, **kwargs):
    """E030/E031: without these the login page is a 500 at the first request, not a check error."""
    from django.apps import apps

    errors: list[CheckMessage] = [
        Error(
            f"{name!r} is not in INSTALLED_APPS: {why}.",
            hint=f"Add {name!r} to INSTALLED_APPS (README.md, 'Install into your existing Django site').",
            id=E030,
        )
        for name, why in REQUIRED_APPS.items()
        if not apps.is_installed(name)
    ]
    if apps.is_installed("crispy_forms"):
        pack = getattr(settings, "CRISPY_TEMPLATE_PACK", None)
        allowed = getattr(settings, "CRISPY_ALLOWED_TEMPLATE_PACKS", ())
        allowed = [allowed] if isinstance(allowed, str) else list(allowed)
        if pack != "bootstrap5" or "bootstrap5" not in allowed:
            errors.append(
                Error(
                    f"CRISPY_TEMPLATE_PACK is {pack!r} and CRISPY_ALLOWED_TEMPLATE_PACKS {allowed!r}: "
                    "the hosted pages need the 'bootstrap5' pack (the login page would be a 500).",
                    hint='Set CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5" and CRISPY_TEMPLATE_PACK = '
                    '"bootstrap5" (with crispy_bootstrap5 in INSTALLED_APPS).',
                    id=E031,
                )
            )
    return errors


DISCOVERY_SUFFIX = "/.well-known/openid-configuration"


@register(Tags.urls)
def check_mount_matches_issuer(app_configs=None, **kwargs):
    """E032: relying parties fetch ISSUER + /.well-known/openid-configuration (OIDC Discovery 4);
    where the URLconf (and FORCE_SCRIPT_NAME) mounts our URLs must be that path."""
    from django.urls import NoReverseMatch, reverse

    try:
        issuer = app_settings.raw("ISSUER")
    except ImproperlyConfigured:
        return []  # E005
    if not issuer:
        return []  # E003
    try:
        served = reverse("oidc_provider_ext:discovery")
    except NoReverseMatch:
        return []  # URLs not mounted (e.g. a resource server only): nothing is served anywhere
    except Exception:  # a broken URLconf: Django's own URL checks report it
        return []
    expected = urlsplit(str(issuer)).path.rstrip("/") + DISCOVERY_SUFFIX
    if served == expected:
        return []
    mount = served[: -len(DISCOVERY_SUFFIX)] if served.endswith(DISCOVERY_SUFFIX) else served
    return [
        Error(
            f"Discovery is served at {served!r}, but {SETTINGS_NAME}['ISSUER'] = {issuer!r} tells "
            f"relying parties to fetch {expected!r}: they get 404.",
            hint=f"Make the issuer name the mount point ({SETTINGS_NAME}['ISSUER'] = "
            f"'https://<host>{mount}'), or include oidc_provider_ext.urls at the path the issuer names. "
            "Behind a proxy that strips a prefix, set FORCE_SCRIPT_NAME. See docs/operations.md, "
            "'Mounting under a path'.",
            id=E032,
        )
    ]


@register(Tags.urls)
def check_authorization_server_metadata(app_configs=None, **kwargs):
    """W043: OAuth clients (every MCP client) read RFC 8414 metadata at the host's root with the
    issuer's path inserted; a site that mounts the provider under a path must route it there."""
    from django.urls import Resolver404, get_script_prefix, resolve

    from oidc_provider_ext.views.discovery import AuthorizationServerMetadataView, metadata_paths

    try:
        issuer = app_settings.raw("ISSUER")
        if not issuer or get_script_prefix() != "/":
            return []  # E003/E005; behind a prefix-stripping proxy the root is the proxy's
        paths = metadata_paths()
    except Exception:  # E004/E005 report a broken issuer
        return []
    missing = []
    for path in paths:
        try:
            match = resolve(path)
        except Resolver404:
            missing.append(path)
            continue
        except Exception:  # a broken URLconf: Django's own URL checks report it
            return []
        if getattr(match.func, "view_class", None) is not AuthorizationServerMetadataView:
            missing.append(path)
    if not missing:
        return []
    return [
        Warning(
            f"Authorization server metadata (RFC 8414) is not served at {', '.join(missing)}, where "
            f"OAuth and MCP clients look for {SETTINGS_NAME}['ISSUER'] = {issuer!r}: they get 404.",
            hint="Include oidc_provider_ext.urls.well_known_urlpatterns at the root of the URLconf: "
            'path("", include((well_known_urlpatterns, "oidc_provider_ext_well_known"))). See '
            "docs/operations.md, 'Mounting under a path'.",
            id=W043,
        )
    ]


@register(Tags.security)
def check_resource_servers(app_configs=None, databases=None, **kwargs):
    """W041/W042/W045: resource servers (RFC 8707) that cannot work as registered. Reads the table; when
    the database cannot be reached (not migrated, tests without database access) it is silent."""
    from django.db import connections

    from oidc_provider_ext.models import ResourceServer

    try:
        known = set(app_settings.SCOPES)
    except Exception:  # E005 reports broken settings
        return []
    messages: list[CheckMessage] = []
    for alias in databases or ["default"]:
        if alias not in connections or _sqlite_file_missing(connections[alias].settings_dict):
            continue
        try:
            servers = list(
                ResourceServer.objects.using(alias)
                .filter(enabled=True)
                .annotate(client_count=models.Count("allowed_clients"))[:100]
            )
        except Exception:
            continue
        for server in servers:
            unknown = [scope for scope in server.scope_list if scope not in known]
            if unknown:
                messages.append(
                    Warning(
                        f"Resource server {server.identifier!r} accepts {', '.join(unknown)}, which "
                        f"{SETTINGS_NAME}['SCOPES'] does not define: no token can carry them.",
                        hint=f"Add them to {SETTINGS_NAME}['SCOPES'] or remove them from the resource.",
                        id=W041,
                    )
                )
            normal = normal_form(server.identifier)
            if normal != server.identifier:
                messages.append(
                    Warning(
                        f"Resource server {server.identifier!r} is not in the normal form of its URL "
                        f"({normal!r}): clients that parse the protected-resource metadata (the MCP SDKs "
                        "do) send that form back as `resource`, and identifiers are compared byte for "
                        "byte, so they get invalid_target.",
                        hint=f"Register it as {normal!r} (and name the API the same way in its "
                        "RESOURCE_SERVER_IDENTIFIER / resource=). docs/mcp.md.",
                        id=W045,
                    )
                )
            if not server.any_client and not server.client_count:
                messages.append(
                    Warning(
                        f"Resource server {server.identifier!r} is enabled but allows no client: every "
                        "request for it is refused with invalid_target.",
                        hint="Allow clients in the admin (or oidc_resources add --client), or tick "
                        "'any client'.",
                        id=W042,
                    )
                )
    return messages


def normal_form(url: str) -> str:
    """``url`` as URL parsers following the WHATWG URL standard write it (pydantic, browsers):
    scheme and host in lower case, no default port, at least "/" as the path."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        return url
    default = {"https": 443, "http": 80}.get(scheme)
    netloc = host if port is None or port == default else f"{host}:{port}"
    if parts.username is not None or parts.password is not None:
        return url  # refused elsewhere; nothing to suggest
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, parts.fragment))


@register(Tags.security, Tags.compatibility)
def check_password_hashers(app_configs=None, databases=None, **kwargs):
    """W030: PASSWORD_HASHERS replaced rather than appended to locks out users whose stored hash
    needs a hasher no longer listed (or whose library is not installed). One cheap query on the user
    table; when the database cannot be reached (not migrated, no server, tests without database
    access) there is nothing to compare and the check is silent."""
    import importlib.util

    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX, get_hashers
    from django.db import connections
    from django.db.models import Case, Q, Value, When
    from django.db.models.functions import StrIndex, Substr

    try:
        hashers = get_hashers()
    except Exception:  # an unimportable hasher: Django's own error at first use says which
        return []

    def usable(hasher) -> bool:
        library = getattr(hasher, "library", None)
        if not library:
            return True
        module = library[1] if isinstance(library, tuple) else library
        return importlib.util.find_spec(module) is not None

    known = [hasher.algorithm for hasher in hashers if usable(hasher)]
    User = get_user_model()
    try:
        User._meta.get_field("password")
    except Exception:
        return []
    not_ours = Q(password="") | Q(password__startswith=UNUSABLE_PASSWORD_PREFIX)
    for algorithm in known:
        not_ours |= Q(password__startswith=f"{algorithm}$")
    found: set[str] = set()
    for alias in databases or ["default"]:
        if alias not in connections or _sqlite_file_missing(connections[alias].settings_dict):
            continue  # no users yet (and connecting would create an empty SQLite file)
        try:
            rows = (
                User._default_manager.using(alias)
                .exclude(not_ours)
                .annotate(
                    algorithm=Case(
                        When(
                            password__contains="$",
                            then=Substr("password", 1, StrIndex("password", Value("$")) - 1),
                        ),
                        default=Value(""),
                    )
                )
                .values_list("algorithm", flat=True)
                .distinct()[:20]
            )
            found |= {algorithm or "(unsalted or unknown format)" for algorithm in rows}
        except Exception:
            continue
    if not found:
        return []
    return [
        Warning(
            f"Existing users' passwords are hashed with {', '.join(sorted(found))}, which no usable "
            "hasher in PASSWORD_HASHERS verifies: those users can no longer sign in.",
            hint="Keep the site's hashers and append the client-secret hasher: PASSWORD_HASHERS = "
            '[*global_settings.PASSWORD_HASHERS, "oidc_provider_ext.hashers.ClientSecretHasher"] '
            "(or your own list), and install the hasher's library (argon2-cffi, bcrypt).",
            id=W030,
        )
    ]


def _sqlite_file_missing(db: dict) -> bool:
    import os

    name = str(db.get("NAME") or "")
    if (
        not db.get("ENGINE", "").endswith("sqlite3")
        or not name
        or name.startswith("file:")
        or ":memory:" in name
    ):
        return False
    return not os.path.exists(name)


# English is the source language of the hosted pages: it needs no catalogue.
SOURCE_LANGUAGE = "en"


@register(Tags.translation)
def check_ui_locales(app_configs=None, **kwargs):
    """A language offered in UI_LOCALES (and advertised as ui_locales_supported) but translated
    nowhere would show English pages under ``<html lang="xx">``."""
    try:
        offered = app_settings.UI_LOCALES
    except ImproperlyConfigured:
        return []  # reported by check_settings (E005)
    directories = [str(Path(__file__).resolve().parent / "locale"), *map(str, settings.LOCALE_PATHS)]
    untranslated = [
        code
        for code in offered
        if code.split("-")[0] != SOURCE_LANGUAGE
        and not any(
            gettext.find("django", directory, [code.replace("-", "_"), code]) for directory in directories
        )
    ]
    if not untranslated:
        return []
    return [
        Warning(
            f"{SETTINGS_NAME}['UI_LOCALES'] offers {', '.join(untranslated)}, which no catalogue "
            "translates: those pages would be English under another lang attribute.",
            hint="Remove them from UI_LOCALES, or ship a django.po/.mo for the app's strings in "
            "LOCALE_PATHS (docs/pages.md, Languages).",
            id=W050,
        )
    ]


_WEBAUTHN_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


@register(Tags.security)
def check_webauthn(app_configs=None, **kwargs):
    """Passkeys are bound to the RP ID; the browser only uses them on origins whose host is the RP
    ID or a subdomain of it (WebAuthn L3 5.1.3 step 8, 7.1 step 9/7.2 step 13 origin checks)."""
    try:
        if not app_settings.raw("ISSUER"):
            return []  # E003 says so
        rp_id = app_settings.WEBAUTHN_RP_ID.lower()
        origins = app_settings.WEBAUTHN_ORIGINS
    except ImproperlyConfigured as exc:
        return [Error(str(exc), hint=f"Fix WEBAUTHN_ORIGINS in {SETTINGS_NAME}.", id=E061)]
    errors: list[CheckMessage] = []
    is_ip = _is_ip(rp_id)
    for origin in origins:
        parts = urlsplit(origin)
        host = (parts.hostname or "").lower()
        if (
            not host
            or parts.path
            or parts.query
            or parts.fragment
            or parts.username
            or not (parts.scheme == "https" or (parts.scheme == "http" and host in _WEBAUTHN_LOCAL_HOSTS))
        ):
            errors.append(
                Error(
                    f"WEBAUTHN_ORIGINS entry {origin!r} is not an https origin (scheme://host[:port]).",
                    hint="WebAuthn needs a secure context: https, or http only on localhost/127.0.0.1.",
                    id=E061,
                )
            )
            continue
        # A registrable suffix: the host itself, or a parent domain with at least two labels (a
        # bare "com" is a public suffix; "localhost" is the one single-label name browsers allow).
        suffix = host == rp_id or (
            not is_ip and host.endswith("." + rp_id) and ("." in rp_id or rp_id == "localhost")
        )
        if not suffix:
            errors.append(
                Error(
                    f"The WebAuthn RP ID {rp_id!r} is not {host!r} or a registrable suffix of it: "
                    f"passkeys cannot be used on {origin}.",
                    hint=f"Set {SETTINGS_NAME}['WEBAUTHN_RP_ID'] to the origin's host or a parent "
                    "domain of it (e.g. example.com for https://id.example.com).",
                    id=E060,
                )
            )
    return errors


@register(Tags.security, deploy=True)
def check_webauthn_rp_id_host(app_configs=None, **kwargs):
    """An IP address as RP ID (the example project's http://127.0.0.1:8000) works for everything
    but passkeys: only worth saying where the site is deployed (check --deploy)."""
    try:
        if not app_settings.raw("ISSUER"):
            return []
        rp_id = app_settings.WEBAUTHN_RP_ID
    except ImproperlyConfigured:
        return []  # check_webauthn reports it
    if not _is_ip(rp_id):
        return []
    return [
        Warning(
            f"The WebAuthn RP ID {rp_id!r} is an IP address: browsers refuse passkeys there.",
            hint="Serve the hosted pages on a host name (http://localhost:PORT in development) or set "
            f"{SETTINGS_NAME}['WEBAUTHN_RP_ID'] and ['WEBAUTHN_ORIGINS']. docs/passkeys.md.",
            id=W060,
        )
    ]


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _positive_int(value, maximum: int | None = None) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= (maximum or value)


@register(Tags.security)
def check_device_settings(app_configs=None, **kwargs):
    """The device authorization grant's settings (RFC 8628; docs/device.md)."""
    try:
        raw = {name: app_settings.raw(name) for name in (
            "DEVICE_CODE_EXPIRE_SECONDS", "DEVICE_POLL_INTERVAL_SECONDS", "DEVICE_MAX_PENDING_PER_CLIENT",
            "DEVICE_MAX_PENDING", "DEVICE_USER_CODE_FAILURE_LIMIT", "DEVICE_MAX_PENDING_PER_ADDRESS",
        )}  # fmt: skip
    except ImproperlyConfigured:
        return []  # reported by check_settings (E005)
    errors: list[CheckMessage] = []
    if not _positive_int(raw["DEVICE_CODE_EXPIRE_SECONDS"], MAX_DEVICE_CODE_EXPIRE_SECONDS):
        errors.append(
            Error(
                f"{SETTINGS_NAME}['DEVICE_CODE_EXPIRE_SECONDS'] = {raw['DEVICE_CODE_EXPIRE_SECONDS']!r} "
                f"must be 1..{MAX_DEVICE_CODE_EXPIRE_SECONDS}.",
                hint="RFC 8628 5.1: a user code has about 34 bits; the longer it lives, the more "
                "guesses can find it. The default is 600 seconds.",
                id=E080,
            )
        )
    if not _positive_int(raw["DEVICE_POLL_INTERVAL_SECONDS"], 60):
        errors.append(
            Error(
                f"{SETTINGS_NAME}['DEVICE_POLL_INTERVAL_SECONDS'] = {raw['DEVICE_POLL_INTERVAL_SECONDS']!r} "
                "must be 1..60.",
                hint="RFC 8628 3.2: clients use 5 seconds when none is given; that is the default.",
                id=E081,
            )
        )
    for name in ("DEVICE_MAX_PENDING_PER_CLIENT", "DEVICE_MAX_PENDING", "DEVICE_MAX_PENDING_PER_ADDRESS"):
        if not _positive_int(raw[name]):
            errors.append(
                Error(
                    f"{SETTINGS_NAME}[{name!r}] = {raw[name]!r} must be a positive integer.",
                    hint="Anyone holding a public client's id can start device authorizations: the "
                    "rows they create must be bounded (there is no 'unlimited').",
                    id=E082,
                )
            )
    if not _positive_int(raw["DEVICE_USER_CODE_FAILURE_LIMIT"]):
        errors.append(
            Error(
                f"{SETTINGS_NAME}['DEVICE_USER_CODE_FAILURE_LIMIT'] = "
                f"{raw['DEVICE_USER_CODE_FAILURE_LIMIT']!r} must be a positive integer.",
                hint="RFC 8628 5.1: wrong user codes must be rate-limited; the default is 10 per window.",
                id=E083,
            )
        )
    return errors


# Client ID metadata documents are fetched inside a user's authorization request: the deadline
# stays small and the document small (the draft suggests about 5 KB), whatever the operator types.
CIMD_MAX_TIMEOUT_SECONDS = 10
CIMD_BYTES_RANGE = (1024, 64 * 1024)


@register(Tags.security)
def check_registration(app_configs=None, **kwargs):
    """E070/E071: the self-registration settings (docs/registration.md)."""
    errors: list[CheckMessage] = []
    try:
        app_settings.raw("REGISTRATION")
    except ImproperlyConfigured:
        return []  # unknown keys: E005 says so
    try:
        app_settings.REGISTRATION  # noqa: B018 (validates)
        app_settings.REGISTRATION_TENANT_CODES  # noqa: B018
        app_settings.REGISTRATION_SOFTWARE_STATEMENT_ISSUERS  # noqa: B018
    except ImproperlyConfigured as exc:
        errors.append(
            Error(
                str(exc),
                hint=f"REGISTRATION is one of {', '.join(REGISTRATION_POLICIES)}; "
                "REGISTRATION_TENANT_CODES a list of tenant codes; REGISTRATION_SOFTWARE_STATEMENT_ISSUERS "
                "a dict of issuer to JWK Set.",
                id=E070,
            )
        )
    timeout = app_settings.raw("CLIENT_ID_METADATA_DOCUMENT_TIMEOUT_SECONDS")
    size = app_settings.raw("CLIENT_ID_METADATA_DOCUMENT_MAX_BYTES")
    low = app_settings.raw("CLIENT_ID_METADATA_DOCUMENT_MIN_CACHE_SECONDS")
    high = app_settings.raw("CLIENT_ID_METADATA_DOCUMENT_MAX_CACHE_SECONDS")
    numbers = all(
        isinstance(value, int | float) and not isinstance(value, bool) for value in (timeout, size, low, high)
    )
    if not numbers or not (
        0 < timeout <= CIMD_MAX_TIMEOUT_SECONDS
        and CIMD_BYTES_RANGE[0] <= size <= CIMD_BYTES_RANGE[1]
        and 0 < low <= high
    ):
        errors.append(
            Error(
                "The client ID metadata document limits are out of bounds: "
                f"timeout {timeout!r}, size {size!r}, cache {low!r}..{high!r}.",
                hint=f"Timeout 0-{CIMD_MAX_TIMEOUT_SECONDS} s (it runs inside the user's request), size "
                f"{CIMD_BYTES_RANGE[0]}-{CIMD_BYTES_RANGE[1]} bytes, 0 < MIN_CACHE <= MAX_CACHE seconds.",
                id=E071,
            )
        )
    return errors
