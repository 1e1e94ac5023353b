"""Failure throttles, keyed so that an attacker can only ever lock out the attacker.

- :func:`client_ip` is the one answer to "which address is this request from": ``REMOTE_ADDR``,
  or with ``TRUSTED_PROXY_COUNT`` = N the X-Forwarded-For entry the first of the N trusted proxies
  appended (parsed by python-ipware). The leftmost entries are whatever the client sent; they are
  never used. Logs and other uses take it as it is.
- :func:`throttle_address` is what every throttle counts by: :func:`client_ip`, but an IPv6
  address stands for its /64 (one customer's allocation, RFC 6177 / RFC 7421: whoever has one
  address has 2**64) and an IPv4-mapped IPv6 address for the IPv4 address. The example project
  hands it to django-axes (``AXES_CLIENT_IP_CALLABLE``).
- Client authentication at the back-channel endpoints (token, introspection, revocation):
  failures are counted per (client_id, address) and per address in Django's cache (shared by
  every worker when the cache is Redis). Over a limit the attempt is refused as ``invalid_client``
  *before* any secret is verified, so a refused request costs no hashing. A client
  authenticating from another address is not affected, and neither is one that authenticated
  from this address within ``CLIENT_AUTH_PROVEN_SECONDS`` (a marker set on success exempts that
  (client_id, address) pair from the per-address limit; its own pair limit still applies): on a
  shared egress address, spraying client ids locks out the sprayer only. See docs/client-secrets.md.
- Sign-in: :class:`LoginThrottleBackend` refuses sign-ins from an address that failed
  ``LOGIN_ADDRESS_FAILURE_LIMIT`` times (a password-spraying source); the per (username, address)
  lock is django-axes' job. See docs/operations.md, "Login throttling".

Counters are fixed windows of ``THROTTLE_WINDOW_SECONDS`` started by the first failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import sys
from collections.abc import Iterable, Mapping

from django.contrib.auth.hashers import check_password, get_hasher, make_password
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from django.utils.crypto import get_random_string
from python_ipware import IpWare

from .conf import app_settings
from .internal.shared_cache import CountUnknown, cache

log = logging.getLogger(__name__)

_PREFIX = "oidc_provider_ext:throttle:"


def client_ip(request_or_meta) -> str:
    """The client's address: ``REMOTE_ADDR`` unless ``TRUSTED_PROXY_COUNT`` proxies sit in front.

    Each proxy appends the address it received the request from to X-Forwarded-For, so behind N
    trusted proxies the client is the N-th entry from the right; anything left of it came from
    the client and is ignored. Accepts a Django request, ``request.META`` or oauthlib's headers.
    """
    meta: Mapping = getattr(request_or_meta, "META", request_or_meta)
    proxies = app_settings.TRUSTED_PROXY_COUNT
    if proxies:
        # python-ipware counts the proxy addresses *inside* the header (N - 1 of them: the last
        # proxy's own address is REMOTE_ADDR) and picks chain[-(count + 1)] = the N-th from the right.
        found, _ = IpWare(precedence=("HTTP_X_FORWARDED_FOR",), proxy_count=proxies - 1).get_client_ip(meta)
        if found is not None:
            return str(found)
        # No (or too short a) header: the request did not come through the proxies.
    return str(meta.get("REMOTE_ADDR") or "")


def address_scope(address: str) -> str:
    """The unit a throttle counts ``address`` as: an IPv6 address's /64 (written as its first
    address, so it still fits django-axes' GenericIPAddressField), an IPv4-mapped IPv6 address's
    IPv4 address, anything else unchanged."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # a zone id names an interface, not a host
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False).network_address)
    return str(ip)


def throttle_address(request_or_meta) -> str:
    """:func:`client_ip` as every throttle counts it (see :func:`address_scope`)."""
    return address_scope(client_ip(request_or_meta))


