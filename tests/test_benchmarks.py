"""The benchmark harness without servers: its statistics, its result document, and its browser and
relying-party conversations run in-process against the example IdP, so a template change that
would break `make bench` fails here. Nothing here is timed: performance lives in benchmarks/."""

import json
import runpy
from types import SimpleNamespace

import pytest
from django.urls import reverse

from benchmarks import flows, inprocess, run, stats

from .factories import REDIRECT_URI, USER_PASSWORD

# --- statistics ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([1, 2, 3, 4], 50, 2.5),
        ([1, 2, 3, 4], 0, 1),
        ([1, 2, 3, 4], 100, 4),
        ([4, 1, 3, 2], 99, 3.97),  # unsorted input; linear interpolation like numpy's default
        (list(range(1, 101)), 99, 99.01),
        ([7], 99, 7),
    ],
)
def test_percentile_interpolates_between_closest_ranks(values, p, expected):
    assert stats.percentile(values, p) == pytest.approx(expected)


def test_percentile_of_nothing_is_none_and_out_of_range_is_an_error():
    assert stats.percentile([], 50) is None
    with pytest.raises(ValueError, match="0..100"):
        stats.percentile([1], 101)


def test_summary_counts_only_successes_as_throughput_and_keeps_the_first_error_bodies():
    samples = [stats.Sample(0.010, 200)] * 8 + [
        stats.Sample(0.050, 500, "database is locked " + "x" * 1000),
        stats.Sample(0.020, 400, '{"error": "invalid_grant"}'),
        stats.Sample(0.0, 0, "ConnectionResetError"),
        stats.Sample(0.030, 500, "fourth error"),
    ]
    summary = stats.summarize(samples, 2.0, client_cpu_seconds=0.012, server_cpu_seconds=1.2)

    assert summary["requests"] == 12
    assert summary["ok"] == 8
    assert summary["errors"] == 4
    assert summary["rps"] == 4.0
    assert summary["errors_by_status"] == {"500": 2, "400": 1, "0": 1}
    assert len(summary["error_samples"]) == stats.MAX_ERROR_SAMPLES
    assert summary["error_samples"][0].startswith("500: database is locked")
    assert len(summary["error_samples"][0]) <= stats.ERROR_SAMPLE_CHARS + 5
    assert summary["p50_ms"] == 10.0
    assert summary["max_ms"] == 50.0
    assert summary["client_cpu_ms_per_request"] == 1.0
    assert summary["server_cpu_ms_per_request"] == 100.0


def test_summary_names_the_slowest_requests_and_when_they_were_sent():
    samples = [stats.Sample(0.010, 200, None, i / 100) for i in range(20)]
    samples[3] = stats.Sample(0.045, 200, None, 0.03)
    samples[17] = stats.Sample(0.030, 500, "boom", 0.17)
    slowest = stats.summarize(samples, 1.0)["slowest"]
    assert len(slowest) == stats.SLOWEST_SAMPLES
    assert slowest[:2] == [{"ms": 45.0, "sent_at_s": 0.03}, {"ms": 30.0, "sent_at_s": 0.17}]
    assert all(row["ms"] == 10.0 for row in slowest[2:])


def test_clients_run_with_the_garbage_collector_paused_and_it_resumes_after():
    import gc

    seen: list[bool] = []
    run.run_clients(lambda: seen.append(gc.isenabled()), 3)
    assert seen == [False, False, False]
    assert gc.isenabled()


def test_phase_stats_report_how_busy_the_machine_was():
    phase = stats.PhaseStats([stats.Sample(0.01, 200)], 1.0, machine_busy=0.8512, other_cpu_cores=1.234)
    summary = phase.summary()
    assert summary["machine_busy"] == 0.851
    assert summary["other_cpu_cores"] == 1.23


def test_an_empty_phase_summarises_without_numbers():
    summary = stats.summarize([], 0.0)
    assert summary["requests"] == 0
    assert summary["rps"] is None
    assert summary["p99_ms"] is None


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "n/a"), (0.5, "0.50×"), (1.234, "1.23×"), (24.33, "24.3×"), (150.4, "150×")],
)
def test_format_ratio(value, text):
    assert stats.format_ratio(value) == text


def test_ratio_of_a_missing_or_zero_side_is_none():
    assert stats.ratio(10, 0) is None
    assert stats.ratio(None, 5) is None
    assert stats.ratio(30, 8) == 3.75


