"""``benchmarks/run.py --cluster``: the example IdP as two app servers behind HAProxy (one database,
one Redis DB), measured with the same phases as the single server, through the balancer.

The cluster is tests/scaleout/cluster.py (docs/operations.md, "Running several app servers"). On
one machine two servers share its cores with each other, the balancer, Redis and the database: the
numbers show what the balancer, the shared cache and a second server cost, not a speed-up, which
needs a second machine.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from benchmarks import stats
from tests.scaleout.cluster import Cluster

SERVERS = 2


class ClusterServer:
    """Quacks like ``run.Server``: ``port`` is the balancer's; worker CPU and server logs are
    those of every app server."""

    def __init__(self, target, workers: int, redis_url: str | None):
        self.target = target
        self.workers = workers * SERVERS
        self.cluster = Cluster(
            target.database_url,
            redis_url,
            servers_count=SERVERS,
            workers=workers,
            env=dict(target.env),
            seed_args=None,  # the benchmark migrated and seeded the database already
        )
        self.port = self.cluster.balancer_port

    def __enter__(self) -> ClusterServer:
        self.cluster.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.cluster.__exit__(*exc)

    def _apps(self):
        return [(name, process) for name, process in self.cluster.processes if name.startswith("app")]

    def worker_pids(self) -> list[int]:
        pids = []
        for _name, process in self._apps():
            with contextlib.suppress(OSError):
                path = Path(f"/proc/{process.pid}/task/{process.pid}/children")
                pids += [int(child) for child in path.read_text().split()]
        return pids

    def cpu_seconds(self) -> float | None:
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        try:
            for pid in self.worker_pids():
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            return None
        return total / ticks

    def _log(self, name: str) -> Path:
        return self.cluster.workdir / f"{name}.log"

    def log_offset(self) -> dict[str, int]:
        offsets = {}
        for name, _process in self._apps():
            try:
                offsets[name] = self._log(name).stat().st_size
            except OSError:
                offsets[name] = 0
        return offsets

    def exceptions_since(self, offset: dict[str, int]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for name, _process in self._apps():
            with contextlib.suppress(OSError), open(self._log(name), "rb") as log_file:
                log_file.seek(offset.get(name, 0))
                text = log_file.read().decode("utf-8", "replace")
                for exception, count in stats.server_exceptions(text).items():
                    counts[exception] = counts.get(exception, 0) + count
        return counts

    def error_log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.cluster.log_of(name, lines) for name, _process in self._apps())


def compare(single: dict | None, two: dict | None) -> dict:
    """Per phase: two servers' requests per second over one server's, and their latencies' ratio."""
    ratios: dict = {}
    if single and two:
        for phase in stats.PHASES:
            if phase in single["phases"] and phase in two["phases"]:
                ratios[phase] = stats.compare(two["phases"][phase], single["phases"][phase])
    return ratios


def table(result: dict) -> str:
    headers = ["db", "phase", "setup", "req", "ok/s", "p50 ms", "p99 ms", "errors", "cpu ms/req", "ratio"]
    rows = []
    for db, entry in result["databases"].items():
        two = entry.get("ours_two_servers")
        if not two:
            continue
        for phase in stats.PHASES:
            for setup, data in (("1 server", entry.get("ours")), (f"{SERVERS} servers+HAProxy", two)):
                summary = (data or {}).get("phases", {}).get(phase)
                if summary is None:
                    continue
                ratio = ""
                if data is two:
                    ratio = stats.format_ratio(
                        entry.get("two_servers_ratios", {}).get(phase, {}).get("speedup")
                    )
                rows.append(
                    [
                        db,
                        phase,
                        setup,
                        summary["requests"],
                        summary["rps"],
                        summary["p50_ms"],
                        summary["p99_ms"],
                        summary["errors"],
                        summary.get("server_cpu_ms_per_request"),
                        ratio,
                    ]
                )
    return stats.format_table(headers, rows)
