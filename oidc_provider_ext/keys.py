"""Signing-key store: keys live in the database, private halves encrypted at rest.

Lifecycle of a key (per algorithm): ``next`` (published in the JWKS, not signing) → ``active``
(signs new tokens; at most one per algorithm) → ``retired`` (published until every token it signed
has expired) → removed by ``prune()``. ``rotate()`` moves every key one step at once.

Signing and verification read an in-process snapshot of the published keys, so minting a token
costs no query once warm. A change is seen at once by the transaction that makes it (which reads
through a snapshot of its own until it commits) and, after the commit, by the whole process that
made it (signals below). Other processes (gunicorn workers, other hosts) learn about a change through a
"key generation" value in Django's cache, which every change replaces and which each process reads
at most once per ``GENERATION_CHECK_SECONDS``; with a per-process cache (LocMemCache) they fall
back on ``SNAPSHOT_TTL_SECONDS``. Either way a new key is published as ``next`` well before it
becomes ``active``, so no relying party ever meets a ``kid`` it has not had the chance to fetch.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.fernet import InvalidToken, MultiFernet
from django.db import IntegrityError, connections, router, transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone
from jwcrypto import jwk

from .conf import app_settings
from .internal import crypto
from .internal import jws as jose
from .internal.shared_cache import cache
from .models import SigningKey

log = logging.getLogger(__name__)

SNAPSHOT_TTL_SECONDS = 60
UNKNOWN_KID_RELOAD_SECONDS = 5
# How often a process asks the cache whether another process changed a key. One cache read per
# second per process is cheap; a rotation reaches every worker within about this long.
GENERATION_CHECK_SECONDS = 1
GENERATION_CACHE_KEY = "oidc_provider_ext:keys:generation"
# Allowance for relying parties whose clocks run slow: RFC 7519 4.1.4 lets them accept a token a
# little after ``exp``, so a retired key stays published that much longer.
CLOCK_SKEW_SECONDS = 60
# The algorithms of SigningKey.Algorithm (RFC 7518 3.1). RS256 is the one every OpenID Provider
# must support (OIDC Core 15.1), so it comes first wherever they are listed.
SUPPORTED_ALGS: tuple[str, ...] = ("RS256", "PS256", "ES256")
_SIGNING_STATES = (SigningKey.State.NEXT, SigningKey.State.ACTIVE)  # signing now or soon


class KeyDecryptionError(Exception):
    """The private key cannot be decrypted: the secret it was stored with is not in SECRET_KEYS."""


# --- encryption at rest ----------------------------------------------------------------------------


def private_jwk(key: SigningKey, fernet: MultiFernet | None = None) -> jwk.JWK:
    """The decrypted private JWK of ``key``; ``KeyDecryptionError`` if the secret changed."""
    try:
        private = (fernet or crypto.fernet()).decrypt(key.private_jwk_encrypted.encode())
    except InvalidToken as exc:
        raise KeyDecryptionError(
            f"Signing key {key.kid} ({key.alg}) cannot be decrypted: none of SECRET_KEYS (or "
            "SECRET_KEY, their default) is the one the key was stored with. Restore that secret; "
            "see 'Signing keys' in docs/operations.md if it is lost."
        ) from exc
    return jwk.JWK.from_json(private)


def reencrypt() -> int:
    """Encrypt every stored private key under the current (first) of SECRET_KEYS; the number of
    keys rewritten. Run after putting a new secret first, before dropping the old one."""
    fernet = crypto.fernet()
    rewritten = 0
    for key in SigningKey.objects.all():
        token = key.private_jwk_encrypted.encode()
        try:
            rotated = fernet.rotate(token).decode()
        except InvalidToken as exc:
            raise KeyDecryptionError(
                f"Signing key {key.kid} cannot be decrypted with any of SECRET_KEYS."
            ) from exc
        if rotated != key.private_jwk_encrypted:
            SigningKey.objects.filter(pk=key.pk).update(private_jwk_encrypted=rotated)
            rewritten += 1
    return rewritten


def _generate(alg: str) -> jwk.JWK:
    if alg == SigningKey.Algorithm.ES256:
        return jwk.JWK.generate(kty="EC", crv="P-256")
    # RS256 and PS256 both take an RSA key (RFC 7518 3.3, 3.5: at least 2048 bits).
    return jwk.JWK.generate(kty="RSA", size=2048)


def _check_alg(alg: str) -> None:
    if alg not in SUPPORTED_ALGS:
        raise ValueError(f"Unsupported signing algorithm {alg!r}; use one of {', '.join(SUPPORTED_ALGS)}.")


def create_key(alg: str = "RS256", state: str = SigningKey.State.NEXT) -> SigningKey:
    """Generate a key pair and store it (private half encrypted)."""
    _check_alg(alg)
    key = SigningKey(alg=alg, state=state)
    pair = _generate(alg)
    public = json.loads(pair.export_public())
    public.update(kid=key.kid, alg=alg, use="sig")
    key.public_jwk = public
    key.private_jwk_encrypted = crypto.fernet().encrypt(pair.export_private().encode()).decode()
    key.save()
    return key


# --- lifecycle -------------------------------------------------------------------------------------


def max_token_lifetime() -> timedelta:
    """The longest a token signed now stays valid: every JWT this provider signs has one of these."""
    return timedelta(
        seconds=max(app_settings.ID_TOKEN_EXPIRE_SECONDS, app_settings.ACCESS_TOKEN_EXPIRE_SECONDS)
    )


def retirement_window() -> timedelta:
    """How long a key stays published after it is retired.

    Other processes may go on signing with it until their snapshot notices the rotation (at most
    ``SNAPSHOT_TTL_SECONDS``, usually ``GENERATION_CHECK_SECONDS``); the last token it signed then
    lives one maximum lifetime, and relying parties may accept it ``CLOCK_SKEW_SECONDS`` late.
    """
    return max_token_lifetime() + timedelta(seconds=SNAPSHOT_TTL_SECONDS + CLOCK_SKEW_SECONDS)


def prunable_after(key: SigningKey) -> datetime | None:
    """When every token ``key`` can have signed has expired; None unless it is retired.

    A retired key without a ``retired`` time (a row changed behind the ORM's back) is kept.
    """
    if key.state != SigningKey.State.RETIRED or key.retired is None:
        return None
    return key.retired + retirement_window()


@dataclass(frozen=True)
class Rotation:
    """What ``rotate()`` did. ``was_published`` is False when no ``next`` key existed, so the new
    active key was never in the JWKS before it started signing."""

    retired: SigningKey | None
    activated: SigningKey
    next: SigningKey
    was_published: bool


def rotate(alg: str = "RS256") -> Rotation:
    """next → active, active → retired, and a fresh next key, in one transaction.

    The oldest ``next`` key is promoted: it has been published longest, so relying parties that
    cache the JWKS are the most likely to have it already.
    """
    _check_alg(alg)
    with transaction.atomic():
        # Locks the rows so two concurrent rotations of the same algorithm run one after the other.
        current = list(
            SigningKey.objects.select_for_update()
            .filter(alg=alg, state__in=_SIGNING_STATES)
            .order_by("created")
        )
        now = timezone.now()  # after the lock: a rotation that waited must not backdate `retired`
        active = next((k for k in current if k.state == SigningKey.State.ACTIVE), None)
        promoted = next((k for k in current if k.state == SigningKey.State.NEXT), None)
        was_published = promoted is not None
        if promoted is None:
            promoted = create_key(alg, SigningKey.State.NEXT)
        # Refuse to activate a key that cannot sign: the transaction rolls back, nothing changes.
        private_jwk(promoted)
        if active is not None:
            # Retire first: the unique constraint allows one active key per algorithm at any moment.
            active.state, active.retired = SigningKey.State.RETIRED, now
            active.save(update_fields=["state", "retired"])
        promoted.state, promoted.activated = SigningKey.State.ACTIVE, now
        promoted.save(update_fields=["state", "activated"])
        upcoming = create_key(alg, SigningKey.State.NEXT)
    return Rotation(retired=active, activated=promoted, next=upcoming, was_published=was_published)


def prune(now: datetime | None = None, *, dry_run: bool = False) -> list[SigningKey]:
    """Delete the retired keys whose every token has expired; return them (``dry_run``: only list).

    Only ``retired`` keys past ``prunable_after()`` go: next and active keys are never removed.
    """
    cutoff = (now or timezone.now()) - retirement_window()
    doomed = list(
        SigningKey.objects.filter(state=SigningKey.State.RETIRED, retired__lt=cutoff).order_by("retired")
    )
    if doomed and not dry_run:
        # Delete exactly the rows listed, so what is reported is what was removed.
        SigningKey.objects.filter(pk__in=[k.pk for k in doomed]).delete()
    return doomed


# --- in-process snapshot ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Published:
    public: dict  # the public JWK as the JWKS shows it
    key: jwk.JWK
    verify_until: float | None  # epoch seconds; None while next or active


@dataclass(frozen=True)
class _Snapshot:
    loaded_at: float  # time.monotonic()
    load: int  # which load of this process made it (see ``_valid_from``)
    generation: str | None
    signing: dict[str, tuple[str, jwk.JWK]]  # alg -> (kid, private JWK)
    published: dict[str, _Published]  # kid -> public key, in creation order
    # The active keys' private JWKs by the ciphertext they were decrypted from. The next reload
    # (every SNAPSHOT_TTL_SECONDS, or when another process changed any key) keeps the objects of
    # unchanged rows, public and private, and with them their ``cryptography`` keys
    # (internal/jws.py keeps one per object): building an RSA private key validates it, ~38 ms
    # that the first token request after every reload paid. Fernet's random IV makes a rewritten
    # row (re-encryption, a new key) a new ciphertext; ``invalidate()`` drops the snapshot, and
    # with it these objects.
    decrypted: dict[str, jwk.JWK]

    def live(self, kid: str) -> jwk.JWK | None:
        """The public key ``kid`` if it may still verify a token at this moment."""
        entry = self.published.get(kid)
        if entry is None or (entry.verify_until is not None and entry.verify_until <= time.time()):
            return None
        return entry.key


_lock = threading.Lock()
_snapshot: _Snapshot | None = None
_generation_checked_at = 0.0
# Loads are numbered as they begin. ``invalidate()`` sets ``_valid_from`` past
# the load in progress, if any: that load may have read the rows before the change that
# invalidated, so what it returns must not be served, even though it is installed after.
_loads = 0
_valid_from = 0
_counter_lock = threading.Lock()  # _loads and _valid_from only move forward


def _read_generation() -> str | None:
    # Through a cache outage: this process's memory (internal/shared_cache.py), which other
    # processes' rotations do not reach; the snapshot TTL bounds what they miss.
    return cache.get(GENERATION_CACHE_KEY)


def bump_generation() -> None:
    """Tell every process that the keys changed; each reloads within ``GENERATION_CHECK_SECONDS``.

    Called on every change made through the ORM. Call it yourself after changing ``SigningKey``
    rows behind the ORM's back (``QuerySet.update()``, SQL). A random value rather than a counter:
    a cache that evicted or lost the entry can never bring back a value a process already holds.
    """
    cache.set(GENERATION_CACHE_KEY, secrets.token_hex(8), timeout=None)


def _load_snapshot(load: int, previous: _Snapshot | None, using: str | None = None) -> _Snapshot:
    """The keys as database ``using`` (default: the router's for reading) has them now; the key
    objects of rows unchanged since ``previous`` are kept."""
    # Read the generation before the rows: a change committed during the load then shows up as a
    # newer generation at the next check instead of being missed.
    generation = _read_generation()
    fernet = crypto.fernet()
    signing: dict[str, tuple[str, jwk.JWK]] = {}
    published: dict[str, _Published] = {}
    decrypted: dict[str, jwk.JWK] = {}
    # Retired keys past their window are kept too: ``_Snapshot.live()`` hides them by the clock,
    # so one that expires while this snapshot is in use stops verifying at once.
    for key in SigningKey.objects.using(using).order_by("created"):
        until = prunable_after(key)
        kept = previous.published.get(key.kid) if previous else None  # kept if unchanged
        public = kept.key if kept is not None and kept.public == key.public_jwk else jwk.JWK(**key.public_jwk)
        published[key.kid] = _Published(key.public_jwk, public, until.timestamp() if until else None)
        if key.state == SigningKey.State.ACTIVE:
            ciphertext = key.private_jwk_encrypted
            private = previous.decrypted.get(ciphertext) if previous else None
            if private is None:
                private = private_jwk(key, fernet)
            decrypted[ciphertext] = private
            signing[key.alg] = (key.kid, private)
    return _Snapshot(time.monotonic(), load, generation, signing, published, decrypted)


def _stale(snap: _Snapshot) -> bool:
    global _generation_checked_at
    now = time.monotonic()
    if now - snap.loaded_at > SNAPSHOT_TTL_SECONDS:
        return True
    if now - _generation_checked_at < GENERATION_CHECK_SECONDS:
        return False
    _generation_checked_at = now
    return _read_generation() != snap.generation


def _begin_load() -> int:
    global _loads
    with _counter_lock:
        _loads += 1
        return _loads


def _current() -> _Snapshot:
    global _snapshot, _generation_checked_at
    changing = _key_changes_in_transaction()
    if changing is not None:
        return _transaction_snapshot(*changing)
    snap = _snapshot
    if snap is None or snap.load < _valid_from or _stale(snap):
        with _lock:
            # Another thread may have reloaded while this one waited for the lock; its snapshot
            # serves only if its load began after the last invalidate(). The global is read once
            # and what is returned is the local: invalidate() may set it to None at any moment.
            installed = _snapshot
            if installed is None or installed is snap or installed.load < _valid_from:
                installed = _load_snapshot(_begin_load(), installed)
                _snapshot = installed
                _generation_checked_at = installed.loaded_at
            snap = installed
    return snap


def invalidate() -> None:
    """Drop this process's snapshot (and this thread's transaction's, if any) and their decrypted
    keys; the next use reloads and decrypts from the database, in a load that begins after this
    call."""
    global _snapshot, _valid_from
    with _counter_lock:  # read and stored at once, or two at once could move it back
        _valid_from = _loads + 1
    _snapshot = None
    _forget_transaction_snapshot(router.db_for_write(SigningKey))


# --- key changes inside a transaction ----------------------------------------------------------------
# A transaction that changed SigningKey rows sees them before anyone else, and they may yet roll
# back: what it loads serves that transaction alone (kept on its connection) and is never
# installed for the process. Its commit makes every process reload. The pending on_commit callback
# is the marker: Django drops it when the transaction, or the savepoint it was registered in,
# rolls back, so a rolled-back change leaves no trace here either.

_TRANSACTION_SNAPSHOT = "_oidc_provider_ext_keys_snapshot"  # on the connection: (changes, snapshot)
# Whether this process ever changed a key; until it does, no transaction of it can have an
# uncommitted change, and _current() skips the look at the connection.
_changed_here = False


def _key_changes_committed() -> None:
    invalidate()
    bump_generation()


def _key_changes_in_transaction() -> tuple[Any, int] | None:
    """``(connection, number of key changes pending)`` when this thread's transaction changed keys
    and has not committed, else None."""
    if not _changed_here:
        return None
    connection = connections[router.db_for_write(SigningKey)]
    if not (connection.in_atomic_block and connection.run_on_commit):
        return None
    pending = sum(1 for entry in connection.run_on_commit if entry[1] is _key_changes_committed)
    return (connection, pending) if pending else None


def _transaction_snapshot(connection, pending: int) -> _Snapshot:
    kept = connection.__dict__.get(_TRANSACTION_SNAPSHOT)
    # Fewer changes pending than when it was loaded: a savepoint with one of them rolled back.
    # Another process's change shows at the TTL (the transaction is short; it reads its own rows).
    if kept is None or kept[0] != pending or time.monotonic() - kept[1].loaded_at > SNAPSHOT_TTL_SECONDS:
        previous = kept[1] if kept is not None else None
        # On the connection that made the changes: a read router's replica cannot see them.
        fresh = _load_snapshot(_begin_load(), previous, using=connection.alias)
        kept = connection.__dict__[_TRANSACTION_SNAPSHOT] = (pending, fresh)
    return kept[1]


def _forget_transaction_snapshot(alias: str) -> None:
    connections[alias].__dict__.pop(_TRANSACTION_SNAPSHOT, None)


@receiver(post_save, sender=SigningKey)
@receiver(post_delete, sender=SigningKey)
def _key_changed(using: str, **kwargs) -> None:
    global _changed_here
    _changed_here = True
    _forget_transaction_snapshot(using)
    # Other processes are told only after commit, or they would reload before the change is
    # visible; outside a transaction this runs at once.
    transaction.on_commit(_key_changes_committed, using=using)


# --- signing and verification ----------------------------------------------------------------------


def signing_key(alg: str | None = None) -> tuple[str, jwk.JWK]:
    """``(kid, private JWK)`` of the active key for ``alg``; creates one on first use."""
    alg = alg or app_settings.SIGNING_ALG
    found = _current().signing.get(alg)
    if found:
        return found
    try:
        with transaction.atomic():
            create_key(alg, state=SigningKey.State.ACTIVE)
            log.warning(
                "No active %s signing key existed; created one. Manage keys with `manage.py oidc_keys`.", alg
            )
    except IntegrityError:
        invalidate()  # another process created it at the same moment: read it
    return _current().signing[alg]


def verification_key(kid: str) -> jwk.JWK | None:
    """The published public key with ``kid``, or None (also once every token it signed expired)."""
    snap = _current()
    key = snap.live(kid)
    if (
        key is None
        and kid not in snap.published
        and time.monotonic() - snap.loaded_at > UNKNOWN_KID_RELOAD_SECONDS
    ):
        # Maybe a key another process published since our snapshot. Bounded so a flood of
        # made-up kids cannot turn into a flood of queries.
        invalidate()
        key = _current().live(kid)
    return key


def jwks() -> dict:
    """The JWK Set: exactly the keys that may verify a live token (next, active, retired within
    its window). ``next`` keys verify nothing yet; they are published so caches hold them before
    they sign (OIDC Core 10.1.1)."""
    if not _current().signing:
        # A fresh install has no key until something is signed; publishing an empty set with
        # long cache headers would leave relying parties unable to verify the first tokens.
        signing_key()
    snap = _current()
    return {"keys": [entry.public for kid, entry in snap.published.items() if snap.live(kid) is not None]}


def alg_for_client(application) -> str:
    """The JWS algorithm of ``application``'s ID tokens: its ``id_token_signed_response_alg``
    (OIDC Registration 2), or ``SIGNING_ALG`` when the client has no OIDC profile."""
    profile = getattr(application, "oidc_profile", None)
    if profile is None or not profile.id_token_signed_response_alg:
        return app_settings.SIGNING_ALG
    return profile.id_token_signed_response_alg


def sign(claims: dict, *, typ: str = "JWT", alg: str | None = None) -> str:
    """Compact JWS over ``claims`` with the active key; the header carries ``kid``."""
    alg = alg or app_settings.SIGNING_ALG
    kid, key = signing_key(alg)
    # Straight on the key's cryptography object (internal/jws.py): jwcrypto's JWT deep-copies its
    # header registry for every token, a third of the cost of minting one.
    return jose.sign({"alg": alg, "typ": typ, "kid": kid}, claims, key)