def test_server_exceptions_counts_the_last_line_of_each_traceback():
    log = """Internal Server Error: /o/token/
Traceback (most recent call last):
  File "x.py", line 1, in f
sqlite3.OperationalError: database is locked

The above exception was the direct cause of the following exception:

django.db.utils.OperationalError: database is locked
[2026-01-01 00:00:00 +0000] [12] [CRITICAL] WORKER TIMEOUT (pid:13)
django.db.utils.OperationalError: database is locked
"""
    assert stats.server_exceptions(log) == {
        "sqlite3.OperationalError: database is locked": 1,
        "django.db.utils.OperationalError: database is locked": 2,
        "gunicorn: WORKER TIMEOUT": 1,
    }


# --- the result document -------------------------------------------------------------------------


def _project_result(rps: float) -> dict:
    phase = stats.summarize([stats.Sample(0.1, 200)] * 10, 10 / rps)
    return {
        "phases": dict.fromkeys(stats.PHASES, phase),
        "inprocess": {
            "queries": {"exchange": {"queries": 7}, "refresh": {"queries": 18}, "userinfo": {"queries": 2}},
            "exchange_breakdown": {"total_ms": 5.0, "sql_ms": 1.0, "rest_ms": 3.0},
            "signin": {"total_ms": 240.0, "password_hash_ms": 215.0, "total_minus_password_hash_ms": 25.0},
            "profile": {
                "requests": 2,
                "profiled_ms_per_request": 6.0,
                "tottime_ms_by_package": {"django": 3.0},
                "top_tottime": [{"function": "f", "calls_per_request": 1.0, "tottime_ms": 1.0}],
            },
        },
        "signin_breakdown": {"total_p50_ms": 250.0, "steps_p50_ms": {"login": 220.0}},
    }


def _result() -> dict:
    result = stats.new_result(
        mode="quick",
        machine={"nproc": 2, "python": "3.11", "django": "5.2", "django_oauth_toolkit": "3.4.1"},
        parameters={"clients": 8, "workers": 2},
        date="2026-01-01T00:00:00+00:00",
    )
    result["machine"]["loadavg_at_start"] = [0.1, 0.1, 0.1]
    result["databases"]["postgresql"] = stats.database_result(_project_result(200.0), _project_result(8.0))
    result["databases"]["sqlite"] = stats.database_result(_project_result(100.0), None)
    inprocess = {"exchange_breakdown": {"total_ms": 210.0, "client_secret_hashing_ms": 200.0, "sql_ms": 4.0}}
    filled = {"exchange_breakdown": {"total_ms": 212.0, "client_secret_hashing_ms": 200.0, "sql_ms": 5.0}}
    result["prefill"] = {
        "postgresql": stats.prefill_result(
            1000,
            {"p50_ms": 10.0, "p99_ms": 20.0},
            {"p50_ms": 11.0, "p99_ms": 30.0, "errors": 0},
            12.0,
            empty_inprocess=inprocess,
            filled_inprocess=filled,
        )
    }
    return result


def test_a_complete_result_has_the_documented_shape_and_survives_json():
    result = json.loads(json.dumps(_result()))
    assert stats.shape_problems(result) == []
    assert result["databases"]["postgresql"]["ratios"]["exchange"]["speedup"] == 25.0
    assert result["databases"]["sqlite"]["ratios"] == {}  # no stock run, no ratio
    assert result["prefill"]["postgresql"]["p50_ratio"] == 1.1
    assert result["prefill"]["postgresql"]["p99_ratio"] == 1.5
    # Without the client-secret hash, what the database adds shows: 10 ms -> 12 ms.
    assert result["prefill"]["postgresql"]["inprocess_ratios"]["exchange_minus_hashing_ms"] == 1.2
    assert result["prefill"]["postgresql"]["inprocess_ratios"]["userinfo_ms"] is None


def test_prefill_prefers_the_fastest_in_process_exchange():
    empty = {
        "exchange_breakdown": {"total_ms": 300.0, "min_minus_hashing_ms": 8.0, "fastest": {"sql_ms": 3.0}}
    }
    filled = {
        "exchange_breakdown": {"total_ms": 250.0, "min_minus_hashing_ms": 9.0, "fastest": {"sql_ms": 4.0}}
    }
    entry = stats.prefill_result(10, {}, {}, 1.0, empty_inprocess=empty, filled_inprocess=filled)
    assert entry["inprocess_ratios"]["exchange_minus_hashing_ms"] == 1.12
    assert entry["inprocess_filled"]["exchange_sql_ms"] == 4.0


