"""`booking worker notifications` as a real process on real Redis and PostgreSQL."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
from sqlalchemy import select

from booking_core.db.migrate import upgrade
from booking_core.db.models_notify import NotificationAttempt, NotificationDelivery
from booking_core.db.session import make_engine, make_session_factory
from booking_workers import broker as b

BOOKING = str(Path(sys.executable).parent / "booking")


@pytest.fixture
def env(
    postgres_url: str, redis_url: str, smtp_sink: Any, sms_provider: Any, push_provider: Any
) -> dict[str, str]:
    upgrade(postgres_url)
    return {
        **os.environ,
        "BOOKING_DATABASE_URL": postgres_url,
        "BOOKING_REDIS_URL": redis_url,
        "BOOKING_BROKER_NAMESPACE": f"t-{uuid.uuid4().hex[:8]}",
        # A dead worker's unacked messages come back after 2 s; every command runs the sweep.
        "BOOKING_BROKER_HEARTBEAT_TIMEOUT_MS": "2000",
        "BOOKING_BROKER_MAINTENANCE_CHANCE": "1000000",
        "BOOKING_NOTIFICATION_LEASE_SECONDS": "1",
        "BOOKING_NOTIFICATION_BACKOFF_MIN_MS": "100",
        "BOOKING_NOTIFICATION_BACKOFF_MAX_MS": "500",
        "BOOKING_SMTP_HOST": smtp_sink.host,
        "BOOKING_SMTP_PORT": str(smtp_sink.port),
        "BOOKING_SMS_PROVIDER_URL": sms_provider.url,
        "BOOKING_PUSH_PROVIDER_URL": push_provider.url,
        "BOOKING_METRICS_PORT": "0",
        "BOOKING_WORKER_THREADS": "2",
        # DEBUG: dramatiq then also logs each job it receives and the actor its arguments.
        "BOOKING_LOG_LEVEL": "DEBUG",
    }


@pytest.fixture
def producer(env: dict[str, str]) -> Iterator[Any]:
    """This process's broker, on the same Redis namespace as the worker."""
    previous = b._broker
    rb = b.build_broker(env["BOOKING_REDIS_URL"], b.BrokerSettings(namespace=env["BOOKING_BROKER_NAMESPACE"]))
    b.setup_broker(broker=rb)
    yield rb
    rb.close()
    if previous is not None:
        b.setup_broker(broker=previous)


