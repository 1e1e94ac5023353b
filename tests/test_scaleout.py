"""Several app servers over one database and one Redis (docs/operations.md, "Running several app
servers").

The first part runs in-process: what a second server would do is played by the cache and the
database directly. The second part starts the real thing (tests/scaleout/cluster.py): two gunicorn
servers of idp_project behind HAProxy, over one database and one Redis DB; every change is made
through server A and checked directly against server B.
"""

from __future__ import annotations

import pytest
from django.db import transaction
from oauth2_provider.models import get_application_model

from oidc_provider_ext.internal import clients

from .factories import ApplicationFactory

Application = get_application_model()


class _ReadRacingAChange:
    """Stands in for ``Application`` in ``internal.clients`` for one lookup: returns the row as it
    was before ``change`` and commits ``change`` while "reading", the way server B's query can
    return the old row while server A's save commits."""

    def __init__(self, client_id: str, change):
        self.client_id, self.change = client_id, change
        self.objects = self

    def select_related(self, *fields):
        return self

    def filter(self, **lookups):
        return self

    def first(self):
        stale = Application.objects.select_related("oidc_profile").get(client_id=self.client_id)
        with transaction.atomic():
            self.change()
        return stale


@pytest.mark.django_db(transaction=True)  # real commits: the second invalidation runs on commit
def test_a_client_read_while_a_change_commits_is_not_served_after_it(monkeypatch):
    app = ApplicationFactory(client_id="racing", redirect_uris="https://rp.example/old")

    def change():
        app.redirect_uris = "https://rp.example/new"
        app.save()

    with monkeypatch.context() as patched:
        patched.setattr(clients, "Application", _ReadRacingAChange("racing", change))
        assert clients.get_client("racing").redirect_uris == "https://rp.example/old"
    # The old row was cached after the change's invalidation ran; it must not be served for the
    # rest of CLIENT_CACHE_SECONDS (what a server sharing this cache would do).
    assert clients.get_client("racing").redirect_uris == "https://rp.example/new"


@pytest.mark.django_db
def test_an_evicted_generation_does_not_bring_back_old_entries(confidential_app):
    from django.core.cache import cache

    clients.get_client(confidential_app.client_id)
    Application.objects.filter(pk=confidential_app.pk).update(name="Changed")  # no signal
    clients.bump_generation()
    cache.delete(clients.GENERATION_CACHE_KEY)  # Redis evicted it (maxmemory) or was flushed
    assert clients.get_client(confidential_app.client_id).name == "Changed"


# --- this process's unpickled copies (clients._local) serve nothing the shared cache would not ------


def _changed_behind_the_orms_back(app, **values):
    Application.objects.filter(pk=app.pk).update(**values)  # no signal: nothing is invalidated


@pytest.mark.django_db
def test_a_kept_client_is_dropped_when_another_server_changes_the_generation(confidential_app):
    clients.get_client(confidential_app.client_id)
    assert clients._key(confidential_app.client_id) in clients._local
    _changed_behind_the_orms_back(confidential_app, name="Changed")
    clients.bump_generation()  # what a change through another server publishes
    assert clients.get_client(confidential_app.client_id).name == "Changed"


@pytest.mark.django_db
def test_a_kept_client_expires_with_its_cache_entry(confidential_app, monkeypatch, settings):
    import time

    settings.OIDC_PROVIDER_EXT = {**settings.OIDC_PROVIDER_EXT, "CLIENT_CACHE_SECONDS": 30}
    clients.get_client(confidential_app.client_id)
    _changed_behind_the_orms_back(confidential_app, name="Changed")
    assert clients.get_client(confidential_app.client_id).name != "Changed"  # within the lifetime
    later = time.time() + 31
    monkeypatch.setattr(clients.time, "time", lambda: later)
    assert clients.get_client(confidential_app.client_id).name == "Changed"


@pytest.mark.django_db
def test_an_entry_another_process_stored_is_kept_until_that_entrys_expiry(confidential_app, monkeypatch):

    clients.get_client(confidential_app.client_id)
    stored = clients.cache.get(clients._key(confidential_app.client_id))
    clients._local.clear()  # this process has not seen the client: another one stored it
    clients.get_client(confidential_app.client_id)  # read from the shared cache, and kept
    _changed_behind_the_orms_back(confidential_app, name="Changed")
    monkeypatch.setattr(clients.time, "time", lambda: stored[2] + 0.001)
    assert clients.get_client(confidential_app.client_id).name == "Changed"


@pytest.mark.django_db
def test_every_caller_gets_its_own_copy_of_a_kept_client(confidential_app, django_assert_num_queries):
    clients.get_client(confidential_app.client_id)  # read from the database, and kept
    for _ in range(2):  # twice served from what this process keeps, with the profile: no query
        with django_assert_num_queries(0):
            first = clients.get_client(confidential_app.client_id)
            first.oidc_profile.minimum_acr  # noqa: B018
        first.name = "Set by one request"
        first.oidc_profile.minimum_acr = "mutated"
        first.oidc_profile.registration_metadata["added"] = True
        second = clients.get_client(confidential_app.client_id)
        assert second is not first and second.oidc_profile is not first.oidc_profile
        assert second.name == confidential_app.name
        assert second.oidc_profile.minimum_acr == ""
        assert "added" not in second.oidc_profile.registration_metadata
    # The copy is whole: saving it works.
    assert second.oidc_profile.application_id == second.pk
    second.name = "Saved"
    second.save()
    assert Application.objects.get(pk=confidential_app.pk).name == "Saved"


@pytest.mark.django_db
def test_a_kept_client_costs_one_read_of_the_shared_cache(
    confidential_app, monkeypatch, django_assert_num_queries
):
    clients.get_client(confidential_app.client_id)
    read = []
    get = clients.cache.get
    monkeypatch.setattr(
        clients.cache, "get", lambda key, *args, **kwargs: read.append(key) or get(key, *args, **kwargs)
    )
    monkeypatch.setattr(clients.cache, "get_many", lambda keys, *a, **k: read.extend(keys) or {})
    with django_assert_num_queries(0):
        assert clients.get_client(confidential_app.client_id).pk == confidential_app.pk
    assert read == [clients.GENERATION_CACHE_KEY]