def test_shape_problems_names_what_is_missing():
    result = _result()
    del result["machine"]["django"]
    del result["databases"]["postgresql"]["ours"]["phases"]["exchange"]["p99_ms"]
    problems = stats.shape_problems(result)
    assert "machine.django missing" in problems
    assert "postgresql.ours.exchange lacks ['p99_ms']" in problems


def _node_result(rps: float) -> dict:
    """node-oidc-provider runs the token phases and introspection only (no sign-in page, no
    userinfo for its resource-bound JWT access tokens, no in-process pass)."""
    return {
        "phases": {
            phase: stats.summarize([stats.Sample(0.01, 200)] * 10, 10 / rps)
            for phase in ("exchange", "refresh", "introspection")
        }
    }


def test_node_oidc_provider_is_the_second_baseline():
    entry = stats.database_result(_project_result(200.0), _project_result(8.0), _node_result(800.0))
    assert entry["ratios"]["exchange"]["speedup"] == 25.0  # ours / stock DOT
    assert entry["ratios_node"]["exchange"]["speedup"] == 0.25  # ours / node-oidc-provider
    assert entry["ratios_node"]["exchange"]["p50"] == 10.0  # ours 100 ms, node 10 ms
    assert "userinfo" not in entry["ratios_node"] and "signin" not in entry["ratios_node"]
    result = _result()
    result["databases"]["postgresql"] = entry
    result = json.loads(json.dumps(result))
    assert stats.shape_problems(result) == []
    table = stats.results_table(result)
    exchange_rows = [line for line in table.splitlines() if line.split()[:2] == ["postgresql", "exchange"]]
    assert [row.split()[2] for row in exchange_rows] == ["ours", "stock", "node"]
    assert exchange_rows[0].split()[-2:] == ["25.0×", "0.25×"]
    assert "ours/node" in table.splitlines()[0]
    # The Django-only tables do not list node (it has no in-process numbers).
    assert "node" not in stats.inprocess_table(result) and "node" not in stats.signin_table(result)


def test_a_node_phase_missing_its_numbers_is_a_shape_problem():
    result = _result()
    result["databases"]["postgresql"] = stats.database_result(
        _project_result(200.0), _project_result(8.0), _node_result(800.0)
    )
    del result["databases"]["postgresql"]["node"]["phases"]["refresh"]["rps"]
    assert stats.shape_problems(result) == ["postgresql.node.refresh lacks ['rps']"]


def test_resource_validation_and_cpu_columns_are_reported():
    result = _result()
    inprocess = result["databases"]["postgresql"]["ours"]["inprocess"]
    inprocess["resource_validation"] = {
        "validations": 5000,
        "cpu_us_per_validation": 45.1,
        "per_core_per_second": 22173,
    }
    inprocess["cpu_ms"] = {"exchange": 3.456, "userinfo": 1.234, "introspection": 1.5}
    inprocess["signin"]["cpu_minus_password_hash_ms"] = 11.11
    assert stats.resource_lines(result) == [
        "  postgresql: 22173 validations/s per core (45.1 µs CPU each, 5000 validations)"
    ]
    inprocess["resource_validation"].update(rounds=5, median_per_core_per_second=20833)
    assert stats.resource_lines(result) == [
        "  postgresql: 22173 validations/s per core (45.1 µs CPU each, 5000 validations; fastest of"
        " 5 rounds, median 20833/s)"
    ]
    assert "3.5" in stats.inprocess_table(result) and "1.2" in stats.inprocess_table(result)
    assert "11.1" in stats.signin_table(result)
    inprocess["signin"]["requests_cpu_minus_password_hash_ms"] = 9.87
    assert "9.9" in stats.signin_table(result) and "its requests" in stats.signin_table(result)
    inprocess["resource_validation"].update(
        signature_only_cpu_us=30.0, signature_only_per_core_per_second=33333
    )
    assert stats.resource_lines(result)[-1] == (
        "      the signature check alone: 33333/s per core (30.0 µs); validation runs at 0.67× that ceiling"
    )


@pytest.mark.django_db
@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256"])
def test_the_validation_ceiling_checks_the_signature_and_nothing_else(alg):
    """The benchmark's floor for offline validation is the public-key operation on the token's
    signature: it passes for the token and fails for the same token with another signature."""
    from cryptography.exceptions import InvalidSignature

    from oidc_provider_ext import keys

    token = keys.sign({"sub": "1"}, typ="at+jwt", alg=alg)
    inprocess._signature_only(token)()  # verifies: no exception
    other = keys.sign({"sub": "2"}, typ="at+jwt", alg=alg)
    forged = token.rpartition(".")[0] + "." + other.rpartition(".")[2]
    with pytest.raises(InvalidSignature):
        inprocess._signature_only(forged)()


