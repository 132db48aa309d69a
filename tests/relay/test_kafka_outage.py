"""A real broker stopped for a minute while bookings continue through the API: no event lost or doubled.

Issue 6 ("Show"): "Kafka stopped for a minute while bookings continue loses no event". A dedicated
broker (the session's `kafka_server` is shared and must keep running) is stopped with the relay running
continuously (`run_relay`, as `booking worker batch-publisher` runs it, with the production producer
configuration), bookings are made, rescheduled and cancelled through the API before, during and after the
outage, then the broker is restarted on the same ports and data. The outage lasts
BOOKING_TEST_OUTAGE_SECONDS (default 60).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from booking_api.app import create_app
from booking_api.auth import mint_token
from booking_api.settings import ApiSettings
from booking_core.db.migrate import upgrade
from booking_core.db.models import Clinic, OutboxMessage, Patient, Service, Slot
from booking_core.db.session import make_engine, make_session_factory
from booking_core.events import parse_event
from booking_core.kafka import make_producer
from booking_core.settings import BookingSettings
from booking_core.topology import CONSUMERS
from booking_testing.procs import InfraError
from booking_testing.wait import wait_for
from booking_workers.relay import run_relay

TOPIC = CONSUMERS["booking"].topic
OUTAGE_SECONDS = float(os.environ.get("BOOKING_TEST_OUTAGE_SECONDS", "60"))
# Each booking is requested, rescheduled, then cancelled: three events that must keep this order.
EXPECTED_TYPES = ["booking.requested", "booking.rescheduled", "booking.cancelled"]


def _start_broker(workdir: Path):  # -> KafkaServer
    from booking_testing.kafka import start_kafka

    try:
        return start_kafka(workdir)
    except InfraError as exc:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"Kafka could not start (CI=true never skips):\n{exc}", pytrace=False)
        pytest.skip(f"Kafka unavailable: {exc}")


class Bookings:
    """Patients making, moving and cancelling bookings through the API."""

    def __init__(self, sessions, url: str) -> None:
        self.sessions = sessions
        self.settings = ApiSettings(database_url=url)
        self.client = TestClient(create_app(self.settings, session_factory=sessions))
        self.client.__enter__()
        self.made: list[str] = []
        now = datetime.now(UTC)
        with sessions() as s:
            clinic = Clinic(code="OUTAGE-C", name="Clinic")
            service = Service(code="outage-blood-draw", name="Blood draw")
            s.add_all([clinic, service])
            s.flush()
            slots = []
            for day in (2, 3):
                starts = now + timedelta(days=day)
                slot = Slot(
                    clinic_id=clinic.id,
                    service_id=service.id,
                    starts_at=starts,
                    ends_at=starts + timedelta(minutes=15),
                    capacity=10_000,
                )
                s.add(slot)
                slots.append(slot)
            s.commit()
            self.first_slot, self.second_slot = slots[0].id, slots[1].id

    def close(self) -> None:
        self.client.__exit__(None, None, None)

    def one(self) -> str:
        """A new patient books, reschedules and cancels: three outbox events, three transactions."""
        patient_id = f"patient-{uuid.uuid4().hex[:10]}"
        with self.sessions() as s:
            s.add(Patient(id=patient_id, tier="standard", given_name="Test", family_name="Patient"))
            s.commit()
        token = mint_token(
            settings=self.settings,
            subject=patient_id,
            role="patient",
            now=datetime.now(UTC),
            ttl=timedelta(hours=1),
        )
        auth = {"Authorization": f"Bearer {token}"}
        created = self.client.post(
            "/api/v1/bookings",
            json={"slot_id": self.first_slot},
            headers={**auth, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert created.status_code == 201, created.text
        booking_id = created.json()["id"]
        moved = self.client.post(
            f"/api/v1/bookings/{booking_id}/reschedule", json={"slot_id": self.second_slot}, headers=auth
        )
        assert moved.status_code == 200, moved.text
        cancelled = self.client.post(f"/api/v1/bookings/{booking_id}/cancel", headers=auth)
        assert cancelled.status_code == 200, cancelled.text
        self.made.append(booking_id)
        return booking_id


def _unpublished(sessions) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).where(OutboxMessage.published_at.is_(None))) or 0)


def _read_all(bootstrap: str, topic: str, expected: int, timeout: float) -> list:
    """Everything on the topic from the beginning, with a fresh group; waits a little for extras."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"outage-reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    out: list = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append(msg)
        quiet_until = time.monotonic() + 3.0  # a duplicate would show up here
        while time.monotonic() < quiet_until:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                out.append(msg)
    finally:
        consumer.close()
    return out


