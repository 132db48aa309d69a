"""API benchmark: booking creation and slot search through `booking api` (uvicorn, several workers) on
PostgreSQL, beside /healthz of the same app measured in the same run (the baseline: uvicorn, middleware,
routing and the client's own cost, with no database).

Each phase sends a fixed number of requests from a fixed number of client threads (keep-alive, one
connection per thread) and stops early at its time limit. Bookings use unique Idempotency-Keys over many
slots of capacity 100 and several patients (never the same patient twice on a slot), so every answer
should be 201; anything else is counted as an error. Afterwards the database is checked: one booking and
one outbox event per 201, no slot over capacity.

    python bench/api.py --out bench/results/api.json [--workers 2] [--concurrency 16]

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

from booking_core.db import models as m  # noqa: E402
from booking_core.db.migrate import upgrade  # noqa: E402
from booking_core.db.session import make_engine, make_session_factory  # noqa: E402
from booking_core.demo import seed_demo  # noqa: E402
from booking_core.embedded import dev_token  # noqa: E402
from booking_core.settings import ApiSettings  # noqa: E402
from booking_testing.procs import free_port  # noqa: E402

BOOKING = str(Path(sys.executable).parent / "booking")
PATIENTS = 64
BENCH_CLINIC = "BENCH"
# Slots of the bench clinic: every day 00:00-23:45 UTC, 15 minutes, capacity 100, for 14 days.
RULE = {"start_time": "00:00:00", "end_time": "23:45:00", "slot_minutes": 15, "capacity": 100}
DAYS = 14

Request = Callable[[httpx.Client, int], httpx.Response]


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


def start_api(db_url: str, port: int, workers: int, log: Path) -> subprocess.Popen[bytes]:
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
        proc = subprocess.Popen([BOOKING, "api"], env=env, stdout=fh, stderr=subprocess.STDOUT)
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


def phase(
    base: str, request: Request, *, n: int, concurrency: int, expected: int, limit: float
) -> dict[str, Any]:
    """Send up to n requests from `concurrency` threads (stopping at `limit` seconds); figures of the run."""
    lock = threading.Lock()
    next_i = 0
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    deadline = time.monotonic() + limit

    def client_loop() -> None:
        nonlocal next_i
        mine: list[float] = []
        seen: Counter[str] = Counter()
        with httpx.Client(base_url=base, timeout=30, limits=httpx.Limits(max_connections=1)) as c:
            while time.monotonic() < deadline:
                with lock:
                    i = next_i
                    next_i += 1
                if i >= n:
                    break
                t0 = time.perf_counter()
                try:
                    seen[str(request(c, i).status_code)] += 1
                except httpx.HTTPError as exc:
                    seen[type(exc).__name__] += 1
                mine.append((time.perf_counter() - t0) * 1000)
        with lock:
            latencies.extend(mine)
            outcomes.update(seen)

    threads = [threading.Thread(target=client_loop) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    done = len(latencies)
    return {
        "requests": done,
        "seconds": round(elapsed, 2),
        "req_per_s": round(done / elapsed, 1),
        "latency_ms": {
            "p50": pct(latencies, 0.5),
            "p99": pct(latencies, 0.99),
            "mean": round(statistics.fmean(latencies), 1) if latencies else 0.0,
        },
        "ok": outcomes.get(str(expected), 0),
        "errors": sum(v for k, v in outcomes.items() if k != str(expected)),
        "by_status": dict(sorted(outcomes.items())),
        "stopped_by_time_limit": done < n,
    }


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
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--health", type=int, default=4000, help="/healthz requests (baseline)")
    ap.add_argument("--search", type=int, default=2000, help="slot searches")
    ap.add_argument("--bookings", type=int, default=2000, help="booking creations")
    ap.add_argument("--limit", type=float, default=60.0, help="time limit of each phase, seconds")
    args = ap.parse_args()

    db_url, servers = infra()
    stop: list[Callable[[], None]] = [s.stop for s in servers]
    log = Path(tempfile.mkdtemp(prefix="bench-api-log-")) / "api.log"
    try:
        bench_clinic, demo_clinic, patients = seed(db_url)
        settings = ApiSettings(database_url=db_url)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_api(db_url, port, args.workers, log)
        stop.insert(0, lambda: stop_api(proc))
        slots = staff_setup(base, settings, bench_clinic)
        if len(slots) * PATIENTS < args.bookings:
            raise RuntimeError(
                f"{len(slots)} slots x {PATIENTS} patients cannot take {args.bookings} bookings"
            )
        tokens = [dev_token(settings, p) for p in patients]
        today = datetime.now(UTC).date()
        windows = [
            {"clinic_id": demo_clinic, "date_from": (today + timedelta(days=d)).isoformat(),
             "date_to": (today + timedelta(days=d + 6)).isoformat()}
            for d in range(7)
        ]  # fmt: skip
        run_key = uuid.uuid4().hex[:8]
        sizes: list[int] = []

        def health(c: httpx.Client, i: int) -> httpx.Response:
            return c.get("/healthz")

        def search(c: httpx.Client, i: int) -> httpx.Response:
            r = c.get("/api/v1/slots", params=windows[i % len(windows)])
            if i < 50:
                sizes.append(len(r.json()))
            return r

        def book(c: httpx.Client, i: int) -> httpx.Response:
            # Slot i mod S; each visit to a slot is by another patient: no (patient, slot) repeats.
            s, k = i % len(slots), i // len(slots)
            return c.post(
                "/api/v1/bookings",
                json={"slot_id": slots[s]},
                headers={
                    "Authorization": f"Bearer {tokens[(s + k) % PATIENTS]}",
                    "Idempotency-Key": f"bench-{run_key}-{i}",
                },
            )

        def run(request: Request, n: int, expected: int = 200) -> dict[str, Any]:
            return phase(
                base, request, n=n, expected=expected, concurrency=args.concurrency, limit=args.limit
            )

        # Warm both workers (imports, connection pools) before anything is measured.
        run(health, 400)
        run(search, 100)
        sizes.clear()
        healthz = run(health, args.health)
        slot_search = run(search, args.search)
        create = run(book, args.bookings, 201)
        healthz_after = run(health, args.health)
        stop_api(proc)
        db = check_database(db_url, patients)
    finally:
        for fn in stop:
            fn()
    result = {
        "benchmark": "api",
        "api_workers": args.workers,
        "client_threads": args.concurrency,
        "cpu_cores": os.cpu_count(),
        "baseline": "GET /healthz of the same app, same run",
        "healthz": healthz,
        "slot_search": {
            **slot_search,
            "slots_per_response": round(statistics.fmean(sizes), 1) if sizes else 0,
        },
        "booking_create": create,
        "healthz_after": healthz_after,
        "ratios_vs_healthz": {
            "slot_search": ratios(slot_search, healthz),
            "booking_create": ratios(create, healthz),
        },
        "database_check": {**db, "expected": create["ok"]},
        "note": "loopback; client threads share the machine with uvicorn and PostgreSQL; search: one clinic, "
        "a 7-day UTC window, default limit 200; create: POST /api/v1/bookings with unique Idempotency-Keys "
        f"over {len(slots)} slots and {PATIENTS} patients; latency from the client, in ms",
    }
    ok = db["bookings"] == create["ok"] == db["outbox_events"] and db["overbooked_slots"] == 0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for name in ("healthz", "slot_search", "booking_create", "healthz_after"):
        r = result[name]
        lat = r["latency_ms"]
        print(
            f"{name:15} {r['req_per_s']:8.1f} req/s  p50 {lat['p50']:7.1f} ms  p99 {lat['p99']:7.1f} ms  "
            f"errors {r['errors']}/{r['requests']}"
        )
    rs = result["ratios_vs_healthz"]
    print(
        f"throughput vs /healthz: search x{rs['slot_search']['throughput']}, "
        f"create x{rs['booking_create']['throughput']}; database: {db}"
    )
    return 0 if ok and create["errors"] == 0 and slot_search["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
