#!/usr/bin/env python
"""Two (or more) app servers of idp_project behind HAProxy, over one database and one Redis.

    python -m tests.scaleout.cluster                       # SQLite file in a temporary directory
    python -m tests.scaleout.cluster --database-url postgres://postgres@127.0.0.1:5432/oidc_cluster
    make cluster CLUSTER_ARGS="--servers 3 --workers 1"

Everything listens on 127.0.0.1 only, on free ports: each app server is ``gunicorn -w N`` of
``idp_project.wsgi``, HAProxy balances round-robin between them, and the issuer is HAProxy's
address (so discovery, ``iss`` and every endpoint URL name the balancer, whichever server answers).
The cache is a ``redis-server`` of the cluster's own (loopback, a free port, nothing on disk)
unless ``--redis-url`` names one to share; then every cache key gets a per-cluster prefix, removed
afterwards (nothing is flushed). The database is migrated and seeded with ``oidc_demo``.

Nothing outlives the cluster: every child runs in its own process group, which is terminated
on exit (normal, exception, Ctrl-C, SIGTERM), and the kernel sends each child SIGTERM should this
process die without cleaning up (``PR_SET_PDEATHSIG``).

Used by tests/test_scaleout.py and ``benchmarks/run.py --cluster``; docs/operations.md,
"Running several app servers", explains the deployment it stands for.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
HAPROXY = os.environ.get("HAPROXY", shutil.which("haproxy") or "/usr/sbin/haproxy")
READY_PATH = "/.well-known/openid-configuration"
REDIS_SERVER = os.environ.get("REDIS_SERVER", shutil.which("redis-server") or "/usr/bin/redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Linux: SIGTERM this child when the process that started it dies, however it dies.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def redis_available(url: str) -> str | None:
    """Why ``url`` cannot be used, or None."""
    try:
        import redis
    except ImportError:
        return "the redis package is not installed (pip install -e '.[example]')"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        return f"Redis at {url} is not reachable ({exc})"
    return None


def haproxy_available() -> str | None:
    if os.access(HAPROXY, os.X_OK):
        return None
    return f"{HAPROXY} not found: run `make haproxy` (apt-get install -y haproxy redis-server)"


def redis_server_available() -> str | None:
    try:
        import redis  # noqa: F401 - Django's RedisCache needs it
    except ImportError:
        return "the redis package is not installed (pip install -e '.[example]')"
    if os.access(REDIS_SERVER, os.X_OK):
        return None
    return f"{REDIS_SERVER} not found: run `make haproxy` (apt-get install -y haproxy redis-server)"


def redis_server_command(port: int, workdir: Path) -> list[str]:
    """A redis-server of one's own: loopback only, nothing written to disk."""
    return [
        REDIS_SERVER, "--bind", HOST, "--port", str(port),
        "--save", "", "--appendonly", "no", "--dir", str(workdir),
    ]  # fmt: skip


def haproxy_config(port: int, backends: list[int], *, check_interval_ms: int = 1000) -> str:
    servers = "\n".join(
        f"    server app{n} {HOST}:{backend} check inter {check_interval_ms}"
        for n, backend in enumerate(backends, 1)
    )
    return f"""\
global
    maxconn 1024

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    # The client's address for the app's throttles (TRUSTED_PROXY_COUNT = 1 behind this proxy).
    option forwardfor

frontend idp
    bind {HOST}:{port}
    default_backend apps

backend apps
    balance roundrobin
    option httpchk GET {READY_PATH}
{servers}
"""


