"""In-process CPU per request: the API app driven over ASGI with no sockets, beside PostgreSQL's own CPU.

On the shared 2-core machine throughput follows other people's load; the CPU a request costs barely does.
This drives `create_app` directly (a raw ASGI call per request, `--concurrency` tasks on one uvloop loop,
no HTTP parsing, no client library) and reports, per phase, the process's `time.process_time` per answered
request and the PostgreSQL server's CPU per request (its processes' utime+stime from /proc, when it runs
on this machine). `/healthz` is the baseline, as in bench/api.py.

    python bench/harness/inproc.py --db-admin-url postgresql+psycopg://postgres@127.0.0.1:PORT/postgres \
        [--requests 3000] [--concurrency 16] [--only create,healthz,list] [--rounds 3]

Needs a PostgreSQL it may create a database on (BOOKING_TEST_DATABASE_URL works too).
"""

from __future__ import annotations

import os
import sys

# bench/ holds operator.py, which would shadow the standard library's `operator` for later imports.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import uvloop  # noqa: E402
from sqlalchemy import text  # noqa: E402

from booking_api.app import create_app  # noqa: E402
from booking_api.embedded import dev_token  # noqa: E402
from booking_api.settings import ApiSettings  # noqa: E402
from booking_core.db import models as m  # noqa: E402
from booking_core.db.migrate import upgrade  # noqa: E402
from booking_core.db.session import make_engine, make_session_factory  # noqa: E402

PATIENTS = 64


def seed(db_url: str, slots: int) -> tuple[list[str], list[str]]:
    """A clinic with `slots` slots of capacity 100 and PATIENTS patients; returns (slot ids, patient ids)."""
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with make_session_factory(engine)() as s:
            clinic = m.Clinic(code="INPROC", name="In-process bench", time_zone="UTC")
            service = m.Service(code="blood-draw", name="Blood draw", duration_minutes=15)
            s.add_all([clinic, service])
            patients = [f"inproc-patient-{i:03d}" for i in range(PATIENTS)]
            s.add_all([m.Patient(id=p, tier="standard") for p in patients])
            s.flush()
            start = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
            rows = [
                m.Slot(
                    clinic_id=clinic.id,
                    service_id=service.id,
                    starts_at=start + timedelta(minutes=15 * i),
                    ends_at=start + timedelta(minutes=15 * (i + 1)),
                    capacity=100,
                )
                for i in range(slots)
            ]
            s.add_all(rows)
            s.commit()
            return [r.id for r in rows], patients
    finally:
        engine.dispose()


def postgres_cpu_seconds(db_url: str) -> float | None:
    """utime+stime of the PostgreSQL server's processes (the postmaster's children), or None if not local."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as c:
            data_dir = c.execute(text("SHOW data_directory")).scalar_one()
    finally:
        engine.dispose()
    pidfile = Path(data_dir) / "postmaster.pid"
    try:
        postmaster = int(pidfile.read_text().split()[0])
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        if pid == postmaster or ppid == postmaster:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


async def call(app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
    """One request through the ASGI app; returns the status."""
    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"inproc"), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # a client that never disconnects
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


Request = tuple[str, str, list[tuple[bytes, bytes]], bytes]


async def phase(app: Any, requests: list[Request], conc: int) -> dict[str, Any]:
    """Run the requests with `conc` tasks; CPU and wall time per request, statuses."""
    statuses: dict[int, int] = {}
    it = iter(requests)

    async def worker() -> None:
        for method, path, headers, body in it:
            s = await call(app, method, path, headers, body)
            statuses[s] = statuses.get(s, 0) + 1

    gc.collect()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    n = len(requests)
    return {
        "requests": n,
        "cpu_ms_per_request": round(cpu / n * 1000, 3),
        "wall_s": round(wall, 2),
        "statuses": statuses,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from booking_testing.postgres import create_database

    admin = args.db_admin_url or os.environ["BOOKING_TEST_DATABASE_URL"]
    name = f"inproc_{uuid.uuid4().hex[:8]}"
    create_database(admin, name)
    db_url = f"{admin.rpartition('/')[0]}/{name}"
    per_round = args.requests
    slots, patients = seed(db_url, slots=max(64, (per_round * args.rounds * 2) // PATIENTS + 1))
    if args.after_seed_sql:  # an experiment on the schema (e.g. an index or a constraint less)
        engine = make_engine(db_url)
        with engine.begin() as c:
            c.execute(text(args.after_seed_sql))
        engine.dispose()
    settings = ApiSettings(database_url=db_url, rate_limit_enabled=False)  # type: ignore[call-arg]
    app = create_app(settings)
    tokens = {p: dev_token(settings, p) for p in patients}
    gc.collect()
    gc.freeze()
    health = [("GET", "/healthz", [], b"")] * per_round
    # As bench/api.py: slot i mod S, each visit to a slot by another patient, so neighbouring requests
    # (the concurrent ones) differ in both slot and patient.
    pairs = iter(
        (slots[i % len(slots)], patients[(i % len(slots) + i // len(slots)) % len(patients)])
        for i in range(len(slots) * len(patients))
    )

    def creates(n: int) -> list[Request]:
        out = []
        for _ in range(n):
            slot, patient = next(pairs)
            headers = [
                (b"authorization", f"Bearer {tokens[patient]}".encode()),
                (b"content-type", b"application/json"),
                (b"idempotency-key", uuid.uuid4().hex.encode()),
            ]
            out.append(("POST", "/api/v1/bookings", headers, json.dumps({"slot_id": slot}).encode()))
        return out

    # A patient's own bookings (a page of 20), each patient in turn.
    mine = [
        ("GET", "/api/v1/bookings?limit=20", [(b"authorization", f"Bearer {tokens[p]}".encode())], b"")
        for p in (patients[i % len(patients)] for i in range(per_round))
    ]
    # Warm-up: connections opened, statements prepared, tokens verified once.
    await phase(app, creates(len(patients)), args.concurrency)
    await phase(app, health[:200], args.concurrency)
    only = args.only.split(",")
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in only}
    for _ in range(args.rounds):
        for what in only:
            reqs = {"healthz": health, "list": mine}.get(what) or creates(per_round)
            pg0 = postgres_cpu_seconds(db_url)
            r = await phase(app, reqs, args.concurrency)
            pg1 = postgres_cpu_seconds(db_url)
            if pg0 is not None and pg1 is not None:
                r["postgres_cpu_ms_per_request"] = round((pg1 - pg0) / r["requests"] * 1000, 3)
            results[what].append(r)
    await app.state.db_work.dispose()
    return {"load_average": os.getloadavg(), "results": results}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db-admin-url", default=None)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="healthz,create")
    ap.add_argument("--after-seed-sql", default="", help="SQL run once after seeding (schema experiments)")
    args = ap.parse_args()
    out = uvloop.run(main_async(args))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
