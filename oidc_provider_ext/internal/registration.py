"""Clients that register themselves: RFC 7591 metadata rules, RFC 7592 registration access tokens,
initial access tokens and the limits of open registration. Client ID metadata documents
(internal/metadata_documents.py) use the same metadata rules. Private: not part of the documented
API; the operator's view of it is docs/registration.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from jwcrypto import jwk, jws
from jwcrypto.common import JWException
from oauth2_provider.generators import generate_client_secret
from oauth2_provider.models import AbstractApplication, get_application_model

from oidc_provider_ext import throttle
from oidc_provider_ext.conf import REGISTRATION_INITIAL_ACCESS_TOKEN, REGISTRATION_OPEN, app_settings
from oidc_provider_ext.internal import crypto, outbound, resources
from oidc_provider_ext.internal.jws import is_numeric_date
from oidc_provider_ext.internal.requests import _json_problem
from oidc_provider_ext.models import AuthorizationGrant, ClientProfile, InitialAccessToken

Application = get_application_model()
DCR = AbstractApplication.RegistrationSource.DCR
CIMD = AbstractApplication.RegistrationSource.CIMD
SELF_REGISTERED = (DCR, CIMD)

# Caps on what a registrant sends (the request boundary's job for JSON bodies).
MAX_BODY_BYTES = 16 * 1024
MAX_REDIRECT_URIS = 10
MAX_URI_LENGTH = 2048  # PARAMETER_LIMITS["redirect_uri"]: longer ones could never be sent back
MAX_NAME_LENGTH = 100
MAX_CONTACTS = 5
MAX_TEXT_LENGTH = 255

REGISTRATION_TOKEN = b"oidc-provider-ext registration-access-token"
INITIAL_ACCESS_TOKEN = b"oidc-provider-ext initial-access-token"

# RFC 7591 2: "authorization_code" and "refresh_token" are what this provider serves to a client
# acting for a user. No implicit (RFC 9700 2.1.2), no password (2.4); client_credentials is not
# offered to self-registered clients (a machine client is made by the operator).
SUPPORTED_GRANT_TYPES = ("authorization_code", "refresh_token")
SUPPORTED_RESPONSE_TYPES = ("code",)
AUTH_METHODS = ("none", "client_secret_basic", "client_secret_post")
# Members a registrant may send; anything else is ignored (RFC 7591 2: "The authorization server
# MUST ignore any client metadata sent by the client that it does not understand").
URL_MEMBERS = ("client_uri", "logo_uri", "tos_uri", "policy_uri")
# Stored in ClientProfile's URLFields (200 characters): a longer one is refused at registration, not
# a DataError (HTTP 500) on PostgreSQL. tests/test_registration.py checks these against the columns.
URL_MEMBER_LENGTHS = dict.fromkeys(URL_MEMBERS, 200)
# RFC 8252 7.1: a private-use scheme is a reverse domain name, so it names its owner.
_PRIVATE_SCHEME = re.compile(r"[a-z][a-z0-9+\-]*(\.[a-z0-9+\-]+)+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_LOOPBACK_NETLOC = re.compile(r"(127\.0\.0\.1|\[::1\]|localhost)(:[1-9][0-9]{0,4})?")
_REFUSED_SCHEMES = {"javascript", "data", "file", "vbscript", "about", "blob", "filesystem", "ftp"}
# WHATWG URL "ends in a number": a host whose last label is decimal or 0x-hex is an IPv4 address to
# every browser (127.1, 0x7f.0.0.1, 0177.0.0.1, 169.254.43518), whatever ipaddress makes of it.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")


class RegistrationError(Exception):
    """RFC 7591 3.2.2: ``error`` is ``invalid_redirect_uri``, ``invalid_client_metadata``,
    ``invalid_software_statement`` or ``unapproved_software_statement``."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def _metadata_error(description: str) -> RegistrationError:
    return RegistrationError("invalid_client_metadata", description)


def _redirect_error(description: str) -> RegistrationError:
    return RegistrationError("invalid_redirect_uri", description)