@pytest.mark.django_db
def test_the_kept_entries_are_bounded(monkeypatch):
    monkeypatch.setattr(clients, "_LOCAL_ENTRIES", 3)
    clients._local.clear()
    for n in range(10):
        ApplicationFactory(client_id=f"many-{n}")
        clients.get_client(f"many-{n}")
        assert len(clients._local) <= 3
    clients.get_client("no-such-client")
    assert clients._key("no-such-client") not in clients._local


# --- the invariant: no cache outlives a change made through another server by more than a bound ----
#
# Every piece of state kept beyond one request, in oidc_provider_ext and idp_project, is listed
# here (tests/scaleout/inventory.py finds them in the source; an unlisted one fails). The invariant:
#
#   Every cache entry derived from data another server can change (database rows, settings excepted)
#   is invalidated across servers through a generation value in the shared cache and is then at
#   most SHARED_BOUND_SECONDS stale; with a per-process cache (LocMemCache) it expires within
#   MAX_STALE_SECONDS. Everything else is either the shared state itself (kept in the shared
#   cache, one copy for all servers), a memo of a pure function, or a constant.
#
# A new process-local cache (say, of signing keys or clients) must be listed with its bounds,
# and the bounds are the real constants, so raising one past the limit fails here.

SHARED_BOUND_SECONDS = 1
MAX_STALE_SECONDS = 60


def _keys_bounds():
    from oidc_provider_ext import keys

    return keys.GENERATION_CHECK_SECONDS, keys.SNAPSHOT_TTL_SECONDS


def _clients_bounds():
    from oidc_provider_ext.conf import app_settings

    return 0, app_settings.CLIENT_CACHE_SECONDS  # 0: the generation is read with every lookup


DERIVED = "derived: invalidated by a generation in the shared cache"
SHARED = "shared: lives in the shared cache, one copy for every server"
PURE = "pure: a memo of a function of its arguments (or of settings), never stale"
CONSTANT = "constant: a table written once at import"
TRANSIENT = "transient: coordinates requests in flight in one process"
FALLBACK = "fallback: this process's copy of a shared entry, read only while the shared cache fails"

