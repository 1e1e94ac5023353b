"""The provider's JWK Set fetched over HTTP, for an API that runs apart from the provider.

Internal: not part of the public API. Configure it with ``RESOURCE_SERVER_JWKS_URL`` and use
:mod:`oidc_provider_ext.resource`.

The key set is kept in Django's default cache, so every process of the API shares one copy and the
provider sees one request per ``RESOURCE_SERVER_JWKS_CACHE_SECONDS``. A token whose ``kid`` is not in
the cached set causes a refetch, because the provider may have published a new key since (it
publishes a key as ``next`` before signing with it, so this is rare); such refetches happen at
most once per ``RESOURCE_SERVER_JWKS_REFETCH_SECONDS``, so tokens with made-up ``kid`` values
cannot turn into a flood of requests against the provider. An empty cache is filled by one fetch:
one per process (the other requests wait for its result) and one across processes (a short
``cache.add`` lock; the others wait for the cached set or fail, which the API answers with 503).
While the cache fails, each process keeps its own copy and interval (internal/shared_cache.py).

Fetches go through the guarded outbound client (internal/outbound.py): one total deadline, a size
cap, no redirects and the ``OUTBOUND_ALLOWED_NETWORKS`` network policy.

This module imports no model: it works in a project that does not install the provider app.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from functools import lru_cache
from typing import Any

from jwcrypto import jwk
from jwcrypto.common import JWException

from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.internal import outbound
from oidc_provider_ext.internal.shared_cache import cache

log = logging.getLogger(__name__)

FETCH_TIMEOUT_SECONDS = 5  # total: connect, TLS, headers and body
MAX_JWKS_BYTES = 256 * 1024
FLIGHT_WAIT_SECONDS = 1  # beyond the fetch deadline, how long a waiting request waits for a fetch
FLIGHT_POLL_SECONDS = 0.05
_CACHE_PREFIX = "oidc_provider_ext:resource:jwks:"


class JWKSFetchError(Exception):
    """The JWK Set could not be fetched or is not a JWK Set."""


def _cache_keys(url: str) -> tuple[str, str]:
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:32]
    return f"{_CACHE_PREFIX}{digest}", f"{_CACHE_PREFIX}{digest}:refetched"


def fetch(url: str) -> dict[str, list[dict[str, Any]]]:
    """GET the JWK Set at ``url`` (RFC 7517 5) and return it as ``{"keys": [...]}``.

    Through the guarded outbound client: one total deadline of ``FETCH_TIMEOUT_SECONDS``, at most
    ``MAX_JWKS_BYTES``, no redirects (one could lead from https to http, where the key set can be
    swapped in transit: the configured URL must serve the key set itself) and the
    ``OUTBOUND_ALLOWED_NETWORKS`` policy.
    """
    headers = {"Accept": "application/jwk-set+json, application/json"}
    try:
        response = outbound.request(
            "GET", url, headers=headers, deadline_seconds=FETCH_TIMEOUT_SECONDS, max_bytes=MAX_JWKS_BYTES
        )
    except outbound.OutboundError as exc:
        raise JWKSFetchError(f"Fetching the JWKS from {url} failed: {exc}") from exc
    if response.status != 200:
        raise JWKSFetchError(f"Fetching the JWKS from {url} failed: HTTP {response.status}")
    try:
        document = json.loads(response.body)
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


class _Flight:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.keyset: dict[str, list[dict[str, Any]]] | None = None
        self.error: JWKSFetchError | None = None


_flights: dict[str, _Flight] = {}
_flights_lock = threading.Lock()


def _fetch_once(url: str) -> dict[str, list[dict[str, Any]]]:
    """Fill an empty cache with one fetch however many requests need it at once.

    In this process the first caller fetches and the others wait for its result (or its error).
    Across processes ``cache.add`` of a short-lived lock key elects one fetcher; a process that
    loses waits up to the fetch deadline for the key set to appear in the cache, then gives up
    (the caller answers 503 and the client retries).
    """
    with _flights_lock:
        found = _flights.get(url)
        leader = found is None
        flight = _flights[url] = _Flight() if found is None else found
    if not leader:
        if not flight.done.wait(FETCH_TIMEOUT_SECONDS + FLIGHT_WAIT_SECONDS):
            raise JWKSFetchError(f"Timed out waiting for another fetch of the JWKS at {url}.")
        if flight.error is not None:
            raise flight.error
        return flight.keyset  # type: ignore[return-value]
    try:
        flight.keyset = _fetch_across_processes(url)
        return flight.keyset
    except Exception as exc:
        # The waiters answer "keys unavailable" whatever failed here (the shared cache, say);
        # without an error they would take a key set of None.
        flight.error = (
            exc
            if isinstance(exc, JWKSFetchError)
            else JWKSFetchError(f"Fetching the JWKS at {url} failed ({type(exc).__name__}).")
        )
        raise
    finally:
        with _flights_lock:
            _flights.pop(url, None)
        flight.done.set()


def _fetch_across_processes(url: str) -> dict[str, list[dict[str, Any]]]:
    data_key, _refetched = _cache_keys(url)
    lock_key = f"{data_key}:fetching"
    if cache.add(lock_key, True, timeout=int(FETCH_TIMEOUT_SECONDS + FLIGHT_WAIT_SECONDS)):
        try:
            return _refresh(url)
        finally:
            cache.delete(lock_key)
    waited = 0.0
    while waited < FETCH_TIMEOUT_SECONDS + FLIGHT_WAIT_SECONDS:
        time.sleep(FLIGHT_POLL_SECONDS)
        waited += FLIGHT_POLL_SECONDS
        keyset = cache.get(data_key)
        if keyset is not None:
            return keyset
        if cache.get(lock_key) is None:  # the other process is done and cached nothing: it failed
            break
    raise JWKSFetchError(f"Another process is fetching the JWKS at {url}; it is not available yet.")


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
        keyset = _fetch_once(url)
    key = _find(keyset, kid)
    # cache.add only sets a missing key (atomically in Redis, Memcached and the database cache):
    # one caller per interval wins the refetch.
    if key is None and cache.add(
        refetched_key, True, timeout=app_settings.RESOURCE_SERVER_JWKS_REFETCH_SECONDS
    ):
        key = _find(_refresh(url), kid)
    return key
