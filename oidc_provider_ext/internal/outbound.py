"""The one HTTP client for every request this app makes to another server (back-channel logout,
a remote JWKS, anything later). Private: not part of the documented API.

Every request gets:

- **one total deadline** for name resolution, connect, TLS handshake, request, headers and body: a
  server that trickles one byte a second is cut off at the deadline, not at a per-read timeout;
- **no redirects**: a 3xx is a failure (a redirect would let the target choose another host, an
  internal one included, or downgrade https to http);
- **a network policy** on the address actually connected to: loopback, private, link-local and the
  other IANA special-purpose ranges (this module's own table, the same on every Python version;
  IPv4-mapped, NAT64 and 6to4 addresses judged by the IPv4 address they reach, Teredo refused)
  are refused unless ``OUTBOUND_ALLOWED_NETWORKS`` lists them, and plain ``http`` is allowed
  only to those listed networks. The address is checked before the
  connection is opened (so a refused target sees no packet and "closed port" cannot be told from
  "refused") and again on the connected socket's peer address; we connect to exactly the address
  we checked, never re-resolving the name, so DNS rebinding cannot slip between check and use;
- **a size cap** on the response body;
- **coarse errors** (:attr:`OutboundError.category`): what may be shown to an operator or stored
  without turning the feature into a port scanner of the provider's network.

This module imports no model: it works in a project that does not install the provider app.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from oidc_provider_ext.conf import app_settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

REFUSED = "refused by policy"
TIMEOUT = "timeout"
CONNECTION_FAILED = "connection failed"
TOO_LARGE = "response too large"
REDIRECT = "redirect not followed"
INVALID_RESPONSE = "invalid response"


def _networks(*cidrs: str) -> tuple:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


# The network policy is this module's own table, not ``ipaddress.is_global``: what that property
# says differs between Python versions (3.11.7 calls 6to4, site-local and 192.88.99.0/24 global).
#
# IPv6 forms that carry an IPv4 address the packets end up at; the policy judges that IPv4 address.
_MAPPED = ipaddress.ip_network("::ffff:0:0/96")  # RFC 4291 2.5.5.2: a.b.c.d on a dual-stack socket
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 2.1: IPv4 in the last 32 bits
_6TO4 = ipaddress.ip_network("2002::/16")  # RFC 3056 2: IPv4 in bits 16..47

# IANA IPv4 Special-Purpose Address Registry (RFC 6890), refused whatever it says of reachability.
REFUSED_IPV4 = _networks(
    "0.0.0.0/8",  # "this network" (RFC 791)
    "10.0.0.0/8",  # private (RFC 1918)
    "100.64.0.0/10",  # carrier-grade NAT (RFC 6598)
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local, cloud metadata (RFC 3927)
    "172.16.0.0/12",  # private (RFC 1918)
    "192.0.0.0/24",  # IETF protocol assignments (RFC 6890)
    "192.0.2.0/24",  # documentation TEST-NET-1 (RFC 5737)
    "192.88.99.0/24",  # 6to4 relay anycast (RFC 7526, deprecated)
    "192.168.0.0/16",  # private (RFC 1918)
    "198.18.0.0/15",  # benchmarking (RFC 2544)
    "198.51.100.0/24",  # documentation TEST-NET-2 (RFC 5737)
    "203.0.113.0/24",  # documentation TEST-NET-3 (RFC 5737)
    "224.0.0.0/4",  # multicast (RFC 5771)
    "240.0.0.0/4",  # reserved (RFC 1112), 255.255.255.255 limited broadcast included
)

# Only global unicast (2000::/3, RFC 4291 2.4 and the IANA IPv6 Address Space registry) is ever
# public; everything outside it is refused: ::/128, ::1, IPv4-compatible and -translated forms,
# 64:ff9b:1::/48 (RFC 8215 local NAT64), 100::/64 (discard, RFC 6666), fc00::/7 (unique local),
# fe80::/10 (link-local), fec0::/10 (site-local, RFC 3879), ff00::/8 (multicast). Listed here too,
# so the table reads like the IANA IPv6 Special-Purpose Address Registry.
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
REFUSED_IPV6 = _networks(
    "::/128",
    "::1/128",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/23",  # IETF protocol assignments (RFC 2928), Teredo 2001::/32 (RFC 4380) included
    "2001:db8::/32",  # documentation (RFC 3849)
    "3fff::/20",  # documentation (RFC 9637)
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
)

# getaddrinfo cannot be given a timeout: each lookup runs in a thread of its own and the caller waits
# at most its deadline. A lookup that hangs keeps its thread until the system resolver gives up; it
# never waits in a queue behind other lookups nor holds up another host's. The threads are bounded
# in total and per domain (the name's last two labels), so names under one domain whose DNS server
# never answers -- which anyone can make us look up (a metadata document's client_id, a logo_uri)
# -- use up that domain's share only; over a bound a lookup fails at once (TIMEOUT).
MAX_LOOKUPS = 32
MAX_LOOKUPS_PER_DOMAIN = 4


class _Lookups:
    """The name lookups in flight, per domain (process-wide, guarded by a lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.per_domain: dict[str, int] = {}

    def start(self, domain: str) -> bool:
        with self.lock:
            if sum(self.per_domain.values()) >= MAX_LOOKUPS:
                return False
            if self.per_domain.get(domain, 0) >= MAX_LOOKUPS_PER_DOMAIN:
                return False
            self.per_domain[domain] = self.per_domain.get(domain, 0) + 1
            return True

    def end(self, domain: str) -> None:
        with self.lock:
            left = self.per_domain.get(domain, 1) - 1
            if left > 0:
                self.per_domain[domain] = left
            else:
                self.per_domain.pop(domain, None)


_lookups = _Lookups()


class OutboundError(Exception):
    """The request failed; ``category`` is one of the coarse module constants (safe to store)."""

    def __init__(self, category: str, detail: str = "") -> None:
        super().__init__(f"{category}: {detail}" if detail else category)
        self.category = category


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def status_category(status: int) -> str:
    """``HTTP 5xx`` and the like: the class of a status, not the exact code."""
    return f"HTTP {status // 100}xx"


def _unmapped(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv4-mapped, NAT64 or 6to4 address reaches; otherwise ``address``.

    Teredo (2001::/32, RFC 4380 4) also embeds IPv4 addresses, obfuscated; it is not unwrapped but
    refused outright (2001::/23) unless the operator lists the Teredo address itself.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address in _MAPPED or address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address in _6TO4:
            return ipaddress.IPv4Address((int(address) >> 80) & 0xFFFFFFFF)
    return address


def _parse(address: IPAddress | str) -> IPAddress:
    if isinstance(address, str):
        return ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    return address


def allowed_by_operator(address: IPAddress | str) -> bool:
    address = _unmapped(_parse(address))
    return any(
        address.version == network.version and address in network
        for network in app_settings.OUTBOUND_ALLOWED_NETWORKS
    )


def is_public(address: IPAddress | str) -> bool:
    """Whether ``address`` (unwrapped) is outside every special-purpose range above."""
    address = _unmapped(_parse(address))
    if isinstance(address, ipaddress.IPv4Address):
        return not any(address in network for network in REFUSED_IPV4)
    return address in _GLOBAL_UNICAST_V6 and not any(address in network for network in REFUSED_IPV6)


def address_allowed(address: IPAddress | str) -> bool:
    """Whether the policy lets us connect to ``address`` at all (any scheme)."""
    return allowed_by_operator(address) or is_public(address)


def _check(address: str, scheme: str) -> None:
    if not address_allowed(address):
        raise OutboundError(REFUSED, f"{address} is not a public address")
    if scheme == "http" and not allowed_by_operator(address):
        raise OutboundError(REFUSED, "plain http is only for networks in OUTBOUND_ALLOWED_NETWORKS")


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("outbound request deadline")
        return left


class _DeadlineSocket:
    """A socket whose every operation may only use the time left until the one deadline."""

    def __init__(self, sock: socket.socket, deadline: _Deadline) -> None:
        self._sock = sock
        self._deadline = deadline
        self._io_refs = 0
        self._closed = False

    def _arm(self) -> None:
        self._sock.settimeout(self._deadline.remaining())

    def recv_into(self, buffer, nbytes: int = 0, flags: int = 0) -> int:
        self._arm()
        return self._sock.recv_into(buffer, nbytes, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self._arm()
        return self._sock.recv(bufsize, flags)

    def sendall(self, data, flags: int = 0) -> None:
        self._arm()  # since Python 3.5 the timeout bounds the whole sendall
        self._sock.sendall(data, flags)

    # Like socket.socket: http.client closes the connection while the response still reads from
    # the file made here, so the real close waits for the last file to be closed.
    def makefile(self, mode: str = "rb", buffering: int | None = None, **_kwargs):
        self._io_refs += 1
        return io.BufferedReader(socket.SocketIO(self, "rb"))  # type: ignore[arg-type]

    def _decref_socketios(self) -> None:  # called by SocketIO.close
        self._io_refs -= 1
        if self._closed and self._io_refs <= 0:
            self._sock.close()

    def close(self) -> None:
        self._closed = True
        if self._io_refs <= 0:
            self._sock.close()


class _Connection(http.client.HTTPConnection):
    """http.client over a socket we connected and checked ourselves."""

    def __init__(self, host: str, port: int, sock: _DeadlineSocket) -> None:
        super().__init__(host, port)
        self.sock = sock

    def connect(self) -> None:  # pragma: no cover - the socket is given
        raise http.client.NotConnected("connection is made by the outbound client")


def _resolve(host: str, port: int, deadline: _Deadline) -> list[tuple]:
    arguments = (host, port, 0, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        # An address literal: parsed, never looked up (no thread, nothing to wait for).
        return socket.getaddrinfo(*arguments, socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass
    domain = ".".join(host.rstrip(".").lower().rsplit(".", 2)[-2:])
    if not _lookups.start(domain):
        raise TimeoutError("name resolution: too many lookups in flight")
    done = threading.Event()
    outcome: dict[str, object] = {}

    def lookup() -> None:
        try:
            outcome["addresses"] = socket.getaddrinfo(*arguments)
        except Exception as exc:  # handed to the caller, if it still waits
            outcome["error"] = exc
        finally:
            _lookups.end(domain)
            done.set()

    threading.Thread(target=lookup, name="oidc-outbound-dns", daemon=True).start()
    if not done.wait(max(deadline.remaining(), 0)):
        raise TimeoutError("name resolution")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["addresses"]  # type: ignore[return-value]


def _connect(scheme: str, host: str, port: int, deadline: _Deadline) -> socket.socket:
    try:
        candidates = _resolve(host, port, deadline)
    except socket.gaierror as exc:
        raise OutboundError(CONNECTION_FAILED, "name does not resolve") from exc
    # Refuse before connecting when any address of the name is refused: a name that mixes a
    # public and an internal address is an attempt, not a misconfiguration.
    for _family, _type, _proto, _name, sockaddr in candidates:
        _check(sockaddr[0], scheme)
    last_error: OSError | None = None
    for family, type_, proto, _name, sockaddr in candidates:
        sock = socket.socket(family, type_, proto)
        try:
            sock.settimeout(deadline.remaining())
            sock.connect(sockaddr)
            # Check the peer of the connected socket itself (what the bytes will go to).
            _check(sock.getpeername()[0], scheme)
            return sock
        except TimeoutError:
            sock.close()
            raise
        except OutboundError:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            last_error = exc
    raise OutboundError(CONNECTION_FAILED, str(last_error or "no address"))


def request(
    method: str,
    url: str,
    *,
    deadline_seconds: float,
    max_bytes: int,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    read_body: bool = True,
) -> Response:
    """Make one request under the policy above; raise :class:`OutboundError` on any failure.

    A 2xx, 4xx or 5xx response is returned (the caller decides); a 3xx raises ``REDIRECT``. With
    ``read_body=False`` only the status and headers are read (the body is left unread and the
    connection closed).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise OutboundError(REFUSED, "only http(s) URLs")
    if parts.username or parts.password:
        raise OutboundError(REFUSED, "no credentials in URLs")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise OutboundError(REFUSED, "invalid port") from exc
    host = parts.hostname
    deadline = _Deadline(deadline_seconds)
    sock: socket.socket | None = None
    connection: _Connection | None = None
    try:
        sock = _connect(parts.scheme, host, port, deadline)
        if parts.scheme == "https":
            context = ssl.create_default_context()
            sock.settimeout(deadline.remaining())  # bounds the whole handshake
            sock = context.wrap_socket(sock, server_hostname=host)
        connection = _Connection(host, port, _DeadlineSocket(sock, deadline))
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        connection.request(
            method,
            path,
            body=body,
            headers={"User-Agent": "oidc-provider-ext", "Connection": "close", **(headers or {})},
        )
        response = connection.getresponse()
        if 300 <= response.status < 400:
            raise OutboundError(REDIRECT, f"HTTP {response.status}")
        content = response.read(max_bytes + 1) if read_body else b""
        if len(content) > max_bytes:
            raise OutboundError(TOO_LARGE, f"more than {max_bytes} bytes")
        return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, content)
    except OutboundError:
        raise
    except TimeoutError as exc:  # socket.timeout is TimeoutError since 3.10
        raise OutboundError(TIMEOUT) from exc
    except ssl.SSLError as exc:
        raise OutboundError(CONNECTION_FAILED, "TLS") from exc
    except (http.client.HTTPException, ValueError) as exc:
        raise OutboundError(INVALID_RESPONSE, type(exc).__name__) from exc
    except OSError as exc:
        raise OutboundError(CONNECTION_FAILED, type(exc).__name__) from exc
    finally:
        if connection is not None:
            connection.close()
        if sock is not None:
            sock.close()  # whatever http.client still holds: we are done with this socket