INVENTORY: dict[str, tuple[str, object]] = {
    # signing keys: the in-process snapshot and when the generation was last read
    "oidc_provider_ext.keys._snapshot": (DERIVED, _keys_bounds),
    "oidc_provider_ext.keys._generation_checked_at": (DERIVED, _keys_bounds),
    "oidc_provider_ext.keys._loads": (TRANSIENT, None),
    "oidc_provider_ext.keys._valid_from": (TRANSIENT, None),
    "oidc_provider_ext.keys._changed_here": (TRANSIENT, None),
    "oidc_provider_ext.keys.bump_generation:cache.set": (SHARED, None),
    # clients, CORS origins, "are there tenants", tenants: entries in the shared cache stamped with the
    # client registry generation (with LocMemCache: per process, CLIENT_CACHE_SECONDS)
    "oidc_provider_ext.internal.clients._store:cache.set": (DERIVED, _clients_bounds),
    # this process's unpickled copies of those entries: served only under the generation read from
    # the shared cache with every lookup, until the entry's own expiry
    "oidc_provider_ext.internal.clients._local": (DERIVED, _clients_bounds),
    "oidc_provider_ext.internal.clients._lookup:cache.add": (SHARED, None),
    "oidc_provider_ext.internal.clients.bump_generation:cache.set": (SHARED, None),
    # throttle counters and "proven" markers: the counters are the shared state (window TTL)
    "oidc_provider_ext.throttle.ClientAuthAttempt.succeeded:cache.set": (SHARED, None),
    # second-factor attempts, counted before they are checked (per user+address, per user, per
    # half sign-in or OP session); a right code gives its per-user count back
    "oidc_provider_ext.throttle._count:cache.add": (SHARED, None),
    "oidc_provider_ext.throttle._count:cache.incr": (SHARED, None),
    "oidc_provider_ext.throttle.factor_succeeded:cache.decr": (SHARED, None),
    "oidc_provider_ext.throttle.user_code_entry_succeeded:cache.decr": (SHARED, None),
    "oidc_provider_ext.throttle._dummy_hashes": (PURE, None),  # a hash of random text per hasher
    # the resource-server helper's copy of a provider's JWKS (docs/resource-server.md): shared by
    # the API's processes; a new kid refetches at once, a removed key is trusted until the TTL
    "oidc_provider_ext.resource.remote_jwks._refresh:cache.set": (SHARED, None),
    "oidc_provider_ext.resource.remote_jwks._fetch_across_processes:cache.add": (SHARED, None),
    "oidc_provider_ext.resource.remote_jwks.verification_key:cache.add": (SHARED, None),
    "oidc_provider_ext.resource.remote_jwks._flights": (TRANSIENT, None),
    # while the shared cache fails, every entry above is read and written here instead (each entry
    # with its own expiry; throttles count per process, as under LocMemCache)
    "oidc_provider_ext.internal.shared_cache._fallback": (FALLBACK, None),
    # the generations written there, for the shared cache when it answers again (then emptied)
    "oidc_provider_ext.internal.shared_cache._unexpiring": (FALLBACK, None),
    # when the shared cache (and the session cache) last failed in this process
    "oidc_provider_ext.internal.shared_cache._breaker": (TRANSIENT, None),
    "oidc_provider_ext.sessions.cached_db._breaker": (TRANSIENT, None),
    # back-channel logout: threads sending what the outbox (a table) holds; any process, or the
    # retry command, sends what another process did not
    "oidc_provider_ext.internal.backchannel._pool": (TRANSIENT, None),
    # DNS lookups with a deadline: the counts of lookups in flight in this process
    "oidc_provider_ext.internal.outbound._lookups": (TRANSIENT, None),
    # the user's row read with the OP-session check, set only while that request's user is loaded
    "oidc_provider_ext.backends._handed_over": (TRANSIENT, None),
    "oidc_provider_ext.resource.remote_jwks._jwk": (PURE, None),
    # the cryptography key of a JWK object, per operation and per algorithm it was checked to fit
    # (RFC 8725 3.1), held with the object (keys.py and the remote JWKS replace their JWK objects
    # when keys change, so a changed key is a new entry)
    "oidc_provider_ext.internal.jws._op_keys": (PURE, None),
    "oidc_provider_ext.resource.__init__._headers": (PURE, None),  # a header segment's (alg, kid)
    "oidc_provider_ext.adapter._adapter_for": (PURE, None),  # one adapter per configured class path
    # hot lookups' SQL text (internal/lookups.py), written from the models once per database vendor
    "oidc_provider_ext.adapter._membership_lookup": (PURE, None),
    "oidc_provider_ext.validator._access_token_lookups": (PURE, None),
    "oidc_provider_ext.internal.crypto._derive": (PURE, None),
    "oidc_provider_ext.internal.user_agents._parse": (PURE, None),
    # the token endpoint's SQL (internal/lookups.py): its Lookups; UPDATE/INSERT text per alias, model
    "oidc_provider_ext.internal.lookups._sql_cache": (PURE, None),
    # SQL written once per model / vendor / factor registry for the sign-in (fourth round)
    "oidc_provider_ext.adapter._tenant_lookup": (PURE, None),
    "oidc_provider_ext.internal.consents._live_consent_lookup": (PURE, None),
    "oidc_provider_ext.internal.factors._enrolled_sql_cache": (PURE, None),
    # axes' failure count as SQL, per database and lockout parameter set (contrib/axes.py)
    "oidc_provider_ext.contrib.axes._failures_sql": (PURE, None),
    "oidc_provider_ext.internal.op_sessions._live_sql": (PURE, None),
    # crispy's HTML of an empty field, keyed by everything it depends on (form class, language...)
    "oidc_provider_ext.templatetags.oidc_forms._rendered": (PURE, None),
    "oidc_provider_ext.sessions.__init__._by_key": (PURE, None),
    "oidc_provider_ext.internal.lookups._grant_by_code_lookup": (PURE, None),
    "oidc_provider_ext.internal.lookups._grant_of_family_lookup": (PURE, None),
    "oidc_provider_ext.internal.lookups._refresh_token_lookup": (PURE, None),
    # the user by name at the password (backends.ModelBackend.authenticate): SQL per user model
    "oidc_provider_ext.internal.lookups._user_by_name_lookup": (PURE, None),
    # SQLite only: this process's descriptor of the writers' lock file, and whose turn it is
    "oidc_provider_ext.internal.sqlite_writers._descriptors": (TRANSIENT, None),
    "oidc_provider_ext.internal.sqlite_writers._local": (TRANSIENT, None),
    # SQLite in WAL mode only: which database files this process's checkpointing thread serves
    "oidc_provider_ext.internal.sqlite_checkpoints._running": (TRANSIENT, None),
    # the token request this thread serves, and whether its write transaction is open yet
    "oidc_provider_ext.internal.token_writes._local": (TRANSIENT, None),
    # client ID metadata documents: a refused document is remembered for a minute in the shared
    # cache (the host is not hammered); the document itself lives in the Application row
    "oidc_provider_ext.internal.metadata_documents.prepare:cache.set": (SHARED, None),
    "oidc_provider_ext.resource.urlconf._resources_of": (PURE, None),  # the resources a URLconf names
    "oidc_provider_ext.conf._SETTINGS": (CONSTANT, None),
    # values parsed from the settings dict, kept while it is the same object (AppSettings.derived)
    "oidc_provider_ext.conf.AppSettings._derived": (PURE, None),
    # the second-factor registry, filled at import (the same in every process)
    "oidc_provider_ext.internal.factors._PROVIDES": (CONSTANT, None),
    "oidc_provider_ext.internal.factors._registry": (CONSTANT, None),
    "oidc_provider_ext.internal.factors._resets": (CONSTANT, None),
    "oidc_provider_ext.internal.registration._IMAGE_SIGNATURES": (CONSTANT, None),
    "oidc_provider_ext.internal.registration._REFUSED_SCHEMES": (CONSTANT, None),
    "oidc_provider_ext.views.challenge._decorators": (CONSTANT, None),
    "oidc_provider_ext.views.security._decorators": (CONSTANT, None),
    "oidc_provider_ext.checks._RETIRED_HOOKS": (CONSTANT, None),
    "oidc_provider_ext.internal.jws._CANONICAL_LAST": (CONSTANT, None),  # base64url's last characters
    "oidc_provider_ext.internal.cors._DEFAULT_PORTS": (CONSTANT, None),
    "oidc_provider_ext.resource.__init__._KEY_TYPE_OF_ALG": (CONSTANT, None),
    "oidc_provider_ext.resource.__init__._JSON": (CONSTANT, None),  # a JSONDecoder with our hooks
    "idp_project.settings._SESSION_ENGINES": (CONSTANT, None),
    "idp_project.settings_production._SMTP": (CONSTANT, None),
}


def test_every_cache_and_process_state_is_in_the_inventory():
    from .scaleout import inventory

    found = inventory.find()
    assert sorted(found - set(INVENTORY)) == [], "state the inventory does not account for"
    assert sorted(set(INVENTORY) - found) == [], "inventory entries that no longer exist"


@pytest.mark.parametrize("name", sorted(n for n, (kind, _) in INVENTORY.items() if kind == DERIVED))
def test_every_derived_cache_is_bounded(name):
    shared, per_process = INVENTORY[name][1]()  # type: ignore[operator]
    assert 0 <= shared <= SHARED_BOUND_SECONDS
    assert 0 < per_process <= MAX_STALE_SECONDS


def test_a_retired_key_outlives_the_longest_stale_snapshot():
    # keys.retirement_window() allows for a process that still signs with a key it has not seen
    # retired: that must cover the per-process bound above.
    from datetime import timedelta

    from oidc_provider_ext import keys

    assert keys.retirement_window() >= keys.max_token_lifetime() + timedelta(seconds=MAX_STALE_SECONDS)