# --- the request body ----------------------------------------------------------------------------


def parse_body(body: bytes) -> dict[str, Any]:
    """The JSON object of a registration request: I-JSON (RFC 7493: no duplicate member names, no
    control characters in strings, safe integers), nested at most 8 deep, at most MAX_BODY_BYTES."""
    if len(body) > MAX_BODY_BYTES:
        raise _metadata_error(f"The request body is larger than {MAX_BODY_BYTES} bytes.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _metadata_error("The request body is not UTF-8.") from exc
    problem = _json_problem("metadata", text)
    if problem:
        raise _metadata_error(problem.replace("The parameter 'metadata'", "The metadata"))
    return json.loads(text)


# --- metadata ------------------------------------------------------------------------------------


@dataclass
class ClientMetadata:
    """Registration metadata as accepted (RFC 7591 2), in the shape RFC 7591 3.2.1 echoes it."""

    redirect_uris: list[str]
    token_endpoint_auth_method: str
    client_name: str = ""
    scope: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # URLs, contacts, software_id/_version

    @property
    def public(self) -> bool:
        return self.token_endpoint_auth_method == "none"

    def as_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "redirect_uris": self.redirect_uris,
            "token_endpoint_auth_method": self.token_endpoint_auth_method,
            # What this provider actually lets the client do (RFC 7591 3.2.1: the server returns
            # the values it replaced).
            "grant_types": list(SUPPORTED_GRANT_TYPES),
            "response_types": list(SUPPORTED_RESPONSE_TYPES),
        }
        if self.client_name:
            document["client_name"] = self.client_name
        if self.scope:
            document["scope"] = self.scope
        document.update(self.extra)
        return document


def _string(data: dict, name: str, limit: int = MAX_TEXT_LENGTH) -> str:
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _metadata_error(f"{name} must be a string.")
    if len(value) > limit:
        raise _metadata_error(f"{name} is longer than {limit} characters.")
    if _CONTROL.search(value):
        raise _metadata_error(f"{name} contains a control character.")
    return value


def _strings(data: dict, name: str, limit: int) -> list[str] | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _metadata_error(f"{name} must be an array of strings.")
    if len(value) > limit:
        raise _metadata_error(f"{name} has more than {limit} entries.")
    return value


def _private_host(host: str) -> bool:
    """Whether an https redirect URI's host names this provider's own network or a local name."""
    name = host.strip("[]").rstrip(".").lower()
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        if _NUMERIC_LABEL.fullmatch(name.rsplit(".", 1)[-1]):
            # A non-canonical IPv4 address: read it as browsers do (inet_aton accepts the same
            # octal, hex and short forms); one that does not parse is no host a browser goes to.
            try:
                return not outbound.address_allowed(ipaddress.IPv4Address(socket.inet_aton(name)))
            except OSError:
                return True
        # No DNS lookup (the name may resolve differently tomorrow): names that are local by
        # definition (RFC 6761 6.3 localhost, single labels) are refused.
        return name == "localhost" or name.endswith(".localhost") or "." not in name
    return not outbound.address_allowed(address)


