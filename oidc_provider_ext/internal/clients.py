"""Client lookup with a short-lived cache: a token or authorization request needs the client and
its OIDC profile, which rarely change.

Every entry (a client, the CORS origins, "are there tenants", a tenant by code) is stamped with
the *client registry generation*, a random value in the same cache that every change through the
ORM replaces (signals below), once at once and once more after the transaction commits. An entry
whose stamp is not the current generation is never served, so with a cache shared by every process
(Redis) a change made through one server is honoured by all the others at their next request, even
when one of them read the old row while the change was being committed (it stored that row under
the old generation). With a per-process cache (LocMemCache) other processes serve a changed client
for up to ``CLIENT_CACHE_SECONDS``. After changing clients behind the ORM's back
(``QuerySet.update()``, SQL), call :func:`bump_generation`.

Each process also keeps the entries it read or stored, unpickled (``_local``), and serves them
under the same two conditions: the generation it reads from the shared cache on every lookup is
still the entry's, and the entry's own lifetime has not run out. So a change through the ORM (or
``bump_generation``) reaches every process at its next lookup, as before; only an entry the
shared cache evicted on its own is still served here until the end of its lifetime (at most
``CLIENT_CACHE_SECONDS``). A lookup does not unpickle the client again (~25 µs).
Every caller gets its own copy (:func:`_own_copy`), as each got its own unpickled one before.
"""

from __future__ import annotations

import copy
import datetime
import decimal
import hashlib
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.contrib.auth.hashers import identify_hasher, make_password
from django.db import models, transaction
from django.db.models.base import ModelState
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver
from oauth2_provider.models import get_application_model

from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.hashers import ALGORITHM, ClientSecretHasher, looks_generated
from oidc_provider_ext.internal.shared_cache import cache
from oidc_provider_ext.models import ClientProfile, Tenant

Application = get_application_model()
# Entries are (generation, value, expires_at) triples: named apart from the (generation, value)
# pairs and bare values older versions stored, so servers of several versions can share one cache
# during a rolling upgrade without reading each other's entries.
_PREFIX = "oidc_provider_ext:client:v4:"
_HAS_TENANTS = "oidc_provider_ext:has_tenants:v3"
_TENANT_PREFIX = "oidc_provider_ext:tenant:v2:"
_ALLOWED_ORIGINS = "oidc_provider_ext:allowed_origins:v3"
GENERATION_CACHE_KEY = "oidc_provider_ext:clients:generation"

#: This process's unpickled entries: cache key -> (generation, expires_at, value); see the module
#: docstring. Bounded: a full table is emptied (client ids are the client's to choose, but an
#: unknown one is never kept).
_local: dict[str, tuple[str, float, Any]] = {}
_LOCAL_ENTRIES = 1024
#: Values a caller cannot change in place: handed out as they are.
_IMMUTABLE = frozenset({
    str, bytes, int, float, bool, type(None), frozenset, decimal.Decimal, uuid.UUID,
    datetime.datetime, datetime.date, datetime.time, datetime.timedelta,
})  # fmt: skip


def _key(client_id: str, prefix: str = _PREFIX) -> str:
    # A digest of the whole id (or tenant code): a cut-off one would let two share one entry.
    return prefix + hashlib.sha256(client_id.encode("utf-8", "surrogatepass")).hexdigest()


def _lookup(key: str) -> tuple[Any, str]:
    """``(value, generation)``: the value cached under ``key`` if it was stored under the current
    generation and has not expired (else None), and that generation: one cache round trip when
    this process holds the entry, two when it reads it from the cache."""
    generation = cache.get(GENERATION_CACHE_KEY)
    if generation is None:
        # Never stamp with "no generation": an evicted generation key would otherwise bring back
        # every entry stored while it was missing, stale ones included.
        generation = secrets.token_hex(8)
        if not cache.add(GENERATION_CACHE_KEY, generation, timeout=None):
            generation = cache.get(GENERATION_CACHE_KEY) or generation
    now = time.time()
    kept = _local.get(key)
    if kept is not None and kept[0] == generation and now < kept[1]:
        return _own_copy(kept[2]), generation
    entry = cache.get(key)
    if isinstance(entry, tuple) and len(entry) == 3 and entry[0] == generation and now < entry[2]:
        _keep(key, generation, entry[2], entry[1])
        return entry[1], generation  # unpickled for this caller; _local holds its own copy
    return None, generation


def _own_copy(value: Any, copies: dict[int, Any] | None = None) -> Any:
    """A copy of a kept value for one caller, so that one caller setting an attribute (or a
    relation) on a client changes nothing for the next: model instances field by field, with
    their state and cached relations (the client's profile, which caches its client in turn:
    ``copies`` keeps such a cycle a cycle); immutable values as they are."""
    kind = type(value)
    if kind in _IMMUTABLE:
        return value
    if kind is dict or kind is list:  # a JSON field's value
        items = value.items() if kind is dict else enumerate(value)
        copied = {key: _own_copy(item, copies) for key, item in items}
        return copied if kind is dict else list(copied.values())
    copies = {} if copies is None else copies
    if id(value) in copies:
        return copies[id(value)]
    if not isinstance(value, models.Model):
        return copies.setdefault(id(value), copy.deepcopy(value))
    clone = copies[id(value)] = object.__new__(kind)  # as unpickling builds it: no __init__
    attributes = value.__dict__.copy()
    for name, item in attributes.items():
        if type(item) in _IMMUTABLE:
            continue
        if isinstance(item, ModelState):
            # What ModelState.__getstate__ copies (not the related managers), with copies of the
            # cached related objects.
            state = attributes[name] = ModelState.__new__(ModelState)
            state.__dict__.update(item.__dict__)
            state.__dict__.pop("related_managers_cache", None)
            state.fields_cache = {
                field: _own_copy(related, copies) for field, related in item.fields_cache.items()
            }
        else:
            attributes[name] = _own_copy(item, copies)
    clone.__dict__.update(attributes)
    return clone