class TestSharedCacheCheck:
    """oidc_provider_ext.W044: production (DEBUG off, check --deploy) with a per-process cache."""

    LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    REDIS = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:6379/8",
        }
    }

    def _messages(self, **kwargs):
        from django.core.checks import run_checks

        from oidc_provider_ext import checks

        return [m for m in run_checks(include_deployment_checks=True, **kwargs) if m.id == checks.W044]

    def test_warns_on_a_per_process_cache_in_production(self, settings):
        settings.DEBUG, settings.CACHES = False, self.LOCMEM
        [message] = self._messages()
        assert "LocMemCache" in message.msg and "REDIS_URL" in message.hint
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
        assert self._messages()

    def test_names_the_sessions_when_they_live_in_that_cache(self, settings):
        settings.DEBUG, settings.CACHES = False, self.LOCMEM
        settings.SESSION_ENGINE = "django.contrib.sessions.backends.cache"
        [message] = self._messages()
        assert "SESSION_ENGINE" in message.msg
        settings.SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
        [message] = self._messages()
        assert "cached_db" in message.msg
        settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
        [message] = self._messages()
        assert "SESSION_ENGINE" not in message.msg

    def test_quiet_with_a_shared_cache_in_debug_and_outside_check_deploy(self, settings):
        from django.core.checks import run_checks

        settings.DEBUG, settings.CACHES = False, self.REDIS
        assert not self._messages()
        settings.DEBUG, settings.CACHES = True, self.LOCMEM
        assert not self._messages()
        settings.DEBUG = False
        assert "oidc_provider_ext.W044" not in {m.id for m in run_checks()}  # `make run`, the tests


class TestExampleSettings:
    """idp_project/settings.py reads the cache and the session engine from the environment."""

    def test_redis_url(self):
        from idp_project import settings as example

        assert example._caches({}) is None  # Django's default: LocMemCache
        assert example._caches(
            {"REDIS_URL": "redis://10.0.0.5:6379/2", "DJANGO_CACHE_KEY_PREFIX": "idp"}
        ) == {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": "redis://10.0.0.5:6379/2",
                "KEY_PREFIX": "idp",
                "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
            }
        }

    def test_session_engine(self):
        from django.core.exceptions import ImproperlyConfigured

        from idp_project import settings as example

        assert example._session_engine("db") == "oidc_provider_ext.sessions"
        assert example._session_engine("signed_cookies").endswith(".signed_cookies")
        for wrong in ("file", "django.contrib.sessions.backends.file", "db\x00", "x" * 10_000):
            with pytest.raises(ImproperlyConfigured, match="use one of db, cached_db, cache, signed_cookies"):
                example._session_engine(wrong)


# --- two app servers behind HAProxy ------------------------------------------------------------------
#
# What is honoured where, and when (docs/operations.md, "Running several app servers"):
#   immediately: client changes and deletions (client registry generation in Redis), revocation,
#     logout, consent revocation, user deactivation (rows in the shared database, read per request);
#   within GENERATION_CHECK_SECONDS (1 s): a signing-key change (each process re-reads the key
#     generation at most once a second; tested below with that bound);
#   without a shared cache (LocMemCache, check W044): a client change within CLIENT_CACHE_SECONDS,
#     shortened to LOCMEM_CLIENT_CACHE_SECONDS for the last test, which shows the stale window and
#     its bound.

CALLBACK = "http://127.0.0.1:8765/callback"
ADMIN_PASSWORD = "scale-out-admin-" + "x" * 16
FIXTURES = f"""
import io, json
from django.core.management import call_command
call_command("migrate", "--noinput", verbosity=0)
printed = io.StringIO()
call_command("oidc_demo", "--json", "--redirect-uri", {CALLBACK!r}, stdout=printed)
demo = json.loads(printed.getvalue().strip().splitlines()[-1])
from django.contrib.auth import get_user_model
from oauth2_provider.models import get_application_model
from oidc_provider_ext.models import ClientProfile, Tenant, TenantMembership
User, Application = get_user_model(), get_application_model()
User.objects.create_superuser("admin", "admin@example.com", {ADMIN_PASSWORD!r})
tenant = Tenant.objects.get(code="acme")
users = {{}}
for name in ("rotation", "client", "revoked", "logout", "consent", "deactivated", "balanced", "outage"):
    user = User.objects.create_user(name, name + "@example.com", "pw-" + name * 3)
    TenantMembership.objects.create(tenant=tenant, user=user)
    users[name] = {{"username": name, "password": "pw-" + name * 3, "pk": user.pk}}
clients = {{}}
for name in ("changed", "deleted", "stale"):
    app = Application.objects.create(
        client_id="scale-" + name, client_secret="secret-" + name * 4, hash_client_secret=True,
        client_type="confidential", authorization_grant_type="authorization-code",
        redirect_uris={CALLBACK!r}, post_logout_redirect_uris={CALLBACK!r}, name="Scale-out " + name,
    )
    ClientProfile.objects.update_or_create(application=app, defaults={{"default_tenant_code": "acme"}})
    clients[name] = {{"client_id": app.client_id, "client_secret": "secret-" + name * 4, "pk": app.pk}}
print(json.dumps({{"demo": demo, "users": users, "clients": clients}}))
"""


def _cluster_database(stack) -> str | None:
    """The cluster's database: on PostgreSQL one of its own next to the test database (created and
    dropped here); on SQLite None, a file the cluster creates (two servers on one host share it)."""
    from django.conf import settings

    from .scaleout.cluster import fresh_postgres_database

    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        return None
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    base = f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}"
    return stack.enter_context(fresh_postgres_database(f"{base}/{db['NAME']}_scaleout"))