def check_redirect_uri(uri: str, *, public: bool) -> None:
    """RFC 9700 2.1 / 4.1 (exact URIs, so nothing to match loosely), RFC 6749 3.1.2 (absolute, no
    fragment) and RFC 8252 7.1-7.3 / 8.4 for native (public) clients."""
    if not uri or len(uri) > MAX_URI_LENGTH:
        raise _redirect_error(f"A redirect URI must be 1 to {MAX_URI_LENGTH} characters.")
    if _CONTROL.search(uri) or " " in uri:
        raise _redirect_error("A redirect URI contains a control character or a space.")
    if not uri.isascii():
        # RFC 3986 3: a URI is ASCII (an IRI's host in punycode, its path percent-encoded); the
        # authorization endpoint refuses anything else, so such a client could never sign in.
        raise _redirect_error("Write the redirect URI in ASCII: punycode host, percent-encoded path.")
    if "#" in uri:
        raise _redirect_error("A redirect URI must not have a fragment (RFC 6749 3.1.2).")
    if "*" in uri:
        raise _redirect_error("Redirect URIs are compared exactly: no wildcards (RFC 9700 4.1.3).")
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise _redirect_error(f"Not a URI: {uri[:100]!r}.") from exc
    scheme = parts.scheme  # urlsplit lower-cases it; the exact match at authorize does not
    if not uri.startswith(scheme + ":"):
        raise _redirect_error("Write the redirect URI's scheme in lower case.")
    if "@" in parts.netloc:
        raise _redirect_error("A redirect URI must not carry user information.")
    if port == 0:
        raise _redirect_error("Port 0 is not a port.")
    if scheme == "https":
        if not parts.hostname:
            raise _redirect_error("An https redirect URI needs a host.")
        if _private_host(parts.hostname):
            raise _redirect_error(
                "The redirect URI's host is a local name or a private address; only public hosts."
            )
        return
    if scheme == "http":
        # Native apps receive the code on the device itself: RFC 8252 7.3 (a loopback IP literal;
        # for public clients any port matches at request time, validator.redirect_uri_allowed)
        # and 8.3 "localhost", NOT RECOMMENDED but what MCP clients register ("Redirect URIs MUST
        # be either localhost URLs or HTTPS URLs", MCP authorization 2025-06-18), matched exactly.
        # Any other http host would hand the code to whoever is on the network path.
        from oidc_provider_ext.validator import _loopback_parts  # the rule redirects are matched by

        if _loopback_parts(uri) is None and parts.hostname != "localhost":
            raise _redirect_error(
                "http redirect URIs are only for apps on this device: http://127.0.0.1, "
                "http://[::1] (RFC 8252 7.3) or http://localhost."
            )
        if not _LOOPBACK_NETLOC.fullmatch(parts.netloc):
            raise _redirect_error("Write the loopback host exactly: 127.0.0.1, [::1] or localhost.")
        return
    if scheme in _REFUSED_SCHEMES or not _PRIVATE_SCHEME.fullmatch(scheme):
        raise _redirect_error(
            "Use https, a loopback http URI, or a private-use scheme that is a reverse domain name "
            "such as com.example.app (RFC 8252 7.1)."
        )
    if not public:
        raise _redirect_error(
            "Private-use URI schemes are for native apps (token_endpoint_auth_method none)."
        )
    if parts.netloc:
        raise _redirect_error("A private-use scheme URI has no authority: com.example.app:/callback.")


def _https_url(data: dict, name: str) -> str:
    value = _string(data, name, URL_MEMBER_LENGTHS[name])
    if value:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 (a malformed port raises)
            host = parts.hostname
        except ValueError as exc:
            raise _metadata_error(f"{name} is not a URL.") from exc
        if parts.scheme != "https" or not host or "@" in parts.netloc:
            raise _metadata_error(f"{name} must be an https URL.")
    return value