def test_the_sign_in_with_sessions_in_redis_is_a_row_of_its_own():
    result = _result()
    inprocess = result["databases"]["postgresql"]["ours"]["inprocess"]
    assert "sessions in Redis" not in stats.signin_table(result)
    inprocess["signin_redis_sessions"] = {"cpu_minus_password_hash_ms": 7.77, "queries": 13}
    [row] = [line for line in stats.signin_table(result).splitlines() if "sessions in Redis" in line]
    assert "7.8" in row and "13" in row


def _bench_client(user, app) -> flows.Client:
    """The client and user the benchmark signs in with, from the test's factories."""
    return flows.Client(
        client_id=app.client_id,
        client_secret=app.raw_secret,
        redirect_uri=REDIRECT_URI,
        username=user.username,
        password=USER_PASSWORD,
    )


@pytest.fixture
def redis_url(tmp_path):
    """A redis-server of the test's own (loopback, nothing on disk), as the cluster tests start."""
    import subprocess
    import time

    from .live import require
    from .scaleout.cluster import (
        HOST,
        free_port,
        redis_available,
        redis_server_available,
        redis_server_command,
    )

    problem = redis_server_available()
    require(problem is None, "redis-server", f"{problem}")
    port = free_port()
    process = subprocess.Popen(
        redis_server_command(port, tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"redis://{HOST}:{port}/0"
    try:
        deadline = time.monotonic() + 20
        while redis_available(url) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert redis_available(url) is None, "redis-server did not start"
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.django_db(transaction=True)  # statements as production runs them: no test savepoints
def test_a_sign_in_with_sessions_in_redis_spends_no_statement_on_them(user, confidential_app, redis_url):
    """What `make bench-cluster` reports beside the database sessions: the same sign-in, with each of
    its 5 session statements (the new session's INSERT at login, then a read and a write on each of
    the two requests after it) a Redis call; the benchmark's keys are gone afterwards."""
    import redis

    client = _bench_client(user, confidential_app)
    meter = inprocess.Meter()
    with meter.active():
        in_db = inprocess.signin(flows.OURS, client, meter, runs=1)
        in_redis = inprocess.signin_with_sessions_in_redis(flows.OURS, client, meter, redis_url, runs=1)
    assert in_db["queries"] - in_redis["queries"] == 5
    # The requests' CPU is part of the whole sign-in's: the browser's reading of pages is outside it.
    assert 0 < in_db["requests_cpu_minus_password_hash_ms"] <= in_db["cpu_minus_password_hash_ms"]
    # Each sign-in's numbers travel too, for the medians over alternated rounds (stats.pool_signin_rounds).
    assert in_db["runs_cpu_minus_password_hash_ms"] == [
        pytest.approx(in_db["cpu_minus_password_hash_ms"], abs=0.01)
    ]
    assert in_db["runs_requests_cpu_minus_password_hash_ms"] == [
        pytest.approx(in_db["requests_cpu_minus_password_hash_ms"], abs=0.01)
    ]
    assert in_redis["steps"]["login_page"]["queries"] == 0
    assert not list(redis.Redis.from_url(redis_url).scan_iter())


@pytest.mark.django_db(transaction=True)
def test_a_sign_in_process_answers_one_sign_in_per_line(user, confidential_app):
    """run.paired_signins' protocol (inprocess.serve_signins): "ready" once warm, then one JSON
    line per command, each a real sign-in (the browser starts with no cookies each time)."""
    import io

    from oidc_provider_ext.models import AuthorizationGrant

    class Commands(io.StringIO):
        def __iter__(self):
            # Before the first command: the warm-up's code and the untimed sign-in's, and "ready".
            assert AuthorizationGrant.objects.count() == 2 and answers.getvalue() == "ready\n"
            return super().__iter__()

    commands = Commands("sign in\nsign in\n")
    answers = io.StringIO()
    meter = inprocess.Meter()
    with meter.active():
        inprocess.serve_signins(
            flows.OURS, _bench_client(user, confidential_app), meter, commands, answers, warm=1
        )
    ready, *lines = answers.getvalue().splitlines()
    assert ready == "ready" and len(lines) == 2
    for line in lines:
        answer = json.loads(line)
        assert 0 < answer["requests_cpu_minus_password_hash_ms"] <= answer["cpu_minus_password_hash_ms"]
    assert AuthorizationGrant.objects.count() == 4  # and one per sign-in asked for


def test_paired_sign_ins_are_spread_over_fresh_warmed_processes(monkeypatch):
    """run.paired_signins starts a fresh process per project for each set, warmed first, and splits
    the pairs between the sets; the difference is taken over every pair of every set."""
    from types import SimpleNamespace

    started = []

    class FakeServer:
        def __init__(self, target, client, port, warm=0):
            self.name, self.calls = target.project.name, 0
            self.set = sum(1 for s in started if s.name == self.name)
            self.warm = warm
            started.append(self)

        def __call__(self):
            self.calls += 1
            # ours is 1 ms under stock in every set, whatever the set's own speed
            cpu = 20.0 + 5 * self.set - (1.0 if self.name == flows.OURS.name else 0.0)
            return {"cpu_minus_password_hash_ms": cpu, "requests_cpu_minus_password_hash_ms": cpu - 1}

        def close(self):
            pass

    monkeypatch.setattr(run, "SignInServer", FakeServer)
    monkeypatch.setattr(run, "wait_until_quiet", lambda: {})

    def bench(project):
        signin = {"runs_cpu_minus_password_hash_ms": [], "runs_requests_cpu_minus_password_hash_ms": []}
        return SimpleNamespace(
            target=SimpleNamespace(project=project, is_django=True),
            result={"inprocess": {"signin": signin}},
            name=project.name,
            client=None,
            server=SimpleNamespace(port=1),
        )

    ours, stock = bench(flows.OURS), bench(flows.STOCK)
    run.paired_signins([ours, stock], pairs=5, processes=2, warm=3, block=2)
    assert [(s.name, s.set, s.warm, s.calls) for s in started] == [
        (flows.OURS.name, 0, 3, 3),
        (flows.STOCK.name, 0, 3, 3),
        (flows.OURS.name, 1, 3, 2),
        (flows.STOCK.name, 1, 3, 2),
    ]
    paired = ours.result["inprocess"]["signin"]["paired"][flows.STOCK.name]
    assert paired["pairs"] == 5 and paired["processes"] == 2 and paired["warm"] == 3 and paired["block"] == 2
    assert paired["cpu_minus_password_hash_difference_ms"] == -1.0
    assert len(ours.result["inprocess"]["signin"]["runs_cpu_minus_password_hash_ms"]) == 5


def test_a_sign_in_process_that_fails_to_start_is_reported(tmp_path):
    target = run.Target(
        project=flows.OURS,
        database="sqlite",
        database_url=f"sqlite:///{tmp_path / 'none.sqlite3'}",
        settings_module="no_such_settings_module",
        wsgi="",
        seed_command=[],
        env={},
    )
    client = flows.Client("id", "secret", REDIRECT_URI, "user", "password")
    with pytest.raises(run.SignInServerError, match="(?s)did not start.*no_such_settings_module"):
        run.SignInServer(target, client, port=1)


def test_alternate_takes_turns_and_reverses_the_order_every_other_turn():
    order = []

    def player(name):
        def one():
            order.append(name)
            return f"{name}{order.count(name)}"

        return one

    answers = run.alternate([player("a"), player("b")], 4)
    assert order == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert answers == [["a1", "a2", "a3", "a4"], ["b1", "b2", "b3", "b4"]]
    # In turns of two, the last one shorter.
    order.clear()
    answers = run.alternate([player("a"), player("b")], 5, block=2)
    assert order == ["a", "a", "b", "b", "b", "b", "a", "a", "a", "b"]
    assert answers == [["a1", "a2", "a3", "a4", "a5"], ["b1", "b2", "b3", "b4", "b5"]]


def test_the_paired_difference_is_the_median_of_the_differences():
    # Medians of each side (12 v 11) would say +1; the pairs say -1 (the 30 ran on a slow second).
    assert stats.paired_difference([10.0, 12.0, 30.0], [11.0, 13.0, 11.0]) == -1.0
    assert stats.paired_difference([], []) is None
    result = _result()
    result["databases"]["postgresql"]["ours"]["inprocess"]["signin"]["paired"] = {
        "stock": {
            "pairs": 40,
            "cpu_minus_password_hash_difference_ms": -0.82,
            "requests_cpu_minus_password_hash_difference_ms": -1.17,
        }
    }
    assert stats.paired_lines(result) == [
        "postgresql: ours - stock, 40 pairs: -0.82 ms (-1.17 ms in its requests)"
    ]
    result["databases"]["postgresql"]["ours"]["inprocess"]["signin"]["paired"]["stock"].update(
        processes=4, block=5
    )
    assert stats.paired_lines(result) == [
        "postgresql: ours - stock, 40 pairs over 4 processes each, in turns of 5: "
        "-0.82 ms (-1.17 ms in its requests)"
    ]


def test_tables_show_every_run_and_the_ratio():
    result = _result()
    table = stats.results_table(result)
    assert "25.0×" in table
    assert table.count("postgresql") == len(stats.PHASES) * 2
    assert "7" in stats.inprocess_table(result)
    assert "250.0" in stats.signin_table(result) and "25.0" in stats.signin_table(result)
    assert "1.10×" in stats.prefill_table(result)
    assert any("django 3.0" in line for line in stats.profile_summary(result))


def test_modes_and_arguments():
    args = run.parse_args(["--quick", "--databases", "sqlite", "--prefill", "1000"])
    assert args.quick and args.databases == ["sqlite"] and args.prefill == 1000
    assert args.projects == ["ours", "stock", "node"]
    assert run.MODES["quick"]["codes"] < run.MODES["full"]["codes"]
    with pytest.raises(SystemExit):
        run.parse_args(["--databases", "oracle"])


def test_profile_rows_are_named_by_package():
    assert inprocess._package("~", "<built-in method _hashlib.pbkdf2_hmac>").startswith("hashlib")
    assert inprocess._package("/x/site-packages/oauthlib/common.py", "f") == "oauthlib"
    assert inprocess._package("/work/repo/oidc_provider_ext/validator.py", "f") == "oidc_provider_ext"


# --- the conversations ---------------------------------------------------------------------------

OURS_CONSENT = """<form method="post" action="/connect/authorize">
<input type="hidden" name="csrfmiddlewaretoken" value="tok&amp;en">
<input type="hidden" name="request_id" value="abc">
<button type="submit" name="decision" value="allow">Allow</button></form>"""
STOCK_CONSENT = """<form id="authorizationForm" method="post">
<input type="hidden" name="csrfmiddlewaretoken" value="t">
<input type="hidden" name="redirect_uri" value="http://127.0.0.1:8765/callback">
<input type="hidden" name="code_challenge" value="c"><input type="submit" name="allow" value="Authorize"/>
</form>"""


def test_find_form_reads_hidden_inputs_and_the_action():
    action, fields = flows.find_form(
        "<form action='/other'><input name='q'></form>" + OURS_CONSENT, "request_id"
    )
    assert action == "/connect/authorize"
    assert fields == {"csrfmiddlewaretoken": "tok&en", "request_id": "abc"}
    action, fields = flows.find_form(STOCK_CONSENT, "redirect_uri")
    assert action == ""  # DOT's form posts back to the authorize URL
    assert "allow" not in fields  # the submit button is added by the flow
    with pytest.raises(flows.FlowError, match="no form"):
        flows.find_form(OURS_CONSENT, "password")


def test_pkce_pair_is_s256_and_basic_auth_form_encodes():
    import base64
    import hashlib

    verifier, challenge = flows.pkce_pair()
    digest = hashlib.sha256(verifier.encode()).digest()
    assert challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    # RFC 6749 2.3.1: both parts are encoded before they are joined by ":".
    assert flows.basic_auth("a b", "p:w") == "Basic " + base64.b64encode(b"a%20b:p%3Aw").decode()


@pytest.mark.django_db
def test_the_benchmark_conversation_runs_against_the_example_idp(user, confidential_app):
    """authorize → login → consent → code, exchange, refresh, userinfo: what run.py drives over
    HTTP, here through Django's test client."""
    client = _bench_client(user, confidential_app)
    browser = flows.DjangoTransport()
    steps = []

    def observe(step, call):
        steps.append(step)
        return call()

    code, verifier = flows.authorize(browser, flows.OURS, client, observe)
    assert steps == ["authorize", "login_page", "login", "resume", "consent"]
    code2, _ = flows.authorize(browser, flows.OURS, client)  # signed in: offline_access asks again
    assert code2 != code

    rp = flows.DjangoTransport()
    assert flows.OURS.token_path == reverse("oidc_provider_ext:token")
    response = rp.request(
        "POST",
        flows.OURS.token_path,
        flows.exchange_body(client, code, verifier),
        flows.token_headers(client),
    )
    assert response.status == 200, response.text()
    tokens = json.loads(response.body)
    assert {"access_token", "refresh_token", "id_token"} <= set(tokens)
    response = rp.request(
        "POST",
        flows.OURS.token_path,
        flows.refresh_body(tokens["refresh_token"]),
        flows.token_headers(client),
    )
    assert response.status == 200, response.text()
    access_token = json.loads(response.body)["access_token"]
    response = rp.request("GET", flows.OURS.userinfo_path, None, {"Authorization": f"Bearer {access_token}"})
    assert response.status == 200
    assert json.loads(response.body)["sub"]


def test_code_lifetime_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("OIDC_CODE_EXPIRE_SECONDS", "600")
    settings = runpy.run_path(str(run.ROOT / "idp_project" / "settings.py"))
    assert settings["OIDC_PROVIDER_EXT"]["CODE_EXPIRE_SECONDS"] == 600
    monkeypatch.delenv("OIDC_CODE_EXPIRE_SECONDS")
    settings = runpy.run_path(str(run.ROOT / "idp_project" / "settings.py"))
    assert "CODE_EXPIRE_SECONDS" not in settings["OIDC_PROVIDER_EXT"]


class _RedirectingProvider:
    """node-oidc-provider as the benchmark meets it: 303s through its interaction and resume."""

    def __init__(self, hops: list[str]):
        self.hops = hops
        self.requested: list[str] = []

    def request(self, method, path, body=None, headers=None):
        self.requested.append(path)
        location = self.hops[len(self.requested) - 1]
        return flows.Response(303, {"location": location}, b"Redirecting")


NODE_CLIENT = flows.Client("bench-1", "s3cret", flows.REDIRECT_URI, "bench", "")


def test_node_codes_are_minted_by_following_its_interaction_redirects():
    provider = _RedirectingProvider(
        [
            "/interaction/u1",
            "http://127.0.0.1:9/auth/u1",  # absolute: followed on the same server
            "/interaction/u2",
            "/auth/u2",
            f"{flows.REDIRECT_URI}?code=abc&state=s&iss=http%3A%2F%2F127.0.0.1%3A9",
        ]
    )
    code, verifier = flows.authorize(provider, flows.NODE, NODE_CLIENT)
    assert code == "abc" and verifier
    first = flows.query_of(provider.requested[0])
    # OIDC Core 11: node-oidc-provider drops offline_access unless consent is prompted for.
    assert first["prompt"] == "consent" and first["scope"] == "openid offline_access"
    assert first["code_challenge_method"] == "S256"
    assert provider.requested[1:] == ["/interaction/u1", "/auth/u1", "/interaction/u2", "/auth/u2"]
    assert "prompt" not in flows.query_of(flows.authorize_path(flows.OURS, NODE_CLIENT, "c"))


def test_a_provider_redirecting_forever_is_a_flow_error():
    provider = _RedirectingProvider([f"/interaction/{n}" for n in range(50)])
    with pytest.raises(flows.FlowError, match="redirects"):
        flows.authorize(provider, flows.NODE, NODE_CLIENT)


def test_node_target_and_database_prefix(monkeypatch):
    node = next(t for t in run.targets("sqlite", {"ours": "", "stock": ""}, "key") if t.project is flows.NODE)
    assert not node.is_django
    seed = json.loads(node.env["NODE_OP_SEED"])
    assert flows.Client.from_seed(seed).client_id == node.env["NODE_OP_CLIENT_ID"]
    env = run.target_env(node, port=4321)
    assert env["NODE_OP_PORT"] == "4321" and env["NODE_ENV"] == "production"
    assert run.parse_args(["--db-prefix", "bench_perf_"]).db_prefix == "bench_perf_"
    for bad in ("perf_", "bench_x;drop", 'bench_"'):
        with pytest.raises(SystemExit):
            run.parse_args(["--db-prefix", bad])


def test_introspection_body():
    assert flows.introspection_body("t+1", "refresh_token") == b"token=t%2B1&token_type_hint=refresh_token"


def test_without_node_oidc_provider_installed_the_run_goes_on_without_it(monkeypatch, tmp_path):
    monkeypatch.setattr(run, "NODE_OP", tmp_path)  # no node_modules/oidc-provider there
    assert run.node_available() is False
    (tmp_path / "node_modules" / "oidc-provider").mkdir(parents=True)
    monkeypatch.setattr(run.shutil, "which", lambda name: "/usr/bin/node")
    assert run.node_available() is True


def test_rounds_of_a_phase_merge_into_one():
    first = stats.PhaseStats(
        [stats.Sample(0.01, 200), stats.Sample(0.03, 500, "boom")],
        2.0,
        client_cpu_seconds=0.5,
        server_cpu_seconds=1.0,
        server_exceptions={"ValueError: x": 1},
        machine_busy=0.5,
        other_cpu_cores=0.2,
    )
    second = stats.PhaseStats(
        [stats.Sample(0.02, 200)],
        1.0,
        client_cpu_seconds=0.25,
        server_cpu_seconds=0.5,
        server_exceptions={"ValueError: x": 2, "KeyError: y": 1},
        machine_busy=0.8,
        other_cpu_cores=0.5,
    )
    merged = stats.merge_phases([first, second])
    assert [s.latency for s in merged.samples] == [0.01, 0.03, 0.02]
    assert (
        merged.wall_seconds == 3.0 and merged.client_cpu_seconds == 0.75 and merged.server_cpu_seconds == 1.5
    )
    assert merged.server_exceptions == {"ValueError: x": 3, "KeyError: y": 1}
    assert merged.machine_busy == pytest.approx(0.6) and merged.other_cpu_cores == pytest.approx(0.3)
    summary = merged.summary()
    assert summary["ok"] == 2 and summary["errors"] == 1 and summary["rps"] == pytest.approx(0.67)
    unknown = stats.merge_phases([first, stats.PhaseStats([], 1.0)])
    assert unknown.server_cpu_seconds is None and unknown.machine_busy is None


def test_a_phase_in_rounds_sends_every_job_once_in_order(monkeypatch):
    sent: list[list[int]] = []

    def fake_run_phase(server, jobs, *, clients, deadline_seconds, keep_bodies=False):
        assert deadline_seconds == pytest.approx(20 / 3)
        tags = [job.tag for job in jobs]
        done = tags[:-1] if len(sent) == 1 else tags  # the second round meets its deadline early
        sent.append(done)
        phase = stats.PhaseStats([stats.Sample(0.01, 200) for _ in done], 1.0)
        return phase, [(job, f"answer {job.tag}") for job in jobs if job.tag in done]

    monkeypatch.setattr(run, "run_phase", fake_run_phase)
    bench = run.Bench.__new__(run.Bench)
    bench.server, bench._rounds, bench.rounds = None, [], 3
    jobs = [run.Job("GET", "/", None, {}, n) for n in range(10)]
    results = []
    for index in range(3):
        bench.round = index
        results.append(bench.timed(jobs, {"phase_seconds": 20}, SimpleNamespace(clients=8)))
    assert results[0] is None and results[1] is None
    phase, answered, attempted = results[2]
    assert sent == [[0, 1, 2, 3], [4, 5, 6], [8, 9]]  # contiguous slices; job 7 never went out
    assert [job.tag for job in attempted] == [0, 1, 2, 3, 4, 5, 6, 8, 9]
    assert [answer for _, answer in answered] == [f"answer {n}" for n in (0, 1, 2, 3, 4, 5, 6, 8, 9)]
    assert len(phase.samples) == 9 and phase.wall_seconds == 3.0
    assert bench._rounds == []  # ready for the next phase
    assert run.MODES["full"]["rounds"] == 3 and run.MODES["quick"]["rounds"] == 1


def test_sign_in_rounds_pool_into_one_median():
    signin = {
        "cpu_minus_password_hash_ms": 20.0,
        "requests_cpu_minus_password_hash_ms": 18.0,
        "runs_cpu_minus_password_hash_ms": [19.0, 20.0, 30.0],
        "runs_requests_cpu_minus_password_hash_ms": [17.0, 18.0, 28.0],
        "queries": 15,
    }
    stats.pool_signin_rounds(
        signin,
        {
            "runs_cpu_minus_password_hash_ms": [10.0, 11.0, 12.0],
            "runs_requests_cpu_minus_password_hash_ms": [9.0, 10.0, 11.0],
        },
    )
    assert signin["runs_cpu_minus_password_hash_ms"] == [19.0, 20.0, 30.0, 10.0, 11.0, 12.0]
    assert signin["cpu_minus_password_hash_ms"] == 15.5  # the median of all six
    assert signin["requests_cpu_minus_password_hash_ms"] == 14.0
    assert signin["rounds"] == 2 and signin["queries"] == 15
    stats.pool_signin_rounds(signin, None)  # a round that failed adds nothing
    stats.pool_signin_rounds(signin, {})
    assert signin["rounds"] == 2 and signin["cpu_minus_password_hash_ms"] == 15.5
