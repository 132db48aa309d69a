"""Workers benchmark: notifications/s through `booking worker notifications` to a real SMTP sink, beside
a no-op actor on the same Redis broker in the same run (the baseline: Dramatiq's own overhead).

Both workers run as real processes with the same thread count. Each phase enqueues N messages at once
and measures until the last one is done (the sink holds N emails; the default queue is drained).
Uses BOOKING_TEST_DATABASE_URL / BOOKING_TEST_REDIS_URL from `make bench`, or starts its own servers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from email import message_from_bytes
from pathlib import Path
from typing import Any

import redis
from aiosmtpd.controller import Controller
from sqlalchemy import func, insert, select

from booking_core.db import models as m
from booking_core.db.migrate import upgrade
from booking_core.db.models_notify import NotificationIntent
from booking_core.db.notify_outbox import Notice
from booking_core.db.session import make_engine, make_session_factory
from booking_core.domain.notifications import NotificationKind
from booking_testing.procs import free_port
from booking_testing.wait import wait_for
from booking_workers import broker as b
from booking_workers.notifications.store import DeliveryKey
from booking_workers.settings import WorkerSettings

BOOKING = str(Path(sys.executable).parent / "booking")
# Standard notices per notification job, as the dispatcher groups them (WorkerSettings' default).
NOTICE_GROUP = WorkerSettings.model_fields["notice_group_size"].default


class Sink:
    """aiosmtpd in this process (the fallback): counts accepted mails and when each arrived (wall clock,
    seconds), by notification id."""

    name = "aiosmtpd (in the bench process)"

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.lock = threading.Lock()
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        self.pids: list[int] = []  # its CPU is the bench process's

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd)
        nid = notification_id(envelope.original_content or envelope.content)
        with self.lock:
            self.arrived[nid] = time.time()
        return "250 OK"

    def stop(self) -> None:
        self.controller.stop()


class GoSink:
    """bench/smtpsink (Go) in its own process: it reports each mail's X-Notification-Id and receive time
    (Unix ns) on stdout, read here by one thread. Compiled, so the sink's own CPU (reported apart) is not
    Python competing with the worker for the two cores."""

    name = "smtpsink (Go, bench/smtpsink)"

    def __init__(self, binary: str) -> None:
        self.arrived: dict[str, float] = {}
        self.proc = subprocess.Popen([binary, "-addr", "127.0.0.1:0"], stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().decode()
        if not first.startswith("listening "):
            self.proc.kill()
            raise RuntimeError(f"smtpsink did not start: {first!r}")
        self.port = int(first.split()[1].rpartition(":")[2])
        self.pids = [self.proc.pid]
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            nid, _, ns = line.decode().partition(" ")
            self.arrived[nid] = int(ns) / 1e9

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def start_sink() -> Sink | GoSink:
    """The Go sink, built (or found cached) by scripts/infra/smtpsink.sh; aiosmtpd only when it cannot be
    built outside CI (a figure then says which sink it had). In CI a missing sink fails the bench."""
    script = Path(__file__).resolve().parent.parent / "scripts/infra/smtpsink.sh"
    try:
        binary = subprocess.run(
            ["bash", str(script)], check=True, capture_output=True, text=True
        ).stdout.strip()
        return GoSink(binary)
    except (subprocess.CalledProcessError, OSError, RuntimeError) as exc:
        if os.environ.get("CI") == "true":
            raise
        detail = getattr(exc, "stderr", "") or exc
        print(f"bench/smtpsink unavailable, falling back to aiosmtpd: {detail}", file=sys.stderr)
        return Sink()


def notification_id(data: bytes) -> str:
    """The X-Notification-Id header of a mail, found in its header block without parsing the mail.

    The sink stands in for a mail server elsewhere, yet runs on the bench's two cores: parsing every mail
    with `email.message_from_bytes` cost ~0.5 ms of CPU per email here, charged to the notifications
    figure and not to the no-op baseline. A mail without the header falls back to the parser."""
    head = data.partition(b"\r\n\r\n")[0].partition(b"\n\n")[0]
    at = head.find(b"\nX-Notification-Id: ")
    if at < 0:
        return str(message_from_bytes(data)["X-Notification-Id"])
    start = at + len(b"\nX-Notification-Id: ")
    end = head.find(b"\n", start)
    return head[start : end if end >= 0 else len(head)].decode("ascii").strip()


# The worker settings both workers run with: the deployed defaults (WorkerSettings), written out so
# the bench never inherits BOOKING_* from the caller's shell (`make bench` sources the infra's env;
# a developer's shell may hold BOOKING_WORKER_THREADS, BOOKING_WORKER_IDLE_POLL_MS, ...).
def worker_env(extra: dict[str, str]) -> dict[str, str]:
    """The workers' environment: the caller's minus every BOOKING_*/OTEL_*/KUBECONFIG, plus `extra`."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BOOKING_", "OTEL_", "DRAMATIQ_", "dramatiq_")) and k != "KUBECONFIG"
    }
    return {**keep, **extra}