def validate_metadata(data: Any, *, metadata_document: bool = False) -> ClientMetadata:
    """Registration metadata (RFC 7591 2) checked against what this provider supports.

    ``metadata_document``: the rules of a client ID metadata document (only public clients; the
    caller compares its client_id with the URL).
    """
    if not isinstance(data, dict):
        raise _metadata_error("The client metadata must be a JSON object.")
    # A member sent as null is a member not sent (what client libraries serialising optional
    # fields produce; RFC 7592 2.2 reads omitted and null alike).
    data = {name: value for name, value in data.items() if value is not None}
    if "software_statement" in data:
        data = {
            **{k: v for k, v in data.items() if k != "software_statement"},
            **software_statement_claims(data),
        }
    if "jwks" in data or "jwks_uri" in data:
        raise _metadata_error("Client keys (jwks, jwks_uri) are not supported: no private_key_jwt here.")
    auth_method = data.get(
        "token_endpoint_auth_method", "none" if metadata_document else "client_secret_basic"
    )
    if metadata_document and auth_method != "none":
        # draft-ietf-oauth-client-id-metadata-document: no shared secrets; private_key_jwt is not
        # supported here, so these clients are public.
        raise _metadata_error('A client ID metadata document must use token_endpoint_auth_method "none".')
    if auth_method not in AUTH_METHODS:
        raise _metadata_error(f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}.")
    public = auth_method == "none"
    grant_types = _strings(data, "grant_types", 8)
    if grant_types is None:
        grant_types = ["authorization_code"]  # RFC 7591 2
    unsupported = sorted(set(grant_types) - set(SUPPORTED_GRANT_TYPES))
    if unsupported:
        raise _metadata_error(f"Unsupported grant_types: {', '.join(unsupported)[:200]}.")
    response_types = _strings(data, "response_types", 8)
    if response_types is None:
        response_types = ["code"]
    unsupported = sorted(set(response_types) - set(SUPPORTED_RESPONSE_TYPES))
    if unsupported:
        raise _metadata_error(f"Unsupported response_types: {', '.join(unsupported)[:200]}.")
    # RFC 7591 2.1: "code" goes with "authorization_code", which every client here needs.
    if "authorization_code" not in grant_types or "code" not in response_types:
        raise _metadata_error('grant_types must include "authorization_code" and response_types "code".')
    redirect_uris = _strings(data, "redirect_uris", MAX_REDIRECT_URIS)
    if not redirect_uris:
        raise _redirect_error("redirect_uris is required for the authorization code grant.")
    for uri in redirect_uris:
        check_redirect_uri(uri, public=public)
    scope = _string(data, "scope", 2048)
    unknown = sorted(set(scope.split()) - set(app_settings.SCOPES))
    if unknown:
        raise _metadata_error(f"Unknown scope values: {', '.join(unknown)[:200]}.")
    extra: dict[str, Any] = {}
    for name in URL_MEMBERS:
        value = _https_url(data, name)
        if value:
            extra[name] = value
    contacts = _strings(data, "contacts", MAX_CONTACTS)
    if contacts:
        for contact in contacts:
            if len(contact) > MAX_TEXT_LENGTH or _CONTROL.search(contact):
                raise _metadata_error("contacts must be short strings without control characters.")
        extra["contacts"] = contacts
    for name in ("software_id", "software_version"):
        value = _string(data, name)
        if value:
            extra[name] = value
    return ClientMetadata(
        redirect_uris=list(dict.fromkeys(redirect_uris)),
        token_endpoint_auth_method=auth_method,
        client_name=_string(data, "client_name", MAX_NAME_LENGTH),
        scope=" ".join(dict.fromkeys(scope.split())),
        extra=extra,
    )


# --- software statements (RFC 7591 2.3) -----------------------------------------------------------

# Asymmetric algorithms only: an HMAC'd statement would need a secret shared with every registrant.
STATEMENT_ALGS = ("RS256", "PS256", "ES256", "ES384", "EdDSA")
# Claims of the JWT itself, not client metadata.
_JWT_CLAIMS = ("iss", "iat", "exp", "nbf", "jti", "aud", "sub")
STATEMENT_LEEWAY_SECONDS = 60