@dataclass
class Cluster:
    """``with Cluster(...) as cluster:`` everything runs; ``cluster.servers`` are the app servers'
    base URLs, ``cluster.issuer`` the balancer's; ``cluster.seed`` what ``oidc_demo --json`` printed."""

    database_url: str | None = None  # default: a SQLite file in the working directory
    redis_url: str | None = None  # default: a redis-server of the cluster's own (no disk, loopback)
    shared_cache: bool = True  # False: no Redis, each process has Django's default LocMemCache
    servers_count: int = 2
    workers: int = 2
    env: dict[str, str] = field(default_factory=dict)  # extra environment of every server
    seed_args: tuple[str, ...] | None = ("--redirect-uri", "http://127.0.0.1:8765/callback")
    migrate: bool = True  # False: the database is ready (another cluster's, or ``setup`` does it)
    # Python run with ``manage.py shell -c`` after migrate and seed (one process for all the rest
    # of a test's preparation); the last line it prints, JSON, becomes ``prepared``.
    setup: str | None = None
    log: object = None  # callable(str) for progress lines, or None

    def __post_init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="oidc-cluster-"))
        self.balancer_port = free_port()
        self.ports = [free_port() for _ in range(self.servers_count)]
        self.issuer = f"http://{HOST}:{self.balancer_port}"
        self.servers = [f"http://{HOST}:{port}" for port in self.ports]
        self.cache_prefix = f"cluster-{secrets.token_hex(4)}"
        self.processes: list[tuple[str, subprocess.Popen]] = []
        self.seed: dict = {}
        self.prepared: dict = {}
        if not self.database_url:
            self.database_url = f"sqlite:///{self.workdir / 'cluster.sqlite3'}"
        self.own_redis = self.shared_cache and not self.redis_url
        if not self.redis_url:
            self.redis_port = free_port()
            self.redis_url = f"redis://{HOST}:{self.redis_port}/0"

    # --- environment -------------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DJANGO_", "OIDC_", "PYTEST", "REDIS_URL"))
        }
        env.update(
            DJANGO_SETTINGS_MODULE="idp_project.settings",
            DATABASE_URL=str(self.database_url),
            REDIS_URL=str(self.redis_url),
            DJANGO_CACHE_KEY_PREFIX=self.cache_prefix,
            OIDC_ISSUER=self.issuer,
            DEMO_RP_CREDENTIALS_FILE=str(self.workdir / "demo-rp.json"),
            PYTHONPATH=str(ROOT),
            PYTHONWARNINGS="ignore",  # WhiteNoise warns about a missing STATIC_ROOT on each boot
        )
        if not self.shared_cache:
            del env["REDIS_URL"], env["DJANGO_CACHE_KEY_PREFIX"]
        env.update(self.env)
        return env

    def manage(self, *args: str, timeout: float = 120) -> str:
        """``manage.py ARGS`` against the cluster's database and cache (a process of its own, like
        an operator's command); its stdout."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=_die_with_parent,
        )
        if result.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def _say(self, line: str) -> None:
        if self.log:
            self.log(line)  # type: ignore[operator]

    # --- processes -----------------------------------------------------------------------------------

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        log_file = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.environment(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole
            preexec_fn=_die_with_parent,
        )
        log_file.close()
        self.processes.append((name, process))
        return process

    def log_of(self, name: str, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.workdir / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
        return ""

    def _wait_ready(self, name: str, process: subprocess.Popen, port: int, deadline: float) -> None:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited ({process.returncode}):\n{self.log_of(name)}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                connection = http.client.HTTPConnection(HOST, port, timeout=5)
                try:
                    connection.request("GET", READY_PATH)
                    if connection.getresponse().status == 200:
                        return
                finally:
                    connection.close()
            time.sleep(0.1)
        raise RuntimeError(f"{name} did not answer on {HOST}:{port} in time:\n{self.log_of(name)}")

    def __enter__(self) -> Cluster:
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        problem = haproxy_available()
        if self.shared_cache:
            problem = problem or (
                redis_server_available() if self.own_redis else redis_available(str(self.redis_url))
            )
        if problem:
            raise RuntimeError(problem)
        if self.own_redis:
            self._spawn("redis", redis_server_command(self.redis_port, self.workdir))
            deadline = time.monotonic() + 20
            while redis_available(str(self.redis_url)):
                if time.monotonic() > deadline or self.processes[-1][1].poll() is not None:
                    raise RuntimeError(f"redis-server did not start:\n{self.log_of('redis')}")
                time.sleep(0.05)
        cache = f"{self.redis_url} (prefix {self.cache_prefix})" if self.shared_cache else "per process"
        self._say(f"database {self.database_url}; cache {cache}")
        # The servers boot while the database is prepared: they touch it only when asked.
        for n, port in enumerate(self.ports, 1):
            self._spawn(
                f"app{n}",
                [
                    sys.executable, "-m", "gunicorn",
                    "--workers", str(self.workers),
                    "--bind", f"{HOST}:{port}",
                    "--log-level", "warning",
                    "--graceful-timeout", "5",
                    "idp_project.wsgi:application",
                ],
            )  # fmt: skip
        config = self.workdir / "haproxy.cfg"
        config.write_text(haproxy_config(self.balancer_port, self.ports))
        self._spawn("haproxy", [HAPROXY, "-db", "-f", str(config)])
        if self.migrate:
            self.manage("migrate", "--noinput", "-v", "0")
        if self.seed_args is not None:
            printed = self.manage("oidc_demo", "--json", *self.seed_args)
            self.seed = json.loads(printed.strip().splitlines()[-1])
        if self.setup is not None:
            self.prepared = json.loads(self.manage("shell", "-c", self.setup).strip().splitlines()[-1])
        deadline = time.monotonic() + 90
        ports = {f"app{n}": port for n, port in enumerate(self.ports, 1)} | {"haproxy": self.balancer_port}
        for name, process in self.processes:
            if name in ports:
                self._wait_ready(name, process, ports[name], deadline)
        for n, url in enumerate(self.servers, 1):
            self._say(f"app{n}: gunicorn -w {self.workers} at {url}")
        self._say(f"HAProxy (round-robin) at {self.issuer}, the issuer")

    def __exit__(self, *exc) -> None:
        # The balancer first (no new requests), then the servers; each as a whole process group.
        for _name, process in reversed(self.processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _name, process in reversed(self.processes):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        # Workers a master left behind would still be in its group.
        for _name, process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        self.processes.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)
        self._forget_cache_keys()

    def _forget_cache_keys(self) -> None:
        """Remove the cluster's keys from a Redis it shares (Django's form: ``<prefix>:<version>:<key>``)."""
        if self.own_redis or not self.shared_cache:
            return  # stopped with the rest, nothing kept on disk
        with contextlib.suppress(Exception):
            import redis

            connection = redis.Redis.from_url(str(self.redis_url), socket_connect_timeout=2)
            stale = list(connection.scan_iter(match=f"{self.cache_prefix}:*", count=1000))
            if stale:
                connection.delete(*stale)


# --- PostgreSQL: a database of the cluster's own ---------------------------------------------------


@contextlib.contextmanager
def fresh_postgres_database(url: str):
    """Create the database named in ``url`` (dropping an old copy first), drop it afterwards."""
    import psycopg

    base, name = url.rsplit("/", 1)
    if not name or not all(c.isalnum() or c == "_" for c in name):
        raise ValueError(f"refusing database name {name!r}")
    admin = f"{base}/postgres"

    def run(sql: str) -> None:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(sql)

    run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    run(f'CREATE DATABASE "{name}"')
    try:
        yield url
    finally:
        with contextlib.suppress(Exception):
            run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", help="default: a SQLite file in a temporary directory")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="create the PostgreSQL database of --database-url, drop it on exit",
    )
    parser.add_argument(
        "--redis-url", help="a Redis database to share (default: a redis-server of the cluster's own)"
    )
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per server")
    args = parser.parse_args(argv)

    def stop(signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    with contextlib.ExitStack() as stack:
        url = args.database_url
        if url and args.fresh:
            url = stack.enter_context(fresh_postgres_database(url))
        cluster = stack.enter_context(
            Cluster(url, args.redis_url, args.servers, args.workers, log=lambda line: print(line, flush=True))
        )
        print(
            json.dumps({"issuer": cluster.issuer, "servers": cluster.servers, "demo": cluster.seed}, indent=2)
        )
        print("Ctrl-C stops everything.", flush=True)
        try:
            while all(process.poll() is None for _name, process in cluster.processes):
                time.sleep(0.5)
            print("A process of the cluster exited; stopping the others.", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