def infra() -> tuple[str, str, list[Any]]:
    """(database url, redis url, servers to stop)."""
    stop: list[Any] = []
    admin = os.environ.get("BOOKING_TEST_DATABASE_URL")
    rurl = os.environ.get("BOOKING_TEST_REDIS_URL")
    work = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    if not admin:
        from booking_testing.postgres import start_postgres

        work.chmod(0o755)
        pg = start_postgres(work / "pg")
        stop.append(pg)
        admin = pg.url()
    if not rurl:
        from booking_testing.redis import start_redis

        rs = start_redis(work / "redis")
        stop.append(rs)
        rurl = rs.url
    from booking_testing.postgres import create_database

    name = f"bench_workers_{uuid.uuid4().hex[:8]}"
    create_database(admin, name)
    return f"{admin.rpartition('/')[0]}/{name}", rurl, stop


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of processes so far (/proc; Linux only)."""
    return sum(cpu_split(pids))


def cpu_split(pids: list[int]) -> tuple[float, float]:
    """(user, system) CPU seconds of processes so far."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        user, system = user + int(fields[11]) / tick, system + int(fields[12]) / tick
    return user, system


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy so far (/proc/stat: everything but idle and iowait)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def processes_cpu() -> dict[int, tuple[str, int, int]]:
    """Every process's (name, CPU ticks, its reaped children's CPU ticks).

    PostgreSQL's processes are named by their title (autovacuum, background writers, backends); its
    short-lived autovacuum workers, once gone, show as the postmaster's reaped children."""
    out: dict[int, tuple[str, int, int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            raw = (d / "stat").read_text()
            name = raw[raw.find("(") + 1 : raw.rfind(")")]
            if name == "postgres":
                title = (d / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
                name = postgres_role(title)
        except OSError:
            continue
        f = raw.rpartition(")")[2].split()
        out[int(d.name)] = (name, int(f[11]) + int(f[12]), int(f[13]) + int(f[14]))
    return out


def postgres_role(title: str) -> str:
    """A PostgreSQL process's part by its title: "postgres: autovacuum worker" -> "postgres autovacuum"."""
    if not title.startswith("postgres: "):
        return "postgres"  # the postmaster
    if "autovacuum" in title:
        return "postgres autovacuum"
    if any(w in title for w in ("writer", "checkpointer", "logical replication", "io worker")):
        return "postgres background"
    return "postgres backends"


def switches(pids: list[int]) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of every thread of the processes so far: a thread that
    waits for the GIL, a socket or a condition switches voluntarily; one the kernel preempts does not."""
    vol = invol = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                status = (task / "status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    vol += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    invol += int(line.split()[1])
    return vol, invol


def cpu_by_process(
    before: dict[int, tuple[str, int, int]],
    after: dict[int, tuple[str, int, int]],
    n: int,
    names: dict[int, str],
) -> dict[str, float]:
    """CPU ms per message of every process group busy in a phase (bench roles by pid, others by name)."""
    tick = os.sysconf("SC_CLK_TCK")
    groups: dict[str, float] = {}
    for pid, (name, ticks, reaped) in after.items():
        was = before.get(pid, (name, 0, 0))  # not there before: started during the phase
        for key, spent in (
            (names.get(pid, name), ticks - was[1]),
            (f"{name} (exited children)", reaped - was[2]),
        ):
            if spent > 0:
                groups[key] = groups.get(key, 0.0) + spent / tick
    return {
        k: round(v * 1000 / n, 3)
        for k, v in sorted(groups.items(), key=lambda kv: -kv[1])
        if v * 1000 / n >= 0.005
    }


def cpu_speed_ms() -> float:
    """CPU ms of a fixed pure-Python loop in this process: how fast the machine runs Python right now
    (a VM's vCPU shares its core with others), so a slow run can be told from a slow worker."""
    t = time.process_time()
    acc = 0
    for i in range(300_000):
        acc += i % 7
    return round((time.process_time() - t) * 1000, 2)


def release(r: redis.Redis, staged: str, ns: str) -> float:
    """Move the staged queues into the workers' namespace in one MULTI (RENAME each queue's list and
    its messages' hash; the enqueue script's own `__heartbeats__` stay), so the whole burst appears
    at once; the time it did."""
    keys = [k.decode() for k in r.scan_iter(match=f"{staged}:*")]
    keys = [k for k in keys if not k[len(staged) + 1 :].startswith("__")]
    pipe = r.pipeline(transaction=True)
    for key in keys:
        target = ns + key[len(staged) :]
        if r.exists(target):
            raise RuntimeError(f"{target} is not empty: the previous phase did not drain")
        pipe.rename(key, target)
    at = time.time()
    pipe.execute()
    return at


class Profiler:
    """py-spy recording one worker process while a phase runs (SIGINT makes it write its file)."""

    def __init__(self, pid: int, out: Path) -> None:
        self.out = out
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--rate", "200",
            "--format", "speedscope", "--output", str(out), "--nonblocking",
            *(["--gil"] if os.environ.get("BENCH_PROFILE_WALL") != "1" else ["--idle"]),
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        self.proc.send_signal(2)
        _, err = self.proc.communicate(timeout=60)
        if not self.out.exists():
            raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace')[-2000:]}")


def noop_phase(
    r: redis.Redis, rb: Any, staged: str, ns: str, n: int, pids: list[int], roles: dict[int, str]
) -> dict[str, Any]:
    """One no-op burst of n: staged, released, timed until the default queue holds none unacked."""
    e0 = time.perf_counter()
    for _ in range(n):
        b.enqueue("noop", queue_name="default", kwargs={})
    enqueued_s = time.perf_counter() - e0
    speed = cpu_speed_ms()
    sw0, p0 = switches(pids), processes_cpu()
    c0, k0, m0 = cpu_seconds(pids), cpu_split(pids)[1], machine_busy_seconds()
    t0 = release(r, staged, ns)
    wait_for(lambda: rb.do_qsize("default") == 0, timeout=600, what="no-op queue to drain", interval=0.01)
    s = time.time() - t0
    return phase_figures(n, s, enqueued_s, speed, pids, c0, k0, m0, sw0, p0, roles)


def outbox_rows(db_url: str, jobs: list[tuple[str, str]]) -> list[int]:
    """The notification outbox's rows for `jobs` (patient, result id), as dispatched: their ids."""
    now = datetime.now(UTC)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        ids = list(
            conn.scalars(
                insert(NotificationIntent).returning(NotificationIntent.id, sort_by_parameter_order=True),
                [
                    {
                        "intent_key": f"{ref}:results_available",
                        "patient_id": pid,
                        "kind": "results_available",
                        "ref_id": ref,
                        "cause": ref,
                        "not_before": now,
                        "dispatched_at": now,
                        "dispatches": 1,
                    }
                    for pid, ref in jobs
                ],
            )
        )
    engine.dispose()
    return ids


def open_rows(db_url: str, ids: list[int]) -> int:
    """How many of the outbox rows `ids` are not completed."""
    engine = make_engine(db_url)
    with engine.connect() as conn:
        count = conn.scalar(
            select(func.count())
            .select_from(NotificationIntent)
            .where(NotificationIntent.id.in_(ids), NotificationIntent.completed_at.is_(None))
        )
    engine.dispose()
    return count or 0


def notify_phase(
    db_url: str,
    r: redis.Redis,
    staged: str,
    ns: str,
    n: int,
    k: int,
    patients: list[str],
    pids: list[int],
    roles: dict[int, str],
    sink: Sink | GoSink,
    profile: Path | None,
) -> dict[str, Any]:
    """Round k's email burst of n: staged, released, timed until the sink took the last mail.

    Each email is a notice from the notification outbox, as deployed: its outbox row is written (and
    marked dispatched) while staging, and the job completes it (the phase ends once every row is). The
    notices are enqueued as the dispatcher hands a claim's standard ones over: NOTICE_GROUP to a job."""
    profiler = Profiler(pids[0], profile) if profile else None
    ids: list[str] = []
    e1 = time.perf_counter()
    jobs = [(patients[i % len(patients)], f"res-{k}-{i}") for i in range(n)]
    intents = outbox_rows(db_url, jobs)
    notices = []
    for (pid, ref), intent in zip(jobs, intents, strict=True):
        ids.append(DeliveryKey(pid, "results_available", ref, "email", ref).notification_id)
        kind = NotificationKind.RESULTS_AVAILABLE
        notices.append(Notice(intent, pid, kind, ref, ref, "standard", False))
    for i in range(0, n, NOTICE_GROUP):
        b.send_notices(notices[i : i + NOTICE_GROUP])
    enqueued_s = time.perf_counter() - e1
    speed = cpu_speed_ms()
    sw1, p1 = switches(pids), processes_cpu()
    c1, k1, m1 = cpu_seconds(pids), cpu_split(pids)[1], machine_busy_seconds()
    b1, s1 = time.process_time(), cpu_seconds(sink.pids)
    t1 = release(r, staged, ns)
    wait_for(
        lambda: all(i in sink.arrived for i in ids), timeout=900, what="all emails at the sink", interval=0.01
    )
    # Until the sink took the last mail (its own clock), not until this process noticed.
    s = max(sink.arrived[i] for i in ids) - t1
    out = phase_figures(n, s, enqueued_s, speed, pids, c1, k1, m1, sw1, p1, roles)
    # The job's last step, after its mail: a notice left open would be dispatched again.
    wait_for(lambda: open_rows(db_url, intents) == 0, timeout=120, what="every outbox row completed")
    bench_cpu = time.process_time() - b1
    sink_cpu = cpu_seconds(sink.pids) - s1 if sink.pids else bench_cpu
    if profiler is not None:
        profiler.stop()
    latencies = sorted((sink.arrived[i] - t1) * 1000 for i in ids)

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1)

    out["latency_ms"] = {"p50": pct(0.5), "p99": pct(0.99), "mean": round(statistics.fmean(latencies), 1)}
    out["bench_process_cpu_ms"] = round(bench_cpu * 1000 / n, 3)
    out["sink_cpu_ms"] = round(sink_cpu * 1000 / n, 3)
    out["sink_cpu_share"] = round(sink_cpu / (s * (os.cpu_count() or 1)), 3)
    return out


def phase_figures(
    n: int,
    s: float,
    enqueued_s: float,
    speed: float,
    pids: list[int],
    c0: float,
    k0: float,
    m0: float,
    sw0: tuple[int, int],
    p0: dict[int, tuple[str, int, int]],
    roles: dict[int, str],
) -> dict[str, Any]:
    """A phase's figures per message from the counters taken before its release."""
    machine = machine_busy_seconds() - m0
    return {
        "per_s": round(n / s, 1),
        "s": round(s, 3),
        # How long this process took to stage the burst, before the phase (not in the figures).
        "enqueue_s": round(enqueued_s, 3),
        "worker_cpu_ms": round((cpu_seconds(pids) - c0) * 1000 / n, 3),
        "worker_sys_ms": round((cpu_split(pids)[1] - k0) * 1000 / n, 3),
        # The measured worker's threads' context switches per message (voluntary, involuntary): GIL and
        # socket waits; the worker's CPU per message followed them in issue 15's seventh pass.
        "worker_switches": [round((a - b) / n, 2) for a, b in zip(switches(pids), sw0, strict=True)],
        "machine_cpu_ms": round(machine * 1000 / n, 3),
        "machine_busy_share": round(machine / (s * (os.cpu_count() or 1)), 3),
        # Every process busy in the phase (the workers, the sink, PostgreSQL by role, Redis, anything
        # else on the machine), CPU ms per message: where a slow run's time went.
        "cpu_ms_by_process": cpu_by_process(p0, processes_cpu(), n, roles),
        # A fixed pure-Python loop's CPU ms in this process just before the phase: the machine's speed.
        "cpu_speed_ms": speed,
    }


DEFAULT_THREADS = WorkerSettings.model_fields["worker_threads"].default


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results/workers.json")
    ap.add_argument("-n", type=int, default=int(os.environ.get("BENCH_WORKERS_N", "1000")))
    ap.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("BENCH_WORKERS_THREADS", DEFAULT_THREADS)),
        help="threads of both workers (default: the deployed default, WorkerSettings.worker_threads)",
    )
    ap.add_argument(
        "--processes",
        type=int,
        default=int(os.environ.get("BENCH_WORKERS_PROCESSES", "1")),
        help="processes of each worker (default 1, the deployed replica count's unit)",
    )
    ap.add_argument(
        "--cpus",
        default=os.environ.get("BENCH_WORKERS_CPUS", ""),
        help="BOOKING_WORKER_CPUS of both workers, e.g. 0 (default: unset, the deployed default)",
    )
    ap.add_argument(
        "--log-level",
        default=os.environ.get("BENCH_WORKERS_LOG_LEVEL", WorkerSettings.model_fields["log_level"].default),
        help="BOOKING_LOG_LEVEL of both workers (default: the deployed default); their output is discarded",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=int(os.environ.get("BENCH_WORKERS_ROUNDS", "5")),
        help="alternating no-op and email bursts in the same workers; figures are their medians",
    )
    ap.add_argument("--profile", type=Path, default=None, help="py-spy the notifications worker into DIR")
    args = ap.parse_args()
    n = args.n

    db_url, redis_url, servers = infra()
    upgrade(db_url)
    patients = [f"bench-{i}" for i in range(50)]
    engine = make_engine(db_url)
    with make_session_factory(engine)() as s:
        for pid in patients:
            s.add(m.Patient(id=pid, email=f"{pid}@example.org", time_zone="UTC"))
        s.flush()
        for pid in patients:  # email only: the figure is mails through SMTP
            s.add(m.NotificationPreference(patient_id=pid, sms=False, push=False, in_app=False))
        s.commit()
    engine.dispose()

    sink = start_sink()
    ns = f"bench-{uuid.uuid4().hex[:8]}"
    env = worker_env(
        {
            "BOOKING_DATABASE_URL": db_url,
            "BOOKING_REDIS_URL": redis_url,
            "BOOKING_BROKER_NAMESPACE": ns,
            "BOOKING_SMTP_HOST": "127.0.0.1",
            "BOOKING_SMTP_PORT": str(sink.port),
            "BOOKING_WORKER_THREADS": str(args.threads),
            "BOOKING_METRICS_PORT": "0",
            # The deployed level (INFO unless told): the notifications worker logs each attempt there, a
            # cost per email the product pays; WARNING here skipped it (issue 15, seventh pass).
            "BOOKING_LOG_LEVEL": args.log_level,
            **({"BOOKING_WORKER_CPUS": args.cpus} if args.cpus else {}),
        }
    )
    idle_poll_ms = WorkerSettings.model_fields["worker_idle_poll_ms"].default  # not set: the default
    delay_poll_ms = WorkerSettings.model_fields["worker_delay_poll_ms"].default
    rb = b.build_broker(redis_url, b.BrokerSettings(namespace=ns))
    # Bursts are enqueued into a staging namespace the workers do not read, then released into theirs at
    # once (`release`): enqueuing from this process (a Python Redis round trip per message, on the same
    # cores) took 60-80% of the no-op phase, so the baseline measured the producer, not Dramatiq.
    staged = f"{ns}-staged"
    b.setup_broker(broker=b.build_broker(redis_url, b.BrokerSettings(namespace=staged)))
    # P processes of each worker (replicas, as the platform scales them), each with the same threads.
    procs = {
        w: [
            subprocess.Popen(
                [BOOKING, "worker", w], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
            )
            for _ in range(args.processes)
        ]
        for w in ("notifications", "default")
    }
    r = redis.Redis.from_url(redis_url)
    try:
        # Both workers are up once they heartbeat on the broker.
        wait_for(
            lambda: r.zcard(f"{ns}:__heartbeats__") >= 2 * args.processes,
            timeout=60,
            what="workers to start",
            interval=0.01,
        )
        pids = {w: [p.pid for p in ps] for w, ps in procs.items()}
        roles = {pid: f"worker {w}" for w, ps in pids.items() for pid in ps}
        roles.update({pid: "sink" for pid in sink.pids})
        roles[os.getpid()] = "bench"
        load_before = os.getloadavg()[0]
        rounds = []
        for k in range(args.rounds):
            # Round 1 is the workers' first burst (each thread's first connection, its statements'
            # preparation): kept and reported like every other round, not dropped.
            profile = (
                args.profile / "workers-notifications.speedscope.json" if args.profile and k == 0 else None
            )
            noop = noop_phase(r, rb, staged, ns, n, pids["default"], roles)
            notify = notify_phase(
                db_url, r, staged, ns, n, k, patients, pids["notifications"], roles, sink, profile
            )
            rounds.append(
                {
                    "round": k + 1,
                    "noop_per_s": noop["per_s"],
                    "notifications_per_s": notify["per_s"],
                    "ratio_notifications_to_noop": round(notify["per_s"] / noop["per_s"], 3),
                    "load_average_1m": round(os.getloadavg()[0], 1),
                    "noop": noop,
                    "notifications": notify,
                }
            )
        load_after = os.getloadavg()[0]
    finally:
        for ps in procs.values():
            for p in ps:
                p.terminate()
        for ps in procs.values():
            for p in ps:
                p.wait(30)
        sink.stop()
        rb.close()
        for srv in servers:
            srv.stop()

    def median(key: str, *path: str) -> float:
        values = []
        for rnd in rounds:
            v: Any = rnd
            for part in (*path, key):
                v = v[part]
            values.append(v)
        return round(statistics.median(values), 3)

    result = {
        "benchmark": "workers",
        "n": n,
        "rounds": args.rounds,
        "worker_threads": args.threads,
        # The same for both workers; everything else is WorkerSettings' default (the deployed one).
        "worker_settings": {
            "processes": args.processes,
            "threads": args.threads,
            "idle_poll_ms": idle_poll_ms,
            "delay_poll_ms": delay_poll_ms,
            "queue_prefetch": args.threads,
            "notices_per_job": NOTICE_GROUP,  # the notifications' jobs; the no-op's are one message each
            "cpus": args.cpus or None,  # BOOKING_WORKER_CPUS; None: not pinned
            "log_level": args.log_level,
        },
        # The headline figures are medians over the rounds (each round: a no-op burst, then an email
        # burst, in the same worker processes); every round is kept under "each_round". The ratio is the
        # median of the rounds' own ratios, each of two phases a second apart.
        "noop_per_s": median("noop_per_s"),
        "notifications_per_s": median("notifications_per_s"),
        "ratio_notifications_to_noop": median("ratio_notifications_to_noop"),
        "ratio_range": [
            min(x["ratio_notifications_to_noop"] for x in rounds),
            max(x["ratio_notifications_to_noop"] for x in rounds),
        ],
        "email_latency_ms": {q: median(q, "notifications", "latency_ms") for q in ("p50", "p99", "mean")},
        "phase_s": {"noop": median("s", "noop"), "notifications": median("s", "notifications")},
        # CPU of the worker's processes per message: steadier than rates on a shared machine.
        "noop_worker_cpu_ms_per_message": median("worker_cpu_ms", "noop"),
        "notifications_worker_cpu_ms_per_message": median("worker_cpu_ms", "notifications"),
        # The kernel's part of it (socket calls, GIL hand-offs between threads): Python profiles miss it.
        "notifications_worker_sys_ms_per_message": median("worker_sys_ms", "notifications"),
        # Every process on the machine (PostgreSQL, Redis, the sink, the bench, and whatever else runs):
        # with two cores this bounds the rate, e.g. 4 ms per email caps it at 500/s.
        "machine_cpu_ms_per_message": {
            "noop": median("machine_cpu_ms", "noop"),
            "notifications": median("machine_cpu_ms", "notifications"),
        },
        "machine_busy_share": {
            "noop": median("machine_busy_share", "noop"),
            "notifications": median("machine_busy_share", "notifications"),
        },
        # The SMTP sink stands in for a mail server elsewhere but runs on these cores: its part of them
        # while the notifications ran, as the api bench reports wrk's (aiosmtpd: the bench process's).
        "sink": sink.name,
        "sink_cpu_ms_per_email": median("sink_cpu_ms", "notifications"),
        "sink_cpu_share": median("sink_cpu_share", "notifications"),
        "load_average_1m": [round(load_before, 1), round(load_after, 1)],
        "profiled": args.profile is not None,
        "each_round": rounds,
        "note": "email only, SMTP to a local sink (see sink); worker_settings.processes of each; "
        "the emails' jobs carry worker_settings.notices_per_job outbox notices each, as the dispatcher "
        "groups standard notices (per email: notifications_per_s); "
        "Redis; PostgreSQL; "
        "each burst of n is staged, then released into the workers' queues at once (one MULTI); "
        "latency is from the release and includes waiting behind the burst; "
        "rounds alternate a no-op and an email burst in the same processes, figures are their medians",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
