"""Helpers for the consumer tests: databases with the schema, seed rows, fake transport, HL7 fixtures."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from string import Template
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from booking_consumers.runtime import Consumer, ConsumerDef, Record
from booking_core.db.migrate import upgrade
from booking_core.db.models import (
    Booking,
    Clinic,
    Hold,
    OutboxMessage,
    Package,
    Patient,
    Service,
    Slot,
)
from booking_core.db.notify_outbox import Notice as Notification
from booking_core.db.notify_outbox import dispatch_due
from booking_core.db.session import make_engine, make_session_factory
from booking_core.events import EventPayload, make_event
from booking_testing.wait import wait_for

HL7_DIR = Path(__file__).parent / "fixtures" / "hl7"


def hl7_fixture(name: str, *, control_id: str = "MSG-1", mrn: str = "PAT-1", order: str = "ORD-1") -> bytes:
    """An HL7 fixture with its placeholders filled in, segments separated by CR."""
    text = Template((HL7_DIR / f"{name}.hl7").read_text()).substitute(
        control_id=control_id, mrn=mrn, order=order
    )
    return "\r".join(line for line in text.splitlines() if line).encode()


@pytest.fixture
def sqlite_sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """A migrated SQLite database."""
    url = f"sqlite:///{tmp_path}/booking.db"
    upgrade(url)
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()


def pg_sessions_for(url: str) -> sessionmaker[Session]:
    """A migrated PostgreSQL database's session factory."""
    upgrade(url)
    return make_session_factory(make_engine(url))


def now() -> datetime:
    return datetime.now(UTC)


def seed_patient(
    session: Session,
    pid: str = "PAT-1",
    *,
    tier: str = "standard",
    dob: date | None = date(1980, 1, 1),
    sex: str = "female",
) -> Patient:
    p = Patient(id=pid, tier=tier, date_of_birth=dob, sex=sex, given_name="Test", family_name="Patient")
    session.add(p)
    session.flush()
    return p


@dataclass
class BookingSeed:
    clinic_id: str
    service_id: str
    slot_id: str
    booking_id: str
    patient_id: str


def seed_booking(
    session: Session,
    patient_id: str = "PAT-1",
    *,
    starts_in: timedelta = timedelta(days=2),
    capacity: int = 2,
    hold_ttl: timedelta = timedelta(minutes=10),
    package_code: str | None = None,
    tag: str = "",
) -> BookingSeed:
    """A clinic, service, slot with one place taken by a pending booking with an active hold."""
    clinic = Clinic(code=f"C{tag}-{now().timestamp()}", name="Clinic")
    service = Service(code=f"S{tag}-{now().timestamp()}", name="Blood draw")
    session.add_all([clinic, service])
    session.flush()
    starts = now() + starts_in
    slot = Slot(
        clinic_id=clinic.id,
        service_id=service.id,
        starts_at=starts,
        ends_at=starts + timedelta(minutes=15),
        capacity=capacity,
        booked=1,
    )
    session.add(slot)
    session.flush()
    package = None
    if package_code:
        package = session.scalars(select(Package).where(Package.code == package_code)).first()
    booking = Booking(
        patient_id=patient_id,
        slot_id=slot.id,
        clinic_id=clinic.id,
        service_id=service.id,
        package_id=package.id if package else None,
        status="pending",
        starts_at=slot.starts_at,
        ends_at=slot.ends_at,
    )
    session.add(booking)
    session.flush()
    session.add(
        Hold(slot_id=slot.id, patient_id=patient_id, booking_id=booking.id, expires_at=now() + hold_ttl)
    )
    session.flush()
    return BookingSeed(clinic.id, service.id, slot.id, booking.id, patient_id)


def envelope_bytes(payload: EventPayload, event_id: str | None = None) -> bytes:
    return make_event(payload, occurred_at=now(), event_id=event_id).to_json()


