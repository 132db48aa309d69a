"""Pinning a worker process to CPUs (`BOOKING_WORKER_CPUS`), every thread of it.

A worker is one Python process whose threads take turns on one GIL. On two idle cores the kernel runs
its threads on both, and each hand-off of the GIL between threads on different cores (every socket
wait: Redis, PostgreSQL, SMTP) wakes a thread on the other core that finds the GIL taken and sleeps
again. Measured in issue 15's seventh pass (`bench/workers.py`, 8 threads, quiet machine): pinned to
one core, the no-op actor's worker used 0.17-0.22 ms of CPU per message instead of 0.38-0.42, with
4 context switches per message instead of 15-17, and the notifications worker 0.54-0.72 ms per email
instead of 0.73-0.93. Off by default: which core suits a replica is the platform's choice (a static CPU
manager's exclusive core, or one picked per replica), not something a process should guess.
"""

from __future__ import annotations

import os
from pathlib import Path


def parse_cpus(spec: str) -> frozenset[int]:
    """CPU numbers from a list like "0", "0,2" or "0-1,4" (the kernel's cpulist format)."""
    cpus: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        first, _, last = part.partition("-")
        lo, hi = int(first), int(last or first)
        if lo < 0 or hi < lo:
            raise ValueError(f"not a CPU range: {part!r}")
        cpus.update(range(lo, hi + 1))
    if not cpus:
        raise ValueError(f"no CPU in {spec!r}")
    return frozenset(cpus)


def pin(cpus: frozenset[int]) -> None:
    """Restrict this process to `cpus`: every thread running now (affinity is per thread on Linux) and,
    through the calling thread's mask, every thread started later."""
    for task in Path("/proc/self/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except ProcessLookupError:  # the thread ended meanwhile
            continue
    os.sched_setaffinity(0, cpus)
