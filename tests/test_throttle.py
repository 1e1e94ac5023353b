"""Throttles attacked (oidc_provider_ext.throttle): failed client authentications at the back
channel, failed sign-ins, and the client address behind trusted proxies. An attacker must only
ever lock out the attacker."""

from unittest import mock

import pytest
from django.contrib.auth.hashers import get_hasher
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from oauth2_provider.models import get_application_model

from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.hashers import ClientSecretHasher
from oidc_provider_ext.throttle import client_ip, throttle_address

from . import presets
from .conftest import oidc_settings
from .factories import USER_PASSWORD, ApplicationFactory, UserFactory
from .flow import basic_auth, token_request

pytestmark = pytest.mark.django_db
Application = get_application_model()

ATTACKER = "203.0.113.9"
VICTIM = "198.51.100.7"
PROXY = "10.0.0.2"
# One customer's IPv6 /64 (every address in it is the attacker's), and a neighbour's /64.
ATTACKER_64 = "2001:db8:1:2"
NEIGHBOUR_64 = "2001:db8:1:3"
SHARED = "192.0.2.80"  # a cloud NAT / proxy egress address shared by a client and an attacker


def _v6(prefix, n):
    """The n-th address of a /64, spread over the interface identifier as a rotating attacker would."""
    return f"{prefix}:{n:x}:{(n * 7919) % 65536:x}:{n % 7:x}:1"


def _client_credentials_app(**kwargs):
    return ApplicationFactory(authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS, **kwargs)


def _cc(client, client_id, secret):
    return token_request(client, {"grant_type": "client_credentials"}, auth=(client_id, secret))


@pytest.fixture
def slow_verify():
    """Spy on the default (slow) hasher's verify: the cost of checking a human-chosen secret."""
    hasher_class = type(get_hasher("default"))
    with mock.patch.object(hasher_class, "verify", autospec=True, side_effect=hasher_class.verify) as spy:
        yield spy


# --- client authentication at the back channel ---------------------------------------------------


