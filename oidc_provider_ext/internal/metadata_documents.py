"""Client ID metadata documents (draft-ietf-oauth-client-id-metadata-document): a ``client_id`` that
is an https URL names a JSON document with the client's metadata, which this provider fetches
through the guarded outbound client when the client first shows up at the authorization endpoint.

Design (docs/registration.md, "Client ID metadata documents"): the validated document becomes a
DOT Application row whose client_id *is* the URL (registration_source "cimd", public, PKCE,
consent always asked), so every token path (code exchange, refresh, revocation, introspection,
userinfo, logout) works unchanged. The row is the shared cache of the document: it is re-read at
an authorization request once ``cimd_expires_at`` (from the response's Cache-Control, bounded by
CLIENT_ID_METADATA_DOCUMENT_MIN/MAX_CACHE_SECONDS) has passed. A failed fetch is remembered in
Django's cache for FAILURE_CACHE_SECONDS, so a broken or hostile host is not asked again per
request. Private: not part of the documented API.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from datetime import timedelta
from urllib.parse import urlsplit

from django.db import IntegrityError, transaction
from django.utils import timezone

from oidc_provider_ext import throttle
from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.internal import clients, outbound, resources
from oidc_provider_ext.internal import registration as rules
from oidc_provider_ext.internal.shared_cache import cache
from oidc_provider_ext.models import ClientProfile

log = logging.getLogger(__name__)

FAILURE_CACHE_SECONDS = 60
_PREFIX = "oidc_provider_ext:cimd-failure:"
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)", re.IGNORECASE)
_JSON_TYPE = re.compile(r"application/([a-z0-9.\-]+\+)?json", re.IGNORECASE)
# draft section 4.1: never in a metadata document (there is no way to agree on a secret).
_SECRET_MEMBERS = ("client_secret", "client_secret_expires_at")


class DocumentError(Exception):
    """Why the document cannot be used (shown to the user on the IdP's error page, for developers)."""


def is_document_url(client_id: str) -> bool:
    """Whether ``client_id`` has the shape of a metadata document URL (draft section 3): https,
    a host, a path other than "/", no fragment, no credentials, no dot segments."""
    if not client_id.startswith("https://") or len(client_id) > 255:
        return False
    try:
        parts = urlsplit(client_id)
        parts.port  # noqa: B018 (a malformed port raises)
    except ValueError:
        return False
    segments = parts.path.split("/")
    return bool(
        parts.hostname
        and parts.path not in ("", "/")
        and not parts.fragment
        and "#" not in client_id
        and "@" not in parts.netloc
        and "." not in segments
        and ".." not in segments
    )


def _failure_key(client_id: str) -> str:
    return _PREFIX + hashlib.sha256(client_id.encode("utf-8", "replace")).hexdigest()


def _location(client_id: str) -> str:
    """Where the document is fetched from: its URL (a seam for the tests' local servers)."""
    return client_id


def _max_age(headers: dict[str, str]) -> int:
    value = headers.get("cache-control", "")
    low = app_settings.CLIENT_ID_METADATA_DOCUMENT_MIN_CACHE_SECONDS
    high = app_settings.CLIENT_ID_METADATA_DOCUMENT_MAX_CACHE_SECONDS
    match = _MAX_AGE.search(value)
    if match is None or "no-store" in value.lower() or "no-cache" in value.lower():
        return low
    return max(low, min(high, int(match[1])))


def fetch(client_id: str) -> tuple[rules.ClientMetadata, int]:
    """The validated document at ``client_id`` and how long to trust it (seconds)."""
    try:
        response = outbound.request(
            "GET",
            _location(client_id),
            deadline_seconds=app_settings.CLIENT_ID_METADATA_DOCUMENT_TIMEOUT_SECONDS,
            max_bytes=app_settings.CLIENT_ID_METADATA_DOCUMENT_MAX_BYTES,
            headers={"Accept": "application/json"},
        )
    except outbound.OutboundError as exc:
        raise DocumentError(f"The client's metadata document could not be fetched ({exc.category}).") from exc
    if response.status != 200:
        raise DocumentError(
            f"The client's metadata document answered {outbound.status_category(response.status)}, not 200."
        )
    content_type = response.headers.get("content-type", "").split(";", 1)[0].strip()
    if not _JSON_TYPE.fullmatch(content_type):
        raise DocumentError("The client's metadata document is not application/json.")
    try:
        document = rules.parse_body(response.body)
    except rules.RegistrationError as exc:
        raise DocumentError(f"The client's metadata document is not valid: {exc.description}") from exc
    if not isinstance(document, dict):
        raise DocumentError("The client's metadata document is not a JSON object.")
    # draft section 4.1: simple string comparison (RFC 3986 6.2.1), no normalisation.
    if document.get("client_id") != client_id:
        raise DocumentError("The metadata document's client_id is not the URL it was fetched from.")
    if any(member in document for member in _SECRET_MEMBERS):
        raise DocumentError("A metadata document must not carry a client secret.")
    try:
        metadata = rules.validate_metadata(
            {k: v for k, v in document.items() if k != "client_id"}, metadata_document=True
        )
    except rules.RegistrationError as exc:
        raise DocumentError(f"The client's metadata document is not valid: {exc.description}") from exc
    return metadata, _max_age(response.headers)


def _save(
    client_id: str, metadata: rules.ClientMetadata, max_age: int, address: str, logo_deadline: float
) -> None:
    expires = timezone.now() + timedelta(seconds=max_age)
    application = rules.Application.objects.select_related("oidc_profile").filter(client_id=client_id).first()
    created = application is None
    if application is None:
        application = rules.Application(
            client_id=client_id,
            client_type=rules.Application.CLIENT_PUBLIC,
            authorization_grant_type=rules.Application.GRANT_AUTHORIZATION_CODE,
            client_secret="",
            hash_client_secret=False,
            registration_source=rules.CIMD,
        )
        profile = ClientProfile(registered_from=address or None, require_pkce=True)
        rules.set_operator_defaults(profile)  # once: later documents never reset the operator's
    else:
        profile = application.oidc_profile
    application.cimd_expires_at = expires
    # The logo gets what is left of the user's deadline (none left: no logo).
    rules.apply_metadata(application, profile, metadata, logo_deadline=logo_deadline)
    try:
        with transaction.atomic():
            if created:
                application.save()
                profile.application = application
                profile.save()
            else:
                # The document's columns only: what the operator set meanwhile stays.
                application.save(update_fields=[*rules.METADATA_FIELDS, "cimd_expires_at", "updated"])
                profile.save(update_fields=list(rules.PROFILE_METADATA_FIELDS))
    except IntegrityError:
        # Another request stored the same document a moment ago: theirs is as good as ours.
        log.info("Metadata document client %s was stored concurrently.", client_id)
    clients.forget(client_id)


def prepare(request, client_id: str) -> str | None:
    """Make sure the metadata document client ``client_id`` exists and is fresh before the
    authorization request is validated; the reason it cannot be used, or None.

    An operator-made client with the same client_id wins (nothing is fetched for it).
    """
    application = clients.get_client(client_id)
    if application is not None and application.registration_source != rules.CIMD:
        return None
    if (
        application is not None
        and application.cimd_expires_at is not None
        and application.cimd_expires_at > timezone.now()
    ):
        return None
    failure = cache.get(_failure_key(client_id))
    if failure is not None:
        return failure
    if resources.is_identifier_of_a_resource_server(client_id):
        # Its tokens without resource would have the API's identifier as aud (audience confusion).
        return resources.CLIENT_ID_IS_A_RESOURCE
    if rules.over_request_limit(request):
        return "Too many client metadata documents were requested from this address; try again later."
    if application is None:
        # A new client: the caps of open registration, per address per day and in total.
        refused = rules.open_registration_refused(throttle.throttle_address(request))
        if refused:
            return refused
    started = time.monotonic()
    try:
        metadata, max_age = fetch(client_id)
    except (DocumentError, ValueError) as exc:  # (ValueError: a malformed URL anywhere, never a 500)
        log.warning("Client metadata document %s refused: %s", client_id[:255], exc)
        cache.set(_failure_key(client_id), str(exc), FAILURE_CACHE_SECONDS)
        return str(exc)
    remaining = app_settings.CLIENT_ID_METADATA_DOCUMENT_TIMEOUT_SECONDS - (time.monotonic() - started)
    _save(client_id, metadata, max_age, throttle.throttle_address(request), remaining)
    return None
