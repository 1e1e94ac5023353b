"""System checks. IDs are stable and unique (tests/test_project.py::TestChecks asserts both)."""

from __future__ import annotations

import gettext
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from .conf import MAX_CODE_EXPIRE_SECONDS, SETTINGS_NAME, app_settings

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
W040 = "oidc_provider_ext.W040"  # deploy: the default cache is per process (LocMemCache, DummyCache)

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
    if settings.SESSION_ENGINE == "django.contrib.sessions.backends.cache":
        sessions = " Sessions are kept in it too (SESSION_ENGINE), so a browser is signed out whenever "
        sessions += "its next request reaches another process."
    elif settings.SESSION_ENGINE == "django.contrib.sessions.backends.cached_db":
        sessions = " Sessions are read through it (SESSION_ENGINE cached_db), so another process may "
        sessions += "go on reading a session that was changed or ended elsewhere."
    return [
        Warning(
            f"The default cache is {backend.rsplit('.', 1)[-1]}, one per process. Other processes then "
            "learn of a signing-key change only after 60 s and of a client change only after "
            "CLIENT_CACHE_SECONDS, and every process counts failed sign-ins and client "
            f"authentications on its own (the limits are multiplied by the number of processes).{sessions}",
            hint="Use a cache every process shares: django.core.cache.backends.redis.RedisCache "
            "(REDIS_URL in the example project). A site that really runs a single process may "
            f"silence this with SILENCED_SYSTEM_CHECKS = [{W040!r}]. See docs/operations.md, "
            "'Running several app servers'.",
            id=W040,
        )
    ]


def _is_subclass(path, base_path: str) -> bool:
    try:
        cls = import_string(path) if isinstance(path, str) else path
        base = import_string(base_path)
    except ImportError:
        return False
    return isinstance(cls, type) and issubclass(cls, base)


_NOT_PROTECTED = object()
_MAX_LISTED = 5


@register(Tags.security)
def check_resource_server_audience(app_configs=None, **kwargs):
    """E011: a resource server names its audience (RFC 9068 4); without one it refuses every token.

    "In use" means a view in the URLconf protected by ``require_access_token`` or by the DRF
    ``JWTAccessTokenAuthentication`` without an ``audience`` of its own, or
    ``RESOURCE_SERVER_JWKS_URL`` set while no view names one.
    """
    try:
        app_settings.raw("ISSUER")  # unknown keys are E005's to report
    except ImproperlyConfigured:
        return []
    hint = (
        f"Set {SETTINGS_NAME}['RESOURCE_SERVER_AUDIENCE'] to the aud value(s) this API accepts "
        "(today the client_id of each client allowed to call it), or audience= on each view."
    )
    try:
        if app_settings.RESOURCE_SERVER_AUDIENCE is not None:
            return []
        jwks_url = app_settings.raw("RESOURCE_SERVER_JWKS_URL")
    except ImproperlyConfigured as exc:
        return [Error(str(exc), hint=hint, id=E011)]
    views = list(_protected_views())
    relying = [route for route, audiences in views if audiences is None]
    if relying:
        listed = ", ".join(repr(route) for route in relying[:_MAX_LISTED])
        more = f" and {len(relying) - _MAX_LISTED} more" if len(relying) > _MAX_LISTED else ""
        return [
            Error(
                f"{SETTINGS_NAME}['RESOURCE_SERVER_AUDIENCE'] is not set, so the access-token views "
                f"{listed}{more} refuse every token (ImproperlyConfigured).",
                hint=hint,
                id=E011,
            )
        ]
    if jwks_url and not views:
        return [
            Error(
                f"{SETTINGS_NAME}['RESOURCE_SERVER_JWKS_URL'] is set (this project is a resource "
                "server) but RESOURCE_SERVER_AUDIENCE is not: every access token is refused.",
                hint=hint,
                id=E011,
            )
        ]
    return []


def _protected_views():
    """(route, audiences or None) of every URLconf view the resource-server helper protects."""
    from django.urls import URLResolver, get_resolver

    from .resource import AUDIENCE_MARK

    try:
        patterns = get_resolver().url_patterns
    except Exception:  # no or broken URLconf: Django's own URL checks report it
        return

    def walk(patterns, prefix):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, route)
                continue
            for audiences in _audiences_of(pattern.callback, AUDIENCE_MARK):
                yield route, audiences

    yield from walk(patterns, "")


def _audiences_of(view, mark: str):
    # A decorated function view; a class-based view decorated on dispatch or a handler
    # (method_decorator copies the mark); a DRF view (as_view() sets .cls) and its authenticators.
    candidates = [view]
    view_class = getattr(view, "view_class", None) or getattr(view, "cls", None)
    if isinstance(view_class, type):
        names = ("dispatch", *getattr(view_class, "http_method_names", ()))
        candidates += [getattr(view_class, name, None) for name in names]
        candidates += list(getattr(view_class, "authentication_classes", None) or ())
    for candidate in candidates:
        audiences = getattr(candidate, mark, _NOT_PROTECTED)
        if audiences is not _NOT_PROTECTED:
            yield audiences


# --- Installing into a site (issue 14): what a new site gets wrong, with the fix in the message ---

E030 = "oidc_provider_ext.E030"  # an app the hosted pages need is not in INSTALLED_APPS
E031 = "oidc_provider_ext.E031"  # CRISPY_TEMPLATE_PACK / CRISPY_ALLOWED_TEMPLATE_PACKS not bootstrap5
E032 = "oidc_provider_ext.E032"  # discovery is not served where the issuer says (mount prefix)
W030 = "oidc_provider_ext.W030"  # PASSWORD_HASHERS cannot verify hashes stored for existing users

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