@dataclass
class FakeTransport:
    """An in-memory transport: records to deliver, offsets done, DLQ writes."""

    batches: list[list[Record]] = field(default_factory=list)
    done_offsets: list[int] = field(default_factory=list)
    commits: int = 0
    dlq: list[tuple[Record, dict[str, str]]] = field(default_factory=list)
    closed: bool = False

    def poll(self, max_records: int, timeout: float) -> Sequence[Record]:
        return self.batches.pop(0) if self.batches else []

    def done(self, record: Record) -> None:
        self.done_offsets.append(record.offset)

    def commit(self) -> None:
        self.commits += 1

    def dead_letter(self, record: Record, headers: Mapping[str, str]) -> None:
        self.dlq.append((record, dict(headers)))

    def lag(self) -> Mapping[int, int]:
        return {0: 0}

    def close(self) -> None:
        self.closed = True


@dataclass
class Notifications:
    """A notice sender recording what it was handed; `drain` plays the dispatcher once."""

    sent: list[Notification] = field(default_factory=list)

    def __call__(self, n: Notification) -> None:
        self.sent.append(n)

    def drain(self, sessions: sessionmaker[Session]) -> list[Notification]:
        """Dispatch every due notice of the outbox to this sender; returns all sent so far."""
        dispatch_due(sessions, self)
        return self.sent


def run_records(
    definition: ConsumerDef[Any],
    sessions: sessionmaker[Session],
    values: Sequence[bytes | Record],
    *,
    topic: str = "t",
    notifier: Notifications | None = None,
) -> tuple[list[str], FakeTransport, Notifications]:
    """Process `values` as one batch through the real loop; returns the outcomes."""
    notifier = notifier or Notifications()
    records = [
        v if isinstance(v, Record) else Record(topic=topic, partition=0, offset=i, key=b"k", value=v)
        for i, v in enumerate(values)
    ]
    transport = FakeTransport()
    consumer = Consumer(definition, transport, sessions, stop=threading.Event(), backoff_max=0.01)
    outcomes = []
    for r in records:
        outcomes.append(consumer.process(r))
        transport.done(r)
        notifier.drain(sessions)  # what the dispatcher does after each commit
    return outcomes, transport, notifier


def outbox_rows(session: Session, topic: str | None = None) -> list[OutboxMessage]:
    q = select(OutboxMessage).order_by(OutboxMessage.id)
    if topic:
        q = q.where(OutboxMessage.topic == topic)
    return list(session.scalars(q))


def outbox_record(row: OutboxMessage) -> Record:
    """An outbox row as the consumer would receive it from Kafka."""
    from booking_core.outbox import encode_payload

    return Record(
        topic=row.topic,
        partition=0,
        offset=row.id,
        key=row.key.encode(),
        value=encode_payload(row.payload),
        headers=dict(row.headers or {}),
    )


class Helpers:
    """The helpers above, as one fixture (test modules cannot import conftest under importlib mode)."""

    hl7 = staticmethod(hl7_fixture)
    now = staticmethod(now)
    seed_patient = staticmethod(seed_patient)
    seed_booking = staticmethod(seed_booking)
    envelope_bytes = staticmethod(envelope_bytes)
    run_records = staticmethod(run_records)
    outbox_rows = staticmethod(outbox_rows)
    outbox_record = staticmethod(outbox_record)
    pg_sessions_for = staticmethod(pg_sessions_for)
    FakeTransport = FakeTransport
    Notifications = Notifications


@pytest.fixture
def h() -> type[Helpers]:
    """Test helpers."""
    return Helpers


# -- Kafka pipeline -----------------------------------------------------------------------------------


