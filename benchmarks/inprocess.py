"""In-process measurements of one project, run by run.py as
``python -m benchmarks.inprocess`` with the project's DJANGO_SETTINGS_MODULE and DATABASE_URL.

Reads a JSON job on stdin (the client, codes minted over HTTP by run.py, how many exchanges to time
and profile) and writes a JSON report on stdout:

- SQL queries of one code exchange, one refresh and one userinfo call, with their SQL text.
  Counted on a real connection (no test transaction around them), so they are what production
  runs; the BEGIN/COMMIT of a transaction is not a query Django sees and is not counted.
- Where the time of one exchange goes: client-secret hashing, SQL (time inside the driver, so
  COMMIT is in "rest"), JWS signing, and the rest (Python: Django, DOT, oauthlib, this app);
  medians over N exchanges, and the parts of the fastest one.
- The same for userinfo calls (no hashing, no signing: SQL and Python only).
- A cProfile (CPU time) of N exchanges and of userinfo calls: own time per package and the top
  functions.
- The cost of checking the user's password with the configured hasher, and full sign-ins through
  Django's test client with the time, queries and hashing of each step, and their CPU time: of
  the whole sign-in, and of its requests alone (without the test browser's parsing of the pages).
- CPU time per request (``time.process_time``, which other processes on a shared machine do not
  inflate the way they do wall time) of exchanges, userinfo and introspection calls.
- With ``"signin_serve": true`` in the job, only sign-ins: "ready" once warm, then one sign-in per
  line read from stdin, its CPU minus the password hash a JSON line on stdout (run.py takes them
  in turns between the projects: ``paired_signins``).
- Ours only: offline access-token validation at a resource server
  (``oidc_provider_ext.resource.validate_access_token``, key cache warm, revocation check off as
  for a remote API): validations per second per core, in the fastest of five rounds and their median,
  beside the machine's ceiling: the signature's public-key operation alone, in rounds alternated
  with the validations'.
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import time
from contextlib import contextmanager

import django

from benchmarks import flows, machine

SQL_TEXT_CHARS = 160
USERINFO_CALLS = 30
CPU_CALLS = 100
RESOURCE_VALIDATIONS = 5000
RESOURCE_ROUNDS = 5
SIGNIN_RUNS = 15  # medians of 5 moved by ~1 ms between runs: the targets compare them to stock DOT
PASSWORD_CHECKS = 5


class Meter:
    """Counts and times SQL, password/secret hashing and JWS signing while active."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.queries: list[tuple[str, float]] = []
        self.hash_seconds = 0.0
        self.hash_cpu_seconds = 0.0  # the same, in this process's CPU time
        self.sign_seconds = 0.0
        self.sign_cpu_seconds = 0.0

    @property
    def sql_seconds(self) -> float:
        return sum(seconds for _sql, seconds in self.queries)

    def _sql(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.queries.append((" ".join(str(sql).split()), time.perf_counter() - started))

    @contextmanager
    def active(self):
        from django.contrib.auth.hashers import get_hashers
        from django.db import connection
        from jwcrypto import jws

        patched = []

        def timed(owner, name, counter):
            original = owner.__dict__[name]

            def wrapper(*args, **kwargs):
                started, cpu = time.perf_counter(), time.process_time()
                try:
                    return original(*args, **kwargs)
                finally:
                    setattr(self, counter, getattr(self, counter) + time.perf_counter() - started)
                    cpu_counter = counter.replace("_seconds", "_cpu_seconds")
                    setattr(self, cpu_counter, getattr(self, cpu_counter) + time.process_time() - cpu)

            setattr(owner, name, wrapper)
            patched.append((owner, name, original))

        # verify() is what check_password() calls for both user passwords and client secrets.
        for hasher_class in {type(h) for h in get_hashers()}:
            owner = next(c for c in hasher_class.__mro__ if "verify" in c.__dict__)
            if (owner, "verify") not in {(o, n) for o, n, _ in patched}:
                timed(owner, "verify", "hash_seconds")
        timed(jws.JWS, "add_signature", "sign_seconds")  # stock DOT (and jwcrypto anywhere)
        try:
            from oidc_provider_ext.internal import jws as jose  # ours signs without jwcrypto
        except ImportError:
            pass
        else:
            timed(jose, "sign", "sign_seconds")
        try:
            with connection.execute_wrapper(self._sql):
                yield self
        finally:
            for owner, name, original in reversed(patched):
                setattr(owner, name, original)


def _exchange(rp, project, client, code, verifier):
    return rp.request(
        "POST", project.token_path, flows.exchange_body(client, code, verifier), flows.token_headers(client)
    )


def _expect_ok(response, what: str) -> dict:
    if response.status != 200:
        raise SystemExit(f"{what} failed in-process: {response.status} {response.text()}")
    return json.loads(response.body)


def _query_report(meter: Meter) -> dict:
    return {
        "queries": len(meter.queries),
        "sql_ms": round(meter.sql_seconds * 1000, 2),
        "sql": [f"{seconds * 1000:6.2f} ms  {sql[:SQL_TEXT_CHARS]}" for sql, seconds in meter.queries],
    }


def warm_transport(project) -> flows.DjangoTransport:
    """A test client whose first request (which builds the middleware chain, and WhiteNoise's
    file index with it) is behind it, as in a long-running worker."""
    rp = flows.DjangoTransport()
    rp.request("GET", project.ready_path)
    return rp


def count_queries(rp, project, client, codes, meter) -> dict:
    code, verifier = codes[0]
    _expect_ok(_exchange(rp, project, client, code, verifier), "warm-up exchange")
    report = {}
    code, verifier = codes[1]
    meter.reset()
    tokens = _expect_ok(_exchange(rp, project, client, code, verifier), "exchange")
    report["exchange"] = _query_report(meter)
    meter.reset()
    refreshed = _expect_ok(
        rp.request(
            "POST",
            project.token_path,
            flows.refresh_body(tokens["refresh_token"]),
            flows.token_headers(client),
        ),
        "refresh",
    )
    report["refresh"] = _query_report(meter)
    meter.reset()
    _expect_ok(
        rp.request(
            "GET", project.userinfo_path, None, {"Authorization": f"Bearer {refreshed['access_token']}"}
        ),
        "userinfo",
    )
    report["userinfo"] = _query_report(meter)
    meter.reset()
    _expect_ok(_introspect(rp, project, client, refreshed["access_token"]), "introspection")
    report["introspection"] = _query_report(meter)
    return report, refreshed["access_token"]


def _introspect(rp, project, client, token):
    return rp.request(
        "POST",
        project.introspection_path,
        flows.introspection_body(token, "access_token"),
        flows.token_headers(client),
    )


def cpu_per_request(calls, what: str) -> float | None:
    """Median-free CPU time per request over ``calls``: ``process_time`` counts this process only."""
    if not calls:
        return None
    started = time.process_time()
    for call in calls:
        _expect_ok(call(), what)
    return round((time.process_time() - started) / len(calls) * 1000, 3)


def resource_validation(client, access_token: str, n: int = RESOURCE_VALIDATIONS) -> dict:
    """What an API in the provider's project pays per request to check an access token offline."""
    from django.conf import settings
    from django.test import override_settings

    from oidc_provider_ext.resource import validate_access_token

    overrides = dict(
        getattr(settings, "OIDC_PROVIDER_EXT", {}),
        RESOURCE_SERVER_AUDIENCE=client.client_id,  # our access tokens name the client in aud
        RESOURCE_SERVER_CHECK_REVOCATION=False,  # as a remote API (JWKS URL) validates
    )
    per_round = n // RESOURCE_ROUNDS
    seconds: list[float] = []  # CPU per validation, one entry per round
    floor: list[float] = []  # CPU per signature check alone, in rounds alternated with those
    with override_settings(OIDC_PROVIDER_EXT=overrides):
        validate_access_token(access_token)  # warm: the key snapshot and its cryptography key
        check_signature = _signature_only(access_token)
        others = machine.OtherCores()
        for _ in range(RESOURCE_ROUNDS):
            started = time.process_time()
            for _ in range(per_round):
                validate_access_token(access_token)
            seconds.append((time.process_time() - started) / per_round)
            started = time.process_time()
            for _ in range(per_round):
                check_signature()
            floor.append((time.process_time() - started) / per_round)
        other_cores = others.read()
    # The fastest round is what a core can do (the one the machine's other work disturbed least,
    # as for the exchanges); the median is reported beside it.
    best, median = min(seconds), statistics.median(seconds)
    return {
        # The machine's ceiling: the signature check alone (the public-key operation, nothing
        # else), measured in the same rounds. What validation adds to it is the validator's own.
        "signature_only_cpu_us": round(min(floor) * 1e6, 1),
        "signature_only_per_core_per_second": round(1 / min(floor)) if min(floor) else None,
        "validations": per_round * RESOURCE_ROUNDS,
        "rounds": RESOURCE_ROUNDS,
        "cpu_us_per_validation": round(best * 1e6, 1),
        "per_core_per_second": round(1 / best) if best else None,
        "median_cpu_us_per_validation": round(median * 1e6, 1),
        "median_per_core_per_second": round(1 / median) if median else None,
        # What the rest of the machine used meanwhile (the database's background work, others'):
        # on two cores it slows these CPU times too.
        "other_cores": other_cores,
    }


def _signature_only(token: str):
    """A call doing only the public-key operation that verifies ``token``'s signature (the
    ``cryptography`` key's ``verify``, arguments prepared beforehand): no validator goes under it."""
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from oidc_provider_ext import keys
    from oidc_provider_ext.internal import jws

    header_segment, payload_segment, signature_segment = token.split(".")
    header = json.loads(jws.b64url_decode(header_segment))
    public = jws.op_key(keys.verification_key(header["kid"]), "verify")
    signature = jws.b64url_decode(signature_segment)
    data = f"{header_segment}.{payload_segment}".encode("ascii")
    arguments = jws._VERIFY_ARGS[header["alg"]]  # the padding and hash, or ECDSA, as jws.verify passes
    if jws.ALGORITHMS[header["alg"]].kty == "EC":  # JWS's R || S, as DER for cryptography
        half = len(signature) // 2
        signature = encode_dss_signature(
            int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
        )
    return lambda: public.verify(signature, data, *arguments)


def _median_ms(values: list[float]) -> float | None:
    return round(statistics.median(values) * 1000, 2) if values else None


def breakdown(calls, meter, what: str) -> dict:
    """Medians over ``calls`` (each sends one request) of where a request spends its time."""
    rows = {"total": [], "client_secret_hashing": [], "sql": [], "jws_signing": [], "rest": [], "queries": []}
    for call in calls:
        meter.reset()
        started = time.perf_counter()
        _expect_ok(call(), what)
        total = time.perf_counter() - started
        rows["total"].append(total)
        rows["client_secret_hashing"].append(meter.hash_seconds)
        rows["sql"].append(meter.sql_seconds)
        rows["jws_signing"].append(meter.sign_seconds)
        rows["rest"].append(total - meter.hash_seconds - meter.sql_seconds - meter.sign_seconds)
        rows["queries"].append(len(meter.queries))
    report = {f"{key}_ms": _median_ms(values) for key, values in rows.items() if key != "queries"}
    report["queries"] = statistics.median(rows["queries"]) if rows["queries"] else None
    report["requests"] = len(calls)
    if calls:
        # The fastest request is the one other processes on the machine disturbed least; its
        # parts add up, unlike per-part minimums.
        fastest = min(range(len(calls)), key=rows["total"].__getitem__)
        report["fastest"] = {
            f"{key}_ms": round(values[fastest] * 1000, 2) for key, values in rows.items() if key != "queries"
        }
        report["min_minus_hashing_ms"] = round(
            min(t - h for t, h in zip(rows["total"], rows["client_secret_hashing"], strict=True)) * 1000, 2
        )
    return report


def _package(filename: str, function: str) -> str:
    if filename == "~":  # C functions: name them by their module
        for marker, name in (
            ("_hashlib", "hashlib (C: PBKDF2/SHA)"),
            ("cryptography", "cryptography (C: RSA)"),
            ("psycopg", "psycopg"),
            ("sqlite3", "sqlite3"),
            ("socket", "socket"),
        ):
            if marker in function:
                return name
        return "builtins"
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    for local in ("oidc_provider_ext", "benchmarks", "idp_project"):
        if f"/{local}/" in filename:
            return local
    return "stdlib"


def _short(key) -> str:
    filename, line, function = key
    if filename == "~":
        return function
    if "site-packages/" in filename:
        filename = filename.split("site-packages/", 1)[1]
    else:
        filename = os.path.relpath(filename)
    return f"{filename}:{line}({function})"


def profile(calls, what: str, top: int = 25) -> dict:
    """cProfile of ``calls`` (each sends one request): own time per package, top functions."""
    # CPU time, not wall time: on a shared machine, wall time charges other processes' turns to
    # whichever function was running. Waiting for the database therefore shows as little.
    profiler = cProfile.Profile(time.process_time)
    for call in calls:
        profiler.enable()
        response = call()
        profiler.disable()
        _expect_ok(response, what)
    stats = pstats.Stats(profiler, stream=io.StringIO())
    n = len(calls)
    total = sum(tt for (_cc, _nc, tt, _ct, _callers) in stats.stats.values())
    by_package: dict[str, float] = {}
    for (filename, _line, function), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():
        package = _package(filename, function)
        by_package[package] = by_package.get(package, 0.0) + tt

    def rows(index: int):
        ordered = sorted(stats.stats.items(), key=lambda item: item[1][index], reverse=True)[:top]
        return [
            {
                "function": _short(key),
                "calls_per_request": round(value[1] / n, 1),
                "tottime_ms": round(value[2] / n * 1000, 3),
                "cumtime_ms": round(value[3] / n * 1000, 3),
            }
            for key, value in ordered
        ]

    return {
        "requests": n,
        "profiled_ms_per_request": round(total / n * 1000, 2),
        "tottime_ms_by_package": {
            k: round(v / n * 1000, 2) for k, v in sorted(by_package.items(), key=lambda kv: -kv[1])
        },
        "top_tottime": rows(2),
        "top_cumtime": rows(3),
    }


def password_cost(client) -> dict:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import check_password, identify_hasher
    from oauth2_provider.models import get_application_model

    user = get_user_model().objects.get(username=client.username)
    hasher = identify_hasher(user.password)
    timings = []
    for _ in range(PASSWORD_CHECKS):
        started = time.perf_counter()
        assert check_password(client.password, user.password)
        timings.append(time.perf_counter() - started)
    secret = get_application_model().objects.get(client_id=client.client_id).client_secret
    try:
        secret_hasher = identify_hasher(secret).algorithm
    except ValueError:
        secret_hasher = "plain (not hashed)"
    return {
        "user_password_hasher": hasher.algorithm,
        "user_password_iterations": hasher.decode(user.password).get("iterations"),
        # The minimum is the cost of the hash itself; anything above it is the machine's other work.
        "user_password_check_ms": round(min(timings) * 1000, 2),
        "user_password_check_median_ms": _median_ms(timings),
        "client_secret_hasher": secret_hasher,
    }


class SignIns:
    """Full sign-ins through the test client, a fresh browser each, one per :meth:`one`: per step
    the time, queries, hashing and SQL, and per sign-in the CPU with and without the password hash
    (both measured in the same requests, so contention on the machine cannot make them disagree)."""

    def __init__(self, project, client, meter):
        self.project, self.client, self.meter = project, client, meter
        self.browser = warm_transport(project)
        flows.authorize(self.browser, project, client)  # warm templates and caches

    def one(self) -> dict:
        meter = self.meter
        steps: dict[str, tuple[float, int, float, float]] = {}
        sums = {"total": 0.0, "hashing": 0.0, "hashing_cpu": 0.0, "requests_cpu": 0.0}

        def observe(step, call):
            meter.reset()
            started, cpu_started = time.perf_counter(), time.process_time()
            response = call()
            sums["requests_cpu"] += time.process_time() - cpu_started
            elapsed = time.perf_counter() - started
            steps[step] = (elapsed, len(meter.queries), meter.hash_seconds, meter.sql_seconds)
            sums["total"] += elapsed
            sums["hashing"] += meter.hash_seconds
            sums["hashing_cpu"] += meter.hash_cpu_seconds
            return response

        self.browser.forget_cookies()
        started = time.process_time()
        flows.authorize(self.browser, self.project, self.client, observe)
        cpu = time.process_time() - started
        return {
            "cpu": cpu,
            "cpu_minus_hash": cpu - sums["hashing_cpu"],
            "requests_cpu_minus_hash": sums["requests_cpu"] - sums["hashing_cpu"],
            "total": sums["total"],
            "hashing": sums["hashing"],
            "steps": steps,
        }


def signin(project, client, meter, runs: int = SIGNIN_RUNS) -> dict:
    """``runs`` sign-ins (:class:`SignIns`): their medians."""
    sign_ins = SignIns(project, client, meter)
    done = [sign_ins.one() for _ in range(runs)]
    cpu_minus_hash = [d["cpu_minus_hash"] for d in done]
    requests_cpu_minus_hash = [d["requests_cpu_minus_hash"] for d in done]
    steps = {step: [d["steps"][step] for d in done] for step in done[0]["steps"]} if done else {}
    return {
        # CPU of the whole sign-in minus the password hash (CPU-bound, timed inside the request):
        # what the "everything except the password hash" compares.
        "cpu_ms": _median_ms([d["cpu"] for d in done]),
        "cpu_minus_password_hash_ms": _median_ms(cpu_minus_hash),
        # The same inside the five requests only: the provider's CPU, not the test browser's HTML
        # parsing of its pages (which charges a provider for the size of its pages).
        "requests_cpu_minus_password_hash_ms": _median_ms(requests_cpu_minus_hash),
        # Each sign-in's, for the medians over rounds alternated with the other project's (run.py).
        "runs_cpu_minus_password_hash_ms": [round(c * 1000, 3) for c in cpu_minus_hash],
        "runs_requests_cpu_minus_password_hash_ms": [round(c * 1000, 3) for c in requests_cpu_minus_hash],
        "sign_ins": runs,
        "total_ms": _median_ms([d["total"] for d in done]),
        "password_hash_ms": _median_ms([d["hashing"] for d in done]),
        "total_minus_password_hash_ms": _median_ms([d["total"] - d["hashing"] for d in done]),
        "queries": sum(statistics.median(row[1] for row in rows) for rows in steps.values()),
        "steps": {
            step: {
                "ms": _median_ms([row[0] for row in rows]),
                "queries": statistics.median(row[1] for row in rows),
                "hash_ms": _median_ms([row[2] for row in rows]),
                "sql_ms": _median_ms([row[3] for row in rows]),
            }
            for step, rows in steps.items()
        },
    }


def serve_signins(project, client, meter, commands, answers, warm: int = 0) -> None:
    """One sign-in per line read from ``commands``, its CPU minus the password hash (whole, and its
    requests alone, ms) a JSON line on ``answers``: run.py takes them in turns between the
    projects (``ready`` is written first, once warm: after ``warm`` sign-ins untimed, so
    what is measured is a worker's steady state, not its first requests' caches, compiled templates
    and psycopg's statements, which it prepares at their sixth use)."""
    sign_ins = SignIns(project, client, meter)
    for _ in range(warm):
        sign_ins.one()
    answers.write("ready\n")
    answers.flush()
    for _line in commands:
        done = sign_ins.one()
        answer = {
            "cpu_minus_password_hash_ms": round(done["cpu_minus_hash"] * 1000, 3),
            "requests_cpu_minus_password_hash_ms": round(done["requests_cpu_minus_hash"] * 1000, 3),
        }
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


def signin_with_sessions_in_redis(project, client, meter, redis_url: str, runs: int = SIGNIN_RUNS) -> dict:
    """:func:`signin` again with Redis as the cache and the session store
    (``oidc_provider_ext.sessions.cache``), as a site with several app servers may run: each
    session read and write is a Redis call instead of a statement. The keys get a prefix of their
    own and are removed afterwards."""
    import secrets

    import redis
    from django.test.utils import override_settings

    prefix = f"bench-signin-{secrets.token_hex(4)}"
    caches = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": prefix,
        }
    }
    try:
        with override_settings(CACHES=caches, SESSION_ENGINE="oidc_provider_ext.sessions.cache"):
            return signin(project, client, meter, runs)
    finally:
        connection = redis.Redis.from_url(redis_url)
        stale = list(connection.scan_iter(match=f"{prefix}:*", count=1000))
        if stale:
            connection.delete(*stale)