def _key(name: str, *parts: str) -> str:
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8", "replace")).hexdigest()
    return f"{_PREFIX}{name}:{digest}"


UNKNOWN_COUNT = sys.maxsize  # over every limit


def _count(key: str, window: int | None = None) -> int:
    """Add one to ``key`` in a fixed window (THROTTLE_WINDOW_SECONDS unless given) and return the
    new count: one atomic step, so concurrent requests each see their own number. add() starts the
    window; incr() never extends it; a key that expired between the two calls starts a new one."""
    window = window or app_settings.THROTTLE_WINDOW_SECONDS
    if cache.add(key, 1, window):
        return 1
    try:
        return int(cache.incr(key))
    except CountUnknown:  # the shared cache failed between the two calls: refuse this attempt
        return UNKNOWN_COUNT
    except ValueError:
        cache.add(key, 1, window)
        return 1


def _count_failure(keys: Iterable[str]) -> None:
    for key in keys:
        _count(key)


# --- client authentication (RFC 6749 2.3.1) ------------------------------------------------------

_dummy_hashes: dict[str, str] = {}


def dummy_verify(secret: str) -> None:
    """Verify ``secret`` against a hash nobody knows with the default (slow) hasher: what a failed
    check of a human-chosen secret costs. Every failed client authentication pays it once, whether
    the client exists or not, so response times do not tell which client ids exist."""
    algorithm = str(get_hasher("default").algorithm)
    if algorithm not in _dummy_hashes:
        _dummy_hashes[algorithm] = make_password(get_random_string(32))
    check_password(secret, _dummy_hashes[algorithm])


class ClientAuthAttempt:
    """One client authentication: refuses before any secret is checked when this client id from
    this address is over its limit, or the address is and the pair has not proven itself from
    there lately; counts the failure otherwise, and marks the pair proven on success."""

    def __init__(self, address: str):
        self.address = address  # the full address, for the log
        self.scope = address_scope(address)  # what the counters count
        self.client_ids: list[str] = []
        self.refused = False

    def allows(self, client_id: str) -> bool:
        """Whether ``client_id`` may have its secret checked now (one cache read)."""
        address_key = _key("client-address", self.scope)
        pair_key = _key("client", client_id, self.scope)
        proven_key = _key("client-proven", client_id, self.scope)
        counts = cache.get_many([address_key, pair_key, proven_key])
        # The per-address limit stops spraying many client ids; a pair that authenticated from
        # this address lately is not spraying, and a sprayer cannot get the marker without the
        # secret. Exempt, it still has its own limit, so guessing its secret stays bounded.
        address_over = counts.get(address_key, 0) >= app_settings.CLIENT_AUTH_ADDRESS_FAILURE_LIMIT
        if (address_over and not counts.get(proven_key)) or (
            counts.get(pair_key, 0) >= app_settings.CLIENT_AUTH_FAILURE_LIMIT
        ):
            if not self.refused:
                log.warning("Client authentication throttled for client %r from %s.", client_id, self.address)
            self.refused = True
            return False
        if client_id not in self.client_ids:
            self.client_ids.append(client_id)
        return True

    def failed(self) -> None:
        if self.refused or not self.client_ids:
            return  # refused attempts do not extend the window; no client id, no secret checked
        _count_failure(
            [
                _key("client-address", self.scope),
                *(_key("client", client_id, self.scope) for client_id in self.client_ids),
            ]
        )

    def succeeded(self, client_id: str) -> None:
        """``client_id`` proved itself from this address: exempt the pair from the per-address
        limit for ``CLIENT_AUTH_PROVEN_SECONDS`` (renewed by every success; a cache write, no query)."""
        if app_settings.CLIENT_AUTH_PROVEN_SECONDS > 0:
            cache.set(
                _key("client-proven", client_id, self.scope), 1, app_settings.CLIENT_AUTH_PROVEN_SECONDS
            )


# --- sign-in -------------------------------------------------------------------------------------


