#!/usr/bin/env python
"""Benchmark idp_project against stock django-oauth-toolkit and node-oidc-provider over HTTP, on
SQLite and PostgreSQL.

    python benchmarks/run.py            # full run (a few minutes on 2 cores)
    python benchmarks/run.py --quick    # smoke run
    python benchmarks/run.py --prefill 1000000 --projects ours

For each database and project: a fresh database, migrate, seed a user and a confidential client,
start ``gunicorn -w 2`` on a free 127.0.0.1 port (node-oidc-provider: ``node
benchmarks/node_op/provider.mjs``, in memory, beside each database's pair), mint authorization
codes over HTTP (untimed), then time, with N concurrent clients: code exchanges, refreshes,
userinfo calls, introspection and full sign-ins.
An in-process pass counts SQL queries and breaks one exchange down. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import itertools
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    # Run as a script: import the benchmarks package from the repository root, and do not let
    # this directory shadow anything on sys.path.
    sys.path[0] = str(ROOT)

from benchmarks import cluster, flows, machine, prefill, stats  # noqa: E402

HOST = "127.0.0.1"
NODE_OP = ROOT / "benchmarks" / "node_op"
DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432"
CODE_LIFETIME_SECONDS = 600  # the maximum RFC 6749 4.1.2 recommends; codes wait for the timed phase
WARMUP_EXCHANGES = 4
INPROCESS_CODES = 2  # warm-up + the exchange whose queries are counted

MODES = {
    # codes: pre-minted codes (exchange phase, then refresh with their refresh tokens);
    # phase_seconds: a phase also stops at this deadline (stock DOT needs ~0.25 s per exchange);
    # userinfo: userinfo calls (access tokens reused round-robin);
    # signins: concurrent full sign-ins (deadline phase_seconds); breakdown: sequential ones;
    # timed: in-process exchanges timed and profiled;
    # rounds: each HTTP phase but the sign-in runs as this many slices, alternated between the
    # projects (ours, stock, node, ours, ...), so a few seconds of a busier machine fall on all of them.
    # signin_pairs: in-process sign-ins of each Django project taken in turns
    # (paired_signins), after the first in-process round of each, spread over signin_processes
    # fresh processes per project (one process is faster or slower than the next by more than the
    # gap measured), each warmed by signin_warm sign-ins first, in turns of signin_block sign-ins
    # (a process that resumes after another's sign-in finds the core's caches cold; a worker
    # serving requests one after another mostly does not).
    "quick": {
        "codes": 100,
        "phase_seconds": 8,
        "userinfo": 400,
        "introspection": 400,
        "signins": 24,
        "breakdown": 3,
        "timed": 5,
        "rounds": 1,
        "signin_pairs": 5,
        "signin_processes": 1,
        "signin_warm": 2,
        "signin_block": 5,
    },
    "full": {
        "codes": 400,
        "phase_seconds": 20,
        "userinfo": 2000,
        "introspection": 2000,
        "signins": 64,
        "breakdown": 5,
        "timed": 10,
        "rounds": 3,
        "signin_pairs": 40,
        "signin_processes": 4,
        "signin_warm": 10,
        "signin_block": 5,
    },
}


@dataclass(frozen=True)
class Target:
    """One project on one database."""

    project: flows.Project
    database: str  # "sqlite" | "postgresql"
    database_url: str
    settings_module: str
    wsgi: str
    seed_command: list[str]
    env: dict[str, str]

    @property
    def is_django(self) -> bool:
        return self.project.name in flows.DJANGO_PROJECTS


def log(message: str = "") -> None:
    print(message, flush=True)


# --- environment -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def rsa_private_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def postgres_admin(base_url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{base_url}/postgres", autocommit=True) as conn:
        conn.execute(sql)


def reset_postgres_database(base_url: str, name: str) -> str:
    if not name.startswith("bench_"):
        raise ValueError(f"refusing to drop {name!r}: benchmark databases start with bench_")
    postgres_admin(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    postgres_admin(base_url, f'CREATE DATABASE "{name}"')
    return f"{base_url}/{name}"


def drop_postgres_database(base_url: str, name: str) -> None:
    if name.startswith("bench_"):
        postgres_admin(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_available(base_url: str) -> str | None:
    """The server version, or None when it cannot be reached."""
    try:
        import psycopg

        with psycopg.connect(f"{base_url}/postgres", connect_timeout=3) as conn:
            return conn.execute("SHOW server_version").fetchone()[0]
    except Exception as exc:  # noqa: BLE001 - any failure means "skip PostgreSQL"
        log(f"PostgreSQL at {base_url} is not available ({exc}); skipping it.")
        return None


def machine_info(postgres_version: str | None) -> dict:
    import sqlite3

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = bool(
        subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    )
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "django": version("django"),
        "django_oauth_toolkit": version("django-oauth-toolkit"),
        "oauthlib": version("oauthlib"),
        "jwcrypto": version("jwcrypto"),
        "gunicorn": version("gunicorn"),
        "psycopg": version("psycopg"),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres_version,
        "git_commit": commit + ("+dirty" if dirty else ""),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def node_seed() -> dict:
    """The client and user node-oidc-provider is started with (same shape as ``oidc_demo --json``):
    its secrets are compared in memory, as node-oidc-provider stores them."""
    import secrets

    return {
        "confidential": {
            "client_id": f"bench-{secrets.token_hex(4)}",
            "client_secret": secrets.token_urlsafe(32),
            "redirect_uri": flows.REDIRECT_URI,
        },
        "user": {"username": "bench", "password": ""},  # its interaction signs in without a page
    }


def node_available() -> bool:
    """node and the pinned oidc-provider (``make bench-node``: ``npm ci`` in benchmarks/node_op)."""
    if shutil.which("node") is None or not (NODE_OP / "node_modules" / "oidc-provider").is_dir():
        log("node-oidc-provider is not installed (`make bench-node`); running without it.")
        return False
    return True


def targets(database: str, database_urls: dict[str, str], stock_key: str) -> list[Target]:
    redirect = ["--redirect-uri", flows.REDIRECT_URI]
    seed = node_seed()
    node = Target(
        project=flows.NODE,
        database=database,
        database_url="",
        settings_module="",
        wsgi="",
        seed_command=[],
        env={
            "NODE_OP_CLIENT_ID": seed["confidential"]["client_id"],
            "NODE_OP_CLIENT_SECRET": seed["confidential"]["client_secret"],
            "NODE_OP_REDIRECT_URI": seed["confidential"]["redirect_uri"],
            "NODE_OP_ACCOUNT": seed["user"]["username"],
            "NODE_OP_SEED": json.dumps(seed),
        },
    )
    return [
        Target(
            project=flows.OURS,
            database=database,
            database_url=database_urls["ours"],
            settings_module="idp_project.settings",
            wsgi="idp_project.wsgi:application",
            seed_command=["oidc_demo", "--json", *redirect],
            env={"OIDC_CODE_EXPIRE_SECONDS": str(CODE_LIFETIME_SECONDS)},
        ),
        Target(
            project=flows.STOCK,
            database=database,
            database_url=database_urls["stock"],
            settings_module="benchmarks.stock_dot.settings",
            wsgi="benchmarks.stock_dot.wsgi:application",
            seed_command=["stock_dot_seed", *redirect],
            env={
                "STOCK_DOT_CODE_EXPIRE_SECONDS": str(CODE_LIFETIME_SECONDS),
                "STOCK_DOT_OIDC_RSA_PRIVATE_KEY": stock_key,
            },
        ),
        node,
    ]


def target_env(target: Target, port: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("DJANGO_DEBUG", "REDIS_URL"):
        env.pop(name, None)  # the benchmark measures the defaults
    env.update(target.env)
    if not target.is_django:
        if port is not None:
            env["NODE_OP_PORT"] = str(port)
        env["NODE_ENV"] = "production"  # no pretty-printed JSON, no development warnings in the loop
        return env
    env.update(DATABASE_URL=target.database_url, DJANGO_SETTINGS_MODULE=target.settings_module)
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONWARNINGS"] = "ignore"  # WhiteNoise warns about a missing STATIC_ROOT on each boot
    if port is not None and target.project is flows.OURS:
        env["OIDC_ISSUER"] = f"http://{HOST}:{port}"
    return env


def django_admin(target: Target, *args: str, port: int | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=ROOT,
        env=target_env(target, port),
        capture_output=True,
        text=True,
    )
    if result.returncode:
        raise SystemExit(f"`django-admin {' '.join(args)}` failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


# --- the server ------------------------------------------------------------------------------------


class Server:
    def __init__(self, target: Target, workers: int, workdir: Path):
        self.target = target
        self.port = free_port()
        self.log_path = workdir / f"gunicorn-{target.database}-{target.project.name}.log"
        self.workers = workers
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        if not self.target.is_django:
            # One process: node-oidc-provider's in-memory adapter cannot be shared between processes.
            return ["node", str(NODE_OP / "provider.mjs")]
        return [
            sys.executable, "-m", "gunicorn",
            "--workers", str(self.workers),
            "--bind", f"{HOST}:{self.port}",
            "--log-level", "warning",
            "--error-logfile", str(self.log_path),
            "--graceful-timeout", "5",
            self.target.wsgi,
        ]  # fmt: skip

    def __enter__(self) -> Server:
        command = self.command()
        # Django logs tracebacks to the workers' stderr: keep them with gunicorn's own log.
        with open(self.log_path, "ab") as output:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=target_env(self.target, self.port),
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn exited ({self.process.returncode}); see {self.log_path}")
            with contextlib.suppress(OSError):
                response, _ = flows.send(HOST, self.port, "GET", self.target.project.ready_path, timeout=5)
                if response.status == 200 and len(self.worker_pids()) == self.expected_workers:
                    return self
            time.sleep(0.2)
        self.__exit__()
        raise SystemExit(f"gunicorn did not become ready on port {self.port}; see {self.log_path}")

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def expected_workers(self) -> int:
        return self.workers if self.target.is_django else 1

    def worker_pids(self) -> list[int]:
        pid = self.process.pid
        if not self.target.is_django:
            return [pid] if self.process.poll() is None else []
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return []
        return [int(child) for child in children]

    def cpu_seconds(self) -> float | None:
        """User + system CPU of the workers so far (Linux /proc), or None elsewhere."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        try:
            for pid in self.worker_pids():
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            return None
        return total / ticks

    def log_offset(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def exceptions_since(self, offset: int) -> dict[str, int]:
        try:
            with open(self.log_path, "rb") as log_file:
                log_file.seek(offset)
                text = log_file.read().decode("utf-8", "replace")
        except OSError:
            return {}
        return stats.server_exceptions(text)

    def error_log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        return ""


# --- load --------------------------------------------------------------------------------------


class Meters:
    """CPU used during a phase: by this process (the clients), by the gunicorn workers, and by
    the whole machine, whose remainder is PostgreSQL and anything else running on it."""

    def __init__(self, server: Server):
        self.server = server
        self.log_offset = server.log_offset()
        self.client = time.process_time()
        self.workers = server.cpu_seconds()
        self.machine = machine.machine_cpu()
        self.started = time.perf_counter()

    def phase(self, samples: list[stats.Sample], ended: float) -> stats.PhaseStats:
        workers, now = self.server.cpu_seconds(), machine.machine_cpu()
        phase = stats.PhaseStats(
            samples=samples,
            wall_seconds=ended - self.started,
            client_cpu_seconds=time.process_time() - self.client,
            server_cpu_seconds=workers - self.workers if None not in (workers, self.workers) else None,
            server_exceptions=self.server.exceptions_since(self.log_offset),
        )
        if now and self.machine:
            busy, total = now[0] - self.machine[0], now[1] - self.machine[1]
            phase.machine_busy = busy / total if total else None
            elapsed = time.perf_counter() - self.started
            others = busy - phase.client_cpu_seconds - (phase.server_cpu_seconds or 0)
            # Clock-tick rounding can make an idle machine's remainder slightly negative.
            phase.other_cpu_cores = max(0.0, others / elapsed) if elapsed else None
        return phase


@dataclass
class Job:
    """One request of a timed phase."""

    method: str
    path: str
    body: bytes | None
    headers: dict[str, str]
    tag: object = None  # what the caller needs back with the answer (e.g. the code)


def run_clients(worker, clients: int) -> None:
    """Run ``worker`` in ``clients`` threads until they return, with this process's garbage
    collector paused. The clients time each request themselves, and a full collection stops every
    client thread at once: one of 20–30 ms (the harness holds 50,000–70,000 objects by then) added
    itself to every request in flight and made the 99th percentile of a 400-request phase. It
    collects once before, untimed."""
    gc.collect()
    gc.disable()
    try:
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        gc.enable()


def run_phase(
    server: Server,
    jobs: list[Job],
    *,
    clients: int,
    deadline_seconds: float,
    keep_bodies: bool = False,
) -> tuple[stats.PhaseStats, list[tuple[Job, flows.Response]]]:
    """Send ``jobs`` from ``clients`` threads until done or the deadline; every request is
    timed from connect to the last byte of the answer."""
    counter = itertools.count()
    lock = threading.Lock()
    samples: list[stats.Sample] = []
    answered: list[tuple[Job, flows.Response]] = []
    started = time.perf_counter()
    deadline = started + deadline_seconds
    ended = [started]

    def worker():
        while time.perf_counter() < deadline:
            with lock:
                index = next(counter)
            if index >= len(jobs):
                return
            job = jobs[index]
            sent_at = time.perf_counter() - started
            try:
                response, seconds = flows.send(HOST, server.port, job.method, job.path, job.body, job.headers)
            except OSError as exc:
                sample = stats.Sample(0.0, 0, f"{type(exc).__name__}: {exc}", sent_at)
                response = None
            else:
                error = None if 200 <= response.status < 300 else response.text()
                sample = stats.Sample(seconds, response.status, error, sent_at)
            with lock:
                samples.append(sample)
                ended[0] = time.perf_counter()
                if keep_bodies and response is not None and sample.ok:
                    answered.append((job, response))

    meters = Meters(server)
    run_clients(worker, clients)
    phase = meters.phase(samples, ended[0])
    return phase, answered


def mint_codes(server: Server, client: flows.Client, count: int, sessions: int = 2) -> tuple[list, float]:
    """``count`` (code, verifier) pairs, minted by ``sessions`` signed-in browsers (untimed)."""
    codes: list[tuple[str, str]] = []
    errors: list[str] = []
    lock = threading.Lock()
    started = time.perf_counter()

    def browser(n: int):
        transport = flows.HttpTransport(HOST, server.port)
        for _ in range(n):
            try:
                pair = flows.authorize(transport, server.target.project, client)
            except (flows.FlowError, OSError) as exc:
                with lock:
                    errors.append(str(exc))
                if len(errors) > 5:
                    return
                continue
            with lock:
                codes.append(pair)

    shares = [count // sessions + (1 if i < count % sessions else 0) for i in range(sessions)]
    threads = [threading.Thread(target=browser, args=(n,), daemon=True) for n in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        log(f"    minting: {len(errors)} failures, first: {errors[0][:300]}")
        log(server.error_log_tail())
    return codes, time.perf_counter() - started


def run_signins(
    server: Server, client: flows.Client, *, count: int, clients: int, deadline: float, sequential: int
):
    """Concurrent full sign-ins (fresh browser each: authorize → login → consent → code), then a
    few sequential ones timed per step."""
    counter = itertools.count()
    lock = threading.Lock()
    samples: list[stats.Sample] = []
    started = time.perf_counter()
    ended = [started]

    def sign_in(observe=flows.unobserved) -> stats.Sample:
        transport = flows.HttpTransport(HOST, server.port)
        begun = time.perf_counter()
        try:
            flows.authorize(transport, server.target.project, client, observe)
        except (flows.FlowError, OSError) as exc:
            return stats.Sample(time.perf_counter() - begun, 0, str(exc))
        return stats.Sample(time.perf_counter() - begun, 200)

    def worker():
        while time.perf_counter() < started + deadline:
            with lock:
                if next(counter) >= count:
                    return
            sample = sign_in()
            with lock:
                samples.append(sample)
                ended[0] = time.perf_counter()

    meters = Meters(server)
    run_clients(worker, clients)
    phase = meters.phase(samples, ended[0])

    steps: dict[str, list[float]] = {}

    def observe(step, call):
        begun = time.perf_counter()
        response = call()
        steps.setdefault(step, []).append(time.perf_counter() - begun)
        return response

    totals = [sign_in(observe).latency for _ in range(sequential)]
    breakdown = {
        "sign_ins": sequential,
        "total_p50_ms": stats.ms(stats.percentile(totals, 50)),
        "steps_p50_ms": {step: stats.ms(stats.percentile(values, 50)) for step, values in steps.items()},
    }
    return phase, breakdown


# --- one project on one database ---------------------------------------------------------------------


class Bench:
    """One project on one database while its server runs: the client, the codes, the results."""

    def __init__(self, target: Target, server: Server, client: flows.Client):
        self.target, self.server, self.client = target, server, client
        self.name = f"{target.database}/{target.project.name}"
        self.headers = flows.token_headers(client)
        self.result: dict = {"phases": {}, "port": server.port}
        self.codes: list = []
        self.inprocess_codes: list = []
        self.tokens: list[dict] = []
        self.access_tokens: list[str] = []
        self.cluster = False  # two app servers behind HAProxy (--cluster)
        self.refresh_tokens: list[str] = []
        self.round, self.rounds = 0, 1  # which slice of a phase's jobs the next call runs
        self._rounds: list[tuple[stats.PhaseStats, list, list[Job]]] = []

    def timed(
        self, jobs: list[Job], mode: dict, args, keep_bodies: bool = False
    ) -> tuple[stats.PhaseStats, list[tuple[Job, flows.Response]], list[Job]] | None:
        """Run this round's slice of ``jobs`` (contiguous, in order); after the last round, the
        merged phase, every answer kept and the jobs sent (the first of each slice's, as many as
        its samples: a deadline may stop a slice early). None before the last round."""
        size = -(-len(jobs) // self.rounds)
        part = jobs[self.round * size : (self.round + 1) * size]
        phase, answered = run_phase(
            self.server,
            part,
            clients=args.clients,
            deadline_seconds=mode["phase_seconds"] / self.rounds,
            keep_bodies=keep_bodies,
        )
        self._rounds.append((phase, answered, part[: len(phase.samples)]))
        if self.round < self.rounds - 1:
            return None
        done, self._rounds = self._rounds, []
        return (
            stats.merge_phases([phase for phase, _, _ in done]),
            [pair for _, answered, _ in done for pair in answered],
            [job for _, _, sent in done for job in sent],
        )

    def exchange_jobs(self, pairs) -> list[Job]:
        body = flows.exchange_body
        return [
            Job("POST", self.target.project.token_path, body(self.client, code, verifier), self.headers, code)
            for code, verifier in pairs
        ]

    def mint(self, mode: dict) -> None:
        # Warm-up and counted exchange, timed ones, profiled ones, and as many for CPU time.
        inprocess_count = INPROCESS_CODES + 3 * mode["timed"]
        codes, seconds = mint_codes(
            self.server, self.client, mode["codes"] + WARMUP_EXCHANGES + inprocess_count
        )
        self.result["mint"] = {
            "codes": len(codes),
            "seconds": round(seconds, 2),
            "codes_per_second": round(len(codes) / seconds, 1),
        }
        log(f"   {self.name}: minted {len(codes)} codes in {seconds:.1f} s (2 signed-in browsers, untimed)")
        warmup = codes[:WARMUP_EXCHANGES]
        self.inprocess_codes = codes[WARMUP_EXCHANGES : WARMUP_EXCHANGES + inprocess_count]
        self.codes = codes[WARMUP_EXCHANGES + inprocess_count :]
        # The first requests of a worker build its middleware chain, URL resolver and key cache.
        run_phase(self.server, self.exchange_jobs(warmup), clients=2, deadline_seconds=60)

    def exchange(self, mode: dict, args) -> None:
        done = self.timed(self.exchange_jobs(self.codes), mode, args, keep_bodies=True)
        if done is None:
            return
        phase, answered, _ = done
        self.result["phases"]["exchange"] = report_phase(self.name, "exchange", phase)
        self.tokens = [json.loads(response.body) for _job, response in answered]

    def refresh(self, mode: dict, args) -> None:
        jobs = [
            Job(
                "POST",
                self.target.project.token_path,
                flows.refresh_body(t["refresh_token"]),
                self.headers,
                n,
            )
            for n, t in enumerate(self.tokens)
            if "refresh_token" in t
        ]
        done = self.timed(jobs, mode, args, keep_bodies=True)
        if done is None:
            return
        phase, answered, sent = done
        self.result["phases"]["refresh"] = report_phase(self.name, "refresh", phase)
        # A refresh revokes the access token it replaces: userinfo uses the refreshed ones and
        # those whose refresh was never attempted (jobs go out in order).
        refreshed = [json.loads(response.body) for _job, response in answered]
        self.access_tokens = [t["access_token"] for t in refreshed]
        self.refresh_tokens = [t["refresh_token"] for t in refreshed if "refresh_token" in t]
        attempted = {job.tag for job in sent}
        self.access_tokens += [t["access_token"] for n, t in enumerate(self.tokens) if n not in attempted]

    def userinfo(self, mode: dict, args) -> None:
        # node-oidc-provider's JWT access tokens are for its resource server, not its userinfo.
        if not self.access_tokens or not self.target.is_django:
            return
        jobs = [
            Job("GET", self.target.project.userinfo_path, None, {"Authorization": f"Bearer {token}"})
            for token in itertools.islice(itertools.cycle(self.access_tokens), mode["userinfo"])
        ]
        done = self.timed(jobs, mode, args)
        if done is not None:
            self.result["phases"]["userinfo"] = report_phase(self.name, "userinfo", done[0])

    def introspection(self, mode: dict, args) -> None:
        """RFC 7662 with client_secret_basic, round robin over live tokens: access tokens for ours
        and stock DOT; refresh tokens for node-oidc-provider, which does not introspect its JWT
        access tokens ("Structured JWT Tokens cannot be introspected")."""
        if self.target.is_django:
            tokens, hint = self.access_tokens, "access_token"
        else:
            tokens, hint = self.refresh_tokens, "refresh_token"
        if not tokens:
            return
        path = self.target.project.introspection_path
        jobs = [
            Job("POST", path, flows.introspection_body(token, hint), self.headers)
            for token in itertools.islice(itertools.cycle(tokens), mode["introspection"])
        ]
        done = self.timed(jobs, mode, args, keep_bodies=True)
        if done is None:
            return
        phase, answered, _ = done
        # An answer of {"active": false} would be a fast failure: count it as an error.
        inactive = sum(1 for _job, response in answered if not json.loads(response.body).get("active"))
        self.result["phases"]["introspection"] = report_phase(self.name, "introspect", phase)
        self.result["phases"]["introspection"]["inactive"] = inactive
        if inactive:
            log(f"      {inactive} answers were active: false")

    def signin(self, mode: dict, args) -> None:
        if not self.target.is_django:
            return  # node-oidc-provider signs in without a page or a password: nothing to compare
        phase, breakdown = run_signins(
            self.server,
            self.client,
            count=mode["signins"],
            clients=args.clients,
            deadline=mode["phase_seconds"],
            sequential=mode["breakdown"],
        )
        self.result["phases"]["signin"] = report_phase(self.name, "signin", phase)
        self.result["signin_breakdown"] = breakdown

    def inprocess(self, mode: dict, args, redis_url: str | None = None) -> None:
        if not self.target.is_django:
            return
        log(f"   {self.name}: in-process measurements through Django's test client")
        quiet = wait_until_quiet()
        inprocess = run_inprocess(
            self.target,
            self.client,
            self.inprocess_codes,
            mode["timed"],
            self.server.port,
            redis_url=redis_url,
        )
        inprocess["machine_before"] = quiet
        self.result["inprocess"] = inprocess

    def prefill(self, mode: dict, args) -> None:
        if args.prefill and self.target.is_django and self.target.project.name in args.prefill_projects:
            self.result["prefill"] = run_prefill(
                self.target, self.server, self.client, mode, args, self.result
            )


# Each timed phase runs for every project back to back, in rounds (mode "rounds") alternated between
# them, so the projects compared share the machine's conditions of the same minute and the same
# seconds (the two cores may be shared with other work).
PHASE_STEPS = ("exchange", "refresh", "userinfo", "introspection", "signin")


def benchmark_database(database: str, targets_: list[Target], mode: dict, args, workdir: Path) -> dict:
    results: dict[str, dict | None] = dict.fromkeys(flows.PROJECTS)
    with contextlib.ExitStack() as stack:
        benches = []
        for target in targets_:
            if target.is_django:
                log(f"\n== {target.database}/{target.project.name}: migrate and seed")
                django_admin(target, "migrate", "--noinput", "-v", "0")
                seed = django_admin(target, *target.seed_command).strip().splitlines()[-1]
            else:
                seed = target.env["NODE_OP_SEED"]
            server = stack.enter_context(Server(target, args.workers, workdir))
            how = f"gunicorn -w {args.workers}" if target.is_django else "node (one process, in memory)"
            log(f"   {target.project.name}: {how} on {HOST}:{server.port}")
            benches.append(Bench(target, server, flows.Client.from_seed(json.loads(seed))))
            if args.cluster and target.project is flows.OURS:
                # The same project and database as two app servers behind HAProxy, with Redis:
                # measured in the same rounds as the single server (benchmarks/cluster.py).
                two = stack.enter_context(cluster.ClusterServer(target, args.workers, args.redis_url))
                log(f"   {cluster.SERVERS} × gunicorn -w {args.workers} behind HAProxy on {HOST}:{two.port}")
                bench = Bench(target, two, flows.Client.from_seed(json.loads(seed)))  # type: ignore[arg-type]
                bench.name += f" ×{cluster.SERVERS}"
                bench.cluster = True
                benches.append(bench)
        for bench in benches:
            bench.mint(mode)
        for step in PHASE_STEPS:
            log(f"\n-- {database}: {step}")
            # The sign-in's phase is one round: its few dozen sign-ins are mostly password hashing.
            rounds = 1 if step == "signin" else mode["rounds"]
            for index in range(rounds):
                for bench in benches:
                    bench.round, bench.rounds = index, rounds
                    getattr(bench, step)(mode, args)
        log("")
        single = [bench for bench in benches if not bench.cluster]
        # A Redis (--redis-url, or the cluster's own) also measures ours signing in with the sessions
        # in it (oidc_provider_ext.sessions.cache): no statement per session read or write.
        clusters = [bench.server.cluster for bench in benches if bench.cluster]  # type: ignore[attr-defined]
        redis_url = args.redis_url or next((str(c.redis_url) for c in clusters), None)
        for bench in single:
            bench.inprocess(mode, args, redis_url)
        # The sign-ins again, in turns between the projects: their CPU is compared to
        # stock DOT's, and the machine's speed drifts by more than the difference within minutes.
        paired_signins(
            single, mode["signin_pairs"], mode["signin_processes"], mode["signin_warm"], mode["signin_block"]
        )
        for bench in single:
            bench.prefill(mode, args)
    for bench in benches:
        bench.result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
        results[bench.target.project.name + ("_two_servers" if bench.cluster else "")] = bench.result
    return results


def wait_until_quiet() -> dict:
    """Before a CPU-time measurement: wait for the database's work after the load phases
    (autovacuum, the checkpoint) to end, and say so in the log if it did not."""
    quiet = machine.wait_until_quiet()
    if quiet["waited_seconds"] > 2 or not quiet["quiet"]:
        how = "quiet" if quiet["quiet"] else f"still {quiet['other_cores']} cores busy"
        log(f"   waited {quiet['waited_seconds']} s for the machine to be quiet ({how})")
    return quiet


def run_inprocess(
    target: Target,
    client: flows.Client,
    codes,
    timed: int,
    port: int,
    profile=True,
    redis_url: str | None = None,
) -> dict:
    job = {
        "project": target.project.name,
        "client": client.__dict__,
        "codes": codes,
        "timed": timed,
        "profile": profile,
        "redis_url": redis_url,
    }
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.inprocess"],
        cwd=ROOT,
        env=target_env(target, port),
        input=json.dumps(job),
        capture_output=True,
        text=True,
    )
    if completed.returncode:
        log(f"   in-process measurement failed:\n{completed.stdout[-2000:]}\n{completed.stderr[-3000:]}")
        return {"error": completed.stderr[-2000:]}
    return json.loads(completed.stdout)


class SignInServerError(RuntimeError):
    pass


class SignInServer:
    """A ``python -m benchmarks.inprocess`` process signing in on request (its serve mode): each
    call is one sign-in, answered with its CPU minus the password hash."""

    def __init__(self, target: Target, client: flows.Client, port: int, warm: int = 0):
        self.name = target.project.name
        self._errors = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by close())
        self._process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.inprocess"],
            cwd=ROOT,
            env=target_env(target, port),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._errors,
            text=True,
        )
        job = {
            "project": target.project.name,
            "client": client.__dict__,
            "signin_serve": True,
            "signin_warm": warm,
        }
        self._send(json.dumps(job))
        if self._receive() != "ready":
            raise self._failed("did not start")

    def _send(self, line: str) -> None:
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(line + "\n")
            self._process.stdin.flush()
        except BrokenPipeError:
            raise self._failed("exited") from None

    def _receive(self) -> str:
        assert self._process.stdout is not None
        return self._process.stdout.readline().strip()

    def _failed(self, what: str) -> SignInServerError:
        self._stop()
        self._errors.seek(0)
        error = SignInServerError(f"{self.name}: the sign-in process {what}:\n{self._errors.read()[-2000:]}")
        self.close()
        return error

    def __call__(self) -> dict:
        self._send("sign in")
        line = self._receive()
        if not line:
            raise self._failed("exited")
        return json.loads(line)

    def close(self) -> None:
        self._stop()
        self._errors.close()

    def _stop(self) -> None:
        if self._process.poll() is None:
            with contextlib.suppress(BrokenPipeError):
                self._process.stdin.close()  # type: ignore[union-attr]
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


def alternate(players: list, pairs: int, block: int = 1) -> list[list]:
    """``pairs`` answers of each of ``players`` (callables), taken in turns of ``block`` answers of
    one player (the last turn may be shorter), the order reversed every other turn (a, b, b, a, a,
    b, ...): each one's n-th answer comes within a few seconds of the others' n-th, and none always
    goes first."""
    answers: list[list] = [[] for _ in players]
    block = max(1, block)
    for index, start in enumerate(range(0, pairs, block)):
        order = range(len(players)) if index % 2 == 0 else reversed(range(len(players)))
        for player in order:
            answers[player].extend(players[player]() for _ in range(min(block, pairs - start)))
    return answers


# What a sign-in process answers per sign-in (inprocess.serve_signins).
SIGNIN_ANSWER = ("cpu_minus_password_hash_ms", "requests_cpu_minus_password_hash_ms")


def paired_signins(
    benches: list[Bench], pairs: int, processes: int = 1, warm: int = 0, block: int = 1
) -> None:
    """``pairs`` in-process sign-ins of each Django project, in turns of ``block`` (:func:`alternate`),
    pooled into each project's sign-in medians; ours also gets the median of its differences from
    each other project's sign-in taken beside it (stats.paired_difference). The pairs are spread
    over ``processes`` fresh processes per project, one set after the other, each process warmed by
    ``warm`` untimed sign-ins (inprocess.serve_signins)."""
    benches = [b for b in benches if b.target.is_django and (b.result.get("inprocess") or {}).get("signin")]
    if not benches or pairs <= 0:
        return
    processes = max(1, min(processes, pairs))
    log(
        f"   sign-ins in process, in turns of {block} ({', '.join(b.name for b in benches)}): {pairs} "
        f"each, over {processes} process(es) each, {warm} untimed first"
    )
    wait_until_quiet()
    answers: list[list] = [[] for _ in benches]
    for index in range(processes):
        servers: list[SignInServer] = []
        try:
            for bench in benches:
                servers.append(SignInServer(bench.target, bench.client, bench.server.port, warm))
            # this set's share of the pairs (the first sets take one more when they do not divide)
            for answered, more in zip(
                answers,
                alternate(servers, pairs // processes + (index < pairs % processes), block),
                strict=True,
            ):
                answered += more
        except SignInServerError as error:
            log(f"   paired sign-ins failed: {error}")
            return
        finally:
            for server in servers:
                server.close()
    runs = {}  # per project: its sign-ins' numbers, under the names pool_signin_rounds takes
    for bench, answered in zip(benches, answers, strict=True):
        pooled = {f"runs_{key}": [a[key] for a in answered] for key in SIGNIN_ANSWER}
        stats.pool_signin_rounds(bench.result["inprocess"]["signin"], pooled)
        runs[bench.target.project.name] = pooled
    ours = next((b for b in benches if b.target.project is flows.OURS), None)
    if ours is None:
        return
    paired = ours.result["inprocess"]["signin"].setdefault("paired", {})
    for bench in benches:
        if bench is ours:
            continue
        mine, theirs = runs[flows.OURS.name], runs[bench.target.project.name]
        paired[bench.target.project.name] = {
            "pairs": pairs,
            "processes": processes,
            "warm": warm,
            "block": block,
            **{
                f"{key.removesuffix('_ms')}_difference_ms": stats.paired_difference(
                    mine[f"runs_{key}"], theirs[f"runs_{key}"]
                )
                for key in SIGNIN_ANSWER
            },
        }


def run_prefill(target: Target, server: Server, client: flows.Client, mode: dict, args, before: dict) -> dict:
    """Insert ``--prefill`` tokens, then measure again what ``before`` measured on the (nearly)
    empty database: the concurrent exchange phase, and the in-process exchange without hashing,
    which shows what the database itself adds."""
    log(f"   prefill: inserting {args.prefill} tokens of history")
    if target.database == "postgresql":
        seconds = prefill.prefill_postgresql(target.database_url, args.prefill, client.client_id, log=log)
    else:
        path = target.database_url.removeprefix("sqlite:///")
        seconds = prefill.prefill_sqlite(path, args.prefill, client.client_id, log=log)
    log(f"   prefill took {seconds:.0f} s; minting again")
    inprocess_count = INPROCESS_CODES + mode["timed"]
    codes, _ = mint_codes(server, client, mode["codes"] + WARMUP_EXCHANGES + inprocess_count)
    inprocess_codes, codes = codes[:inprocess_count], codes[inprocess_count:]
    jobs = [
        Job(
            "POST",
            target.project.token_path,
            flows.exchange_body(client, code, verifier),
            flows.token_headers(client),
        )
        for code, verifier in codes
    ]
    run_phase(server, jobs[:WARMUP_EXCHANGES], clients=2, deadline_seconds=60)
    phase, _ = run_phase(
        server, jobs[WARMUP_EXCHANGES:], clients=args.clients, deadline_seconds=mode["phase_seconds"]
    )
    filled = report_phase(f"{target.database}/{target.project.name}", f"exchange, {args.prefill} rows", phase)
    log(f"   {target.database}/{target.project.name}: in-process measurements with {args.prefill} rows")
    filled_inprocess = run_inprocess(
        target, client, inprocess_codes, mode["timed"], server.port, profile=False
    )
    return stats.prefill_result(
        args.prefill,
        before["phases"]["exchange"],
        filled,
        seconds,
        empty_inprocess=before.get("inprocess"),
        filled_inprocess=filled_inprocess,
    )


def report_phase(name: str, phase_name: str, phase: stats.PhaseStats) -> dict:
    summary = phase.summary()
    log(
        f"   {name:<17} {phase_name:<10} {summary['requests']:>5} req  {summary['rps'] or 0:>8.1f} ok/s  "
        f"p50 {summary['p50_ms'] or 0:>7.1f} ms  p99 {summary['p99_ms'] or 0:>7.1f} ms  "
        f"errors {summary['errors']}  (client CPU {summary['client_cpu_ms_per_request'] or 0:.2f} ms/req, "
        f"server CPU {summary['server_cpu_ms_per_request'] or 0:.1f} ms/req)"
    )
    if summary.get("machine_busy") is not None:
        log(
            f"{'':>32}machine {summary['machine_busy']:.0%} busy; other processes "
            f"(PostgreSQL included) {summary['other_cpu_cores']:.2f} cores"
        )
    if summary["slowest"]:
        slowest = ", ".join(f"{r['ms']:.1f} ms at {r['sent_at_s']:.2f} s" for r in summary["slowest"][:5])
        log(f"{'':>32}slowest (sent, from the start of their round): {slowest}")
    for sample in summary["error_samples"]:
        log(f"      error {sample[:200]!r}")
    for exception, count in summary["server_exceptions"].items():
        log(f"      server log: {count} × {exception}")
    return summary


# --- output ------------------------------------------------------------------------------------


def print_report(result: dict) -> None:
    log("\n" + "=" * 100)
    machine, parameters = result["machine"], result["parameters"]
    log(
        f"Results {result['date']} ({result['mode']}), {machine['nproc']} CPUs, "
        f"{parameters['clients']} concurrent clients, gunicorn -w {parameters['workers']}, "
        f"load average {machine['loadavg_at_start']} at start"
    )
    log("ours/stock, ours/node = ours ok/s ÷ their ok/s in the same run (phases interleaved)\n")
    log(stats.results_table(result))
    if any(entry.get("ours_two_servers") for entry in result["databases"].values()):
        log(
            f"\nScale-out (--cluster): one server against {cluster.SERVERS} behind HAProxy with Redis, "
            "same rounds; ratio = two servers ok/s ÷ one server ok/s (on one machine they share its cores)"
        )
        log(cluster.table(result))
    log(
        "\nIn-process (Django test client, no server): SQL queries per request; fastest exchange of N, "
        "ms; CPU ms per request"
    )
    log(stats.inprocess_table(result))
    resource = stats.resource_lines(result)
    if resource:
        log("\nResource server, offline JWT access-token validation (validate_access_token, in-process):")
        for line in resource:
            log(line)
    log("\nFull sign-in, one browser at a time (median ms): over HTTP, and in-process with the password hash")
    log(stats.signin_table(result))
    paired = stats.paired_lines(result)
    if paired:
        log(
            "\nSign-in CPU minus the password hash, sign-ins taken in turns between the projects "
            "(median of the differences; below 0: ours spends less)"
        )
        for line in paired:
            log(line)
    for line in stats.profile_summary(result):
        log(line)
    if result.get("prefill"):
        log(
            "\nToken endpoint with history (ms): exchange under load, "
            "and in-process exchange without the secret hash"
        )
        log(stats.prefill_table(result))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run of a minute or two")
    parser.add_argument("--databases", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql")
    parser.add_argument(
        "--projects",
        default="ours,stock,node",
        help="comma-separated: ours,stock,node (node-oidc-provider; needs `make bench-node`)",
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--codes", type=int, help="codes to mint and exchange (default: by mode)")
    parser.add_argument("--phase-seconds", type=float, help="deadline of each timed phase (default: by mode)")
    parser.add_argument(
        "--prefill", type=int, default=0, metavar="N", help="then insert N tokens and measure again"
    )
    parser.add_argument(
        "--prefill-projects", default="ours", help="projects the prefill applies to (default: ours)"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="server URL without a database name; databases <prefix>ours and <prefix>stock are created",
    )
    parser.add_argument(
        "--db-prefix",
        default=os.environ.get("BENCH_DB_PREFIX", "bench_"),
        help="PostgreSQL database names start with this (default bench_; must start with bench_)",
    )
    parser.add_argument(
        "--database-suffix",
        default="",
        help="appended to bench_ours/bench_stock, so runs sharing a PostgreSQL server do not collide",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "latest.json")
    parser.add_argument("--keep", action="store_true", help="keep the databases and server logs")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="also run ours as two app servers behind HAProxy with Redis, and report both",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL") or None,
        help="a Redis database for --cluster to share (keys get a per-run prefix, removed afterwards); "
        "default: a redis-server of the cluster's own",
    )
    args = parser.parse_args(argv)
    args.databases = [d for d in args.databases.split(",") if d]
    args.projects = [p for p in args.projects.split(",") if p]
    args.prefill_projects = [p for p in args.prefill_projects.split(",") if p]
    unknown = set(args.databases) - {"sqlite", "postgresql"} | set(args.projects) - set(flows.PROJECTS)
    if unknown:
        parser.error(f"unknown database or project: {', '.join(sorted(unknown))}")
    if not args.db_prefix.startswith("bench_") or not args.db_prefix.replace("_", "").isalnum():
        parser.error("--db-prefix must start with bench_ and hold only letters, digits and _")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.cluster:
        from tests.scaleout.cluster import haproxy_available, redis_available, redis_server_available

        problem = haproxy_available() or (
            redis_available(args.redis_url) if args.redis_url else redis_server_available()
        )
        if problem:
            raise SystemExit(f"--cluster: {problem}")
    mode_name = "quick" if args.quick else "full"
    mode = dict(MODES[mode_name])
    if args.codes:
        mode["codes"] = args.codes
    if args.phase_seconds:
        mode["phase_seconds"] = args.phase_seconds
    args.postgres_url = args.postgres_url.rstrip("/")
    postgres_version = postgres_available(args.postgres_url) if "postgresql" in args.databases else None
    databases = [d for d in args.databases if d != "postgresql" or postgres_version]
    if "node" in args.projects and not node_available():
        args.projects = [p for p in args.projects if p != "node"]

    result = stats.new_result(
        mode=mode_name,
        machine=machine_info(postgres_version),
        parameters={
            **mode,
            "clients": args.clients,
            "workers": args.workers,
            "prefill": args.prefill,
            "code_lifetime_seconds": CODE_LIFETIME_SECONDS,
            "cluster": args.cluster,
        },
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )
    workdir = Path(tempfile.mkdtemp(prefix="oidc-bench-"))
    stock_key = rsa_private_key_pem()
    created_pg: list[str] = []
    started = time.monotonic()
    try:
        for database in databases:
            if database == "sqlite":
                urls = {p: f"sqlite:///{workdir / f'bench_{p}.sqlite3'}" for p in flows.PROJECTS}
            else:
                urls = {}
                for p in flows.DJANGO_PROJECTS:
                    if p in args.projects:
                        name = f"{args.db_prefix}{p}{args.database_suffix}"
                        urls[p] = reset_postgres_database(args.postgres_url, name)
                        created_pg.append(name)
                    else:
                        urls[p] = ""
            selected = [t for t in targets(database, urls, stock_key) if t.project.name in args.projects]
            project_results = benchmark_database(database, selected, mode, args, workdir)
            result["databases"][database] = stats.database_result(
                project_results["ours"], project_results["stock"], project_results["node"]
            )
            if project_results.get("ours_two_servers"):
                result["databases"][database]["ours_two_servers"] = project_results["ours_two_servers"]
                result["databases"][database]["two_servers_ratios"] = cluster.compare(
                    project_results["ours"], project_results["ours_two_servers"]
                )
            prefilled = {p: r["prefill"] for p, r in project_results.items() if r and r.get("prefill")}
            if prefilled:
                result["prefill"] = result["prefill"] or {}
                result["prefill"][database] = prefilled.get("ours") or next(iter(prefilled.values()))
    finally:
        if args.keep:
            log(f"\nKept {workdir} and PostgreSQL databases {', '.join(created_pg) or '-'}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            for name in created_pg:
                with contextlib.suppress(Exception):
                    drop_postgres_database(args.postgres_url, name)
    result["seconds"] = round(time.monotonic() - started, 1)
    result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    problems = stats.shape_problems(result)
    print_report(result)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    shown = args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output
    log(f"\nWrote {shown} in {result['seconds']:.0f} s")
    if problems:
        log(f"Result document problems: {problems}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
