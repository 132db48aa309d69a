"""`booking cron` against real PostgreSQL (and Redis for the two-process run)."""

import json
import os
import random
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select

from booking_core.db import models as m
from booking_core.db.migrate import upgrade
from booking_core.db.models_audit import AccessDeniedLog
from booking_core.db.models_notify import NotificationIntent
from booking_core.db.notify_outbox import dispatch_due
from booking_core.db.session import make_engine, make_session_factory
from booking_workers import cron, cron_tasks
from booking_workers.settings import CronSettings

BOOKING = str(Path(sys.executable).parent / "booking")


class Recorder:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, n: Any) -> None:
        """A notification-outbox sender: records each dispatched notice."""
        kw = {
            "event_type": n.event_type,
            "ref_id": n.ref_id,
            "tier": n.tier,
            "urgent": n.urgent,
            "cause": n.cause,
        }
        with self.lock:
            self.calls.append(kw)


@pytest.fixture
def db(postgres_url: str) -> Any:
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


def pending_with_expired_hold(s: Any, booking_id: str, now: datetime) -> Any:
    """Make a seeded booking pending, holding its place with a hold that expired a minute ago."""
    booking = s.get(m.Booking, booking_id)
    assert booking is not None
    booking.status = "pending"
    s.add(
        m.Hold(
            slot_id=booking.slot_id,
            patient_id=booking.patient_id,
            booking_id=booking_id,
            status="active",
            expires_at=now - timedelta(minutes=1),
        )
    )
    return booking


def test_each_reminder_once_in_its_window(postgres_url: str, db: Any, helpers: Any) -> None:
    ids = helpers.seed(
        postgres_url,
        tier="svip2",
        bookings=[
            timedelta(hours=1),
            timedelta(hours=5),
            timedelta(hours=30),
            timedelta(hours=20),
            timedelta(minutes=-10),
        ],
    )
    b1h, b5h, _b30h, b20h, _past = ids["bookings"]
    with make_session_factory(db)() as s:
        s.get(m.Booking, b20h).reminder_24h_sent_at = datetime.now(UTC)  # type: ignore[union-attr]
        s.commit()
    rec = Recorder()
    settings = CronSettings(database_url=postgres_url)
    for _ in range(2):
        results = cron.run_once(settings, engine=db)
        assert {r.status for r in results} == {"ok"}
        dispatch_due(make_session_factory(db), rec)  # the notice dispatcher, after the run's commits
    assert sorted((c["event_type"], c["ref_id"], c["tier"], c["urgent"]) for c in rec.calls) == sorted(
        [("reminder_2h", b1h, "svip2", True), ("reminder_24h", b5h, "svip2", False)]
    )


