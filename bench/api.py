"""API benchmark: booking creation and slot search through `booking api` (uvicorn, several workers) on
PostgreSQL, beside /healthz of the same app measured in the same run (the baseline: uvicorn, middleware,
routing and the client's own cost, with no database).

The load generator is wrk (compiled, one thread, keep-alive connections; bench/wrk/requests.lua replays
prepared requests), pinned to the last core with taskset; with 4+ cores the server keeps the others.
Each figure carries the client's share of the machine's CPU beside it, and the load average. Without wrk,
`--client python` runs the old in-process threads (which compete with the server and cap the baseline).
Each phase runs for a fixed time. Bookings use unique Idempotency-Keys over many slots of capacity 100
and several patients (never the same patient twice on a slot), so every answer should be 201; anything
else is counted as an error. Afterwards the database is checked: one booking and one outbox event per
201, no slot over capacity.

    python bench/api.py --out bench/results/api.json [--workers 2] [--concurrency 16] [--client wrk|python]
        [--only search,create,list] [--profile DIR]

`--only` runs the /healthz baseline and the named phases alone (one part at a time on a busy machine).
`--profile DIR` records each measured phase with py-spy (a dev dependency) into
DIR/profile-<phase>.speedscope.json (open in https://www.speedscope.app or `bench/report/profile_top.py`);
sampling takes CPU from the server, so a profiled run's figures are marked and are not the bench's.
Samples are of the thread holding the GIL (Python CPU); BENCH_PROFILE_WALL=1 samples every thread, idle too.

Uses BOOKING_TEST_DATABASE_URL (an admin URL; `make bench` exports it) to create a fresh database, or
starts its own PostgreSQL.
"""

from __future__ import annotations

import os
import sys

# bench/ holds operator.py, which would shadow the standard library's `operator` for later imports.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from booking_api.demo import seed_demo  # noqa: E402
from booking_api.embedded import dev_token  # noqa: E402
from booking_api.settings import ApiSettings  # noqa: E402
from booking_core.db import models as m  # noqa: E402
from booking_core.db.migrate import upgrade  # noqa: E402
from booking_core.db.session import make_engine, make_session_factory  # noqa: E402
from booking_testing.procs import free_port  # noqa: E402

BOOKING = str(Path(sys.executable).parent / "booking")
PATIENTS = 64
BENCH_CLINIC = "BENCH"
# Slots of the bench clinic: every day 00:00-23:45 UTC, 15 minutes, capacity 100, for 14 days.
RULE = {"start_time": "00:00:00", "end_time": "23:45:00", "slot_minutes": 15, "capacity": 100}
DAYS = 14


def infra() -> tuple[str, list[Any]]:
    """(URL of a fresh database, servers to stop)."""
    stop: list[Any] = []
    admin = os.environ.get("BOOKING_TEST_DATABASE_URL")
    if not admin:
        from booking_testing.postgres import start_postgres

        work = Path(tempfile.mkdtemp(prefix="bench-api-"))
        work.chmod(0o755)  # PostgreSQL runs as `postgres` when we are root
        pg = start_postgres(work / "pg")
        stop.append(pg)
        admin = pg.url()
    from booking_testing.postgres import create_database

    name = f"bench_api_{uuid.uuid4().hex[:8]}"
    create_database(admin, name)
    return f"{admin.rpartition('/')[0]}/{name}", stop


def seed(db_url: str) -> tuple[str, str, list[str]]:
    """Demo data, the bench clinic and patients; returns (bench clinic id, demo clinic id, patient ids)."""
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with make_session_factory(engine)() as s:
            seed_demo(s)
            # Clinics and patients have no create endpoint (master data and the customer consumer own them).
            clinic = m.Clinic(code=BENCH_CLINIC, name="Bench Clinic", time_zone="UTC")
            s.add(clinic)
            patients = [f"bench-patient-{i:03d}" for i in range(PATIENTS)]
            s.add_all([m.Patient(id=p, tier="standard") for p in patients])
            s.commit()
            demo = s.scalar(select(m.Clinic.id).where(m.Clinic.code == "CENTRAL"))
            assert demo is not None
            return clinic.id, demo, patients
    finally:
        engine.dispose()