def _login_address_key(request) -> str:
    return _key("login-address", throttle_address(request))


class LoginThrottleBackend:
    """An authentication backend that authenticates nobody: listed before the backends that do,
    it refuses every sign-in (a failed one, whatever the password) from an address with
    ``LOGIN_ADDRESS_FAILURE_LIMIT`` failed sign-ins in the window. That stops a source spraying
    one password over many usernames; the per (username, address) lock is django-axes'.

    No ``get_user``: it never authenticates anyone, so it must not be the backend
    ``Client.force_login`` or a session picks."""

    def authenticate(self, request, **credentials):
        if request is not None and (
            cache.get(_login_address_key(request), 0) >= app_settings.LOGIN_ADDRESS_FAILURE_LIMIT
        ):
            log.warning("Sign-in refused: too many failures from %s.", client_ip(request))
            # django-axes' middleware (when installed) answers with its lockout page (429).
            request.axes_locked_out = True
            raise PermissionDenied  # django.contrib.auth.authenticate: stop, signal a failure
        return None


def login_address_refused(request) -> bool:
    """Whether sign-ins from this request's address are refused (the rule of
    :class:`LoginThrottleBackend`, for sign-ins that do not go through ``authenticate()``: passkeys)."""
    if cache.get(_login_address_key(request), 0) >= app_settings.LOGIN_ADDRESS_FAILURE_LIMIT:
        log.warning("Sign-in refused: too many failures from %s.", client_ip(request))
        return True
    return False


def count_login_failure(request) -> None:
    """Count a failed sign-in that did not go through ``authenticate()`` (a refused passkey)."""
    _count_failure([_login_address_key(request)])


@receiver(user_login_failed)
def _count_login_failure(sender, credentials=None, request=None, **kwargs):
    if request is not None and hasattr(request, "META"):
        _count_failure([_login_address_key(request)])


# --- password-reset emails -----------------------------------------------------------------------

# Per window (THROTTLE_WINDOW_SECONDS): enough for a user who mistyped, too few to flood a mailbox
# or to use the provider as a mail cannon. Over the limit the page answers as usual (no oracle)
# and no email is sent.
RESET_EMAILS_PER_ADDRESS = 3  # to one email address
RESET_EMAILS_PER_SOURCE = 10  # from one client address (/64 for IPv6)


def allow_reset_email(request, email: str) -> bool:
    """Whether a password-reset email to ``email`` may be sent for ``request``; counts it if so."""
    keys = {
        _key("reset-to", email.strip().lower()): RESET_EMAILS_PER_ADDRESS,
        _key("reset-from", throttle_address(request)): RESET_EMAILS_PER_SOURCE,
    }
    counts = cache.get_many(list(keys))
    if any(counts.get(key, 0) >= limit for key, limit in keys.items()):
        log.warning("Password-reset email refused: too many for this address or from %s.", client_ip(request))
        return False
    _count_failure(keys)
    return True


# --- device user codes (RFC 8628 5.1) ------------------------------------------------------------


def _user_code_keys(request) -> tuple[str | None, str]:
    user = getattr(request, "user", None)
    user_key = _key("user-code-user", str(user.pk)) if user is not None and user.is_authenticated else None
    return user_key, _key("user-code-address", throttle_address(request))


def user_code_attempt_allowed(request) -> bool:
    """Count one user-code attempt of ``request`` and say whether it may be looked up.

    A signed-in user is limited per account, wherever they type from; an anonymous entry per
    address (an IPv6 /64). So a guesser locks out their own account or address only: a victim
    signed in on the same network (a NAT, an office) still enters their code, and a guesser who
    signs in gets only their account's few tries.

    The attempt is counted *before* the code is looked up (and taken back by
    :func:`user_code_entry_succeeded` when the code was right): guesses sent in parallel each get
    their own count, so no more than DEVICE_USER_CODE_FAILURE_LIMIT of them are ever looked up.
    """
    user_key, address_key = _user_code_keys(request)
    window = app_settings.THROTTLE_WINDOW_SECONDS
    count = _count(user_key if user_key is not None else address_key, window)
    if user_key is not None:
        _count(address_key, window)  # the address still sees what its accounts tried
    if count > app_settings.DEVICE_USER_CODE_FAILURE_LIMIT:
        log.warning("Device user code entry refused: too many wrong codes from %s.", client_ip(request))
        return False
    return True


