"""Pure functions of the benchmark: percentiles, phase summaries, ratios, the result document and
its text table. No I/O, no Django, no servers, so tests/test_benchmarks.py can check them fast."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

RESULT_SCHEMA = 1
PHASES = ("exchange", "refresh", "userinfo", "introspection", "signin")
PROJECTS = ("ours", "stock", "node")
MAX_ERROR_SAMPLES = 3
SLOWEST_SAMPLES = 8
ERROR_SAMPLE_CHARS = 300


def percentile(values: list[float], p: float) -> float | None:
    """The ``p``-th percentile (0..100) with linear interpolation between closest ranks (the
    definition numpy uses by default); None for no values."""
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be within 0..100, not {p}")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Sample:
    """One request: latency in seconds, HTTP status (0 when the connection failed) and, for a
    failure, the start of the response body or the exception text."""

    latency: float
    status: int
    error: str | None = None
    # When the request was sent, in seconds from the start of its round: whether the slowest
    # requests came first (a cold worker, a reload) or anywhere (queueing, the machine).
    sent_at: float = 0.0

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class PhaseStats:
    samples: list[Sample] = field(default_factory=list)
    wall_seconds: float = 0.0
    client_cpu_seconds: float = 0.0
    server_cpu_seconds: float | None = None
    server_exceptions: dict[str, int] = field(default_factory=dict)
    machine_busy: float | None = None  # fraction of all CPUs busy during the phase
    other_cpu_cores: float | None = None  # cores used by everything but the clients and workers

    def summary(self) -> dict:
        summary = summarize(
            self.samples,
            self.wall_seconds,
            client_cpu_seconds=self.client_cpu_seconds,
            server_cpu_seconds=self.server_cpu_seconds,
            server_exceptions=self.server_exceptions,
        )
        summary["machine_busy"] = None if self.machine_busy is None else round(self.machine_busy, 3)
        summary["other_cpu_cores"] = None if self.other_cpu_cores is None else round(self.other_cpu_cores, 2)
        return summary


def merge_phases(rounds: list[PhaseStats]) -> PhaseStats:
    """One phase run as several rounds (alternated with the other projects'): every sample, the
    wall time and CPU added up, the machine's load weighted by each round's wall time."""
    merged = PhaseStats(
        samples=[sample for phase in rounds for sample in phase.samples],
        wall_seconds=sum(phase.wall_seconds for phase in rounds),
        client_cpu_seconds=sum(phase.client_cpu_seconds for phase in rounds),
        server_cpu_seconds=(
            None
            if any(phase.server_cpu_seconds is None for phase in rounds)
            else sum(phase.server_cpu_seconds or 0.0 for phase in rounds)
        ),
    )
    for phase in rounds:
        for exception, count in phase.server_exceptions.items():
            merged.server_exceptions[exception] = merged.server_exceptions.get(exception, 0) + count
    for name in ("machine_busy", "other_cpu_cores"):
        known = [(getattr(phase, name), phase.wall_seconds) for phase in rounds]
        if known and all(value is not None for value, _ in known) and merged.wall_seconds > 0:
            setattr(merged, name, sum(value * wall for value, wall in known) / merged.wall_seconds)
    return merged


def pool_signin_rounds(signin: dict, again: dict | None) -> None:
    """Add the sign-ins of another in-process round (``again``) to ``signin``: the CPU medians
    are then taken over every sign-in of every round. A failed round adds nothing."""
    if not again:
        return
    for runs, median in (
        ("runs_cpu_minus_password_hash_ms", "cpu_minus_password_hash_ms"),
        ("runs_requests_cpu_minus_password_hash_ms", "requests_cpu_minus_password_hash_ms"),
    ):
        if runs in signin and runs in again:
            signin[runs] = signin[runs] + again[runs]
            signin[median] = round(percentile(signin[runs], 50) or 0.0, 2)
    signin["rounds"] = signin.get("rounds", 1) + 1


def paired_difference(ours: list[float], theirs: list[float]) -> float | None:
    """The median of ``ours[i] - theirs[i]`` (ms): measurements taken side by side, so what the
    machine's speed did between them cancels (it moves by more than the difference, minute to
    minute). None for no pairs."""
    differences = [a - b for a, b in zip(ours, theirs, strict=True)]
    median = percentile(differences, 50)
    return None if median is None else round(median, 2)


def paired_lines(result: dict) -> list[str]:
    """Lines: ours' sign-in CPU minus the password hash against each other project's, sign-in by
    sign-in (run.paired_signins), per database."""
    lines = []
    for db, project, data in _projects(result):
        paired = ((data.get("inprocess") or {}).get("signin") or {}).get("paired") or {}
        for other, entry in paired.items():
            spread = f" over {entry['processes']} processes each" if entry.get("processes", 1) > 1 else ""
            spread += f", in turns of {entry['block']}" if entry.get("block", 1) > 1 else ""
            lines.append(
                f"{db}: {project} - {other}, {entry['pairs']} pairs{spread}: "
                f"{entry['cpu_minus_password_hash_difference_ms']:+.2f} ms "
                f"({entry['requests_cpu_minus_password_hash_difference_ms']:+.2f} ms in its requests)"
            )
    return lines


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def summarize(
    samples: list[Sample],
    wall_seconds: float,
    *,
    client_cpu_seconds: float = 0.0,
    server_cpu_seconds: float | None = None,
    server_exceptions: dict[str, int] | None = None,
) -> dict:
    """What the table and the JSON report for one phase. Throughput counts successful requests
    only; latency percentiles cover every request, failed ones included (a fast 500 is no win)."""
    latencies = [s.latency for s in samples]
    ok = sum(1 for s in samples if s.ok)
    errors = [s for s in samples if not s.ok]
    count = len(samples)
    by_status: dict[str, int] = {}
    for s in errors:
        by_status[str(s.status)] = by_status.get(str(s.status), 0) + 1
    return {
        "requests": count,
        "ok": ok,
        "errors": len(errors),
        "errors_by_status": by_status,
        "error_samples": [
            f"{s.status}: {(s.error or '')[:ERROR_SAMPLE_CHARS]}" for s in errors[:MAX_ERROR_SAMPLES]
        ],
        "seconds": round(wall_seconds, 3),
        "rps": round(ok / wall_seconds, 2) if wall_seconds > 0 else None,
        "p50_ms": ms(percentile(latencies, 50)),
        "p90_ms": ms(percentile(latencies, 90)),
        "p99_ms": ms(percentile(latencies, 99)),
        "max_ms": ms(max(latencies)) if latencies else None,
        "slowest": [
            {"ms": ms(s.latency), "sent_at_s": round(s.sent_at, 3)}
            for s in sorted(samples, key=lambda s: s.latency, reverse=True)[:SLOWEST_SAMPLES]
        ],
        "client_cpu_ms_per_request": ms(client_cpu_seconds / count) if count else None,
        "server_cpu_ms_per_request": (
            ms(server_cpu_seconds / count) if count and server_cpu_seconds is not None else None
        ),
        "server_exceptions": dict(server_exceptions or {}),
    }


_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception)): (.*)$")


def server_exceptions(log_text: str) -> dict[str, int]:
    """Count the exceptions a server log reports (the last line of each traceback) and gunicorn's
    worker timeouts, e.g. ``{"django.db.utils.OperationalError: database is locked": 3}``."""
    counts: dict[str, int] = {}
    for line in log_text.splitlines():
        match = _EXCEPTION_LINE.match(line.strip())
        if match:
            key = f"{match.group(1)}: {match.group(2)[:200]}"
        elif "WORKER TIMEOUT" in line:
            key = "gunicorn: WORKER TIMEOUT"
        else:
            continue
        counts[key] = counts.get(key, 0) + 1
    return counts


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return round(numerator / denominator, 2)


def format_ratio(value: float | None) -> str:
    """``12.3×``; ``n/a`` when a side is missing or zero."""
    if value is None:
        return "n/a"
    if value >= 100:
        return f"{value:.0f}×"
    if value >= 10:
        return f"{value:.1f}×"
    return f"{value:.2f}×"


def compare(ours: dict, stock: dict) -> dict:
    """Ratios of one phase: ``speedup`` is ours/stock requests per second (higher is better);
    ``p50``/``p99`` are ours/stock latency (lower is better)."""
    return {
        "speedup": ratio(ours.get("rps"), stock.get("rps")),
        "p50": ratio(ours.get("p50_ms"), stock.get("p50_ms")),
        "p99": ratio(ours.get("p99_ms"), stock.get("p99_ms")),
    }


def new_result(*, mode: str, machine: dict, parameters: dict, date: str) -> dict:
    return {
        "schema": RESULT_SCHEMA,
        "date": date,
        "mode": mode,
        "machine": machine,
        "parameters": parameters,
        "databases": {},
        "prefill": None,
    }


def database_result(ours: dict | None, stock: dict | None, node: dict | None = None) -> dict:
    """``ours``/``stock``/``node`` are project results (``{"phases": {...}, ...}``); per phase,
    ``ratios`` compares ours with stock DOT and ``ratios_node`` ours with node-oidc-provider."""
    result = {"ours": ours, "stock": stock, "node": node, "ratios": {}, "ratios_node": {}}
    for key, baseline in (("ratios", stock), ("ratios_node", node)):
        if ours and baseline:
            for phase in PHASES:
                if phase in ours["phases"] and phase in baseline["phases"]:
                    result[key][phase] = compare(ours["phases"][phase], baseline["phases"][phase])
    return result


def _without_hashing(inprocess: dict | None) -> dict:
    """An in-process exchange breakdown reduced to what the database can change."""
    breakdown = (inprocess or {}).get("exchange_breakdown") or {}
    userinfo = (inprocess or {}).get("userinfo_breakdown") or {}
    if "min_minus_hashing_ms" in breakdown:  # least disturbed by the machine's other work
        minus_hashing = breakdown["min_minus_hashing_ms"]
    else:
        total, hashing = breakdown.get("total_ms"), breakdown.get("client_secret_hashing_ms")
        minus_hashing = None if total is None else round(total - (hashing or 0), 2)
    fastest = breakdown.get("fastest") or breakdown
    userinfo = userinfo.get("fastest") or userinfo
    return {
        "exchange_minus_hashing_ms": minus_hashing,
        "exchange_sql_ms": fastest.get("sql_ms"),
        "userinfo_ms": userinfo.get("total_ms"),
        "userinfo_sql_ms": userinfo.get("sql_ms"),
    }


def prefill_result(
    rows: int,
    empty: dict,
    filled: dict,
    seconds: float,
    *,
    empty_inprocess: dict | None = None,
    filled_inprocess: dict | None = None,
) -> dict:
    """Exchange latency under load before and after ``rows`` tokens were inserted, and the
    in-process exchange without client-secret hashing (which otherwise hides the database)."""
    before, after = _without_hashing(empty_inprocess), _without_hashing(filled_inprocess)
    return {
        "rows": rows,
        "insert_seconds": round(seconds, 1),
        "empty": empty,
        "filled": filled,
        "p50_ratio": ratio(filled.get("p50_ms"), empty.get("p50_ms")),
        "p99_ratio": ratio(filled.get("p99_ms"), empty.get("p99_ms")),
        "inprocess_empty": before,
        "inprocess_filled": after,
        "inprocess_ratios": {key: ratio(after[key], before[key]) for key in before},
        # With the SQL of each counted query and its time, to see which one grew.
        "inprocess_filled_report": filled_inprocess,
    }


_SUMMARY_KEYS = {"requests", "ok", "errors", "error_samples", "seconds", "rps", "p50_ms", "p99_ms"}


def shape_problems(result: dict) -> list[str]:
    """What is missing from a result document (empty when it has the documented shape)."""
    problems = [
        f"missing {key}"
        for key in ("schema", "date", "mode", "machine", "parameters", "databases", "prefill")
        if key not in result
    ]
    for key in ("nproc", "python", "django", "django_oauth_toolkit"):
        if key not in result.get("machine", {}):
            problems.append(f"machine.{key} missing")
    for db, entry in result.get("databases", {}).items():
        for project in PROJECTS:
            data = entry.get(project)
            if data is None:
                continue
            for phase, summary in data.get("phases", {}).items():
                missing = _SUMMARY_KEYS - set(summary)
                if missing:
                    problems.append(f"{db}.{project}.{phase} lacks {sorted(missing)}")
        if "ratios" not in entry:
            problems.append(f"{db}.ratios missing")
    return problems


# --- text output ------------------------------------------------------------------------------


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_table(headers: list[str], rows: list[list]) -> str:
    cells = [headers, *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(
                str(c).rjust(w) if i else str(c).ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def results_table(result: dict) -> str:
    """The summary table: one row per database, phase and project, then the ratio. ``cpu ms/req``
    is the gunicorn workers' CPU per request; ``others`` the cores everything else used meanwhile
    (PostgreSQL, and whatever else shares the machine)."""
    headers = ["db", "phase", "project", "req", "ok/s", "p50 ms", "p99 ms", "errors", "cpu ms/req", "others"]
    headers += ["ours/stock", "ours/node"]
    rows = []
    for db, entry in result["databases"].items():
        for phase in PHASES:
            for project in PROJECTS:
                data = entry.get(project)
                summary = (data or {}).get("phases", {}).get(phase)
                if summary is None:
                    continue
                speedup = vs_node = ""
                if project == "ours":
                    speedup = format_ratio(entry["ratios"].get(phase, {}).get("speedup"))
                    if entry.get("node"):
                        vs_node = format_ratio(entry.get("ratios_node", {}).get(phase, {}).get("speedup"))
                rows.append(
                    [
                        db,
                        phase,
                        project,
                        summary["requests"],
                        summary["rps"],
                        summary["p50_ms"],
                        summary["p99_ms"],
                        summary["errors"],
                        summary.get("server_cpu_ms_per_request"),
                        summary.get("other_cpu_cores"),
                        speedup,
                        vs_node,
                    ]
                )
    return format_table(headers, rows)


def _projects(result: dict):
    """The Django projects' results (node-oidc-provider has no in-process or sign-in numbers)."""
    for db, entry in result["databases"].items():
        for project in ("ours", "stock"):
            data = entry.get(project)
            if data:
                yield db, project, data