class TestClientAuthThrottle:
    def test_wrong_secrets_from_one_address_are_refused_without_hashing(self, slow_verify):
        app = _client_credentials_app(client_secret="a human chosen secret")
        attacker = Client(REMOTE_ADDR=ATTACKER)
        for _ in range(app_settings.CLIENT_AUTH_FAILURE_LIMIT):
            assert _cc(attacker, app.client_id, "guess").status_code == 401
        assert slow_verify.call_count == app_settings.CLIENT_AUTH_FAILURE_LIMIT
        slow_verify.reset_mock()
        response = _cc(attacker, app.client_id, "guess")
        # RFC 6749 5.2: the same invalid_client as a wrong secret, and no hash was computed.
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"
        assert slow_verify.call_count == 0
        # Not even the right secret gets checked from the attacker's address now.
        assert _cc(attacker, app.client_id, app.raw_secret).status_code == 401
        assert slow_verify.call_count == 0

    def test_the_client_still_authenticates_from_its_own_address(self):
        app = _client_credentials_app(client_secret="a human chosen secret")
        attacker = Client(REMOTE_ADDR=ATTACKER)
        for _ in range(app_settings.CLIENT_AUTH_ADDRESS_FAILURE_LIMIT + 1):
            _cc(attacker, app.client_id, "guess")
        legit = Client(REMOTE_ADDR=VICTIM)
        response = _cc(legit, app.client_id, app.raw_secret)
        assert response.status_code == 200, response.content
        assert "access_token" in response.json()

    def test_spraying_many_client_ids_from_one_address_is_refused(self, slow_verify):
        attacker = Client(REMOTE_ADDR=ATTACKER)
        for n in range(app_settings.CLIENT_AUTH_ADDRESS_FAILURE_LIMIT):
            _cc(attacker, f"client-that-does-not-exist-{n}", "guess")
        app = _client_credentials_app()
        slow_verify.reset_mock()
        assert _cc(attacker, app.client_id, app.raw_secret).status_code == 401
        assert slow_verify.call_count == 0

    @pytest.mark.parametrize("endpoint", ["introspect", "revocation"])
    def test_introspection_and_revocation_are_throttled_too(self, slow_verify, endpoint):
        app = _client_credentials_app(client_secret="a human chosen secret")
        attacker = Client(REMOTE_ADDR=ATTACKER)

        def post(secret):
            return attacker.post(
                reverse(f"oidc_provider_ext:{endpoint}"),
                "token=x",
                content_type="application/x-www-form-urlencoded",
                HTTP_AUTHORIZATION=basic_auth(app.client_id, secret),
            )

        for _ in range(app_settings.CLIENT_AUTH_FAILURE_LIMIT):
            assert post("guess").status_code == 401
        slow_verify.reset_mock()
        response = post(app.raw_secret)
        assert response.status_code == 401 and response.json()["error"] == "invalid_client"
        assert slow_verify.call_count == 0

    def test_a_legitimate_client_is_not_slowed_down(self, slow_verify):
        """A generated secret is checked with the fast keyed hash only, on success."""
        app = _client_credentials_app()
        with mock.patch.object(
            ClientSecretHasher, "verify", autospec=True, side_effect=ClientSecretHasher.verify
        ) as fast:
            assert _cc(Client(), app.client_id, app.raw_secret).status_code == 200
        assert fast.call_count == 1
        assert slow_verify.call_count == 0

    def test_limit_settings(self, settings):
        app = _client_credentials_app()
        oidc_settings(settings, CLIENT_AUTH_FAILURE_LIMIT=2, CLIENT_AUTH_ADDRESS_FAILURE_LIMIT=3)
        attacker = Client(REMOTE_ADDR=ATTACKER)
        _cc(attacker, app.client_id, "guess")
        _cc(attacker, app.client_id, "guess")
        assert _cc(attacker, app.client_id, app.raw_secret).status_code == 401  # pair limit 2
        other = _client_credentials_app()
        assert _cc(attacker, other.client_id, other.raw_secret).status_code == 200
        _cc(attacker, other.client_id, "guess")  # third failure from the address
        third = _client_credentials_app()
        assert _cc(attacker, third.client_id, third.raw_secret).status_code == 401  # address limit 3

    def test_throttle_window_seconds(self, settings):
        app = _client_credentials_app()
        oidc_settings(settings, CLIENT_AUTH_FAILURE_LIMIT=1)
        attacker = Client(REMOTE_ADDR=ATTACKER)
        timeouts = []
        real_add = cache.add

        def add(key, value, timeout=None, **kwargs):
            timeouts.append(timeout)
            return real_add(key, value, timeout, **kwargs)

        oidc_settings(settings, THROTTLE_WINDOW_SECONDS=42)
        with mock.patch("oidc_provider_ext.throttle.cache.add", side_effect=add):
            _cc(attacker, app.client_id, "guess")
        assert timeouts and set(timeouts) == {42}


class TestNoClientExistenceOracle:
    """An unknown client id costs what a known one with a wrong secret costs: one verification
    with the slow default hasher, whatever kind of hash the known client has."""

    def test_unknown_and_known_client_ids_run_the_same_verification(self, slow_verify):
        human = _client_credentials_app(client_secret="a human chosen secret")
        generated = _client_credentials_app()
        rp = Client()
        calls = {}
        for name, client_id in [
            ("unknown", "no-such-client"),
            ("human", human.client_id),
            ("generated", generated.client_id),
        ]:
            slow_verify.reset_mock()
            assert _cc(rp, client_id, "a wrong secret").status_code == 401
            calls[name] = slow_verify.call_count
        assert calls == {"unknown": 1, "human": 1, "generated": 1}

    def test_unknown_client_in_the_body_too(self, slow_verify):
        response = Client().post(
            reverse("oidc_provider_ext:token"),
            "grant_type=client_credentials&client_id=no-such-client&client_secret=x",
            content_type="application/x-www-form-urlencoded",
        )
        assert response.status_code == 401
        assert slow_verify.call_count == 1


