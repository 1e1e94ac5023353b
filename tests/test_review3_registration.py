"""Review 3 (December 2026): reproducing tests for defects in dynamic client registration
(RFC 7591/7592) and client ID metadata documents. Each test fails on 7eaa159."""

from __future__ import annotations

import threading
import time

import pytest
from django.test import Client
from oauth2_provider.models import get_application_model

from oidc_provider_ext.internal import clients, outbound
from oidc_provider_ext.models import ClientProfile

from . import presets
from .factories import ApplicationFactory, TenantFactory
from .flow import authorize_url, pkce_pair
from .test_registration import OPEN, WEB, manage, register

Application = get_application_model()
pytestmark = pytest.mark.django_db


# --- 1. https redirect URIs to loopback/private addresses written in a non-canonical IPv4 form -----
# check_redirect_uri -> _private_host (internal/registration.py:163-171) asks ipaddress.ip_address,
# which only parses dotted-quad decimal; anything else "has a dot" and counts as a public DNS name.
# Every browser (WHATWG URL host parser) reads these hosts as the IPv4 address below, so the
# authorization response (code, or an error redirect without any user interaction) is sent into
# the provider's or the user's own network, which docs/registration.md says is refused.

NON_CANONICAL = [
    "https://127.1/cb",  # 127.0.0.1
    "https://0x7f.0.0.1/cb",  # 127.0.0.1
    "https://0177.0.0.1/cb",  # 127.0.0.1 (octal)
    "https://10.1/cb",  # 10.0.0.1
    "https://192.168.1/cb",  # 192.168.0.1
    "https://169.254.43518/cb",  # 169.254.169.254, cloud metadata
]


@OPEN
@pytest.mark.oidc_settings(presets.NO_LOOPBACK)
@pytest.mark.parametrize("uri", NON_CANONICAL)
def test_review3_non_canonical_private_ipv4_https_redirect_is_refused(client, uri):
    response = register(client, {"redirect_uris": [uri], "token_endpoint_auth_method": "none"})
    assert response.status_code == 400, (uri, response.status_code, response.content[:200])
    assert response.json()["error"] == "invalid_redirect_uri"


# --- 2. RFC 7592 PUT widens the tenants the operator narrowed --------------------------------------
# apply_metadata (internal/registration.py:542-543) resets consent_policy and allowed_tenant_codes to
# REGISTRATION_TENANT_CODES on every PUT, so a client the operator restricted in the admin to one
# organisation gives itself every organisation back with its registration access token.


@OPEN
def test_review3_put_keeps_the_operators_tenant_restriction(client):
    TenantFactory(code="acme")
    TenantFactory(code="globex")
    created = register(client, WEB).json()
    profile = ClientProfile.objects.get(application__client_id=created["client_id"])
    profile.allowed_tenant_codes = "acme"  # the operator narrows the client in the admin
    profile.save()
    body = {"client_id": created["client_id"], **WEB}
    response = manage(
        client, "put", created["registration_client_uri"], created["registration_access_token"], body
    )
    assert response.status_code == 200, response.content
    profile.refresh_from_db()
    assert profile.tenant_codes == ["acme"], profile.tenant_codes


# --- 3. Redirect URIs registered that the authorization endpoint can never accept --------------------
# check_redirect_uri accepts any non-ASCII IRI (only control characters and spaces are refused),
# e.g. a Cyrillic homograph host; oauthlib then refuses it at /connect/authorize ("Invalid redirect
# URI"). RFC 7591 3.2.2: an invalid redirect URI is invalid_redirect_uri at registration, not a
# client that registers successfully and can never sign anyone in.

HOMOGRAPH = "https://\u0430pple.com/cb"  # Cyrillic a


@OPEN
def test_review3_redirect_uri_the_authorization_endpoint_refuses_is_refused_at_registration(client):
    response = register(client, {"redirect_uris": [HOMOGRAPH], "client_name": "Apple"})
    assert response.status_code == 400, response.content[:200]
    assert response.json()["error"] == "invalid_redirect_uri"