def inprocess_table(result: dict) -> str:
    rows = []
    for db, project, data in _projects(result):
        inproc = data.get("inprocess") or {}
        queries = inproc.get("queries") or {}
        exchange = inproc.get("exchange_breakdown") or {}
        breakdown = exchange.get("fastest") or exchange
        userinfo = inproc.get("userinfo_breakdown") or {}
        userinfo = userinfo.get("fastest") or userinfo
        cpu = inproc.get("cpu_ms") or {}
        rows.append(
            [
                db,
                project,
                (queries.get("exchange") or {}).get("queries"),
                (queries.get("refresh") or {}).get("queries"),
                (queries.get("userinfo") or {}).get("queries"),
                (queries.get("introspection") or {}).get("queries"),
                breakdown.get("total_ms"),
                breakdown.get("client_secret_hashing_ms"),
                breakdown.get("sql_ms"),
                breakdown.get("jws_signing_ms"),
                breakdown.get("rest_ms"),
                userinfo.get("total_ms"),
                userinfo.get("sql_ms"),
                cpu.get("exchange"),
                cpu.get("userinfo"),
                cpu.get("introspection"),
            ]
        )
    headers = ["db", "project", "q/exchange", "q/refresh", "q/userinfo", "q/introspect", "exchange"]
    headers += ["secret hash", "sql", "jws sign", "rest", "userinfo", "its sql"]
    return format_table([*headers, "cpu exchange", "cpu userinfo", "cpu introspect"], rows)