def _running_cluster(database_url: str | None = None, shared_cache: bool = True, **env: str):
    import contextlib
    import os

    from .live import require
    from .scaleout.cluster import Cluster, haproxy_available, redis_available, redis_server_available

    # A redis-server of the cluster's own, unless SCALEOUT_REDIS_URL names one to share.
    redis_url = os.environ.get("SCALEOUT_REDIS_URL") or None
    require(haproxy_available() is None, "HAProxy", "run `make haproxy` (apt-get install -y haproxy)")
    problem = redis_available(redis_url) if redis_url else redis_server_available()
    require(problem is None, "Redis", f"{problem}")
    with contextlib.ExitStack() as stack:
        prepare = {"migrate": False, "seed_args": None, "setup": FIXTURES}
        if database_url is None:
            database_url = _cluster_database(stack)
        else:  # another cluster's database, prepared already
            prepare["setup"] = None
        # One worker per server: two servers are what is tested, and the machine has two cores.
        yield stack.enter_context(
            Cluster(database_url, redis_url, shared_cache=shared_cache, workers=1, env=env, **prepare)
        )


@pytest.fixture(scope="module")
def cluster():
    """Sessions in the database (the default)."""
    for running in _running_cluster():
        running.fixtures = running.prepared
        running.seed = running.prepared["demo"]
        yield running


@pytest.fixture(scope="module")
def cookie_cluster(cluster):
    """Sessions in signed cookies, nothing of them on any server: two more servers over the same
    database (its users and clients), with a cache of their own."""
    for running in _running_cluster(cluster.database_url, DJANGO_SESSION_ENGINE="signed_cookies"):
        running.fixtures, running.seed = cluster.fixtures, cluster.seed
        yield running


@pytest.fixture(scope="module")
def redis_session_cluster(cluster):
    """Sessions in the shared Redis only (oidc_provider_ext.sessions.cache, entries keyed by the
    session key's hash): two more servers over the same database."""
    for running in _running_cluster(cluster.database_url, DJANGO_SESSION_ENGINE="cache"):
        running.fixtures, running.seed = cluster.fixtures, cluster.seed
        yield running


CLUSTERS = {"db": "cluster", "signed_cookies": "cookie_cluster", "cache": "redis_session_cluster"}


# Without a shared cache a changed client is served by a process that cached it for this long.
LOCMEM_CLIENT_CACHE_SECONDS = 3


@pytest.fixture(scope="module")
def locmem_cluster(cluster):
    """No Redis: every process has Django's default LocMemCache (what check W044 warns about)."""
    env = {"OIDC_CLIENT_CACHE_SECONDS": str(LOCMEM_CLIENT_CACHE_SECONDS)}
    for running in _running_cluster(cluster.database_url, shared_cache=False, **env):
        running.fixtures, running.seed = cluster.fixtures, cluster.seed
        yield running


import base64  # noqa: E402 - the cluster tests' own imports, kept with them
import hashlib  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import secrets  # noqa: E402
import time  # noqa: E402
from html.parser import HTMLParser  # noqa: E402
from urllib.parse import urlencode, urljoin  # noqa: E402

import requests  # noqa: E402
from jwcrypto import jwk, jwt  # noqa: E402

from oidc_provider_ext.keys import GENERATION_CHECK_SECONDS  # noqa: E402

from .live import UserAgent, query_of  # noqa: E402