# --- the client's address ------------------------------------------------------------------------


class TestClientAddress:
    def test_forwarded_for_is_ignored_without_a_trusted_proxy(self):
        assert client_ip({"REMOTE_ADDR": ATTACKER, "HTTP_X_FORWARDED_FOR": VICTIM}) == ATTACKER

    @pytest.mark.oidc_settings(presets.BEHIND_ONE_PROXY)
    def test_behind_one_proxy_the_entry_it_appended_counts(self):
        # The client sent "X-Forwarded-For: 198.51.100.7"; the proxy appended the real address.
        meta = {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": f"{VICTIM}, {ATTACKER}"}
        assert client_ip(meta) == ATTACKER

    @pytest.mark.oidc_settings(TRUSTED_PROXY_COUNT=2)
    def test_behind_two_proxies(self):
        meta = {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": f"{VICTIM}, {ATTACKER}, 10.0.0.1"}
        assert client_ip(meta) == ATTACKER

    @pytest.mark.oidc_settings(presets.BEHIND_ONE_PROXY)
    def test_without_the_header_behind_a_proxy_remote_addr_counts(self):
        assert client_ip({"REMOTE_ADDR": PROXY}) == PROXY

    @pytest.mark.oidc_settings(presets.BEHIND_ONE_PROXY)
    def test_two_clients_behind_one_proxy_have_separate_client_auth_counters(self):
        app = _client_credentials_app()
        attacker = Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=ATTACKER)
        for _ in range(app_settings.CLIENT_AUTH_ADDRESS_FAILURE_LIMIT):
            _cc(attacker, app.client_id, "guess")
        assert _cc(attacker, app.client_id, app.raw_secret).status_code == 401
        legit = Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=VICTIM)
        assert _cc(legit, app.client_id, app.raw_secret).status_code == 200


# --- sign-in -------------------------------------------------------------------------------------


def _fail_login(client, username, times, path=None):
    for _ in range(times):
        client.post(path or reverse("oidc_provider_ext:login"), {"username": username, "password": "wrong"})


def _sign_in(client, username, path=None):
    return client.post(
        path or reverse("oidc_provider_ext:login"), {"username": username, "password": USER_PASSWORD}
    )