def test_kafka_stopped_while_bookings_continue_loses_and_doubles_no_event(postgres_url):
    workdir = Path(tempfile.mkdtemp(prefix="pat-booking-kafka-outage-"))
    workdir.chmod(0o755)
    broker = _start_broker(workdir / "kafka")
    prefix = f"outage{uuid.uuid4().hex[:6]}-"
    topic = prefix + TOPIC
    stop = threading.Event()
    relay_errors: list[BaseException] = []
    relay: threading.Thread | None = None
    bookings: Bookings | None = None
    engine = None
    try:
        upgrade(postgres_url)
        engine = make_engine(postgres_url)
        sessions = make_session_factory(engine)
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        for f in admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)]).values():
            f.result(30)

        # The relay as the batch-publisher worker runs it: production producer settings, default backoff.
        producer = make_producer(BookingSettings(kafka_bootstrap_servers=broker.bootstrap))

        def relay_loop() -> None:
            try:
                run_relay(stop, sessions, producer, topic_name=lambda t: prefix + t)
            except BaseException as exc:  # the assertion below reports it
                relay_errors.append(exc)

        relay = threading.Thread(target=relay_loop, name="outbox-relay", daemon=True)
        relay.start()
        bookings = Bookings(sessions, postgres_url)

        # Before: published promptly.
        for _ in range(5):
            bookings.one()
        wait_for(lambda: _unpublished(sessions) == 0, timeout=60, what="events before the outage published")

        # During: the broker is down; bookings keep coming in.
        broker.stop()
        outage_started = time.monotonic()
        during = 0
        while time.monotonic() - outage_started < OUTAGE_SECONDS:
            bookings.one()
            during += 1
            time.sleep(0.5)
        assert relay.is_alive(), f"relay died during the outage: {relay_errors!r}"
        assert _unpublished(sessions) >= 3 * during > 0  # nothing reached Kafka while it was down

        broker = broker.restart()

        # After: bookings continue, and the backlog drains.
        for _ in range(5):
            bookings.one()
        wait_for(
            lambda: _unpublished(sessions) == 0,
            timeout=OUTAGE_SECONDS + 120,
            what="the outbox backlog published after the restart",
            interval=1,
        )
        assert relay.is_alive() and not relay_errors, f"relay died: {relay_errors!r}"

        with sessions() as s:
            rows = list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
        expected_ids = {r.event_id for r in rows}
        assert len(rows) == 3 * len(bookings.made)
        assert {r.key for r in rows} == set(bookings.made)
        assert max(r.attempts for r in rows) > 1, "the relay never saw the outage"

        messages = _read_all(broker.bootstrap, topic, len(rows), timeout=60)
        ids = Counter(dict(m.headers())["event-id"].decode() for m in messages)
        assert set(ids) == expected_ids, "events lost or foreign events on the topic"
        doubled = {k: n for k, n in ids.items() if n > 1}
        assert not doubled, f"{len(doubled)} events published more than once"

        by_booking: dict[str, list[tuple[int, str]]] = defaultdict(list)
        partitions: dict[str, set[int]] = defaultdict(set)
        for m in messages:
            envelope = parse_event(m.value())
            assert m.key().decode() == envelope.aggregate_id
            by_booking[envelope.aggregate_id].append((m.offset(), envelope.type))
            partitions[envelope.aggregate_id].add(m.partition())
        assert all(len(p) == 1 for p in partitions.values())  # one booking, one partition
        for booking_id, events in by_booking.items():
            assert [t for _, t in sorted(events)] == EXPECTED_TYPES, booking_id
        assert relay.is_alive(), "the relay must still be running after the outage"
        print(
            f"outage {OUTAGE_SECONDS:.0f}s: {len(bookings.made)} bookings ({during} during the outage), "
            f"{len(rows)} events, max attempts {max(r.attempts for r in rows)}"
        )
    finally:
        stop.set()
        if relay is not None:
            relay.join(60)
        if bookings is not None:
            bookings.close()
        if engine is not None:
            engine.dispose()
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