def software_statement_claims(data: dict) -> dict[str, Any]:
    """The metadata in the request's software statement, verified with the key set of an issuer
    in REGISTRATION_SOFTWARE_STATEMENT_ISSUERS; they take precedence over the same members sent in
    the clear (RFC 7591 2.3). A statement from no trusted issuer is refused rather than ignored,
    so a client never believes signed claims were applied that were not."""
    statement = data.get("software_statement")
    trusted = app_settings.REGISTRATION_SOFTWARE_STATEMENT_ISSUERS
    if not isinstance(statement, str) or statement.count(".") != 2 or len(statement) > 8192:
        raise RegistrationError("invalid_software_statement", "software_statement must be a signed JWT.")
    try:
        parsed = jws.JWS()
        parsed.deserialize(statement)
        header = parsed.jose_header
        unverified = json.loads(parsed.objects["payload"])
    except (JWException, ValueError, TypeError, KeyError) as exc:
        raise RegistrationError("invalid_software_statement", "software_statement is not a JWS.") from exc
    if not isinstance(unverified, dict) or not isinstance(header, dict):
        raise RegistrationError("invalid_software_statement", "software_statement claims are not an object.")
    issuer = unverified.get("iss")
    if not isinstance(issuer, str) or issuer not in trusted:
        raise RegistrationError(
            "unapproved_software_statement", "The software statement's issuer is not trusted here."
        )
    if header.get("alg") not in STATEMENT_ALGS:
        raise RegistrationError("invalid_software_statement", "Unsupported software statement algorithm.")
    try:
        keyset = jwk.JWKSet.from_json(json.dumps(trusted[issuer]))
        parsed.verify(keyset, alg=header["alg"])
        claims = json.loads(parsed.payload)
    except (JWException, ValueError, TypeError) as exc:
        raise RegistrationError(
            "invalid_software_statement", "The software statement's signature is not valid."
        ) from exc
    now = time.time()
    for name, late in (("exp", True), ("nbf", False), ("iat", False)):
        value = claims.get(name)
        if value is None:
            continue
        if not is_numeric_date(value):
            raise RegistrationError(
                "invalid_software_statement", f"The software statement's {name} is not a time."
            )
        if (late and value <= now - STATEMENT_LEEWAY_SECONDS) or (
            not late and value > now + STATEMENT_LEEWAY_SECONDS
        ):
            raise RegistrationError(
                "invalid_software_statement", "The software statement is expired or not yet valid."
            )
    return {k: v for k, v in claims.items() if k not in _JWT_CLAIMS and k != "software_statement"}


# --- tokens --------------------------------------------------------------------------------------


def _digests(token: str, purpose: bytes) -> list[str]:
    """The keyed hash of ``token`` under each configured secret, the current one first."""
    return [
        hmac.new(key, token.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
        for key in crypto.derived_keys(purpose)
    ]


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str, purpose: bytes = REGISTRATION_TOKEN) -> str:
    return _digests(token, purpose)[0]


def registration_token_matches(profile: ClientProfile | None, token: str) -> bool:
    """Constant-time comparison of ``token`` with the profile's stored hash (an absent profile is
    compared against nothing, at the same cost)."""
    stored = profile.registration_token_hash if profile is not None else ""
    matched = False
    for digest in _digests(token, REGISTRATION_TOKEN):
        matched |= hmac.compare_digest(digest, stored or "0" * 64)
    return matched and bool(stored)


def _live_initial_access_tokens(token: str):
    return InitialAccessToken.objects.filter(
        token_hash__in=_digests(token, INITIAL_ACCESS_TOKEN),
        revoked__isnull=True,
        expires__gt=timezone.now(),
        uses__lt=F("max_uses"),
    )


def initial_access_token_usable(token: str) -> bool:
    return bool(token) and _live_initial_access_tokens(token).exists()


def use_initial_access_token(token: str) -> bool:
    """Spend one use of the initial access token ``token``; whether it was usable (RFC 7591 3)."""
    # One UPDATE: the use is counted only while one is left, whatever runs concurrently.
    return bool(token) and bool(_live_initial_access_tokens(token).update(uses=F("uses") + 1))


def create_initial_access_token(*, description: str, days: float, max_uses: int) -> str:
    """A new initial access token (returned in clear, once; stored hashed)."""
    token = new_token()
    InitialAccessToken.objects.create(
        description=description,
        token_hash=token_hash(token, INITIAL_ACCESS_TOKEN),
        expires=timezone.now() + timedelta(days=days),
        max_uses=max_uses,
    )
    return token


# --- limits --------------------------------------------------------------------------------------


def over_request_limit(request) -> bool:
    """Count one request to the registration endpoints (or one metadata document fetch) from this
    address; whether the address is over REGISTRATION_REQUESTS_PER_ADDRESS in the window."""
    key = throttle._key("registration", throttle.throttle_address(request))
    return throttle._count(key) > app_settings.REGISTRATION_REQUESTS_PER_ADDRESS


def self_registered_count() -> int:
    return Application.objects.filter(registration_source__in=SELF_REGISTERED).count()