class TestLoginLockoutCannotDenyTheUser:
    def test_attacker_failing_for_alice_does_not_lock_alice_out(self):
        alice = UserFactory()
        _fail_login(Client(REMOTE_ADDR=ATTACKER), alice.username, 6)
        response = _sign_in(Client(REMOTE_ADDR=VICTIM), alice.username)
        assert response.status_code == 302

    def test_nor_out_of_the_admin(self):
        alice = UserFactory(is_staff=True, is_superuser=True)
        path = reverse("admin:login")
        _fail_login(Client(REMOTE_ADDR=ATTACKER), alice.username, 6, path=path)
        victim = Client(REMOTE_ADDR=VICTIM)
        response = _sign_in(victim, alice.username, path=path)
        assert response.status_code == 302
        assert victim.get(reverse("admin:index")).status_code == 200

    def test_the_attackers_own_pair_is_locked(self):
        alice = UserFactory()
        attacker = Client(REMOTE_ADDR=ATTACKER)
        _fail_login(attacker, alice.username, 5)
        response = _sign_in(attacker, alice.username)
        assert response.status_code == 429
        assert "_auth_user_id" not in attacker.session

    def test_a_spoofed_forwarded_for_does_not_escape_the_lock(self):
        """No trusted proxy configured: X-Forwarded-For from a direct client is ignored."""
        alice = UserFactory()
        for n in range(5):
            Client(REMOTE_ADDR=ATTACKER, HTTP_X_FORWARDED_FOR=f"192.0.2.{n}").post(
                reverse("oidc_provider_ext:login"), {"username": alice.username, "password": "wrong"}
            )
        response = _sign_in(Client(REMOTE_ADDR=ATTACKER, HTTP_X_FORWARDED_FOR="192.0.2.99"), alice.username)
        assert response.status_code == 429

    @pytest.mark.oidc_settings(presets.BEHIND_ONE_PROXY)
    def test_two_users_behind_one_trusted_proxy_have_separate_counters(self):
        alice = UserFactory()
        attacker = Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=f"{VICTIM}, {ATTACKER}")
        _fail_login(attacker, alice.username, 5)
        assert _sign_in(attacker, alice.username).status_code == 429
        victim = Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=VICTIM)
        assert _sign_in(victim, alice.username).status_code == 302

    def test_a_sign_in_resets_the_pairs_failures(self):
        """AXES_RESET_ON_SUCCESS through contrib.axes.AxesHandler: four typos, a success, then four
        more typos do not lock the owner out (the first four were reset)."""
        from axes.models import AccessAttempt

        alice = UserFactory()
        browser = Client(REMOTE_ADDR=VICTIM)
        _fail_login(browser, alice.username, 4)
        assert _sign_in(browser, alice.username).status_code == 302
        assert not AccessAttempt.objects.filter(username=alice.username).exists()
        _fail_login(Client(REMOTE_ADDR=VICTIM), alice.username, 4)
        assert _sign_in(Client(REMOTE_ADDR=VICTIM), alice.username).status_code == 302

    def test_a_sign_in_without_failures_leaves_other_records_alone(self):
        """Nothing to reset: the handler skips axes' clean-up; another pair's failures still count."""
        alice = UserFactory()
        attacker = Client(REMOTE_ADDR=ATTACKER)
        _fail_login(attacker, alice.username, 4)
        assert _sign_in(Client(REMOTE_ADDR=VICTIM), alice.username).status_code == 302
        _fail_login(attacker, alice.username, 1)
        assert _sign_in(attacker, alice.username).status_code == 429

    @pytest.mark.oidc_settings(LOGIN_ADDRESS_FAILURE_LIMIT=8)
    def test_a_spraying_address_is_refused(self):
        sprayer = Client(REMOTE_ADDR=ATTACKER)
        for n in range(8):
            _fail_login(sprayer, f"user-{n}", 1)
        bob = UserFactory()
        response = _sign_in(sprayer, bob.username)
        assert response.status_code == 429 and "_auth_user_id" not in sprayer.session
        assert _sign_in(Client(REMOTE_ADDR=VICTIM), bob.username).status_code == 302