def main() -> None:
    job = json.loads(sys.stdin.readline())  # one line: in serve mode the commands follow it
    django.setup()
    project = flows.PROJECTS[job["project"]]
    client = flows.Client(**job["client"])
    meter = Meter()
    if job.get("signin_serve"):
        with meter.active():
            serve_signins(project, client, meter, sys.stdin, sys.stdout, job.get("signin_warm", 0))
        return
    codes = [tuple(pair) for pair in job["codes"]]
    timed = job["timed"]
    report = {"settings_module": os.environ.get("DJANGO_SETTINGS_MODULE")}
    rp = warm_transport(project)

    def exchanges(pairs):
        return [lambda c=c, v=v: _exchange(rp, project, client, c, v) for c, v in pairs]

    def userinfo_calls(n: int):
        headers = {"Authorization": f"Bearer {access_token}"}
        return [lambda: rp.request("GET", project.userinfo_path, None, headers)] * n

    def introspection_calls(n: int):
        return [lambda: _introspect(rp, project, client, access_token)] * n

    with meter.active():
        report["queries"], access_token = count_queries(rp, project, client, codes[:2], meter)
        report["exchange_breakdown"] = breakdown(exchanges(codes[2 : 2 + timed]), meter, "exchange")
        report["userinfo_breakdown"] = breakdown(userinfo_calls(USERINFO_CALLS), meter, "userinfo")
        report["signin"] = signin(project, client, meter)
        if project is flows.OURS and job.get("redis_url"):
            report["signin_redis_sessions"] = signin_with_sessions_in_redis(
                project, client, meter, job["redis_url"]
            )
    report["password"] = password_cost(client)
    profiled, cpu_codes = codes[2 + timed : 2 + 2 * timed], codes[2 + 2 * timed :]
    report["cpu_ms"] = {
        "exchange": cpu_per_request(exchanges(cpu_codes), "exchange"),
        "userinfo": cpu_per_request(userinfo_calls(CPU_CALLS), "userinfo"),
        "introspection": cpu_per_request(introspection_calls(CPU_CALLS), "introspection"),
    }
    if project is flows.OURS:
        report["resource_validation"] = resource_validation(client, access_token)
    if job.get("profile"):
        report["profile"] = profile(exchanges(profiled), "profiled exchange")
        report["userinfo_profile"] = profile(userinfo_calls(USERINFO_CALLS), "profiled userinfo")
        report["introspection_profile"] = profile(
            introspection_calls(USERINFO_CALLS), "profiled introspection"
        )
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