def test_concurrent_claims_send_each_reminder_once(postgres_url: str, db: Any, helpers: Any) -> None:
    ids = helpers.seed(postgres_url, bookings=[timedelta(hours=3, minutes=i) for i in range(40)])
    rec = Recorder()
    sessions = make_session_factory(db)
    now = datetime.now(UTC)
    # No advisory locks here: four runs race on the row claims alone.
    threads = [
        threading.Thread(
            target=cron_tasks.send_reminders,
            args=(sessions,),
            kwargs={"kind": "24h", "now": now},
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Two notice dispatchers (two batch-publisher replicas) share the notices through SKIP LOCKED.
    dispatchers = [threading.Thread(target=dispatch_due, args=(sessions, rec)) for _ in range(2)]
    for t in dispatchers:
        t.start()
    for t in dispatchers:
        t.join()
    refs = [c["ref_id"] for c in rec.calls]
    assert sorted(refs) == sorted(ids["bookings"])


def test_overlapping_hold_expiry_frees_each_place_once(postgres_url: str, db: Any, helpers: Any) -> None:
    ids = helpers.seed(postgres_url, bookings=[timedelta(hours=6, minutes=i) for i in range(30)])
    now = datetime.now(UTC)
    sessions = make_session_factory(db)
    with sessions() as s:
        for booking_id in ids["bookings"]:
            bk = pending_with_expired_hold(s, booking_id, now)
            # Another place on the slot stays taken: a second free of this one would show as 0.
            slot = s.get(m.Slot, bk.slot_id)
            assert slot is not None
            slot.capacity, slot.booked = 2, 2
        s.commit()
    counts: list[int] = []
    threads = [
        threading.Thread(target=lambda: counts.append(cron_tasks.expire_holds(sessions, now=now)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 30
    with sessions() as s:
        assert set(s.scalars(select(m.Slot.booked))) == {1}
        assert set(s.scalars(select(m.Booking.status))) == {"cancelled"}
        cancelled = m.OutboxMessage.event_type == "booking.cancelled"
        assert sorted(s.scalars(select(m.OutboxMessage.key).where(cancelled))) == sorted(ids["bookings"])


def test_two_booking_cron_processes_started_together(
    postgres_url: str, redis_url: str, db: Any, helpers: Any
) -> None:
    ids = helpers.seed(
        postgres_url,
        bookings=[timedelta(hours=5, minutes=i) for i in range(30)]
        + [timedelta(minutes=30 + i) for i in range(10)],
    )
    ns = f"t-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "BOOKING_DATABASE_URL": postgres_url,
        "BOOKING_REDIS_URL": redis_url,
        "BOOKING_BROKER_NAMESPACE": ns,
    }
    procs = [
        subprocess.Popen([BOOKING, "cron"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    # Together they owed every reminder once, in the outbox; the cron itself enqueues no notice (that is
    # the batch-publisher's dispatcher), only its run report for the default worker.
    with make_session_factory(db)() as s:
        pairs = s.execute(select(NotificationIntent.kind, NotificationIntent.ref_id)).all()
    assert len(pairs) == 40 and len(set(pairs)) == 40
    assert sorted(ref for _, ref in pairs) == sorted(ids["bookings"])
    r = redis.Redis.from_url(redis_url)
    assert r.hlen(f"{ns}:notifications.msgs") == 0
    assert r.hlen(f"{ns}:default.msgs") == 2  # record_cron_run, one per run
    # Each run logs a JSON summary per task; together they claimed every reminder once.
    lines = [json.loads(line) for o in outs for line in o[1].decode().splitlines() if line.startswith("{")]
    tasks = [x for x in lines if x["msg"] == "cron task"]
    assert {x["task"] for x in tasks} == set(cron.build_tasks(CronSettings(), None, datetime.now(UTC)))  # type: ignore[arg-type]
    assert sum(x["count"] for x in tasks if x["task"].startswith("reminders")) == 40
    assert all(x["status"] in {"ok", "skipped"} for x in tasks)
    assert "p-1" not in b"".join(o[1] for o in outs).decode()


def test_expiry_noshow_and_cleanup(postgres_url: str, db: Any, helpers: Any, tmp_path: Path) -> None:
    ids = helpers.seed(
        postgres_url, bookings=[timedelta(hours=6), timedelta(hours=-1), timedelta(hours=-1, minutes=-1)]
    )
    pending, late, arrived = ids["bookings"]
    now = datetime.now(UTC)
    old = now - timedelta(days=30)
    sessions = make_session_factory(db)
    with sessions() as s:
        pending_with_expired_hold(s, pending, now)
        s.get(m.Booking, arrived).status = "arrived"  # type: ignore[union-attr]
        s.add_all(
            [
                m.OutboxMessage(
                    event_id="e-old", event_type="x", topic="t", key="k", payload={}, published_at=old
                ),
                m.OutboxMessage(
                    event_id="e-new", event_type="x", topic="t", key="k", payload={}, published_at=now
                ),
                m.OutboxMessage(
                    event_id="e-unpub", event_type="x", topic="t", key="k", payload={}, created_at=old
                ),
                m.ProcessedMessage(consumer="c", message_key="old", processed_at=old),
                m.ProcessedMessage(consumer="c", message_key="new", processed_at=now),
                m.IdempotencyKey(key="old", patient_id="p-1", request_hash="h", created_at=old),
                m.IdempotencyKey(key="new", patient_id="p-1", request_hash="h", created_at=now),
                *(
                    AccessDeniedLog(
                        at=now - timedelta(days=days),
                        actor=actor,
                        status=401,
                        reason="x",
                        method="GET",
                        route="/",
                    )
                    for actor, days in (("year-old", 366), ("month-old", 30))
                ),
            ]
        )
        s.commit()
    textfile = tmp_path / "cron.prom"
    settings = CronSettings(
        database_url=postgres_url, noshow_grace_minutes=30, metrics_textfile=str(textfile)
    )
    results = {r.task: r for r in cron.run_once(settings, engine=db)}
    assert {k: v.count for k, v in results.items()} == {
        "reminders_2h": 0,
        "reminders_24h": 0,
        "expire_holds": 1,
        "mark_noshows": 1,
        "cleanup_outbox": 1,
        "cleanup_processed_messages": 1,
        "cleanup_idempotency_keys": 1,
        "cleanup_access_denied_log": 1,  # kept a year by default
    }
    with sessions() as s:
        bp = s.get(m.Booking, pending)
        assert (bp.status, bp.cancel_reason) == ("cancelled", "hold_expired")  # type: ignore[union-attr]
        assert s.get(m.Slot, bp.slot_id).booked == 0  # type: ignore[union-attr]
        assert s.get(m.Booking, late).status == "noshow"  # type: ignore[union-attr]
        assert s.get(m.Booking, arrived).status == "arrived"  # type: ignore[union-attr]
        events = s.scalars(select(m.OutboxMessage.event_type).order_by(m.OutboxMessage.id)).all()
        assert sorted(events) == ["booking.cancelled", "booking.noshow", "x", "x"]  # e-new and e-unpub stay
        assert [p.message_key for p in s.scalars(select(m.ProcessedMessage))] == ["new"]
        assert [k.key for k in s.scalars(select(m.IdempotencyKey))] == ["new"]
        assert [d.actor for d in s.scalars(select(AccessDeniedLog))] == ["month-old"]
    # The expired hold's cancellation is owed to the patient: written for the dispatcher, once.
    rec = Recorder()
    assert dispatch_due(sessions, rec) == 1
    assert [(c["event_type"], c["ref_id"]) for c in rec.calls] == [("booking_cancelled", pending)]
    # A second run finds nothing left to do.
    assert sum(r.count for r in cron.run_once(settings, engine=db)) == 0


def test_cron_exits_1_when_tasks_fail(tmp_path: Path) -> None:
    textfile = tmp_path / "cron.prom"
    env = {
        **os.environ,
        "BOOKING_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
        "BOOKING_METRICS_TEXTFILE": str(textfile),
    }
    env.pop("BOOKING_REDIS_URL", None)
    p = subprocess.run([BOOKING, "cron"], env=env, capture_output=True, timeout=120)
    assert p.returncode == 1
    summary = [json.loads(x) for x in p.stderr.decode().splitlines() if x.startswith("{")]
    assert summary[-1]["msg"] == "cron run finished" and summary[-1]["status"] == "failed"
    assert 'booking_cron_task_failures_total{task="expire_holds"} 1.0' in textfile.read_text()


def test_patient_cancels_racing_hold_expiry_take_locks_in_one_order(
    postgres_url: str, db: Any, helpers: Any
) -> None:
    """API cancels and cron runs on the same expired holds: no deadlock, and each booking ends once."""
    from booking_api.services import bookings as api_bookings

    n = 40
    ids = helpers.seed(postgres_url, bookings=[timedelta(days=2, minutes=i) for i in range(n)])
    now = datetime.now(UTC)
    sessions = make_session_factory(db)
    with sessions() as s:
        for booking_id in ids["bookings"]:
            bk = pending_with_expired_hold(s, booking_id, now)
            slot = s.get(m.Slot, bk.slot_id)
            assert slot is not None
            slot.capacity, slot.booked = 2, 2  # a second free of this booking's place would show as 0
        s.commit()
    orders = [list(ids["bookings"]), list(reversed(ids["bookings"])), list(ids["bookings"])]
    random.Random(7).shuffle(orders[2])
    barrier = threading.Barrier(len(orders) + 3)
    errors: list[BaseException] = []
    counts: list[int] = []

    def patient(order: list[str]) -> None:
        barrier.wait()
        for booking_id in order:
            with sessions() as s:
                try:
                    api_bookings.cancel_booking(
                        session=s,
                        patient_id=ids["patient_id"],
                        booking_id=booking_id,
                        now=now,
                        notice=timedelta(hours=1),
                    )
                except BaseException as exc:
                    errors.append(exc)

    def cron_run() -> None:
        barrier.wait()
        try:
            counts.append(cron_tasks.expire_holds(sessions, now=now))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=patient, args=(o,)) for o in orders]
    threads += [threading.Thread(target=cron_run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with sessions() as s:
        assert set(s.scalars(select(m.Booking.status))) == {"cancelled"}
        assert set(s.scalars(select(m.Slot.booked))) == {1}
        reasons = list(s.scalars(select(m.Booking.cancel_reason)))
        holds = list(s.scalars(select(m.Hold.status)))
        expired = reasons.count("hold_expired")
        assert sum(counts) == expired == holds.count("expired")
        assert reasons.count("patient_request") == holds.count("released") == n - expired
        cancelled = m.OutboxMessage.event_type == "booking.cancelled"
        assert sorted(s.scalars(select(m.OutboxMessage.key).where(cancelled))) == sorted(ids["bookings"])
        to_cancelled = select(m.BookingStatusHistory.booking_id).where(
            m.BookingStatusHistory.to_status == "cancelled"
        )
        assert sorted(s.scalars(to_cancelled)) == sorted(ids["bookings"])