class TestLockoutCountIsAxesCount:
    """contrib.axes.AxesHandler counts failures with its own SQL (written once): for every lockout
    setting it must be axes' own count, records of other users, addresses, agents, expired ones and
    ones without a username included in the table."""

    USER_AGENT = "Mozilla/5.0 (the victim's)"

    @pytest.fixture
    def attempts(self):
        from datetime import timedelta

        from axes.models import AccessAttempt
        from django.utils import timezone

        now = timezone.now()

        def record(username, address, agent, failures, age_minutes=1):
            attempt = AccessAttempt.objects.create(
                username=username,
                ip_address=address,
                user_agent=agent,
                failures_since_start=failures,
                get_data="",
                post_data="",
                http_accept="*/*",
                path_info="/login/",
            )
            # attempt_time is auto_now_add: set afterwards
            AccessAttempt.objects.filter(pk=attempt.pk).update(
                attempt_time=now - timedelta(minutes=age_minutes)
            )

        record("alice", ATTACKER, self.USER_AGENT, 3)  # the pair, recent
        record("alice", ATTACKER, "curl/8", 1)  # the pair, another agent
        record("alice", VICTIM, self.USER_AGENT, 2)  # the user, another address
        record("bob", ATTACKER, self.USER_AGENT, 4)  # the address, another user
        record(None, ATTACKER, self.USER_AGENT, 6)  # no username (a form without one)
        record("alice", ATTACKER, "Mozilla/4.0", 7, age_minutes=60 * 24)  # the pair, long expired
        record("alice%", ATTACKER, self.USER_AGENT, 5)  # LIKE-shaped: must not match "alice"

    def _request(self, username):
        from axes.handlers.proxy import AxesProxyHandler
        from django.test import RequestFactory

        data = {} if username is None else {"username": username}
        request = RequestFactory().post(
            "/login/", data, REMOTE_ADDR=ATTACKER, HTTP_USER_AGENT=self.USER_AGENT
        )
        AxesProxyHandler.update_request(request)
        return request, (None if username is None else {"username": username})

    @pytest.mark.parametrize(
        "parameters",
        [
            [["username", "ip_address"]],
            ["username"],
            ["ip_address"],
            [["username", "user_agent"]],
            [["username", "ip_address", "user_agent"]],
            ["username", "ip_address"],  # two sets: the larger count
        ],
    )
    @pytest.mark.parametrize("cool_off_minutes", [15, None])
    @pytest.mark.parametrize("username", ["alice", "bob", "carol", "alice%", None])
    def test_same_count_as_axes(
        self, attempts, settings, django_assert_num_queries, parameters, cool_off_minutes, username
    ):
        from datetime import timedelta

        from axes.handlers.database import AxesDatabaseHandler

        from oidc_provider_ext.contrib.axes import AxesHandler

        settings.AXES_LOCKOUT_PARAMETERS = parameters
        settings.AXES_COOLOFF_TIME = None if cool_off_minutes is None else timedelta(minutes=cool_off_minutes)
        request, credentials = self._request(username)
        with django_assert_num_queries(len(parameters)):  # one statement per set, none for axes' ORM
            ours = AxesHandler()._count_failures(request, credentials)
        assert ours == AxesDatabaseHandler().get_failures(request, credentials)
        assert AxesHandler().get_failures(request, credentials) == ours

    def test_the_count_is_the_one_the_lockout_uses(self, attempts):
        """Three recent failures of the pair are on record: two more lock the pair out, and the
        sign-in from another address still works."""
        alice = UserFactory(username="alice")
        attacker = Client(REMOTE_ADDR=ATTACKER, HTTP_USER_AGENT=self.USER_AGENT)
        _fail_login(attacker, alice.username, 1)
        assert _sign_in(Client(REMOTE_ADDR=VICTIM), alice.username).status_code == 302
        _fail_login(attacker, alice.username, 1)
        assert _sign_in(attacker, alice.username).status_code == 429