def create_topics(bootstrap: str, prefix: str, partitions: int = 2) -> None:
    """Every consumer topic and its DLQ under `prefix`."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from booking_core.topology import CONSUMERS

    names = [prefix + s.topic for s in CONSUMERS.values()] + [
        prefix + s.dlq_topic for s in CONSUMERS.values()
    ]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
    ).values():
        f.result(30)


def read_topic(bootstrap: str, topic: str, timeout: float = 5.0) -> list[Any]:
    """Every message currently on `topic` (reads until idle)."""
    import time
    import uuid

    from confluent_kafka import Consumer as KC

    c = KC(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    c.subscribe([topic])
    out = []
    idle_until = time.monotonic() + timeout
    try:
        while time.monotonic() < idle_until:
            msg = c.poll(0.3)
            if msg is not None and msg.error() is None:
                out.append(msg)
                idle_until = max(idle_until, time.monotonic() + 1.5)
    finally:
        c.close()
    return out


class Pipeline:
    """Consumers and the relay in threads against real Kafka and PostgreSQL, under a unique topic prefix."""

    def __init__(self, url: str, bootstrap: str, notifier: Any = None) -> None:
        import uuid

        from booking_consumers.settings import ConsumerSettings

        self.prefix = f"t{uuid.uuid4().hex[:8]}."
        self.bootstrap = bootstrap
        self.url = url
        self.settings = ConsumerSettings(
            database_url=url,
            kafka_bootstrap_servers=bootstrap,
            kafka_topic_prefix=self.prefix,
            poll_timeout_seconds=0.2,
            max_batch=100,
            retry_backoff_max_seconds=1.0,
        )
        self.sessions = pg_sessions_for(url)
        self.notes = notifier or Notifications()
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        create_topics(bootstrap, self.prefix)

    def consumer(self, name: str) -> None:
        from booking_consumers.handlers.registry import definition
        from booking_consumers.main import build_transport

        c = Consumer(
            definition(name),
            build_transport(self.settings, name),
            self.sessions,
            stop=self.stop,
            max_batch=self.settings.max_batch,
            poll_timeout=0.2,
            backoff_max=1.0,
        )
        self._thread(c.run, name)

    def relay(self) -> None:
        """The batch-publisher's two loops: the event outbox to Kafka, the notices to `self.notes`."""
        from booking_core.kafka import make_producer
        from booking_workers.dispatch import run_dispatcher
        from booking_workers.relay import run_relay

        producer = make_producer(self.settings)
        self._thread(
            lambda: run_relay(
                self.stop, self.sessions, producer, idle_seconds=0.05, topic_name=lambda t: self.prefix + t
            ),
            "relay",
        )
        engine = self.sessions.kw["bind"]
        self._thread(lambda: run_dispatcher(self.stop, self.sessions, self.notes, engine=engine), "dispatch")

    def _thread(self, fn: Any, name: str) -> None:
        t = threading.Thread(target=fn, name=name, daemon=True)
        t.start()
        self.threads.append(t)

    def produce(self, topic: str, values: Sequence[bytes], key: str = "k") -> None:
        from booking_core.kafka import make_producer

        p = make_producer(self.settings)
        for i, v in enumerate(values):
            p.produce(self.prefix + topic, value=v, key=f"{key}-{i}".encode())
        assert p.flush(30) == 0

    def dlq(self, name: str) -> list[Any]:
        from booking_core.topology import CONSUMERS

        return read_topic(self.bootstrap, self.prefix + CONSUMERS[name].dlq_topic)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)
        assert not any(t.is_alive() for t in self.threads), "a consumer did not stop"


@pytest.fixture
def pipeline(postgres_url: str, kafka_bootstrap: str) -> Iterator[Pipeline]:
    """A Pipeline on a fresh database; stopped (and checked to stop) afterwards."""
    p = Pipeline(postgres_url, kafka_bootstrap)
    yield p
    p.close()


# The pipeline waits default to a minute; a call may pass its own timeout.
Helpers.wait_for = staticmethod(partial(wait_for, timeout=60.0))  # type: ignore[attr-defined]
Helpers.Pipeline = Pipeline  # type: ignore[attr-defined]
Helpers.read_topic = staticmethod(read_topic)  # type: ignore[attr-defined]