def resource_lines(result: dict) -> list[str]:
    """Offline access-token validation at a resource server (ours), per database run."""
    lines = []
    for db, project, data in _projects(result):
        validation = (data.get("inprocess") or {}).get("resource_validation")
        if project == "ours" and validation:
            median = validation.get("median_per_core_per_second")
            lines.append(
                f"  {db}: {validation['per_core_per_second']} validations/s per core "
                f"({validation['cpu_us_per_validation']} µs CPU each, "
                f"{validation['validations']} validations"
                + (f"; fastest of {validation['rounds']} rounds, median {median}/s" if median else "")
                + ")"
            )
            floor = validation.get("signature_only_per_core_per_second")
            if floor:
                lines.append(
                    f"      the signature check alone: {floor}/s per core "
                    f"({validation['signature_only_cpu_us']} µs); validation runs at "
                    f"{validation['per_core_per_second'] / floor:.2f}× that ceiling"
                )
            if validation.get("other_cores") is not None:
                lines.append(f"      other processes used {validation['other_cores']} cores meanwhile")
    return lines


SIGNIN_STEPS = ("authorize", "login_page", "login", "resume", "consent")


def _signin_inprocess(inproc: dict) -> list:
    return [
        inproc.get("total_ms"),
        inproc.get("password_hash_ms"),
        inproc.get("total_minus_password_hash_ms"),
        inproc.get("cpu_minus_password_hash_ms"),
        inproc.get("requests_cpu_minus_password_hash_ms"),
        inproc.get("queries"),
    ]