@pytest.fixture
def start_worker(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start() -> subprocess.Popen[bytes]:
        log = tmp_path / f"worker-{len(procs)}.log"
        p = subprocess.Popen(
            [BOOKING, "worker", "notifications"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
        )
        procs.append((p, log))
        return p

    yield start
    for p, log in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        text = log.read_text(errors="replace")
        # No PHI in worker logs: neither the address, the phone number nor the patient id.
        for secret in ("ann@example.org", "+31600000001", "device-token-1", '"p-1"'):
            assert secret not in text, f"PHI in worker log: {secret}"
        print(f"--- {log.name}\n{text[-3000:]}")


def db_rows(url: str) -> tuple[list[Any], list[Any]]:
    engine = make_engine(url)
    with make_session_factory(engine)() as s:
        d = list(s.scalars(select(NotificationDelivery)))
        a = list(s.scalars(select(NotificationAttempt).order_by(NotificationAttempt.id)))
    engine.dispose()
    return d, a


def test_worker_delivers_on_every_channel_through_429_and_500(
    postgres_url: str,
    producer: Any,
    start_worker: Any,
    smtp_sink: Any,
    sms_provider: Any,
    push_provider: Any,
    helpers: Any,
) -> None:
    ids = helpers.seed(postgres_url, tier="svip1", bookings=[timedelta(days=2)])
    sms_provider.statuses = [429, 500]
    push_provider.statuses = [500]
    start_worker()
    b.enqueue_notification(
        patient_id="p-1", event_type="booking_confirmed", ref_id=ids["bookings"][0], tier="svip1"
    )
    b.enqueue_notification(patient_id="p-1", event_type="results_available", ref_id="res-1", tier="svip1")
    helpers.wait_for(lambda: len(sms_provider.accepted()) == 2, timeout=30, what="two SMS accepted")
    helpers.wait_for(lambda: len(push_provider.accepted()) == 2, timeout=30, what="two pushes accepted")
    mails = smtp_sink.wait_for(2)
    assert sorted(m["Subject"] for m in mails) == [
        "New results are ready in your patient portal",
        "Your appointment is confirmed",
    ]
    assert sms_provider.answers.count(429) == 1 and sms_provider.answers.count(500) == 1
    results_sms = [r for r in sms_provider.accepted() if "results" in r["body"]]
    assert results_sms[0]["body"].startswith("Your results are ready: sign in to the portal.")
    deliveries, attempts = db_rows(postgres_url)
    helpers.wait_for(lambda: len(db_rows(postgres_url)[0]) == 8, timeout=10, what="8 deliveries")
    deliveries, attempts = db_rows(postgres_url)
    assert {d.status for d in deliveries} == {"sent"}
    assert sorted((a.channel, a.outcome, a.error_class) for a in attempts if a.outcome != "sent") == [
        ("push", "transient_failure", "http_500"),
        ("sms", "transient_failure", "http_429"),
        ("sms", "transient_failure", "http_500"),
    ]


def test_worker_killed_mid_job_the_patient_gets_one_message(
    postgres_url: str, producer: Any, start_worker: Any, smtp_sink: Any, helpers: Any
) -> None:
    import threading

    helpers.seed(postgres_url, phone=None, push_token=None)
    smtp_sink.gate = gate = threading.Event()  # the first DATA hangs until we let go
    first = start_worker()
    b.enqueue_notification(patient_id="p-1", event_type="results_available", ref_id="res-7")
    assert smtp_sink.data_started.wait(30), "the worker never reached the SMTP server"
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    gate.set()  # the dead worker's mail is answered 451: never accepted
    start_worker()
    mails = smtp_sink.wait_for(1, timeout=40)
    helpers.wait_for(
        lambda: any(a.outcome == "sent" and a.channel == "email" for a in db_rows(postgres_url)[1]),
        timeout=10,
        what="the email attempt recorded",
    )
    deliveries, attempts = db_rows(postgres_url)
    email = next(d for d in deliveries if d.channel == "email")
    assert (email.status, email.attempts) == ("sent", 2)  # claimed by the dead worker, then by the new one
    assert [(a.channel, a.attempt, a.outcome) for a in attempts if a.channel == "email"] == [
        ("email", 2, "sent")
    ]
    # Give a stray redelivery time to show up: the patient still has exactly one email.
    time.sleep(2)
    assert len(smtp_sink.messages) == 1 and mails[0]["To"] == "ann@example.org"


def test_quiet_hours_hold_a_reminder_until_morning_urgent_goes_now(
    postgres_url: str,
    env: dict[str, str],
    producer: Any,
    start_worker: Any,
    smtp_sink: Any,
    sms_provider: Any,
    helpers: Any,
) -> None:
    # A quiet window around the patient's current local time, ending at 07:00 tomorrow at the latest.
    now = datetime.now(UTC)
    local = now.astimezone(ZoneInfo("Asia/Tokyo"))
    start = (local - timedelta(hours=1)).time().replace(second=0, microsecond=0)
    end = (local + timedelta(hours=2)).time().replace(second=0, microsecond=0)
    ids = helpers.seed(
        postgres_url,
        time_zone="Asia/Tokyo",
        push_token=None,
        bookings=[timedelta(hours=20), timedelta(hours=3)],
        prefs={"quiet_hours_start": start, "quiet_hours_end": end},
    )
    start_worker()
    b.enqueue_notification(patient_id="p-1", event_type="reminder_24h", ref_id=ids["bookings"][0])
    b.enqueue_notification(
        patient_id="p-1", event_type="booking_cancelled", ref_id=ids["bookings"][1], urgent=True
    )
    mails = smtp_sink.wait_for(1)
    helpers.wait_for(lambda: len(sms_provider.accepted()) == 1, timeout=20, what="the urgent SMS")
    assert mails[0]["Subject"] == "Your appointment has been cancelled"

    # The reminder waits in the delay queue with an eta at the end of the quiet window.
    r = redis.Redis.from_url(env["BOOKING_REDIS_URL"])
    key = f"{env['BOOKING_BROKER_NAMESPACE']}:notifications.DQ.msgs"
    helpers.wait_for(lambda: r.hlen(key) == 1, timeout=20, what="the held reminder in the delay queue")
    [raw] = r.hvals(key)
    held = json.loads(raw)
    assert held["kwargs"]["event_type"] == "reminder_24h"
    morning = datetime.combine(local.date(), end, tzinfo=local.tzinfo)
    if morning < local:
        morning += timedelta(days=1)
    eta = datetime.fromtimestamp(held["options"]["eta"] / 1000, UTC)
    assert abs((eta - morning).total_seconds()) < 5
    assert len(smtp_sink.messages) == 1 and len(sms_provider.requests) == 1  # nothing else sent yet


def test_batch_publisher_and_default_workers_start_and_stop_cleanly(tmp_path: Path, helpers: Any) -> None:
    # Without Kafka the relay idles (the embedded transport reads the outbox); SIGTERM ends it with 0.
    env = {**os.environ, "BOOKING_DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "BOOKING_METRICS_PORT": "0"}
    for var in ("BOOKING_REDIS_URL", "BOOKING_KAFKA_BOOTSTRAP_SERVERS"):
        env.pop(var, None)
    for name, ready in (("batch-publisher", "no Kafka configured"), ("default", "worker started")):
        log = tmp_path / f"{name}.log"
        p = subprocess.Popen([BOOKING, "worker", name], env=env, stderr=log.open("wb"))
        helpers.wait_for(lambda: ready in log.read_text(), timeout=60, what=f"{name} to start")  # noqa: B023
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
        assert p.returncode == 0, log.read_text()[-2000:]
