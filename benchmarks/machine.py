"""The whole machine's CPU (Linux ``/proc/stat``): what the benchmark's own processes did not use
is other processes' work (PostgreSQL's background writers and autovacuum, another tenant of a
shared machine), which slows a CPU measurement running beside it."""

from __future__ import annotations

import os
import time
from pathlib import Path


def machine_cpu() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine so far (Linux /proc/stat), or None."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy / ticks, (busy + idle + iowait) / ticks


class OtherCores:
    """Cores the rest of the machine used between construction and :meth:`read`: the machine's
    busy CPU minus this process's own (``time.process_time``), over the wall time."""

    def __init__(self) -> None:
        self.machine, self.own, self.started = machine_cpu(), time.process_time(), time.perf_counter()

    def read(self) -> float | None:
        machine, elapsed = machine_cpu(), time.perf_counter() - self.started
        if machine is None or self.machine is None or elapsed <= 0:
            return None
        others = machine[0] - self.machine[0] - (time.process_time() - self.own)
        return round(max(0.0, others / elapsed), 2)  # clock ticks can round an idle machine below 0


def wait_until_quiet(cores: float = 0.15, sample_seconds: float = 1.0, limit_seconds: float = 90.0) -> dict:
    """Sleep until the rest of the machine used under ``cores`` over one ``sample_seconds``, or
    ``limit_seconds`` passed: a CPU-time measurement next to PostgreSQL's work after a load phase
    (autovacuum, the checkpoint) measured the machine's sharing, not the code (the same RSA
    verification took 20 µs in one half of a run and 27 µs in the other). Returns how long it
    waited and the last sample, for the report."""
    started = time.perf_counter()
    while True:
        sample = OtherCores()
        time.sleep(sample_seconds)
        busy = sample.read()
        waited = time.perf_counter() - started
        if busy is None or busy < cores or waited >= limit_seconds:
            return {
                "waited_seconds": round(waited, 1),
                "other_cores": busy,
                "quiet": busy is not None and busy < cores,
            }