class Browser(UserAgent):
    """A browser whose requests go to one chosen app server (``at``); cookies are per host, not per
    port, so the same session cookie reaches every server, as behind the balancer."""

    def __init__(self, cluster, username: str = "", password: str = ""):
        super().__init__(cluster.servers[0], username, password)
        self.cluster = cluster

    def at(self, server: str) -> Browser:
        self.issuer = server
        return self

    def _here(self, url: str) -> str:
        url = urljoin(self.issuer + "/", url)
        # Absolute URLs the IdP builds name the issuer (the balancer): stay on the chosen server.
        if url.startswith(self.cluster.issuer + "/"):
            url = self.issuer + url[len(self.cluster.issuer) :]
        return url

    def get(self, url: str, **kwargs) -> requests.Response:
        self.last = self.http.get(self._here(url), allow_redirects=False, timeout=10, **kwargs)
        return self.last

    def post(self, url: str, data, **kwargs) -> requests.Response:
        self.last = self.http.post(self._here(url), data=data, allow_redirects=False, timeout=10, **kwargs)
        return self.last


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def _authorize_url(client: dict, challenge: str, scope: str = "openid profile", **extra: str) -> str:
    params = {
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": CALLBACK,
        "scope": scope,
        "state": "st",
        "nonce": "n",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    return "/connect/authorize?" + urlencode(params)


def _tokens(browser: Browser, server: str, client: dict, scope: str = "openid profile") -> dict:
    """Sign in (if needed) and consent at ``server``, redeem the code there."""
    verifier, challenge = _pkce()
    location = browser.at(server).authorize(_authorize_url(client, challenge, scope))
    assert location.startswith(CALLBACK), location
    response = requests.post(
        server + "/connect/token",
        data={
            "grant_type": "authorization_code",
            "code": query_of(location)["code"],
            "redirect_uri": CALLBACK,
            "code_verifier": verifier,
        },
        auth=(client["client_id"], client["client_secret"]),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def _silent(browser: Browser, server: str, client: dict) -> dict[str, str]:
    """``prompt=none`` at ``server`` for ``openid`` (always consented to once the user signed in
    to the client): the callback's parameters (a code, or an error)."""
    response = browser.at(server).get(_authorize_url(client, _pkce()[1], "openid", prompt="none"))
    assert response.status_code == 302, response.text[:500]
    assert response.headers["Location"].startswith(CALLBACK), response.headers["Location"]
    return query_of(response.headers["Location"])


def _userinfo(server: str, access_token: str) -> int:
    return requests.get(
        server + "/connect/userinfo", headers={"Authorization": f"Bearer {access_token}"}, timeout=10
    ).status_code


def _introspect(server: str, client: dict, token: str) -> bool:
    response = requests.post(
        server + "/connect/introspect",
        data={"token": token},
        auth=(client["client_id"], client["client_secret"]),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["active"]


def _refresh(server: str, client: dict, refresh_token: str) -> requests.Response:
    return requests.post(
        server + "/connect/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(client["client_id"], client["client_secret"]),
        timeout=10,
    )


class _FormParser(HTMLParser):
    """Every form's data set as a browser submits it, selects and textareas included (the admin's
    change forms have both)."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []
        self._select: dict | None = None
        self._textarea: list | None = None

    def handle_starttag(self, tag, attrs):
        flags = {name for name, _ in attrs}
        attrs = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append({"action": attrs.get("action", ""), "data": []})
            return
        if not self.forms or "disabled" in flags:
            return
        data, name = self.forms[-1]["data"], attrs.get("name")
        if tag == "input" and name:
            kind = attrs.get("type", "text").lower()
            if kind in ("checkbox", "radio"):
                if "checked" in flags:
                    data.append([name, attrs.get("value", "on")])
            elif kind not in ("submit", "button", "reset", "image", "file"):
                data.append([name, attrs.get("value", "")])
        elif tag == "select" and name:
            self._select = {"name": name, "multiple": "multiple" in flags, "first": None, "chosen": False}
        elif tag == "option" and self._select is not None:
            value = attrs.get("value", "")
            if self._select["first"] is None:
                self._select["first"] = value
            if "selected" in flags:
                data.append([self._select["name"], value])
                self._select["chosen"] = True
        elif tag == "textarea" and name:
            self._textarea = [name, ""]
            data.append(self._textarea)

    def handle_data(self, text):
        if self._textarea is not None:
            self._textarea[1] += text

    def handle_endtag(self, tag):
        if tag == "select" and self._select is not None:
            select, self._select = self._select, None
            if not select["multiple"] and not select["chosen"] and select["first"] is not None:
                self.forms[-1]["data"].append([select["name"], select["first"]])
        elif tag == "textarea" and self._textarea is not None:
            self._textarea[1] = self._textarea[1].removeprefix("\n")
            self._textarea = None


def _forms(html: str) -> list[dict]:
    parser = _FormParser()
    parser.feed(html)
    return parser.forms


def _admin(cluster, server: str) -> Browser:
    """A browser signed in to the Django admin at ``server``."""
    browser = Browser(cluster).at(server)
    page = browser.get("/admin/login/?next=/admin/")
    [form] = [f for f in _forms(page.text) if any(n == "password" for n, _ in f["data"])]
    data = dict(form["data"])
    data.update(username="admin", password=ADMIN_PASSWORD)
    response = browser.post("/admin/login/?next=/admin/", data)
    assert response.status_code == 302, response.text[:500]
    return browser


def _admin_save(admin: Browser, path: str, changes: dict[str, str | None]) -> None:
    """Change the admin's change form at ``path`` as a user would (None unticks a checkbox), save."""
    page = admin.get(path)
    assert page.status_code == 200, page.status_code
    form = max(_forms(page.text), key=lambda f: len(f["data"]))
    data = [(n, v) for n, v in form["data"] if n not in changes]
    data += [(n, v) for n, v in changes.items() if v is not None]
    response = admin.post(path, [*data, ("_save", "Save")])
    assert response.status_code == 302, _admin_errors(response.text)


def _admin_errors(html: str) -> str:
    return " | ".join(part.split("</ul>")[0] for part in html.split('class="errorlist')[1:]) or html[:800]


def _demo_client(cluster) -> dict:
    return cluster.seed["confidential"]


def _user(cluster, name: str) -> Browser:
    user = cluster.fixtures["users"][name]
    return Browser(cluster, user["username"], user["password"])


def _jwks_kids(server: str) -> set[str]:
    return {key["kid"] for key in requests.get(server + "/connect/jwks", timeout=10).json()["keys"]}


def _kid(token: str) -> str:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "==="))["kid"]


@pytest.mark.live  # real servers over HTTP, like tests/interop
def test_key_rotation_through_an_operator_reaches_both_servers_within_a_second(cluster):
    a, b = cluster.servers
    client = _demo_client(cluster)
    browser = _user(cluster, "rotation")
    before = _tokens(browser, a, client)
    assert _userinfo(b, before["access_token"]) == 200  # B has loaded the keys too
    old_kids = _jwks_kids(a) | _jwks_kids(b)

    printed = cluster.manage("oidc_keys", "rotate")  # an operator's command: a third process
    rotated = time.monotonic()
    activated = printed.split("  active   ", 1)[1].split()[0]
    upcoming = printed.split("  next     ", 1)[1].split()[0]
    assert upcoming not in old_kids
    # Bounded: each server re-reads the key generation at most once per GENERATION_CHECK_SECONDS.
    bound = rotated + GENERATION_CHECK_SECONDS + 1.5
    while not all(upcoming in _jwks_kids(server) for server in (a, b)):
        assert time.monotonic() < bound, "the rotation did not reach both servers within the bound"
        time.sleep(0.1)

    after = _tokens(browser, a, client)  # signed by server A with the newly active key
    assert _kid(after["access_token"]) == _kid(after["id_token"]) == activated != _kid(before["id_token"])
    assert _userinfo(b, after["access_token"]) == 200
    assert _introspect(b, client, after["access_token"]) is True
    # The ID token verifies with the JWKS server B publishes; the old one still does (retired key).
    published = jwk.JWKSet.from_json(requests.get(b + "/connect/jwks", timeout=10).text)
    for token in (after["id_token"], before["id_token"]):
        jwt.JWT(jwt=token, key=published, expected_type="JWS")
    assert _userinfo(b, before["access_token"]) == 200


@pytest.mark.live  # real servers over HTTP, like tests/interop
def test_a_client_change_on_a_is_honoured_by_b_at_once(cluster):
    a, b = cluster.servers
    client = cluster.fixtures["clients"]["changed"]
    anonymous = Browser(cluster)
    # B has the client cached: its registered redirect URI is accepted (on to the login page).
    assert anonymous.at(b).get(_authorize_url(client, _pkce()[1])).status_code == 302
    admin = _admin(cluster, a)
    moved = "http://127.0.0.1:8765/moved"
    _admin_save(admin, f"/admin/oauth2_provider/application/{client['pk']}/change/", {"redirect_uris": moved})
    old = anonymous.at(b).get(_authorize_url(client, _pkce()[1]))
    assert old.status_code == 400 and "Location" not in old.headers  # never redirected to the old URI
    new = anonymous.at(b).get(_authorize_url(client, _pkce()[1], redirect_uri=moved))
    assert new.status_code == 302 and not new.headers["Location"].startswith(moved)  # to the login page


@pytest.mark.live  # real servers over HTTP, like tests/interop
def test_a_client_deleted_on_a_is_refused_by_b_at_once(cluster):
    # The admin deletes only a client nothing was issued to yet (its grants and consents are
    # read-only there); B has it cached from an authorization request.
    a, b = cluster.servers
    client = cluster.fixtures["clients"]["deleted"]
    browser = Browser(cluster)
    assert browser.at(b).get(_authorize_url(client, _pkce()[1])).status_code == 302
    admin = _admin(cluster, a)
    path = f"/admin/oauth2_provider/application/{client['pk']}/delete/"
    [form] = [f for f in _forms(admin.get(path).text) if ["post", "yes"] in f["data"]]
    assert admin.post(path, form["data"]).status_code == 302
    assert browser.at(b).get(_authorize_url(client, _pkce()[1])).status_code == 400
    refused = _refresh(b, client, "any")
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"


@pytest.mark.live  # real servers over HTTP, like tests/interop
def test_a_revocation_on_a_is_honoured_by_b_at_once(cluster):
    a, b = cluster.servers
    client = _demo_client(cluster)
    tokens = _tokens(_user(cluster, "revoked"), a, client, scope="openid offline_access")
    assert _introspect(b, client, tokens["access_token"]) is True
    for token in (tokens["access_token"], tokens["refresh_token"]):
        revoked = requests.post(
            a + "/connect/revocation",
            data={"token": token},
            auth=(client["client_id"], client["client_secret"]),
            timeout=10,
        )
        assert revoked.status_code == 200
    assert _introspect(b, client, tokens["access_token"]) is False
    assert _userinfo(b, tokens["access_token"]) == 401
    assert _refresh(b, client, tokens["refresh_token"]).json()["error"] == "invalid_grant"


@pytest.mark.live  # real servers over HTTP, like tests/interop
@pytest.mark.parametrize("sessions", CLUSTERS)
def test_a_logout_on_a_signs_the_browser_out_of_b_and_ends_its_tokens(sessions, request):
    cluster = request.getfixturevalue(CLUSTERS[sessions])
    a, b = cluster.servers
    client = _demo_client(cluster)
    browser = _user(cluster, "logout")
    tokens = _tokens(browser, a, client)
    assert "code" in _silent(browser, b, client)  # the browser's session reaches B too
    kept = browser.http.cookies.copy()  # the session cookie as it was before the logout
    page = browser.at(a).get(
        "/connect/endsession?"
        + urlencode({"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": CALLBACK})
    )
    if browser.page_kind(page) == "logout":  # the confirmation page
        page = browser.submit_logout(page)
    assert page.status_code in (200, 302), page.status_code
    assert _silent(browser, b, client).get("error") == "login_required"
    # The same cookie again (kept, stolen, or a signed cookie that is still validly signed): the
    # OP session it names has ended, so B does not sign it in.
    replayed = Browser(cluster)
    replayed.http.cookies.update(kept)
    assert _silent(replayed, b, client).get("error") == "login_required"
    assert _userinfo(b, tokens["access_token"]) == 401
    assert _introspect(b, client, tokens["access_token"]) is False


@pytest.mark.live  # real servers over HTTP, like tests/interop
def test_a_consent_revoked_on_a_is_asked_again_by_b(cluster):
    a, b = cluster.servers
    client = _demo_client(cluster)
    browser = _user(cluster, "consent")
    tokens = _tokens(browser, a, client)
    assert browser.pages == ["login", "consent"]
    _tokens(browser, b, client)
    assert browser.pages == []  # remembered: B signs in silently
    apps = browser.at(a).get("/connect/apps")
    [path] = set(re.findall(r'"(/connect/apps/\d+/revoke)"', apps.text))
    [confirm] = [f for f in _forms(browser.get(path).text) if f["action"] in ("", path)]
    assert browser.post(path, confirm["data"]).status_code == 302
    _tokens(browser, b, client)
    assert browser.pages == ["consent"]  # still signed in, asked again
    assert _userinfo(b, tokens["access_token"]) == 401


@pytest.mark.live  # real servers over HTTP, like tests/interop
def test_a_user_deactivated_on_a_is_refused_by_b_at_once(cluster):
    a, b = cluster.servers
    client = _demo_client(cluster)
    browser = _user(cluster, "deactivated")
    tokens = _tokens(browser, a, client, scope="openid offline_access")
    assert "code" in _silent(browser, b, client)
    admin = _admin(cluster, a)
    user = cluster.fixtures["users"]["deactivated"]
    _admin_save(admin, f"/admin/auth/user/{user['pk']}/change/", {"is_active": None})
    assert _userinfo(b, tokens["access_token"]) == 401
    assert _introspect(b, client, tokens["access_token"]) is False
    assert _refresh(b, client, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert _silent(browser, b, client).get("error") == "login_required"


@pytest.mark.live  # real servers over HTTP, like tests/interop
@pytest.mark.parametrize("sessions", CLUSTERS)
def test_a_whole_sign_in_through_the_balancer_alternating_servers(sessions, request):
    cluster = request.getfixturevalue(CLUSTERS[sessions])
    client = _demo_client(cluster)
    discovery = requests.get(cluster.issuer + "/.well-known/openid-configuration", timeout=10).json()
    assert discovery["issuer"] == cluster.issuer
    assert discovery["token_endpoint"] == cluster.issuer + "/connect/token"
    # Round-robin: consecutive requests of one browser land on different servers, so the sign-in,
    # the pending authorization request and the consent must all live in shared storage.
    tokens = _tokens(_user(cluster, "balanced"), cluster.issuer, client)
    for _ in range(2):  # both servers answer
        assert _userinfo(cluster.issuer, tokens["access_token"]) == 200


@pytest.mark.live  # real servers over HTTP, like tests/interop
def test_redis_holds_no_session_key(redis_session_cluster):
    """DESIGN.md "No bearer secret in clear" for sessions in Redis: a copy of it (a dump, a
    replica, KEYS * on a shared Redis) names no session cookie, only its hash."""
    import redis

    from oidc_provider_ext.sessions import stored_key

    cluster = redis_session_cluster
    browser = _user(cluster, "balanced")
    _tokens(browser, cluster.issuer, _demo_client(cluster))
    key = browser.http.cookies["sessionid"]
    connection = redis.Redis.from_url(str(cluster.redis_url))
    names = [name.decode() for name in connection.scan_iter(match=f"{cluster.cache_prefix}:*")]
    assert any(name.endswith(stored_key(key)) for name in names)
    assert not any(key in name for name in names)
    assert not any(key.encode() in (connection.get(name) or b"") for name in names)


def test_the_cluster_benchmark_reports_one_server_and_two_with_their_ratio():
    from benchmarks import cluster as bench_cluster
    from benchmarks import run, stats

    def project(rps):
        summary = {"requests": 10, "rps": rps, "p50_ms": 5.0, "p99_ms": 9.0, "errors": 0}
        return {"phases": {"exchange": summary}}

    single, two = project(100.0), project(80.0)
    entry = stats.database_result(single, None)
    entry.update(ours_two_servers=two, two_servers_ratios=bench_cluster.compare(single, two))
    table = bench_cluster.table({"databases": {"postgresql": entry}})
    assert "1 server" in table and "2 servers+HAProxy" in table and "0.80×" in table
    args = run.parse_args(["--cluster", "--redis-url", "redis://127.0.0.1:6379/9"])
    assert args.cluster and args.redis_url.endswith("/9")
    assert not run.parse_args([]).cluster


@pytest.mark.live  # real servers over HTTP, like tests/interop
def test_without_a_shared_cache_a_client_change_is_stale_for_at_most_client_cache_seconds(locmem_cluster):
    a, b = locmem_cluster.servers
    client = locmem_cluster.fixtures["clients"]["stale"]
    anonymous = Browser(locmem_cluster)
    admin = _admin(locmem_cluster, a)
    path = f"/admin/oauth2_provider/application/{client['pk']}/change/"
    admin.get(path)  # signed in and on the form before B caches the client
    assert anonymous.at(b).get(_authorize_url(client, _pkce()[1])).status_code == 302
    cached = time.monotonic()
    _admin_save(admin, path, {"redirect_uris": "http://127.0.0.1:8765/elsewhere"})
    stale = anonymous.at(b).get(_authorize_url(client, _pkce()[1])).status_code == 302
    if time.monotonic() - cached < LOCMEM_CLIENT_CACHE_SECONDS - 0.5:
        assert stale, "B's own cache should still hold the client (else this test shows nothing)"
    # ... but no longer than the cache lifetime.
    while anonymous.at(b).get(_authorize_url(client, _pkce()[1])).status_code != 400:
        assert time.monotonic() < cached + LOCMEM_CLIENT_CACHE_SECONDS + 1, "stale beyond the TTL"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def outage_cluster(cluster):
    """Two more servers over the same database, with a Redis of their own for the test to stop."""
    for running in _running_cluster(cluster.database_url):
        if not running.own_redis:
            pytest.skip("SCALEOUT_REDIS_URL names a shared Redis; this test stops the cluster's own")
        running.fixtures, running.seed = cluster.fixtures, cluster.seed
        yield running


@pytest.mark.live  # real servers over HTTP, like tests/interop
def test_a_redis_outage_is_not_an_error(outage_cluster):
    """Redis stops (a restart, a failover): every server goes on signing users in and issuing,
    refreshing and checking tokens from its own memory (internal/shared_cache.py), instead of
    answering 500 to every request that touches the cache."""
    import os
    import signal

    cluster = outage_cluster
    client = _demo_client(cluster)
    browser = _user(cluster, "outage")
    before = _tokens(browser, cluster.issuer, client, scope="openid profile offline_access")
    [redis] = [process for name, process in cluster.processes if name == "redis"]
    os.killpg(redis.pid, signal.SIGKILL)
    redis.wait(10)
    for server in cluster.servers:  # a new sign-in, consent and code exchange at each server
        tokens = _tokens(_user(cluster, "outage"), server, client)
        assert _userinfo(server, tokens["access_token"]) == 200
        assert _introspect(server, client, before["access_token"])
        assert requests.get(server + "/connect/jwks", timeout=10).status_code == 200
    refreshed = _refresh(cluster.issuer, client, before["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert _userinfo(cluster.issuer, refreshed.json()["access_token"]) == 200
    wrong = requests.post(
        cluster.issuer + "/connect/token",
        data={"grant_type": "refresh_token", "refresh_token": "x"},
        auth=(client["client_id"], "not the secret"),
        timeout=10,
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    logs = "\n".join(cluster.log_of(f"app{n}", 400) for n in (1, 2))
    assert "Internal Server Error" not in logs and "Traceback" not in logs, logs[-3000:]
    assert "The shared cache failed" in logs


@pytest.mark.django_db
@pytest.mark.oidc_settings(CLIENT_CACHE_SECONDS=300)
def test_client_cache_key_does_not_truncate_the_client_id():
    """Two client ids that share their first 200 bytes (metadata-document ids are URLs of up to
    255 characters) are two cache entries: the key is a digest of the whole id."""
    prefix = "https://apps.example.com/" + "p" * 190 + "/"
    first = ApplicationFactory(client_id=prefix + "victim.json")
    second = ApplicationFactory(client_id=prefix + "attacker.json")
    clients.forget(first.client_id)
    clients.forget(second.client_id)
    assert clients.get_client(first.client_id).pk == first.pk
    found = clients.get_client(second.client_id)
    assert found is not None and found.pk == second.pk, found.client_id
