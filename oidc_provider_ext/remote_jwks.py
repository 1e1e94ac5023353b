"""The provider's JWK Set fetched over HTTP, for an API that runs apart from the provider.

Internal: not part of the public API. Configure it with ``RESOURCE_SERVER_JWKS_URL`` and use
:mod:`oidc_provider_ext.resource`.

The key set is kept in Django's default cache, so every process of the API shares one copy and the
provider sees one request per ``RESOURCE_SERVER_JWKS_CACHE_SECONDS``. A token whose ``kid`` is not in
the cached set causes a refetch, because the provider may have published a new key since (it
publishes a key as ``next`` before signing with it, so this is rare); such refetches happen at
most once per ``RESOURCE_SERVER_JWKS_REFETCH_SECONDS``, so tokens with made-up ``kid`` values
cannot turn into a flood of requests against the provider.

This module imports no model: it works in a project that does not install the provider app.
"""

from __future__ import annotations

import hashlib
import json
import logging
import urllib.error
import urllib.request
from functools import lru_cache
from typing import Any

from django.core.cache import cache
from jwcrypto import jwk
from jwcrypto.common import JWException

from .conf import app_settings

log = logging.getLogger(__name__)

FETCH_TIMEOUT_SECONDS = 5
MAX_JWKS_BYTES = 256 * 1024
_CACHE_PREFIX = "oidc_provider_ext:resource:jwks:"


class JWKSFetchError(Exception):
    """The JWK Set could not be fetched or is not a JWK Set."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect could lead from https to http, where the key set can be swapped in transit.
    # The configured URL must serve the key set itself.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def _cache_keys(url: str) -> tuple[str, str]:
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:32]
    return f"{_CACHE_PREFIX}{digest}", f"{_CACHE_PREFIX}{digest}:refetched"


def fetch(url: str) -> dict[str, list[dict[str, Any]]]:
    """GET the JWK Set at ``url`` (RFC 7517 5) and return it as ``{"keys": [...]}``."""
    headers = {"Accept": "application/jwk-set+json, application/json", "User-Agent": "oidc-provider-ext"}
    request = urllib.request.Request(url, headers=headers)
    try:
        with _opener.open(request, timeout=FETCH_TIMEOUT_SECONDS) as response:
            body = response.read(MAX_JWKS_BYTES + 1)
    except (OSError, ValueError) as exc:  # URLError, HTTPError and timeouts are all OSErrors
        raise JWKSFetchError(f"Fetching the JWKS from {url} failed: {exc}") from exc
    if len(body) > MAX_JWKS_BYTES:
        raise JWKSFetchError(f"The JWKS at {url} is larger than {MAX_JWKS_BYTES} bytes.")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise JWKSFetchError(f"The JWKS at {url} is not JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JWKSFetchError(f'The JWKS at {url} has no "keys" array (RFC 7517 5).')
    return {"keys": [key for key in document["keys"] if isinstance(key, dict)]}


def _refresh(url: str) -> dict[str, list[dict[str, Any]]]:
    keyset = fetch(url)
    data_key, refetched_key = _cache_keys(url)
    cache.set(data_key, keyset, timeout=app_settings.RESOURCE_SERVER_JWKS_CACHE_SECONDS)
    # A fetch also starts the refetch interval: a kid missing from a set fetched a moment ago is
    # not going to be in the next one.
    cache.set(refetched_key, True, timeout=app_settings.RESOURCE_SERVER_JWKS_REFETCH_SECONDS)
    return keyset


@lru_cache(maxsize=64)
def _jwk(serialised: str) -> jwk.JWK | None:
    try:
        return jwk.JWK(**json.loads(serialised))
    except (JWException, ValueError, TypeError, KeyError) as exc:
        log.warning("Ignoring a key of the remote JWKS that cannot be loaded: %s", exc)
        return None


def _find(keyset: dict[str, list[dict[str, Any]]], kid: str) -> jwk.JWK | None:
    for candidate in keyset["keys"]:
        # RFC 7517 4.2: a key whose "use" is not "sig" is not for verifying signatures.
        if candidate.get("kid") == kid and candidate.get("use", "sig") == "sig":
            return _jwk(json.dumps(candidate, sort_keys=True))
    return None


def verification_key(url: str, kid: str) -> jwk.JWK | None:
    """The key with ``kid`` from the JWK Set at ``url``, or None if the provider does not publish it.

    Raises :class:`JWKSFetchError` when the set has to be fetched and cannot be.
    """
    data_key, refetched_key = _cache_keys(url)
    keyset = cache.get(data_key)
    if keyset is None:
        keyset = _refresh(url)
    key = _find(keyset, kid)
    # cache.add only sets a missing key (atomically in Redis, Memcached and the database cache):
    # one caller per interval wins the refetch.
    if key is None and cache.add(
        refetched_key, True, timeout=app_settings.RESOURCE_SERVER_JWKS_REFETCH_SECONDS
    ):
        key = _find(_refresh(url), kid)
    return key