def signin_table(result: dict) -> str:
    rows = []
    for db, project, data in _projects(result):
        http = data.get("signin_breakdown") or {}
        steps = http.get("steps_p50_ms") or {}
        inprocess = data.get("inprocess") or {}
        inproc = inprocess.get("signin") or {}
        rows.append(
            [
                db,
                project,
                http.get("total_p50_ms"),
                *[steps.get(step) for step in SIGNIN_STEPS],
                *_signin_inprocess(inproc),
            ]
        )
        redis_sessions = inprocess.get("signin_redis_sessions")
        if redis_sessions:  # in process only: the HTTP phases ran with the database sessions
            rows.append(
                [db, f"{project}, sessions in Redis", *[None] * 6, *_signin_inprocess(redis_sessions)]
            )
    headers = ["db", "project", "HTTP total", *SIGNIN_STEPS]
    return format_table(
        [*headers, "in-proc total", "pw hash", "total - hash", "cpu - hash", "its requests", "queries"], rows
    )


def prefill_table(result: dict) -> str:
    rows = []
    for db, entry in (result.get("prefill") or {}).items():
        before, after = entry.get("inprocess_empty") or {}, entry.get("inprocess_filled") or {}
        ratios = entry.get("inprocess_ratios") or {}
        rows.append(
            [
                db,
                entry["rows"],
                entry["empty"]["p50_ms"],
                entry["filled"]["p50_ms"],
                format_ratio(entry["p50_ratio"]),
                entry["empty"]["p99_ms"],
                entry["filled"]["p99_ms"],
                format_ratio(entry["p99_ratio"]),
                entry["filled"]["errors"],
                before.get("exchange_minus_hashing_ms"),
                after.get("exchange_minus_hashing_ms"),
                format_ratio(ratios.get("exchange_minus_hashing_ms")),
                before.get("exchange_sql_ms"),
                after.get("exchange_sql_ms"),
            ]
        )
    headers = ["db", "rows", "p50 empty", "p50 filled", "ratio", "p99 empty", "p99 filled", "ratio", "errors"]
    return format_table(
        [*headers, "no-hash empty", "no-hash filled", "ratio", "sql empty", "sql filled"], rows
    )


def profile_summary(result: dict, project: str = "ours", packages: int = 8, functions: int = 12) -> list[str]:
    """Lines: where the profiled requests of ``project`` spend their time, per database."""
    lines = []
    for db, name, data in _projects(result):
        inproc = data.get("inprocess") or {}
        if name != project:
            continue
        for key, what in (("profile", "exchanges"), ("userinfo_profile", "userinfo calls")):
            profile = inproc.get(key)
            if not profile:
                continue
            lines.append(
                f"\nProfile of {profile['requests']} {what} ({project}, {db}): "
                f"{profile['profiled_ms_per_request']} ms each under cProfile; own time by package (ms):"
            )
            top = list(profile["tottime_ms_by_package"].items())[:packages]
            lines.append("  " + ", ".join(f"{package} {ms}" for package, ms in top))
            lines.append("  top functions by own time (ms per request, calls):")
            for row in profile["top_tottime"][:functions]:
                lines.append(
                    f"    {row['tottime_ms']:>8.3f}  {row['calls_per_request']:>7}  {row['function'][:100]}"
                )
    return lines
