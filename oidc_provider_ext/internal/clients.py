"""Client lookup with a short-lived cache: a token or authorization request needs the client and
its OIDC profile, which rarely change. Changes made here (admin, commands, signals below) are
dropped from the cache at once; other processes sharing a cache (Redis) see that too, while a
per-process cache (locmem) may serve a changed client for up to ``CLIENT_CACHE_SECONDS``."""

from __future__ import annotations

from django.contrib.auth.hashers import identify_hasher, make_password
from django.core.cache import cache
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver
from oauth2_provider.models import get_application_model

from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.hashers import ALGORITHM, ClientSecretHasher, looks_generated
from oidc_provider_ext.models import ClientProfile, Tenant

Application = get_application_model()
_PREFIX = "oidc_provider_ext:client:"
_HAS_TENANTS = "oidc_provider_ext:has_tenants"
_ALLOWED_ORIGINS = "oidc_provider_ext:allowed_origins"


def _key(client_id: str) -> str:
    return _PREFIX + client_id.encode("utf-8", "replace").hex()[:400]


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
    ttl = app_settings.CLIENT_CACHE_SECONDS
    if ttl:
        cached = cache.get(_key(client_id))
        if cached is not None:
            return cached
    client = Application.objects.select_related("oidc_profile").filter(client_id=client_id).first()
    if client is not None and ttl:
        cache.set(_key(client_id), client, ttl)
    return client


def forget(client_id: str) -> None:
    cache.delete_many([_key(client_id), _ALLOWED_ORIGINS])


def all_allowed_origins() -> frozenset[str]:
    """Every origin any client registered in ``allowed_origins`` (as written), cached like the
    clients: what a CORS preflight, which names no client, is checked against (internal/cors.py)."""
    ttl = app_settings.CLIENT_CACHE_SECONDS
    if ttl:
        cached = cache.get(_ALLOWED_ORIGINS)
        if cached is not None:
            return cached
    values = Application.objects.exclude(allowed_origins="").values_list("allowed_origins", flat=True)
    origins = frozenset(origin for value in values for origin in value.split())
    if ttl:
        cache.set(_ALLOWED_ORIGINS, origins, ttl)
    return origins


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
    value = cache.get(_HAS_TENANTS)
    if value is None:
        value = Tenant.objects.exists()
        cache.set(_HAS_TENANTS, value, app_settings.CLIENT_CACHE_SECONDS or None)
    return value


@receiver(post_save, sender=Tenant)
@receiver(post_delete, sender=Tenant)
def _tenants_changed(**kwargs):
    cache.delete(_HAS_TENANTS)