@OPEN
@pytest.mark.oidc_settings(presets.NO_LOOPBACK)
def test_review3_non_canonical_loopback_redirect_is_used_without_user_interaction(client):
    """What test 1 allows: an error redirect into https://127.1 (= 127.0.0.1) for anyone's browser."""
    created = register(client, {"redirect_uris": ["https://127.1/cb"], "token_endpoint_auth_method": "none"})
    assert created.status_code == 201
    application = Application.objects.get(client_id=created.json()["client_id"])
    response = Client().get(
        authorize_url(application, redirect_uri="https://127.1/cb", scope="openid no-such-scope")
    )
    # Refusing the registration is the fix; until then the provider redirects into loopback.
    assert not (response.status_code == 302 and response["Location"].startswith("https://127.1/cb")), (
        response["Location"]
    )


# --- 4. The client cache confuses client ids that share their first 200 bytes -----------------------
# internal/clients.py:24-25: the cache key is client_id.encode().hex()[:400], i.e. the first 200
# bytes of the id. Metadata-document client ids are URLs up to 255 characters (and any operator id
# may be long), so two clients sharing a 200-byte prefix share one cache entry: get_client(B)
# returns A. prepare() then sees a fresh "cimd" client and fetches nothing; the authorization
# request, its redirect_uri check and the code are all A's.


@pytest.mark.oidc_settings(CLIENT_CACHE_SECONDS=300)
def test_review3_client_cache_key_does_not_truncate_the_client_id():
    prefix = "https://apps.example.com/" + "p" * 190 + "/"
    first = ApplicationFactory(client_id=prefix + "victim.json")
    second = ApplicationFactory(client_id=prefix + "attacker.json")
    clients.forget(first.client_id)
    clients.forget(second.client_id)
    assert clients.get_client(first.client_id).pk == first.pk
    found = clients.get_client(second.client_id)
    assert found is not None and found.pk == second.pk, found.client_id


# --- 5. One slow name resolution starves every outbound request -------------------------------------
# internal/outbound.py:100 and 237-242: getaddrinfo runs on a shared pool of 4 threads; a caller
# gives up at its deadline but its lookup keeps its thread (and queued lookups still run later).
# Anyone can trigger lookups of a name whose DNS server never answers in time: a metadata-document
# client_id or a registration's logo_uri (20 per address per window, each a distinct URL so the
# failure cache does not help). Four such lookups in flight and every other outbound request of the
# process -- back-channel logout, remote JWKS, other users' metadata documents -- times out.


@pytest.mark.oidc_settings(presets.NO_LOOPBACK)
def test_review3_slow_dns_of_one_host_does_not_time_out_other_hosts(monkeypatch):
    real = outbound.socket.getaddrinfo
    release = threading.Event()

    def getaddrinfo(host, *args, **kwargs):
        if host.endswith(".slow-dns.example"):
            release.wait(10)  # an authoritative server that never answers
            raise outbound.socket.gaierror("timed out")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(outbound.socket, "getaddrinfo", getaddrinfo)
    try:
        for n in range(4):  # four attacker requests, each cut at its own deadline
            with pytest.raises(outbound.OutboundError):
                outbound.request(
                    "GET", f"https://x{n}.slow-dns.example/doc", deadline_seconds=0.2, max_bytes=1024
                )
        # An unrelated request: its name resolves at once, to an address the policy refuses, so a
        # working resolver answers "refused by policy" immediately (no packet is sent).
        started = time.monotonic()
        with pytest.raises(outbound.OutboundError) as error:
            outbound.request("GET", "https://127.0.0.1/", deadline_seconds=1.0, max_bytes=1024)
        assert error.value.category == outbound.REFUSED, (error.value.category, time.monotonic() - started)
    finally:
        release.set()


# --- 6. URL metadata longer than its column: HTTP 500 on PostgreSQL ------------------------------
# _https_url (internal/registration.py:235-241) accepts client_uri, logo_uri, tos_uri and policy_uri
# up to MAX_URI_LENGTH = 2048 characters, but ClientProfile stores them in URLFields of
# max_length 200 (models/clients.py:72-75, migration 0001). PostgreSQL refuses the INSERT
# (DataError: value too long for type character varying(200)): the registration -- or, for a
# metadata document, the user's authorization request -- is an HTTP 500. SQLite does not enforce
# the length, so the suite never saw it; run with DATABASE_URL=postgres://... to see the 500.

LONG_URI = "https://rp.example.com/" + "a" * 250


@OPEN
@pytest.mark.parametrize("member", ["client_uri", "tos_uri", "policy_uri"])
def test_review3_url_metadata_longer_than_its_column_is_refused_not_a_500(member):
    browser = Client(raise_request_exception=False)
    response = register(browser, {**WEB, member: LONG_URI})
    assert response.status_code < 500, response.status_code
    if response.status_code == 201:
        column = ClientProfile._meta.get_field(member).max_length
        assert len(LONG_URI) <= column, (
            f"{member}: {len(LONG_URI)} characters accepted, column holds {column}"
        )