def start_api(db_url: str, port: int, workers: int, log: Path, cpus: list[str]) -> subprocess.Popen[bytes]:
    """`booking api` on loopback; returns once /readyz answers 200 (60 s at most)."""
    env = {
        **os.environ,
        "BOOKING_DATABASE_URL": db_url,
        "BOOKING_HOST": "127.0.0.1",
        "BOOKING_PORT": str(port),
        "BOOKING_WORKERS": str(workers),
        # Every request comes from one loopback address: the per-client budget would measure 429s.
        "BOOKING_RATE_LIMIT_ENABLED": "false",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)  # no collector here: tracing off, as in `booking run`
    with log.open("wb") as fh:
        proc = subprocess.Popen([*cpus, BOOKING, "api"], env=env, stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_api(proc)
            raise RuntimeError(f"booking api did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def stop_api(proc: subprocess.Popen[bytes]) -> None:
    """Stop the API and its workers (SIGTERM, then SIGKILL after 30 s)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def staff_setup(base: str, settings: ApiSettings, clinic_id: str) -> list[str]:
    """Through the staff API: a schedule per weekday, generated for DAYS days; returns the slot ids."""
    headers = {"Authorization": f"Bearer {dev_token(settings, 'bench-staff', 'staff')}"}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as c:
        for wd in range(7):
            body = {"service_code": "blood-draw", "weekday": wd, **RULE}
            key = {"Idempotency-Key": f"bench-schedule-{wd}"}
            c.post(f"/api/v1/staff/clinics/{clinic_id}/schedules", json=body, headers=key).raise_for_status()
        first = datetime.now(UTC).date() + timedelta(days=1)
        window = {"date_from": first.isoformat(), "date_to": (first + timedelta(days=DAYS - 1)).isoformat()}
        c.post(f"/api/v1/staff/clinics/{clinic_id}/slots/generate", json=window).raise_for_status()
        r = c.get(f"/api/v1/staff/clinics/{clinic_id}/slots", params=window)
        r.raise_for_status()
        return [s["id"] for s in r.json() if s["free"] > 0]


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of sorted values, in ms with one decimal."""
    return round(values[min(len(values) - 1, int(q * len(values)))], 1) if values else 0.0


# One prepared request: method, path, bearer token ("" for none), Idempotency-Key ("" for none), JSON body.
Line = tuple[str, str, str, str, str]
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk" / "requests.lua"


def cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


def batch_counts(base: str) -> tuple[float, float]:
    """(batches, statements) the API's pipeline has sent so far, from its /metrics (all workers)."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    values = {"count": 0.0, "sum": 0.0}
    for line in text.splitlines():
        for kind in values:
            if line.startswith(f"booking_api_db_batch_statements_{kind} "):
                values[kind] = float(line.split()[1])
    return values["count"], values["sum"]


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system) used so far by a process and its descendants (uvicorn's workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        used[pid] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += used.get(pid, 0.0)
        todo += [child for child, parent in parents.items() if parent == pid]
    return total


def cpu_plan() -> tuple[list[str], list[str]]:
    """taskset prefixes (server, client): the client gets the last core; the server keeps the others
    when there are at least 4, else it keeps every core (on 2 cores, one would halve it)."""
    n = os.cpu_count() or 1
    if not shutil.which("taskset") or n < 2:
        return [], []
    client = ["taskset", "-c", str(n - 1)]
    server = ["taskset", "-c", f"0-{n - 2}"] if n >= 4 else []
    return server, client


def summarise(
    *,
    done: int,
    elapsed: float,
    latencies_ms: dict[str, float],
    by_status: dict[str, int],
    expected: int,
    client_cpu_s: float,
    busy: tuple[float, float],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The figures of one phase, whichever client ran it."""
    (b0, t0), (b1, t1) = busy, cpu_busy()
    cores = os.cpu_count() or 1
    return {
        "requests": done,
        "seconds": round(elapsed, 2),
        "req_per_s": round(done / elapsed, 1) if elapsed else 0.0,
        "latency_ms": latencies_ms,
        "ok": by_status.get(str(expected), 0),
        "errors": sum(v for k, v in by_status.items() if k != str(expected)),
        "by_status": dict(sorted(by_status.items())),
        # Share of the machine (all cores) the load generator used: what it took from the server.
        "client_cpu_share": round(client_cpu_s / (elapsed * cores), 3) if elapsed else 0.0,
        "machine_busy_share": round((b1 - b0) / (t1 - t0), 3) if t1 > t0 else 0.0,
        "load_average_1m": round(os.getloadavg()[0], 1),
        **extra,
    }


def wrk_phase(
    base: str,
    lines: list[Line],
    *,
    seconds: float,
    concurrency: int,
    expected: int,
    cycle: bool,
    client_cpus: list[str],
) -> dict[str, Any]:
    """Replay `lines` with wrk (one thread, `concurrency` connections) for `seconds`."""
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as fh:
        fh.writelines("\t".join(line) + "\n" for line in lines)
    cmd = [
        *client_cpus, "wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "30s",
        "-s", str(WRK_SCRIPT), base, "--", fh.name, "cycle" if cycle else "once", "1",
    ]  # fmt: skip
    busy = cpu_busy()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(fh.name)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = json.loads(next(x for x in out.splitlines() if x.startswith("WRKJSON "))[len("WRKJSON ") :])
    by_status = {str(k): int(v) for k, v in report["by_status"].items()}
    errs = report["socket_errors"]
    for kind in ("connect", "read", "write", "timeout"):
        if errs[kind]:
            by_status[kind] = errs[kind]
    if report["exhausted_threads"]:
        # The stopping thread sends one /healthz after its last line: not part of the phase.
        by_status["200"] = by_status.get("200", 0) - report["exhausted_threads"]
        by_status = {k: v for k, v in by_status.items() if v > 0}
    lat = report["latency_us"]
    return summarise(
        done=sum(v for k, v in by_status.items() if k.isdigit()),
        elapsed=report["duration_us"] / 1e6,
        latencies_ms={k: round(lat[k] / 1000, 1) for k in ("p50", "p90", "p99", "mean")},
        by_status=by_status,
        expected=expected,
        client_cpu_s=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        busy=busy,
        extra={"client": "wrk", "stopped_by_time_limit": not report["exhausted_threads"]},
    )


def python_phase(
    base: str, lines: list[Line], *, seconds: float, concurrency: int, expected: int, cycle: bool
) -> dict[str, Any]:
    """The fallback client (no wrk): `concurrency` threads of httpx in this process, keep-alive."""
    lock = threading.Lock()
    next_i = 0
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    deadline = time.monotonic() + seconds

    def client_loop() -> None:
        nonlocal next_i
        mine: list[float] = []
        seen: Counter[str] = Counter()
        with httpx.Client(base_url=base, timeout=30, limits=httpx.Limits(max_connections=1)) as c:
            while time.monotonic() < deadline:
                with lock:
                    i = next_i
                    next_i += 1
                if i >= len(lines) and not cycle:
                    break
                method, path, token, key, body = lines[i % len(lines)]
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                if key:
                    headers["Idempotency-Key"] = key
                if body:
                    headers["Content-Type"] = "application/json"
                t0 = time.perf_counter()
                try:
                    seen[str(c.request(method, path, content=body or None, headers=headers).status_code)] += 1
                except httpx.HTTPError as exc:
                    seen[type(exc).__name__] += 1
                mine.append((time.perf_counter() - t0) * 1000)
        with lock:
            latencies.extend(mine)
            outcomes.update(seen)

    threads = [threading.Thread(target=client_loop) for _ in range(concurrency)]
    busy, cpu0 = cpu_busy(), time.process_time()
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return summarise(
        done=len(latencies),
        elapsed=elapsed,
        latencies_ms={
            "p50": pct(latencies, 0.5),
            "p90": pct(latencies, 0.9),
            "p99": pct(latencies, 0.99),
            "mean": round(statistics.fmean(latencies), 1) if latencies else 0.0,
        },
        by_status=dict(outcomes),
        expected=expected,
        client_cpu_s=time.process_time() - cpu0,
        busy=busy,
        extra={"client": "python-threads", "stopped_by_time_limit": next_i < len(lines) or cycle},
    )


PHASES = ("search", "create", "list")
# Issue 15's goals, as ratios of the same run's /healthz (bench/report/summary.py reads them from the JSON).
GOALS: dict[str, dict[str, float]] = {
    "booking_create": {"ratio": 0.35, "p99_ms": 100.0},
    "slot_search": {"ratio": 0.5},
}


class Profiler:
    """py-spy recording the API's processes (uvicorn and its workers) while one phase runs."""

    def __init__(self, pid: int, out: Path, *, rate: int = 200) -> None:
        self.out = out
        cmd = [
            str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--subprocesses",
            "--rate", str(rate), "--format", "speedscope", "--output", str(out), "--nonblocking",
            # Only the thread holding the GIL: Python CPU, not threads blocked on the database.
            *(["--gil"] if os.environ.get("BENCH_PROFILE_WALL") != "1" else ["--idle"]),
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        """Stop sampling (SIGINT makes py-spy write its file) and wait for the file."""
        self.proc.send_signal(2)
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise RuntimeError("py-spy did not stop") from None
        if not self.out.exists():
            raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace')[-2000:]}")


def ratios(run: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float]:
    """Throughput and latency of a run relative to the baseline."""
    base_lat, lat = baseline["latency_ms"], run["latency_ms"]
    return {
        "throughput": round(run["req_per_s"] / baseline["req_per_s"], 3),
        "p50_latency": round(lat["p50"] / base_lat["p50"], 2) if base_lat["p50"] else 0.0,
        "p99_latency": round(lat["p99"] / base_lat["p99"], 2) if base_lat["p99"] else 0.0,
    }


def check_database(db_url: str, patients: list[str]) -> dict[str, int]:
    """What the bookings left behind: bookings, their outbox events, slots over capacity."""
    engine = make_engine(db_url)
    try:
        with make_session_factory(engine)() as s:
            bookings = s.scalar(
                select(func.count()).select_from(m.Booking).where(m.Booking.patient_id.in_(patients))
            )
            events = s.scalar(
                select(func.count())
                .select_from(m.OutboxMessage)
                .where(m.OutboxMessage.event_type == "booking.requested")
            )
            over = s.scalar(select(func.count()).select_from(m.Slot).where(m.Slot.booked > m.Slot.capacity))
            return {
                "bookings": int(bookings or 0),
                "outbox_events": int(events or 0),
                "overbooked_slots": int(over or 0),
            }
    finally:
        engine.dispose()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results/api.json")
    ap.add_argument("--workers", type=int, default=int(os.environ.get("BENCH_API_WORKERS", "2")))
    ap.add_argument("--concurrency", type=int, default=16, help="connections (wrk) or threads (python)")
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_API_SECONDS", "10")))
    ap.add_argument(
        "--client",
        choices=("wrk", "python"),
        default=os.environ.get("BENCH_API_CLIENT") or ("wrk" if shutil.which("wrk") else "python"),
        help="wrk (compiled, default when installed) or the in-process Python fallback",
    )
    ap.add_argument(
        "--only",
        default=os.environ.get("BENCH_API_ONLY", ",".join(PHASES)),
        help=f"comma-separated phases of {PHASES} to run after the /healthz baseline",
    )
    ap.add_argument(
        "--profile", type=Path, default=None, help="record each phase with py-spy into this directory"
    )
    args = ap.parse_args()
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    if unknown := set(only) - set(PHASES):
        raise SystemExit(f"unknown phases {sorted(unknown)}; choose from {PHASES}")
    if args.client == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (scripts/infra/debs.sh installs it); or --client python")

    db_url, servers = infra()
    stop: list[Callable[[], None]] = [s.stop for s in servers]
    log = Path(tempfile.mkdtemp(prefix="bench-api-log-")) / "api.log"
    server_cpus, client_cpus = cpu_plan()
    try:
        bench_clinic, demo_clinic, patients = seed(db_url)
        settings = ApiSettings(database_url=db_url)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_api(db_url, port, args.workers, log, server_cpus)
        stop.insert(0, lambda: stop_api(proc))
        slots = staff_setup(base, settings, bench_clinic)
        tokens = [dev_token(settings, p) for p in patients]
        today = datetime.now(UTC).date()
        searches: list[Line] = [
            ("GET", f"/api/v1/slots?clinic_id={demo_clinic}&date_from={today + timedelta(days=d)}"
             f"&date_to={today + timedelta(days=d + 6)}", "", "", "")
            for d in range(7)
        ]  # fmt: skip
        sizes = [len(page_items(httpx.get(base + line[1], timeout=30).json())) for line in searches]
        run_key = uuid.uuid4().hex[:8]
        # Slot i mod S; each visit to a slot is by another patient: no (patient, slot) repeats. Enough
        # lines for 3,000 creates/s; a phase that runs out stops early and says so.
        n_book = min(len(slots) * PATIENTS, int(args.seconds * 3000))
        bookings: list[Line] = [
            ("POST", "/api/v1/bookings", tokens[(i % len(slots) + i // len(slots)) % PATIENTS],
             f"bench-{run_key}-{i}", json.dumps({"slot_id": slots[i % len(slots)]}))
            for i in range(n_book)
        ]  # fmt: skip
        mine: list[Line] = [("GET", "/api/v1/bookings?limit=20", t, "", "") for t in tokens]
        health: list[Line] = [("GET", "/healthz", "", "", "")]

        def run(
            lines: list[Line], seconds: float, expected: int = 200, cycle: bool = True, profile: str = ""
        ) -> dict[str, Any]:
            profiler = None
            if profile and args.profile is not None:
                args.profile.mkdir(parents=True, exist_ok=True)
                profiler = Profiler(proc.pid, args.profile / f"profile-{profile}.speedscope.json")
            cpu0 = tree_cpu_seconds(proc.pid)
            try:
                figures = client(lines, seconds, expected, cycle)
            finally:
                if profiler is not None:
                    profiler.stop()
            # The server's own CPU per answered request: a cost the machine's other load barely moves.
            used = tree_cpu_seconds(proc.pid) - cpu0
            figures["server_cpu_ms_per_request"] = round(used * 1000 / max(1, figures["requests"]), 3)
            if profiler is not None:
                figures["profiled"] = str(profiler.out)
            return figures

        def client(lines: list[Line], seconds: float, expected: int, cycle: bool) -> dict[str, Any]:
            if args.client == "wrk":
                return wrk_phase(
                    base, lines, seconds=seconds, concurrency=args.concurrency, expected=expected,
                    cycle=cycle, client_cpus=client_cpus,
                )  # fmt: skip
            return python_phase(
                base, lines, seconds=seconds, concurrency=args.concurrency, expected=expected, cycle=cycle
            )

        # Warm both workers (imports, connection pools) before anything is measured.
        run(health, 2)
        run(searches, 2)
        healthz = run(health, args.seconds, profile="healthz")
        phases: dict[str, dict[str, Any]] = {}
        if "search" in only:
            phases["slot_search"] = run(searches, args.seconds, profile="search")
        if "create" in only:
            batched = batch_counts(base)
            phases["booking_create"] = run(bookings, args.seconds, 201, cycle=False, profile="create")
            sent, statements = (b - a for a, b in zip(batched, batch_counts(base), strict=True))
            # Concurrent creates' alike statements share round trips (booking_api.pipeline).
            phases["booking_create"]["statements_per_batch"] = round(statements / max(1, sent), 2)
        if "list" in only:
            phases["bookings_list"] = run(mine, args.seconds, profile="list")
        healthz_after = run(health, args.seconds)
        stop_api(proc)
        db = check_database(db_url, patients)
    finally:
        for fn in stop:
            fn()
    if "slot_search" in phases:
        phases["slot_search"]["slots_per_response"] = round(statistics.fmean(sizes), 1)
    result = {
        "benchmark": "api",
        "client": args.client,
        "client_cpus": " ".join(client_cpus[2:]) or "any",
        "server_cpus": " ".join(server_cpus[2:]) or "any",
        "api_workers": args.workers,
        "client_connections": args.concurrency,
        "cpu_cores": os.cpu_count(),
        "profiled": args.profile is not None,
        "baseline": "GET /healthz of the same app, same run",
        "healthz": healthz,
        **phases,
        "healthz_after": healthz_after,
        "ratios_vs_healthz": {name: ratios(run, healthz) for name, run in phases.items()},
        "goals": GOALS,
        "note": "loopback; the client shares the machine with uvicorn and PostgreSQL (client_cpu_share: "
        "its part of all cores); search: one clinic, a 7-day UTC window, first page; create: POST "
        f"/api/v1/bookings with unique Idempotency-Keys over {len(slots)} slots and {PATIENTS} patients; "
        "bookings_list: GET /api/v1/bookings as each patient (bearer token); latency from the client, in ms",
    }
    ok = True
    create = phases.get("booking_create")
    if create is not None:
        result["database_check"] = {**db, "expected": create["ok"]}
        # wrk stops at its time limit with up to one request per connection in flight and uncounted: the
        # server completes those, so the database may hold that many more bookings than the client saw.
        ok = (
            create["ok"] <= db["bookings"] <= create["ok"] + args.concurrency
            and db["bookings"] == db["outbox_events"]
            and db["overbooked_slots"] == 0
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for name in ("healthz", *phases, "healthz_after"):
        r = result[name]
        lat = r["latency_ms"]
        line = (
            f"{name:15} {r['req_per_s']:8.1f} req/s  p50 {lat['p50']:7.1f} ms  p99 {lat['p99']:7.1f} ms  "
            f"errors {r['errors']}/{r['requests']}  server cpu/req {r['server_cpu_ms_per_request']} ms  "
            f"client cpu {r['client_cpu_share']:.0%}  load {r['load_average_1m']}"
        )
        if "statements_per_batch" in r:
            line += f"  statements/batch {r['statements_per_batch']}"
        if name in phases:
            line += f"  x{result['ratios_vs_healthz'][name]['throughput']} of /healthz"
            if name in GOALS:
                goal = GOALS[name]
                line += f" (goal >= {goal['ratio']}x" + (
                    f", p99 < {goal['p99_ms']:.0f} ms)" if goal.get("p99_ms") else ")"
                )
        print(line)
    if create is not None:
        print(f"database: {db}")
    if args.profile is not None:
        print(f"profiles (figures above are slowed by sampling): {args.profile}/profile-*.speedscope.json")
    errors = sum(run["errors"] for run in phases.values())
    return 0 if ok and errors == 0 else 1


def page_items(body: Any) -> list[Any]:
    """The slots of one search answer (a page object, or the bare list older servers answer)."""
    return list(body["items"] if isinstance(body, dict) else body)


if __name__ == "__main__":
    sys.exit(main())