def test_production_profile_takes_the_proxy_count_from_the_environment():
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "idp_project.settings_production",
        "DJANGO_SECRET_KEY": "x" * 50,
        "OIDC_SECRET_KEYS": "y" * 50,
        "OIDC_ISSUER": "https://id.example.com",
    }
    env.pop("DATABASE_URL", None)
    script = (
        "import django; django.setup(); from oidc_provider_ext.throttle import client_ip; "
        f"print(client_ip({{'REMOTE_ADDR': '{PROXY}', 'HTTP_X_FORWARDED_FOR': '{VICTIM}, {ATTACKER}'}}))"
    )

    def address(**extra):
        return subprocess.run(
            [sys.executable, "-c", script],
            cwd=Path(__file__).resolve().parent.parent,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout.strip()

    assert address() == PROXY  # default 0: REMOTE_ADDR, the forwarded header is ignored
    assert address(DJANGO_TRUSTED_PROXY_COUNT="1") == ATTACKER  # the entry the proxy appended


class TestSharedAddressClientAuth:
    """Many clients share an egress address (cloud NAT, serverless, corporate proxy); so may an
    attacker. Spraying client ids from it must not lock out a client that proves itself there."""

    def test_spraying_from_a_shared_address_does_not_stop_a_client_authenticating_from_it(self, slow_verify):
        app = _client_credentials_app(client_secret="a human chosen secret")
        rp = Client(REMOTE_ADDR=SHARED)
        assert _cc(rp, app.client_id, app.raw_secret).status_code == 200
        attacker = Client(REMOTE_ADDR=SHARED)
        for n in range(app_settings.CLIENT_AUTH_ADDRESS_FAILURE_LIMIT):
            _cc(attacker, f"client-that-does-not-exist-{n}", "guess")
        slow_verify.reset_mock()
        # The spraying is refused, without hashing, for unknown and known-but-unproven ids alike.
        assert _cc(attacker, "client-that-does-not-exist-x", "guess").status_code == 401
        assert slow_verify.call_count == 0
        # A client proven at another address only is not exempt here.
        bystander = _client_credentials_app(client_secret="another human chosen secret")
        assert _cc(Client(REMOTE_ADDR=VICTIM), bystander.client_id, bystander.raw_secret).status_code == 200
        slow_verify.reset_mock()
        assert _cc(attacker, bystander.client_id, "guess").status_code == 401
        assert slow_verify.call_count == 0
        # The client that has been authenticating from the shared address goes on doing so.
        response = _cc(rp, app.client_id, app.raw_secret)
        assert response.status_code == 200, response.content
        assert "access_token" in response.json()

    def test_a_proven_pair_keeps_its_own_limit(self, slow_verify):
        """The exemption is from the per-address limit only: guessing the proven client's secret
        from the shared address still costs at most CLIENT_AUTH_FAILURE_LIMIT hashes."""
        app = _client_credentials_app(client_secret="a human chosen secret")
        assert _cc(Client(REMOTE_ADDR=SHARED), app.client_id, app.raw_secret).status_code == 200
        attacker = Client(REMOTE_ADDR=SHARED)
        for n in range(app_settings.CLIENT_AUTH_ADDRESS_FAILURE_LIMIT):
            _cc(attacker, f"client-that-does-not-exist-{n}", "guess")
        slow_verify.reset_mock()
        for _ in range(app_settings.CLIENT_AUTH_FAILURE_LIMIT):
            assert _cc(attacker, app.client_id, "guess").status_code == 401
        assert slow_verify.call_count == app_settings.CLIENT_AUTH_FAILURE_LIMIT
        slow_verify.reset_mock()
        assert _cc(attacker, app.client_id, "guess").status_code == 401
        assert slow_verify.call_count == 0

    def test_client_auth_proven_seconds(self, settings):
        app = _client_credentials_app()
        rp = Client(REMOTE_ADDR=SHARED)
        timeouts = []
        real_set = cache.set

        def set_(key, value, timeout=None, **kwargs):
            if ":client-proven:" in key:
                timeouts.append(timeout)
            return real_set(key, value, timeout, **kwargs)

        oidc_settings(settings, CLIENT_AUTH_PROVEN_SECONDS=42)
        with mock.patch("oidc_provider_ext.throttle.cache.set", side_effect=set_):
            assert _cc(rp, app.client_id, app.raw_secret).status_code == 200
        assert timeouts == [42]
        # 0: no exemption; the sprayed shared address refuses the client too.
        oidc_settings(settings, CLIENT_AUTH_PROVEN_SECONDS=0, CLIENT_AUTH_ADDRESS_FAILURE_LIMIT=3)
        cache.clear()
        assert _cc(rp, app.client_id, app.raw_secret).status_code == 200
        for n in range(3):
            _cc(Client(REMOTE_ADDR=SHARED), f"client-that-does-not-exist-{n}", "guess")
        assert _cc(rp, app.client_id, app.raw_secret).status_code == 401


class TestIPv6Prefix:
    """An IPv6 customer owns a whole /64: every throttle keys it as one address."""

    def test_throttle_address(self):
        assert throttle_address({"REMOTE_ADDR": ATTACKER}) == ATTACKER  # IPv4 unchanged
        assert throttle_address({"REMOTE_ADDR": _v6(ATTACKER_64, 5)}) == f"{ATTACKER_64}::"
        assert throttle_address({"REMOTE_ADDR": f"{ATTACKER_64}::1"}) == f"{ATTACKER_64}::"
        assert throttle_address({"REMOTE_ADDR": f"::ffff:{ATTACKER}"}) == ATTACKER
        # client_ip, for logs and other uses, keeps the full address.
        assert client_ip({"REMOTE_ADDR": _v6(ATTACKER_64, 5)}) == _v6(ATTACKER_64, 5)

    @pytest.mark.oidc_settings(presets.BEHIND_ONE_PROXY)
    def test_behind_a_trusted_proxy_the_forwarded_address_is_keyed_by_its_64(self):
        meta = {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": f"{VICTIM}, {_v6(ATTACKER_64, 9)}"}
        assert throttle_address(meta) == f"{ATTACKER_64}::"

    def test_client_auth_failures_from_one_64_lock_that_64(self, slow_verify):
        app = _client_credentials_app(client_secret="a human chosen secret")
        for n in range(app_settings.CLIENT_AUTH_FAILURE_LIMIT):
            assert _cc(Client(REMOTE_ADDR=_v6(ATTACKER_64, n)), app.client_id, "guess").status_code == 401
        slow_verify.reset_mock()
        assert (
            _cc(Client(REMOTE_ADDR=_v6(ATTACKER_64, 999)), app.client_id, app.raw_secret).status_code == 401
        )
        assert slow_verify.call_count == 0
        assert _cc(Client(REMOTE_ADDR=_v6(NEIGHBOUR_64, 1)), app.client_id, app.raw_secret).status_code == 200

    def test_spraying_client_ids_from_one_64_is_refused(self, slow_verify):
        for n in range(app_settings.CLIENT_AUTH_ADDRESS_FAILURE_LIMIT):
            _cc(Client(REMOTE_ADDR=_v6(ATTACKER_64, n)), f"client-that-does-not-exist-{n}", "guess")
        slow_verify.reset_mock()
        assert (
            _cc(Client(REMOTE_ADDR=_v6(ATTACKER_64, 999)), "client-that-does-not-exist-x", "g").status_code
            == 401
        )
        assert slow_verify.call_count == 0
        app = _client_credentials_app()
        assert _cc(Client(REMOTE_ADDR=_v6(NEIGHBOUR_64, 1)), app.client_id, app.raw_secret).status_code == 200

    def test_axes_locks_the_username_and_64_pair(self):
        alice = UserFactory()
        for n in range(5):
            _fail_login(Client(REMOTE_ADDR=_v6(ATTACKER_64, n)), alice.username, 1)
        attacker = Client(REMOTE_ADDR=_v6(ATTACKER_64, 999))
        assert _sign_in(attacker, alice.username).status_code == 429
        assert "_auth_user_id" not in attacker.session
        assert _sign_in(Client(REMOTE_ADDR=_v6(NEIGHBOUR_64, 1)), alice.username).status_code == 302

    def test_an_ipv4_mapped_address_is_the_ipv4_address(self):
        alice = UserFactory()
        _fail_login(Client(REMOTE_ADDR=ATTACKER), alice.username, 3)
        _fail_login(Client(REMOTE_ADDR=f"::ffff:{ATTACKER}"), alice.username, 2)
        assert _sign_in(Client(REMOTE_ADDR=ATTACKER), alice.username).status_code == 429
        # IPv4 is unchanged: the neighbouring IPv4 address is another address.
        assert _sign_in(Client(REMOTE_ADDR="203.0.113.10"), alice.username).status_code == 302

    @pytest.mark.oidc_settings(LOGIN_ADDRESS_FAILURE_LIMIT=8)
    def test_a_spraying_64_is_refused_at_sign_in(self):
        for n in range(8):
            _fail_login(Client(REMOTE_ADDR=_v6(ATTACKER_64, n)), f"user-{n}", 1)
        bob = UserFactory()
        sprayer = Client(REMOTE_ADDR=_v6(ATTACKER_64, 999))
        assert _sign_in(sprayer, bob.username).status_code == 429
        assert "_auth_user_id" not in sprayer.session
        assert _sign_in(Client(REMOTE_ADDR=_v6(NEIGHBOUR_64, 1)), bob.username).status_code == 302