def _keep(key: str, generation: str, expires_at: float, value: Any) -> None:
    if len(_local) >= _LOCAL_ENTRIES:
        _local.clear()
    _local[key] = (generation, expires_at, _own_copy(value))


def _store(key: str, generation: str, value: Any, ttl: int) -> None:
    expires_at = time.time() + ttl
    cache.set(key, (generation, value, expires_at), ttl)
    _keep(key, generation, expires_at, value)


def _cached(key: str, read: Callable[[], Any]) -> Any:
    """``read()``, kept under ``key`` for ``CLIENT_CACHE_SECONDS`` (none: read every time) and
    served only while the generation it was stamped with is current; None is not kept."""
    ttl = app_settings.CLIENT_CACHE_SECONDS
    if not ttl:
        return read()
    cached, generation = _lookup(key)
    if cached is not None:
        return cached
    value = read()
    if value is not None:
        _store(key, generation, value, ttl)
    return value


def bump_generation() -> None:
    """Drop every cached client, origin list and tenant flag in every process sharing the cache.

    Called on every change made through the ORM; call it after changing ``Application``,
    ``ClientProfile`` or ``Tenant`` rows behind the ORM's back. Random, not a counter: a cache that
    lost the entry can never bring back a value an older entry was stamped with.
    """
    cache.set(GENERATION_CACHE_KEY, secrets.token_hex(8), timeout=None)


def _changed() -> None:
    bump_generation()
    # Again after commit: a process that read the row before the commit stamped it with the
    # generation replaced just now, but may have read it after this first bump.
    transaction.on_commit(bump_generation)


@receiver(pre_save, sender=Application)
def _hash_generated_secret(instance, **kwargs):
    """Generated secrets get the fast keyed hash; anything else is left to DOT (PBKDF2)."""
    secret = instance.client_secret
    if not (instance.hash_client_secret and secret) or is_hashed(secret):
        return
    if looks_generated(secret):
        instance.client_secret = make_password(secret, hasher=ALGORITHM)


def upgrade_secret_hash(stored: str, provided: str) -> None:
    """After a successful check against a slow hash of a generated secret, or a fast one made under
    an older of SECRET_KEYS, store the fast one under the current key (existing clients move over
    transparently on their next token request)."""
    if not is_hashed(stored) or not looks_generated(provided):
        return
    if stored.startswith(ALGORITHM + "$") and ClientSecretHasher().verifies_under_current_key(
        provided, stored
    ):
        return
    clients = Application.objects.filter(client_secret=stored)
    client_ids = list(clients.values_list("client_id", flat=True))
    clients.update(client_secret=make_password(provided, hasher=ALGORITHM))
    for client_id in client_ids:
        forget(client_id)


def is_hashed(value: str) -> bool:
    try:
        identify_hasher(value)
    except ValueError:
        return False
    return True


def is_slow_hash(value: str) -> bool:
    """Whether ``value`` is a stored secret hashed by a password hasher other than the fast one."""
    try:
        return identify_hasher(value).algorithm != ALGORITHM
    except ValueError:
        return False


def get_client(client_id: str):
    """The Application with ``client_id`` and its OIDC profile, or None."""
    if not client_id or "\x00" in client_id:
        return None
    return _cached(
        _key(client_id),
        lambda: Application.objects.select_related("oidc_profile").filter(client_id=client_id).first(),
    )


def forget(client_id: str) -> None:
    """Drop ``client_id`` (and everything derived from the clients) from every process's cache."""
    key = _key(client_id)
    cache.delete_many([key, _ALLOWED_ORIGINS])
    _local.pop(key, None)
    _local.pop(_ALLOWED_ORIGINS, None)
    _changed()


def all_allowed_origins() -> frozenset[str]:
    """Every origin any client registered in ``allowed_origins`` (as written), cached like the
    clients: what a CORS preflight, which names no client, is checked against (internal/cors.py)."""

    def read() -> frozenset[str]:
        values = Application.objects.exclude(allowed_origins="").values_list("allowed_origins", flat=True)
        return frozenset(origin for value in values for origin in value.split())

    return _cached(_ALLOWED_ORIGINS, read)


@receiver(post_save, sender=Application)
@receiver(post_delete, sender=Application)
def _application_changed(instance, **kwargs):
    forget(instance.client_id)


@receiver(post_save, sender=ClientProfile)
@receiver(post_delete, sender=ClientProfile)
def _profile_changed(instance, **kwargs):
    client_id = (
        Application.objects.filter(pk=instance.application_id).values_list("client_id", flat=True).first()
    )
    if client_id:
        forget(client_id)


def has_tenants() -> bool:
    """Whether any built-in tenant exists (cached like clients; the answer changes about never).
    The default of ``DefaultOIDCAdapter.has_tenants``; a site with its own model overrides that."""
    return _cached(_HAS_TENANTS, Tenant.objects.exists)


def tenant_by_code(code: str, read: Callable[[], Any]) -> Any:
    """The tenant ``read()`` finds for ``code`` (lower-case), cached like the clients: a tenant-scoped
    sign-in needs it on each of its five requests, and tenants change about never. A code that names
    no tenant is not kept (anyone can send any acr_values). Whether someone may sign in to a tenant
    is not read from here: the membership rule reads the tenant's row with the membership."""
    return _cached(_key(code, _TENANT_PREFIX), read)


@receiver(post_save, sender=Tenant)
@receiver(post_delete, sender=Tenant)
def _tenants_changed(**kwargs):
    cache.delete(_HAS_TENANTS)
    _changed()