def user_code_entry_succeeded(request) -> None:
    """A right user code: its attempt (counted by :func:`user_code_attempt_allowed`) is no failure."""
    user_key, address_key = _user_code_keys(request)
    for key in (user_key, address_key):
        if key is not None:
            with contextlib.suppress(ValueError):  # the window ended meanwhile
                cache.decr(key)


def device_authorization_allowed(request_or_meta) -> bool:
    """Count one device authorization started from this address (an IPv6 /64) and say whether it
    is within DEVICE_MAX_PENDING_PER_ADDRESS per DEVICE_CODE_EXPIRE_SECONDS, and never more than a
    quarter of DEVICE_MAX_PENDING_PER_CLIENT: a public client's id is no secret, so one address
    must not be able to hold all of a client's pending device sign-ins (or everyone's)."""
    limit = min(
        app_settings.DEVICE_MAX_PENDING_PER_ADDRESS, max(1, app_settings.DEVICE_MAX_PENDING_PER_CLIENT // 4)
    )
    key = _key("device-start", throttle_address(request_or_meta))
    if _count(key, app_settings.DEVICE_CODE_EXPIRE_SECONDS) > limit:
        log.warning("Device authorization refused: too many from %s.", client_ip(request_or_meta))
        return False
    return True


# --- second factors ------------------------------------------------------------------------------
# Every code is counted BEFORE it is checked, with one atomic increment per counter, so requests in
# flight at the same time cannot all pass a limit that was read before any of them was counted:
# - per (user, address): MFA_FAILURE_LIMIT; someone guessing from one address is stopped, the user
#   signing in from elsewhere is not;
# - per user, across addresses: MFA_ACCOUNT_FAILURE_LIMIT; an IPv6 /48 holds 65,536 "addresses"
#   (/64s) and a right password starts a new half sign-in for free, so without it the guesses at
#   one account would have no ceiling. Only someone who knows the password (or holds a session)
#   spends it, and a right code gives its count back;
# - per half sign-in and per OP session on a step-up page (:func:`attempt`): MFA_FAILURE_LIMIT,
#   kept here rather than in the browser's session, which is saved only when the request ends.


def _factor_key(request, user) -> str:
    return _key("factor", str(user.pk), throttle_address(request))


def _factor_account_key(user) -> str:
    return _key("factor-account", str(user.pk))


def factor_attempt(request, user) -> bool:
    """Count a second-factor code ``user`` is about to be checked with from the address of
    ``request``; False (do not check it) when that is over a limit."""
    pair = _count(_factor_key(request, user))
    account = _count(_factor_account_key(user))
    if pair > app_settings.MFA_FAILURE_LIMIT or account > app_settings.MFA_ACCOUNT_FAILURE_LIMIT:
        log.warning("Second factor throttled for user %s from %s.", user.pk, client_ip(request))
        return False
    return True


def factor_succeeded(request, user) -> None:
    """The code was right: this address starts afresh, and the account's count gets it back."""
    cache.delete(_factor_key(request, user))
    try:
        if cache.decr(_factor_account_key(user)) < 0:
            cache.delete(_factor_account_key(user))
    except ValueError:
        pass


def attempt(kind: str, ident: str) -> int:
    """Count one code checked for the half sign-in or OP session ``ident`` (``kind``: "half-sign-in"
    or "step-up"); how many have been, this one included."""
    return _count(_key(kind, ident))
