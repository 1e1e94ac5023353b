"""The one place this app reads its settings.

Every setting lives in the ``OIDC_PROVIDER_EXT`` dict of the host's settings module. Values are read
lazily on each access (so ``override_settings`` works in tests), unknown keys are an error, and the
defaults below are the documented ones (docs/settings.md).

``dot_settings()`` builds the ``OAUTH2_PROVIDER`` dict django-oauth-toolkit needs, so a host site
writes ``OAUTH2_PROVIDER = dot_settings()`` instead of copying DOT wiring by hand.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

SETTINGS_NAME = "OIDC_PROVIDER_EXT"

# RFC 6749 4.1.2: "A maximum authorization code lifetime of 10 minutes is RECOMMENDED."
MAX_CODE_EXPIRE_SECONDS = 600
# RFC 8628 5.1/6.1: a user code has ~34 bits; the shorter it lives, the less guessing can find.
MAX_DEVICE_CODE_EXPIRE_SECONDS = 1800

# The languages whose translations ship in oidc_provider_ext/locale (English is the source).
SHIPPED_LANGUAGES = ("en", "de", "fr", "es", "nl", "pt", "ar")

DEFAULT_SCOPES = {
    "openid": _("Sign you in with your account"),
    "profile": _("See your name and basic profile"),
    "email": _("See your email address"),
    "address": _("See your postal address"),
    "phone": _("See your phone number"),
    "offline_access": _("Stay connected when you are not using the app"),
}


@dataclass(frozen=True)
class _Setting:
    default: Any
    doc: str


_SETTINGS: dict[str, _Setting] = {
    "ISSUER": _Setting(None, "Issuer identifier (https URL, no trailing slash). Required."),
    "ADAPTER": _Setting("oidc_provider_ext.adapter.DefaultOIDCAdapter", "Dotted path of the adapter class."),
    "CODE_EXPIRE_SECONDS": _Setting(60, "Authorization code lifetime; capped at 600."),
    "ACCESS_TOKEN_EXPIRE_SECONDS": _Setting(3600, "Access token lifetime (expires_in)."),
    "ID_TOKEN_EXPIRE_SECONDS": _Setting(3600, "ID token lifetime."),
    "REFRESH_TOKEN_EXPIRE_SECONDS": _Setting(
        30 * 24 * 3600, "Refresh token lifetime; each rotation starts anew."
    ),
    "SCOPES": _Setting(DEFAULT_SCOPES, "Scope name -> description shown on the consent page."),
    "DEFAULT_SCOPES": _Setting(["openid"], "Scopes granted when a request names none."),
    "SECRET_KEYS": _Setting(
        None,
        "The provider's own secrets, newest first: signing-key encryption, client-secret and "
        "session-key HMACs derive from them. None: SECRET_KEY and its fallbacks (refused by "
        "check --deploy).",
    ),
    "SIGNING_ALG": _Setting("RS256", "Algorithm of the key created automatically on first use."),
    "JWKS_MAX_AGE_SECONDS": _Setting(3600, "Cache-Control max-age of the JWKS document."),
    "BACKCHANNEL_LOGOUT_TIMEOUT_SECONDS": _Setting(
        2, "Total deadline of one back-channel logout POST (connect to last body byte)."
    ),
    "OUTBOUND_ALLOWED_NETWORKS": _Setting(
        [], "CIDRs outbound requests may reach although not public (and over plain http)."
    ),
    "LOGOUT_TOKEN_EXPIRE_SECONDS": _Setting(120, "Lifetime of a logout token."),
    "CLIENT_CACHE_SECONDS": _Setting(30, "How long a client and its profile are cached; 0 disables."),
    "CONSENT_LIFETIME_DAYS": _Setting(None, "Default lifetime of a remembered consent; None: until revoked."),
    "UI_LOCALES": _Setting(
        list(SHIPPED_LANGUAGES),
        "Languages the hosted pages are offered in (ui_locales, Accept-Language); each needs translations.",
    ),
    "AUTHORIZE_REQUEST_MAX_AGE_SECONDS": _Setting(
        1800, "How long a pending authorization request (login + consent) stays valid."
    ),
    # Throttles (oidc_provider_ext.throttle): an attacker can only lock out the attacker's address.
    "TRUSTED_PROXY_COUNT": _Setting(
        0,
        "Trusted reverse proxies in front of the site: 0 uses REMOTE_ADDR, "
        "N the N-th X-Forwarded-For entry from the right.",
    ),
    "THROTTLE_WINDOW_SECONDS": _Setting(900, "Window of the failure counters below."),
    "CLIENT_AUTH_FAILURE_LIMIT": _Setting(
        10, "Failed client authentications per (client_id, address) before that pair is refused."
    ),
    "CLIENT_AUTH_ADDRESS_FAILURE_LIMIT": _Setting(
        30, "Failed client authentications per address (any client ids) before the address is refused."
    ),
    "CLIENT_AUTH_PROVEN_SECONDS": _Setting(
        86400,
        "After a successful client authentication, how long that (client_id, address) pair is "
        "exempt from CLIENT_AUTH_ADDRESS_FAILURE_LIMIT (renewed by each success); 0 disables.",
    ),
    "LOGIN_ADDRESS_FAILURE_LIMIT": _Setting(
        50, "Failed sign-ins per address (any usernames) before LoginThrottleBackend refuses it."
    ),
    # Passkeys (WebAuthn Level 3), docs/passkeys.md.
    "WEBAUTHN_RP_ID": _Setting(
        None, "WebAuthn relying-party ID (a host name); None: the ISSUER's host. Passkeys are bound to it."
    ),
    "WEBAUTHN_ORIGINS": _Setting(
        None, "Origins the hosted pages are served from (list); None: the ISSUER's origin."
    ),
    "WEBAUTHN_RP_NAME": _Setting(None, "Name authenticators show for this site; None: the RP ID."),
    # Device authorization grant (RFC 8628; docs/device.md).
    "DEVICE_CODE_EXPIRE_SECONDS": _Setting(
        600, "Lifetime of a device authorization (device_code and user_code, expires_in); at most 1800."
    ),
    "DEVICE_POLL_INTERVAL_SECONDS": _Setting(5, "Least seconds between two polls (interval, RFC 8628 3.2)."),
    "DEVICE_MAX_PENDING_PER_CLIENT": _Setting(
        100, "Pending (unanswered, unexpired) device authorizations one client may have at once."
    ),
    "DEVICE_MAX_PENDING": _Setting(10000, "Pending device authorizations of all clients together."),
    "DEVICE_MAX_PENDING_PER_ADDRESS": _Setting(
        10,
        "Device authorizations one address (an IPv6 /64) may start within DEVICE_CODE_EXPIRE_SECONDS; "
        "never more than a quarter of DEVICE_MAX_PENDING_PER_CLIENT.",
    ),
    "DEVICE_USER_CODE_FAILURE_LIMIT": _Setting(
        10,
        "Wrong user codes per signed-in user, and per address for anonymous entries, in "
        "THROTTLE_WINDOW_SECONDS before code entry is refused (RFC 8628 5.1).",
    ),
    # Second factors and step-up (docs/mfa.md).
    "MFA_FAILURE_LIMIT": _Setting(
        5,
        "Failed second-factor codes per (user, address) in THROTTLE_WINDOW_SECONDS before that pair "
        "is refused; also the failures one password sign-in may spend before the password is asked again, "
        "and one OP session on the step-up page before it ends.",
    ),
    "MFA_LOGIN_TIMEOUT_SECONDS": _Setting(
        300, "How long a password sign-in waits for its second factor before it must start again."
    ),
    "MFA_ACCOUNT_FAILURE_LIMIT": _Setting(
        20,
        "Failed second-factor codes per user, from any address, in THROTTLE_WINDOW_SECONDS before "
        "every further code for that user is refused (counted before a code is checked).",
    ),
    "MFA_REAUTH_SECONDS": _Setting(
        300,
        "How recent a sign-in (at the user's level) must be to change second factors: the authenticator "
        "app, recovery codes, passkeys.",
    ),
    "TOTP_ISSUER": _Setting(
        None, "The account name's issuer shown in authenticator apps; None: the ISSUER's host name."
    ),
    # Resource-server side (oidc_provider_ext.resource): validating our access tokens at an API.
    "RESOURCE_SERVER_ISSUER": _Setting(None, "The iss access tokens must carry; defaults to ISSUER."),
    "RESOURCE_SERVER_IDENTIFIER": _Setting(
        None,
        "This resource server's identifier (RFC 9728 resource, RFC 8707): the https URL its tokens "
        "carry in aud, published at /.well-known/oauth-protected-resource. Unset (and no "
        "RESOURCE_SERVER_AUDIENCE), every access token is refused unless the view names a resource.",
    ),
    "RESOURCE_SERVER_AUDIENCE": _Setting(
        None,
        "Further aud values accepted besides RESOURCE_SERVER_IDENTIFIER: a string or a list of "
        "strings (the client_id of clients that request tokens without a resource indicator).",
    ),
    "RESOURCE_SERVER_SCOPES_SUPPORTED": _Setting(
        None, "scopes_supported of the protected-resource metadata (RFC 9728 2); None omits it."
    ),
    "RESOURCE_SERVER_NAME": _Setting(
        None, "resource_name of the protected-resource metadata (RFC 9728 2); None omits it."
    ),
    "RESOURCE_SERVER_JWKS_URL": _Setting(
        None, "JWKS URL of a remote provider; None verifies with this project's key store."
    ),
    "RESOURCE_SERVER_JWKS_CACHE_SECONDS": _Setting(300, "How long a fetched remote JWKS is cached."),
    "RESOURCE_SERVER_JWKS_REFETCH_SECONDS": _Setting(
        60, "Least interval between refetches of the remote JWKS caused by an unknown kid."
    ),
    "RESOURCE_SERVER_CHECK_REVOCATION": _Setting(
        True, "With the in-process key store, refuse tokens revoked at this provider."
    ),
    "RESOURCE_SERVER_LEEWAY_SECONDS": _Setting(30, "Clock skew allowed when checking exp, iat and nbf."),
    "RESOURCE_SERVER_REALM": _Setting("api", "realm of the WWW-Authenticate: Bearer challenge."),
    # Clients that register themselves (docs/registration.md): RFC 7591/7592 and client ID
    # metadata documents.
    "REGISTRATION": _Setting(
        "off",
        'Dynamic client registration (RFC 7591): "off", "initial_access_token" (a bearer token '
        'the operator created) or "open" (anyone, within the REGISTRATION_OPEN_* limits).',
    ),
    "REGISTRATION_REQUESTS_PER_ADDRESS": _Setting(
        20,
        "Requests to the registration endpoints and client ID metadata document fetches per "
        "address per THROTTLE_WINDOW_SECONDS; above it: 429.",
    ),
    "REGISTRATION_OPEN_PER_ADDRESS_PER_DAY": _Setting(
        10,
        'Clients one address may register per 24 hours under "open", and new metadata-document '
        "clients first seen from one address per 24 hours.",
    ),
    "REGISTRATION_OPEN_MAX_CLIENTS": _Setting(
        1000, "Self-registered clients (open registration and metadata documents) that may exist at once."
    ),
    "REGISTRATION_UNUSED_EXPIRE_SECONDS": _Setting(
        86400,
        "A self-registered client that never obtained a code is deleted by oidc_cleanup this long "
        "after its registration (initial-access-token registrations are kept).",
    ),
    "REGISTRATION_TENANT_CODES": _Setting(
        [], "Tenant codes self-registered clients may sign users in to; empty: any active tenant."
    ),
    "REGISTRATION_SOFTWARE_STATEMENT_ISSUERS": _Setting(
        {},
        "Issuer -> public JWK Set ({'keys': [...]}) of the software statements (RFC 7591 2.3) "
        "this provider trusts; empty: a registration carrying one is refused.",
    ),
    "CLIENT_ID_METADATA_DOCUMENTS": _Setting(
        False, "Accept an https URL as client_id and read the client's metadata from it."
    ),
    "CLIENT_ID_METADATA_DOCUMENT_TIMEOUT_SECONDS": _Setting(
        2.0, "Total deadline of one metadata document fetch (it happens inside the user's request)."
    ),
    "CLIENT_ID_METADATA_DOCUMENT_MAX_BYTES": _Setting(8192, "Largest metadata document accepted."),
    "CLIENT_ID_METADATA_DOCUMENT_MIN_CACHE_SECONDS": _Setting(
        300, "Least time a fetched document is cached, whatever its Cache-Control says."
    ),
    "CLIENT_ID_METADATA_DOCUMENT_MAX_CACHE_SECONDS": _Setting(
        86400, "Longest time a fetched document is cached, whatever its Cache-Control says."
    ),
}

# The settings read as numbers (int() or float() where they are used), with their defaults:
# checked at start-up (E005), where a value that is not one would otherwise be a 500 on every
# request that reads it.
NUMERIC_SETTINGS = {
    name: setting.default for name, setting in _SETTINGS.items() if type(setting.default) in (int, float)
}

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

T = TypeVar("T")

# REGISTRATION values (docs/registration.md).
REGISTRATION_OFF = "off"
REGISTRATION_INITIAL_ACCESS_TOKEN = "initial_access_token"
REGISTRATION_OPEN = "open"
REGISTRATION_POLICIES = (REGISTRATION_OFF, REGISTRATION_INITIAL_ACCESS_TOKEN, REGISTRATION_OPEN)


class AppSettings:
    """Typed, lazy accessor for ``settings.OIDC_PROVIDER_EXT``."""

    # The settings dict last found valid: its keys are checked again only when it is another object
    # (override_settings, a reload). Each read of a setting stays live.
    _checked: Any = None
    _checked_len = 0

    def _user_settings(self) -> dict[str, Any]:
        value = getattr(settings, SETTINGS_NAME, {})
        if value is self._checked and isinstance(value, dict) and len(value) == self._checked_len:
            return value
        if not isinstance(value, dict):
            raise ImproperlyConfigured(f"{SETTINGS_NAME} must be a dict.")
        unknown = sorted(set(value) - set(_SETTINGS))
        if unknown:
            raise ImproperlyConfigured(
                f"Unknown {SETTINGS_NAME} key(s): {', '.join(unknown)}. "
                f"Known keys: {', '.join(sorted(_SETTINGS))}."
            )
        self._checked, self._checked_len = value, len(value)
        return value

    _derived_for: Any = None
    _derived: dict[str, Any] = {}

    def derived(self, name: str, compute: Callable[[], T]) -> T:
        """``compute()``, a value parsed or validated from the settings, kept while
        ``settings.OIDC_PROVIDER_EXT`` is the same dict object: ``override_settings``, pytest's
        ``settings`` and a reload assign a new one (Django settings are not changed in place).
        For per-request hot paths; an exception is raised again on every call, never kept."""
        current = self._user_settings()
        derived = self._derived
        if self._derived_for is not current:
            derived = {}
            self._derived, self._derived_for = derived, current
        if name not in derived:
            derived[name] = compute()
        return derived[name]

    def _get(self, name: str) -> Any:
        return self._user_settings().get(name, _SETTINGS[name].default)

    @property
    def ISSUER(self) -> str:
        issuer = self._get("ISSUER")
        if not issuer:
            raise ImproperlyConfigured(
                f"{SETTINGS_NAME}['ISSUER'] is required (see check oidc_provider_ext.E003)."
            )
        return str(issuer).rstrip("/")

    @property
    def ADAPTER(self) -> str:
        return self._get("ADAPTER")

    @property
    def CODE_EXPIRE_SECONDS(self) -> int:
        return min(int(self._get("CODE_EXPIRE_SECONDS")), MAX_CODE_EXPIRE_SECONDS)

    @property
    def ACCESS_TOKEN_EXPIRE_SECONDS(self) -> int:
        return int(self._get("ACCESS_TOKEN_EXPIRE_SECONDS"))

    @property
    def ID_TOKEN_EXPIRE_SECONDS(self) -> int:
        return int(self._get("ID_TOKEN_EXPIRE_SECONDS"))

    @property
    def REFRESH_TOKEN_EXPIRE_SECONDS(self) -> int:
        return int(self._get("REFRESH_TOKEN_EXPIRE_SECONDS"))

    @property
    def SCOPES(self) -> dict[str, str]:
        return dict(self._get("SCOPES"))

    @property
    def DEFAULT_SCOPES(self) -> list[str]:
        return list(self._get("DEFAULT_SCOPES"))

    @property
    def SECRET_KEYS(self) -> list[str]:
        configured = self._get("SECRET_KEYS")
        if isinstance(configured, str):
            raise ImproperlyConfigured(
                f"{SETTINGS_NAME}['SECRET_KEYS'] must be a list of strings, newest first."
            )
        if configured:
            return [str(secret) for secret in configured]
        return [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]

    @property
    def SIGNING_ALG(self) -> str:
        return self._get("SIGNING_ALG")

    @property
    def JWKS_MAX_AGE_SECONDS(self) -> int:
        return int(self._get("JWKS_MAX_AGE_SECONDS"))

    @property
    def AUTHORIZE_REQUEST_MAX_AGE_SECONDS(self) -> int:
        return int(self._get("AUTHORIZE_REQUEST_MAX_AGE_SECONDS"))

    @property
    def BACKCHANNEL_LOGOUT_TIMEOUT_SECONDS(self) -> float:
        return float(self._get("BACKCHANNEL_LOGOUT_TIMEOUT_SECONDS"))

    @property
    def OUTBOUND_ALLOWED_NETWORKS(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        value = self._get("OUTBOUND_ALLOWED_NETWORKS")
        if isinstance(value, str):
            raise ImproperlyConfigured(
                f"{SETTINGS_NAME}['OUTBOUND_ALLOWED_NETWORKS'] must be a list of CIDRs."
            )
        try:
            return [ipaddress.ip_network(str(cidr)) for cidr in value]
        except ValueError as exc:
            raise ImproperlyConfigured(
                f"{SETTINGS_NAME}['OUTBOUND_ALLOWED_NETWORKS']: {exc} (host bits must be zero)."
            ) from exc

    @property
    def LOGOUT_TOKEN_EXPIRE_SECONDS(self) -> int:
        return int(self._get("LOGOUT_TOKEN_EXPIRE_SECONDS"))

    @property
    def CLIENT_CACHE_SECONDS(self) -> int:
        return int(self._get("CLIENT_CACHE_SECONDS"))

    @property
    def CONSENT_LIFETIME_DAYS(self) -> int | None:
        value = self._get("CONSENT_LIFETIME_DAYS")
        return None if value is None else int(value)

    @property
    def UI_LOCALES(self) -> list[str]:
        return [str(code).lower() for code in self._get("UI_LOCALES")]

    @property
    def TRUSTED_PROXY_COUNT(self) -> int:
        return max(0, int(self._get("TRUSTED_PROXY_COUNT")))

    @property
    def THROTTLE_WINDOW_SECONDS(self) -> int:
        return max(1, int(self._get("THROTTLE_WINDOW_SECONDS")))

    @property
    def CLIENT_AUTH_FAILURE_LIMIT(self) -> int:
        return int(self._get("CLIENT_AUTH_FAILURE_LIMIT"))

    @property
    def CLIENT_AUTH_ADDRESS_FAILURE_LIMIT(self) -> int:
        return int(self._get("CLIENT_AUTH_ADDRESS_FAILURE_LIMIT"))

    @property
    def CLIENT_AUTH_PROVEN_SECONDS(self) -> int:
        return int(self._get("CLIENT_AUTH_PROVEN_SECONDS"))

    @property
    def LOGIN_ADDRESS_FAILURE_LIMIT(self) -> int:
        return int(self._get("LOGIN_ADDRESS_FAILURE_LIMIT"))

    @property
    def DEVICE_CODE_EXPIRE_SECONDS(self) -> int:
        return min(int(self._get("DEVICE_CODE_EXPIRE_SECONDS")), MAX_DEVICE_CODE_EXPIRE_SECONDS)

    @property
    def DEVICE_POLL_INTERVAL_SECONDS(self) -> int:
        return max(1, int(self._get("DEVICE_POLL_INTERVAL_SECONDS")))

    @property
    def DEVICE_MAX_PENDING_PER_CLIENT(self) -> int:
        return int(self._get("DEVICE_MAX_PENDING_PER_CLIENT"))

    @property
    def DEVICE_MAX_PENDING(self) -> int:
        return int(self._get("DEVICE_MAX_PENDING"))

    @property
    def DEVICE_MAX_PENDING_PER_ADDRESS(self) -> int:
        return int(self._get("DEVICE_MAX_PENDING_PER_ADDRESS"))

    @property
    def DEVICE_USER_CODE_FAILURE_LIMIT(self) -> int:
        return int(self._get("DEVICE_USER_CODE_FAILURE_LIMIT"))

    @property
    def MFA_FAILURE_LIMIT(self) -> int:
        return max(1, int(self._get("MFA_FAILURE_LIMIT")))

    @property
    def MFA_LOGIN_TIMEOUT_SECONDS(self) -> int:
        return int(self._get("MFA_LOGIN_TIMEOUT_SECONDS"))

    @property
    def MFA_ACCOUNT_FAILURE_LIMIT(self) -> int:
        return max(1, int(self._get("MFA_ACCOUNT_FAILURE_LIMIT")))

    @property
    def MFA_REAUTH_SECONDS(self) -> int:
        return int(self._get("MFA_REAUTH_SECONDS"))

    @property
    def TOTP_ISSUER(self) -> str:
        return str(self._get("TOTP_ISSUER") or urlsplit(self.ISSUER).hostname or "OpenID Provider")

    @property
    def RESOURCE_SERVER_ISSUER(self) -> str:
        # Normalised like ISSUER (the provider never emits a trailing slash), then compared exactly.
        issuer = self._get("RESOURCE_SERVER_ISSUER")
        return str(issuer).rstrip("/") if issuer else self.ISSUER

    @property
    def RESOURCE_SERVER_AUDIENCE(self) -> tuple[str, ...] | None:
        audience = self._get("RESOURCE_SERVER_AUDIENCE")
        if audience is None:
            return None
        return resource_audiences(audience, f"{SETTINGS_NAME}['RESOURCE_SERVER_AUDIENCE']")

    @property
    def RESOURCE_SERVER_IDENTIFIER(self) -> str | None:
        identifier = self._get("RESOURCE_SERVER_IDENTIFIER")
        if identifier is None:
            return None
        return resource_identifier(identifier, f"{SETTINGS_NAME}['RESOURCE_SERVER_IDENTIFIER']")

    @property
    def RESOURCE_SERVER_SCOPES_SUPPORTED(self) -> tuple[str, ...] | None:
        scopes = self._get("RESOURCE_SERVER_SCOPES_SUPPORTED")
        if scopes is None:
            return None
        return scope_names(scopes, f"{SETTINGS_NAME}['RESOURCE_SERVER_SCOPES_SUPPORTED']")

    @property
    def RESOURCE_SERVER_NAME(self) -> str | None:
        name = self._get("RESOURCE_SERVER_NAME")
        return None if name is None else str(name)

    @property
    def RESOURCE_SERVER_JWKS_URL(self) -> str | None:
        url = self._get("RESOURCE_SERVER_JWKS_URL")
        if not url:
            return None
        parts = urlsplit(str(url))
        # Whoever can change the key set in transit can mint tokens: https only, except loopback.
        if not parts.netloc or not (
            parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS)
        ):
            raise ImproperlyConfigured(
                f"{SETTINGS_NAME}['RESOURCE_SERVER_JWKS_URL'] = {url!r} must be an https URL "
                "(http only for 127.0.0.1, localhost or ::1)."
            )
        return str(url)

    @property
    def RESOURCE_SERVER_JWKS_CACHE_SECONDS(self) -> int:
        return int(self._get("RESOURCE_SERVER_JWKS_CACHE_SECONDS"))

    @property
    def RESOURCE_SERVER_JWKS_REFETCH_SECONDS(self) -> int:
        return int(self._get("RESOURCE_SERVER_JWKS_REFETCH_SECONDS"))

    @property
    def RESOURCE_SERVER_CHECK_REVOCATION(self) -> bool:
        return bool(self._get("RESOURCE_SERVER_CHECK_REVOCATION"))

    @property
    def RESOURCE_SERVER_LEEWAY_SECONDS(self) -> int:
        return int(self._get("RESOURCE_SERVER_LEEWAY_SECONDS"))

    @property
    def RESOURCE_SERVER_REALM(self) -> str:
        return str(self._get("RESOURCE_SERVER_REALM"))

    @property
    def WEBAUTHN_RP_ID(self) -> str:
        configured = self._get("WEBAUTHN_RP_ID")
        return str(configured) if configured else (urlsplit(self.ISSUER).hostname or "")

    @property
    def WEBAUTHN_ORIGINS(self) -> list[str]:
        configured = self._get("WEBAUTHN_ORIGINS")
        if configured is None:
            parts = urlsplit(self.ISSUER)
            return [f"{parts.scheme}://{parts.netloc}"]
        if isinstance(configured, str):
            raise ImproperlyConfigured(f"{SETTINGS_NAME}['WEBAUTHN_ORIGINS'] must be a list of origins.")
        return [str(origin).rstrip("/") for origin in configured]

    @property
    def WEBAUTHN_RP_NAME(self) -> str:
        return str(self._get("WEBAUTHN_RP_NAME") or self.WEBAUTHN_RP_ID)

    @property
    def REGISTRATION(self) -> str:
        value = self._get("REGISTRATION")
        if value not in REGISTRATION_POLICIES:
            choices = ", ".join(REGISTRATION_POLICIES)
            raise ImproperlyConfigured(
                f"{SETTINGS_NAME}['REGISTRATION'] = {value!r} must be one of {choices}."
            )
        return value

    @property
    def REGISTRATION_REQUESTS_PER_ADDRESS(self) -> int:
        return int(self._get("REGISTRATION_REQUESTS_PER_ADDRESS"))

    @property
    def REGISTRATION_OPEN_PER_ADDRESS_PER_DAY(self) -> int:
        return int(self._get("REGISTRATION_OPEN_PER_ADDRESS_PER_DAY"))

    @property
    def REGISTRATION_OPEN_MAX_CLIENTS(self) -> int:
        return int(self._get("REGISTRATION_OPEN_MAX_CLIENTS"))

    @property
    def REGISTRATION_UNUSED_EXPIRE_SECONDS(self) -> int:
        return int(self._get("REGISTRATION_UNUSED_EXPIRE_SECONDS"))

    @property
    def REGISTRATION_TENANT_CODES(self) -> list[str]:
        value = self._get("REGISTRATION_TENANT_CODES")
        if isinstance(value, str):
            raise ImproperlyConfigured(f"{SETTINGS_NAME}['REGISTRATION_TENANT_CODES'] must be a list.")
        return [str(code).strip().lower() for code in value]

    @property
    def REGISTRATION_SOFTWARE_STATEMENT_ISSUERS(self) -> dict[str, dict]:
        value = self._get("REGISTRATION_SOFTWARE_STATEMENT_ISSUERS")
        if not isinstance(value, dict) or not all(
            isinstance(issuer, str) and isinstance(keys, dict) and isinstance(keys.get("keys"), list)
            for issuer, keys in value.items()
        ):
            raise ImproperlyConfigured(
                f"{SETTINGS_NAME}['REGISTRATION_SOFTWARE_STATEMENT_ISSUERS'] must map issuer strings "
                "to JWK Sets ({'keys': [...]})."
            )
        return value

    @property
    def CLIENT_ID_METADATA_DOCUMENTS(self) -> bool:
        return bool(self._get("CLIENT_ID_METADATA_DOCUMENTS"))

    @property
    def CLIENT_ID_METADATA_DOCUMENT_TIMEOUT_SECONDS(self) -> float:
        return float(self._get("CLIENT_ID_METADATA_DOCUMENT_TIMEOUT_SECONDS"))

    @property
    def CLIENT_ID_METADATA_DOCUMENT_MAX_BYTES(self) -> int:
        return int(self._get("CLIENT_ID_METADATA_DOCUMENT_MAX_BYTES"))

    @property
    def CLIENT_ID_METADATA_DOCUMENT_MIN_CACHE_SECONDS(self) -> int:
        return int(self._get("CLIENT_ID_METADATA_DOCUMENT_MIN_CACHE_SECONDS"))

    @property
    def CLIENT_ID_METADATA_DOCUMENT_MAX_CACHE_SECONDS(self) -> int:
        return int(self._get("CLIENT_ID_METADATA_DOCUMENT_MAX_CACHE_SECONDS"))

    def raw(self, name: str) -> Any:
        """The configured value of ``name`` without normalisation (for system checks)."""
        return self._get(name)


app_settings = AppSettings()


def resource_audiences(value: Any, where: str) -> tuple[str, ...]:
    """``value`` (a string or a list of strings) as the audiences a resource server accepts.

    RFC 9068 4: the resource server names the identifier(s) it expects for itself, compared
    exactly with ``aud`` (today a client_id; an RFC 8707 resource URI works the same). There is no
    wildcard: "*" and empty values are configuration errors, never "accept any audience".
    """
    values = (value,) if isinstance(value, str) else value
    if not isinstance(values, list | tuple | frozenset | set) or not values:
        raise ImproperlyConfigured(f"{where} must be a non-empty string or list of strings, not {value!r}.")
    for item in values:
        if not isinstance(item, str) or not item.strip() or item != item.strip():
            raise ImproperlyConfigured(f"{where}: {item!r} is not an audience (a non-empty string).")
        if item == "*":
            raise ImproperlyConfigured(
                f"{where}: there is no wildcard audience. List the identifiers this API accepts "
                "(today the client_id of every client that may call it)."
            )
    return tuple(dict.fromkeys(values))


# RFC 6749 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_IDENTIFIER_MAX_LENGTH = 2048


def resource_identifier(value: Any, where: str) -> str:
    """``value`` as a resource identifier (RFC 9728 2, RFC 8707 2), returned unchanged.

    An absolute https URL (plain http only for a loopback host, as for development and tests),
    without a fragment (RFC 9728 2), query (RFC 8707 2: SHOULD NOT; it would also move the
    metadata URL, RFC 9728 3.1), user information, dot segments, whitespace or control characters.
    It is compared byte for byte with ``aud`` and published as is, so it is never normalised.
    """
    if not isinstance(value, str) or not value or len(value) > _IDENTIFIER_MAX_LENGTH:
        raise ImproperlyConfigured(f"{where} must be an https URL (the resource identifier), not {value!r}.")
    parts = urlsplit(value)
    secure = parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS)
    segments = parts.path.split("/")
    if (
        not secure
        or not parts.hostname
        or "@" in parts.netloc
        or "#" in value
        or "?" in value
        or any(ord(char) <= 0x20 or ord(char) == 0x7F for char in value)
        or "." in segments
        or ".." in segments
    ):
        raise ImproperlyConfigured(
            f"{where} = {value!r} is not a resource identifier: an https URL (http only for "
            "127.0.0.1, localhost or ::1) without query, fragment, user information or dot segments "
            "(RFC 9728 2, RFC 8707 2), e.g. 'https://api.example.com' or 'https://api.example.com/mcp'."
        )
    return value


def scope_names(value: Any, where: str) -> tuple[str, ...]:
    """``value`` (a list of scope names) checked against RFC 6749 3.3."""
    values = value if isinstance(value, list | tuple) else None
    if values is None or not all(isinstance(item, str) and _SCOPE_TOKEN.fullmatch(item) for item in values):
        raise ImproperlyConfigured(f"{where} must be a list of scope names (RFC 6749 3.3), not {value!r}.")
    return tuple(dict.fromkeys(values))


def dot_settings(**overrides: Any) -> dict[str, Any]:
    """Moved: ``from oidc_provider_ext.dot import dot_settings`` (conf.py imports nothing of ours)."""
    raise ImproperlyConfigured(
        "oidc_provider_ext.conf.dot_settings moved: write "
        "`from oidc_provider_ext.dot import dot_settings` in your settings."
    )