def open_registration_refused(address: str) -> str | None:
    """Why open registration from ``address`` (a throttle address) is refused now, or None. Also
    asked before a new metadata-document client is created: both count against the same caps."""
    if self_registered_count() >= app_settings.REGISTRATION_OPEN_MAX_CLIENTS:
        return "This server accepts no more self-registered clients now."
    since = timezone.now() - timedelta(days=1)
    recent = (
        ClientProfile.objects.filter(registered_from=address, application__created__gte=since)
        .filter(Q(registration_policy=REGISTRATION_OPEN) | Q(application__registration_source=CIMD))
        .count()
    )
    if recent >= app_settings.REGISTRATION_OPEN_PER_ADDRESS_PER_DAY:
        return "Too many clients registered from this address today."
    return None


# --- logos -----------------------------------------------------------------------------------------

MAX_LOGO_BYTES = 32 * 1024
# The type is what the bytes are (their signature), and the Content-Type must agree. No SVG: it is
# a document that can carry scripts and external references.
_IMAGE_SIGNATURES = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
}


def _image_type(body: bytes) -> str | None:
    for media_type, signatures in _IMAGE_SIGNATURES.items():
        if body.startswith(signatures):
            return media_type
    if body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        return "image/webp"
    return None


def fetch_logo(url: str, deadline_seconds: float) -> str:
    """``url`` as a data: URI, or "" when it cannot be shown (fetched through the outbound client:
    deadline, no redirects, size cap, SSRF policy). Never raises."""
    if not url or deadline_seconds <= 0.1:
        return ""
    try:
        response = outbound.request(
            "GET",
            url,
            deadline_seconds=deadline_seconds,
            max_bytes=MAX_LOGO_BYTES,
            headers={"Accept": "image/*"},
        )
    except outbound.OutboundError:
        return ""
    declared = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    media_type = _image_type(response.body)
    if response.status != 200 or media_type is None or declared != media_type:
        return ""
    return f"data:{media_type};base64,{base64.b64encode(response.body).decode('ascii')}"


# --- the client ----------------------------------------------------------------------------------


# What apply_metadata writes (an RFC 7592 update saves these columns only, never the operator's).
METADATA_FIELDS = ("name", "redirect_uris")
PROFILE_METADATA_FIELDS = ("logo_data", "registration_metadata", *URL_MEMBERS)


def _logo_data(profile: ClientProfile, metadata: ClientMetadata, deadline: float | None) -> str | None:
    """The client's new logo (fetched within ``deadline`` seconds, default
    CLIENT_ID_METADATA_DOCUMENT_TIMEOUT_SECONDS), or None when logo_uri did not change."""
    logo_uri = metadata.extra.get("logo_uri", "")
    if logo_uri == profile.logo_uri and logo_uri:
        return None
    if deadline is None:
        deadline = app_settings.CLIENT_ID_METADATA_DOCUMENT_TIMEOUT_SECONDS
    return fetch_logo(logo_uri, deadline)


def apply_metadata(
    application, profile: ClientProfile, metadata: ClientMetadata, *, logo_deadline: float | None = None
) -> None:
    """Set the client from ``metadata``; its logo is fetched (within ``logo_deadline`` seconds,
    default CLIENT_ID_METADATA_DOCUMENT_TIMEOUT_SECONDS) only when logo_uri changed."""
    _set_metadata(application, profile, metadata, _logo_data(profile, metadata, logo_deadline))


def _set_metadata(
    application, profile: ClientProfile, metadata: ClientMetadata, logo_data: str | None
) -> None:
    application.name = metadata.client_name
    application.redirect_uris = " ".join(metadata.redirect_uris)
    if logo_data is not None:
        profile.logo_data = logo_data
    profile.registration_metadata = metadata.as_json()
    for name in URL_MEMBERS:
        setattr(profile, name, metadata.extra.get(name, ""))