# --- 7. RFC 7592 PUT writes a stale cached client back over the operator's change ------------------
# RegistrationClientView._client loads the client with clients.get_client (a cached copy, up to
# CLIENT_CACHE_SECONDS = 30 s old; per process with the default local-memory cache), and
# rules.update (internal/registration.py:572-580) calls application.save() / profile.save(), which
# write *every* column of that copy. A change the operator made through another worker within the
# cache lifetime -- a rotated secret after a leak, a minimum acr -- is not merely served stale for
# 30 s (what docs promise) but overwritten in the database for good by the client's next PUT.
# Simulated here as that other worker would see it: the row changes without this process's
# cache being told (QuerySet.update sends no signal).


@OPEN
def test_review3_put_does_not_write_back_a_stale_cached_client(client):  # passes with CLIENT_CACHE_SECONDS=0
    from django.contrib.auth.hashers import check_password, make_password

    from oidc_provider_ext.hashers import ALGORITHM

    created = register(client, WEB).json()
    client_id = created["client_id"]
    assert clients.get_client(client_id) is not None  # cached in this worker
    # The operator, on another worker: rotates the leaked secret and requires MFA for this client.
    new_secret = "rotated-" + "x" * 40
    Application.objects.filter(client_id=client_id).update(
        client_secret=make_password(new_secret, hasher=ALGORITHM)
    )
    ClientProfile.objects.filter(application__client_id=client_id).update(minimum_acr="urn:mfa")
    # The client (holding its registration access token) updates its name through this worker:
    body = {"client_id": client_id, **WEB, "client_name": "renamed"}
    response = manage(
        client, "put", created["registration_client_uri"], created["registration_access_token"], body
    )
    assert response.status_code == 200, response.content
    stored = Application.objects.get(client_id=client_id)
    assert not check_password(created["client_secret"], stored.client_secret), "the leaked secret works again"
    assert ClientProfile.objects.get(application=stored).minimum_acr == "urn:mfa"


# --- 8. A malformed URL member is an HTTP 500 (registration and the authorization endpoint) --------
# _https_url (internal/registration.py:235-241) calls urlsplit() outside any try: "https://[::1"
# raises ValueError("Invalid IPv6 URL"), which no caller catches. At /connect/register that is a
# 500; in a client ID metadata document it escapes metadata_documents.fetch (which only catches
# RegistrationError) and turns the user's authorization request into a 500. check_redirect_uri
# guards the same call; the URL members do not.


@OPEN
@pytest.mark.parametrize("member", ["client_uri", "logo_uri", "tos_uri", "policy_uri"])
def test_review3_malformed_url_member_is_invalid_client_metadata_not_a_500(member):
    response = register(Client(raise_request_exception=False), {**WEB, member: "https://[::1"})
    assert response.status_code == 400, response.status_code
    assert response.json()["error"] == "invalid_client_metadata"


# --- 9. Open registration turns the provider into an open redirector (RFC 9700 4.11.2) ------------
# Anyone may register https://phish.example/... (policy "open", or a CIMD document) and then link
# to /connect/authorize?client_id=...&scope=<invalid>: the provider answers with an immediate 302
# to the registrant's URI (error redirect, no user interaction), under the provider's trusted
# origin. RFC 9700 4.11.2 names exactly this attack ("register a client via dynamic client
# registration ... intentionally send an erroneous authorization request") and says the AS must
# only redirect automatically to redirect URIs it trusts. Self-registered clients are "never
# reviewed" (docs/registration.md), yet their errors are redirected like an operator's client's.


@OPEN
def test_review3_self_registered_client_errors_are_not_automatic_redirects(client):
    created = register(
        client, {"redirect_uris": ["https://phish.example/login"], "token_endpoint_auth_method": "none"}
    )
    application = Application.objects.get(client_id=created.json()["client_id"])
    _verifier, challenge = pkce_pair()
    response = Client().get(
        authorize_url(
            application,
            redirect_uri="https://phish.example/login",
            scope="openid no-such-scope",
            code_challenge=challenge,
            code_challenge_method="S256",
        )
    )
    assert not (response.status_code == 302 and response["Location"].startswith("https://phish.example/")), (
        response["Location"]
    )
