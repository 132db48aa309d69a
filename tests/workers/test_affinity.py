"""`BOOKING_WORKER_CPUS` pins a worker process, every thread of it, to those CPUs."""

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from pydantic import ValidationError

from booking_testing.wait import wait_for
from booking_workers.affinity import parse_cpus
from booking_workers.settings import WorkerSettings

BOOKING = str(Path(sys.executable).parent / "booking")


@pytest.mark.parametrize(
    ("spec", "cpus"), [("0", {0}), ("0,2", {0, 2}), ("0-1,4", {0, 1, 4}), (" 3 ", {3}), ("1-1", {1})]
)
def test_cpu_lists_in_the_kernels_format(spec: str, cpus: set[int]) -> None:
    assert parse_cpus(spec) == cpus


@pytest.mark.parametrize("spec", ["x", "2-1", "-1", ",", "0-a"])
def test_a_bad_cpu_list_is_refused_at_start(spec: str) -> None:
    with pytest.raises(ValidationError):
        WorkerSettings(worker_cpus=spec)


def test_unset_or_blank_leaves_the_process_where_the_kernel_puts_it() -> None:
    assert WorkerSettings().worker_cpus is None
    assert WorkerSettings(worker_cpus=" ").worker_cpus is None


def _allowed(pid: int) -> dict[str, str]:
    """Each thread's allowed CPUs (the kernel's cpulist), by thread id."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except OSError:
            continue
        out[task.name] = next(x for x in status.splitlines() if x.startswith("Cpus_allowed_list:")).split()[1]
    return out


def test_a_worker_process_runs_every_thread_on_the_cpus_it_is_given(redis_url: str, tmp_path: Path) -> None:
    available = sorted(os.sched_getaffinity(0))
    assert len(available) >= 2, f"needs two CPUs to tell a pinned worker from one that is not: {available}"
    one = available[-1]
    ns = f"t-{uuid.uuid4().hex[:8]}"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("BOOKING_")
    } | {
        "BOOKING_REDIS_URL": redis_url,
        "BOOKING_BROKER_NAMESPACE": ns,
        "BOOKING_METRICS_PORT": "0",
        "BOOKING_WORKER_THREADS": "3",
        "BOOKING_WORKER_CPUS": str(one),
    }  # fmt: skip
    log = tmp_path / "worker.log"
    p = subprocess.Popen(
        [BOOKING, "worker", "default"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    r = redis.Redis.from_url(redis_url)
    try:
        # Up once it heartbeats on the broker: its worker and consumer threads are running by then.
        wait_for(lambda: r.zcard(f"{ns}:__heartbeats__") >= 1, timeout=60, what="the worker to start")
        allowed = _allowed(p.pid)
        assert len(allowed) >= 5, allowed  # main, 3 worker threads, a consumer: all of them pinned
        assert set(allowed.values()) == {str(one)}, allowed
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)
        r.close()
        print(log.read_text(errors="replace")[-2000:])