def set_operator_defaults(profile: ClientProfile) -> None:
    """A new self-registered client: consent is always asked (internal/consents.py), PKCE always
    required for public ones (validator.pkce_required_for), and its tenants are the operator's.
    Set once, at creation: afterwards these are the operator's to change, never the client's."""
    profile.consent_policy = ClientProfile.ConsentPolicy.ASK
    profile.allowed_tenant_codes = " ".join(app_settings.REGISTRATION_TENANT_CODES)


def register(metadata: ClientMetadata, *, address: str, policy: str) -> tuple[Any, str | None, str]:
    """Create the client; (application, client secret or None, registration access token)."""
    secret = None if metadata.public else generate_client_secret()
    registration_token = new_token()
    application = Application(
        client_type=Application.CLIENT_PUBLIC if metadata.public else Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        # Generated like the admin's, so it gets the same keyed hash (internal/clients.py).
        client_secret=secret or "",
        hash_client_secret=not metadata.public,
        registration_source=DCR,
    )
    profile = ClientProfile(
        registered_from=address or None,
        registration_policy=policy,
        registration_token_hash=token_hash(registration_token),
        require_pkce=True,
    )
    # The client_id is generated (DOT's 40 characters, never a URI), so it cannot be a resource
    # server's identifier (its tokens without resource would have that API as aud); kept so.
    if resources.is_identifier_of_a_resource_server(application.client_id):
        raise _metadata_error(resources.CLIENT_ID_IS_A_RESOURCE)
    set_operator_defaults(profile)
    apply_metadata(application, profile, metadata)  # (fetches the logo: before the transaction)
    with transaction.atomic():
        application.save()
        profile.application = application
        profile.save()
    return application, secret, registration_token


def update(application, metadata: ClientMetadata):
    """RFC 7592 2.2: replace the metadata (the client type cannot change); the updated client.

    Only the metadata columns are written, on the row as it is now (locked), so a change the
    operator made meanwhile (a rotated secret, a minimum acr, the tenants) is never overwritten
    with an older copy."""
    logo_data = _logo_data(application.oidc_profile, metadata, None)  # (network: before the lock)
    with transaction.atomic():
        application = Application.objects.select_for_update().get(pk=application.pk)
        profile = ClientProfile.objects.select_for_update().get(application=application)
        if metadata.token_endpoint_auth_method != profile.registration_metadata.get(
            "token_endpoint_auth_method"
        ):
            raise _metadata_error("token_endpoint_auth_method cannot change; register a new client.")
        if logo_data is None and metadata.extra.get("logo_uri", "") != profile.logo_uri:
            logo_data = ""  # logo_uri changed since it was read: never show the old image for it
        _set_metadata(application, profile, metadata, logo_data)
        application.save(update_fields=[*METADATA_FIELDS, "updated"])
        profile.save(update_fields=list(PROFILE_METADATA_FIELDS))
    return application


def delete(application) -> None:
    """RFC 7592 2.3: the client is gone and so is everything issued to it."""
    with transaction.atomic():
        AuthorizationGrant.objects.filter(application=application).revoke_tokens()
        application.delete()


def client_information(application, request_uri: str) -> dict[str, Any]:
    """RFC 7591 3.2.1 / RFC 7592 3: the client information response, without secrets."""
    profile = application.oidc_profile
    return {
        "client_id": application.client_id,
        "client_id_issued_at": int(application.created.timestamp()),
        **profile.registration_metadata,
        "registration_client_uri": request_uri,
    }


def unused_self_registered(now=None):
    """Self-registered clients never used for a code, past REGISTRATION_UNUSED_EXPIRE_SECONDS
    (oidc_cleanup deletes them); clients registered with an initial access token are kept."""
    now = now or timezone.now()
    horizon = now - timedelta(seconds=app_settings.REGISTRATION_UNUSED_EXPIRE_SECONDS)
    return (
        Application.objects.filter(registration_source__in=SELF_REGISTERED, created__lt=horizon)
        .exclude(oidc_profile__registration_policy=REGISTRATION_INITIAL_ACCESS_TOKEN)
        .exclude(pk__in=AuthorizationGrant.objects.values("application_id"))
    )
