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
W050 = "oidc_provider_ext.W050"  # UI_LOCALES names a language no catalogue translates


def _dot() -> dict:
    value = getattr(settings, "OAUTH2_PROVIDER", None)
    return value if isinstance(value, dict) else {}


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
    validator_path = dot.get("OAUTH2_VALIDATOR_CLASS", "")
    if not _is_subclass(validator_path, "oidc_provider_ext.validator.OIDCValidator"):
        errors.append(
            Error(
                f"OAUTH2_PROVIDER['OAUTH2_VALIDATOR_CLASS'] is {validator_path or 'unset'!r}, "
                "not OIDCValidator or a subclass of it.",
                hint="Use oidc_provider_ext.dot.dot_settings(), "
                "or subclass oidc_provider_ext.validator.OIDCValidator.",
                id=E002,
            )
        )
    server_path = dot.get("OAUTH2_SERVER_CLASS", "")
    if not _is_subclass(server_path, "oidc_provider_ext.server.Server"):
        errors.append(
            Error(
                f"OAUTH2_PROVIDER['OAUTH2_SERVER_CLASS'] is {server_path or 'unset'!r}; it must be "
                "oidc_provider_ext.server.Server (it refuses implicit/password grants and PKCE plain).",
                hint="Use oidc_provider_ext.dot.dot_settings().",
                id=E008,
            )
        )
    backend_path = dot.get("OAUTH2_BACKEND_CLASS", "")
    if not _is_subclass(backend_path, "oidc_provider_ext.server.OAuthLibCore"):
        errors.append(
            Error(
                f"OAUTH2_PROVIDER['OAUTH2_BACKEND_CLASS'] is {backend_path or 'unset'!r}, not "
                "oidc_provider_ext.server.OAuthLibCore or a subclass of it (introspection needs it).",
                hint="Use oidc_provider_ext.dot.dot_settings().",
                id=E023,
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
        import_string(app_settings.ADAPTER)
    except ImportError as exc:
        errors.append(
            Error(
                f"{SETTINGS_NAME}['ADAPTER'] = {app_settings.ADAPTER!r} cannot be imported: {exc}.",
                hint="Point it at a subclass of oidc_provider_ext.adapter.DefaultOIDCAdapter.",
                id=E007,
            )
        )
    return errors


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
