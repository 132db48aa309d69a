"""The outbox relay against real PostgreSQL and Kafka: ordered by aggregate, nothing lost in an outage."""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from booking_core.db.migrate import upgrade
from booking_core.db.models import OutboxMessage
from booking_core.db.session import make_engine, make_session_factory
from booking_core.events import BookingConfirmed, BookingRescheduled, parse_event
from booking_core.events.results import LabResultsStored, result_topic
from booking_core.kafka import make_producer
from booking_core.outbox import add_event
from booking_core.settings import BookingSettings
from booking_core.topology import CONSUMERS
from booking_workers.relay import PRIORITY, REST, relay_once, run_relay

TOPIC = CONSUMERS["booking"].topic


def _sessions(url):
    upgrade(url)
    return make_session_factory(make_engine(url))


def _write_events(sessions, bookings=5, per_booking=4, tag="b"):
    now = datetime.now(UTC)
    with sessions() as s:
        for step in range(per_booking):
            for b in range(bookings):
                if step == 0:
                    ev = BookingConfirmed(booking_id=f"{tag}{b}", patient_id="p", slot_id="s0", starts_at=now)
                else:
                    ev = BookingRescheduled(
                        booking_id=f"{tag}{b}",
                        patient_id="p",
                        old_slot_id=f"s{step - 1}",
                        new_slot_id=f"s{step}",
                        old_starts_at=now,
                        new_starts_at=now + timedelta(hours=step),
                        new_ends_at=now + timedelta(hours=step, minutes=15),
                    )
                add_event(s, ev, occurred_at=now)
                s.commit()  # one transaction per change, as the API does
    return bookings * per_booking


def _producer(bootstrap, **overrides):
    return make_producer(BookingSettings(kafka_bootstrap_servers=bootstrap), **overrides)


def test_outage_delays_then_everything_is_published_in_order_per_aggregate(postgres_url, kafka):
    sessions = _sessions(postgres_url)
    prefix = kafka.prefix()
    kafka.create(prefix + TOPIC)
    total = _write_events(sessions)

    # Kafka unreachable: nothing is lost, rows stay unpublished with the attempt recorded.
    dead = _producer(
        "127.0.0.1:1", **{"delivery.timeout.ms": 1500, "socket.connection.setup.timeout.ms": 1000}
    )
    assert relay_once(sessions, dead, flush_timeout=5, topic_name=lambda t: prefix + t) == (0, total)
    with sessions() as s:
        assert s.scalar(select(func.count()).where(OutboxMessage.published_at.is_(None))) == total
        assert all(r.attempts == 1 and r.last_error for r in s.scalars(select(OutboxMessage)))

    # Bookings continue while Kafka is down.
    more = _write_events(sessions, bookings=2, per_booking=1, tag="during-outage-")

    producer = _producer(kafka.bootstrap)
    assert relay_once(sessions, producer, topic_name=lambda t: prefix + t) == (total + more, 0)
    assert relay_once(sessions, producer, topic_name=lambda t: prefix + t) == (0, 0)

    messages = kafka.read(prefix + TOPIC, total + more)
    assert len(messages) == total + more
    by_key = defaultdict(list)
    partitions = defaultdict(set)
    for m in messages:
        envelope = parse_event(m.value())
        assert m.key().decode() == envelope.aggregate_id
        headers = dict(m.headers())
        assert headers["event-id"].decode() == envelope.event_id
        by_key[envelope.aggregate_id].append(envelope)
        partitions[envelope.aggregate_id].add(m.partition())
    assert all(len(p) == 1 for p in partitions.values())  # one aggregate, one partition
    for events in by_key.values():
        slots = [e.payload.get("new_slot_id", e.payload.get("slot_id")) for e in events]
        assert slots == sorted(slots)  # s0, s1, s2, s3: the order they were written


def test_concurrent_relays_publish_each_row_once(postgres_url, kafka):
    sessions = _sessions(postgres_url)
    prefix = kafka.prefix()
    kafka.create(prefix + TOPIC)
    total = _write_events(sessions, bookings=20, per_booking=5)
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=run_relay,
            args=(stop, sessions, _producer(kafka.bootstrap)),
            kwargs={"batch_size": 7, "idle_seconds": 0.05, "topic_name": lambda t: prefix + t},
        )
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    messages = kafka.read(prefix + TOPIC, total)
    stop.set()
    for t in threads:
        t.join(30)
    ids = [parse_event(m.value()).event_id for m in messages]
    assert len(ids) == total and len(set(ids)) == total
    with sessions() as s:
        assert s.scalar(select(func.count()).where(OutboxMessage.published_at.is_(None))) == 0


def test_svip_result_events_are_published_before_an_older_standard_backlog(postgres_url, kafka):
    """A lab batch's standard results must not hold back an SVIP patient's result (issue 15)."""
    sessions = _sessions(postgres_url)
    now = datetime.now(UTC)

    def stored(i: int, tier: str) -> LabResultsStored:
        msg = f"m-{tier}-{i}"
        return LabResultsStored(lab_message_id=msg, patient_id=f"p{i}", tier=tier, result_ids=("r",))

    with sessions() as s:
        for i in range(30):
            add_event(s, stored(i, "standard"), occurred_at=now, topic=result_topic("standard"))
        for tier in ("svip1", "svip2"):
            add_event(s, stored(0, tier), occurred_at=now, topic=result_topic(tier))
        s.commit()
    producer = _producer(kafka.bootstrap)
    # The SVIP events go first, in a batch of their own (its flush waits for their acks only) ...
    assert relay_once(sessions, producer, batch_size=10) == (2, 0)
    with sessions() as s:
        done = s.scalars(select(OutboxMessage.topic).where(OutboxMessage.published_at.is_not(None))).all()
    assert sorted(done) == sorted([result_topic("svip1"), result_topic("svip2")])
    # ... then the standard backlog, oldest first, in full batches.
    assert relay_once(sessions, producer, batch_size=10) == (10, 0)


class _HeldFlush:
    """A real producer whose flush waits until released: a main-loop pass held mid-flight."""

    def __init__(self, inner) -> None:
        self.inner, self.flushing, self.release = inner, threading.Event(), threading.Event()

    def produce(self, *args, **kwargs) -> None:
        self.inner.produce(*args, **kwargs)

    def poll(self, timeout: float) -> int:
        return self.inner.poll(timeout)

    def flush(self, timeout: float) -> int:
        self.flushing.set()
        self.release.wait(60)
        return self.inner.flush(timeout)


def test_an_svip_result_is_published_while_the_main_loop_is_held_in_a_standard_pass(postgres_url, kafka):
    """The SVIP result topics' own loop (as `booking worker batch-publisher` runs it) does not wait for
    the main loop's pass in progress, and neither loop publishes the other's topics."""
    sessions = _sessions(postgres_url)
    prefix = kafka.prefix()
    kafka.create(prefix + TOPIC, prefix + result_topic("svip1"))
    total = _write_events(sessions, bookings=6, per_booking=5)
    held = _HeldFlush(_producer(kafka.bootstrap))
    stop = threading.Event()
    loops = [
        threading.Thread(
            target=run_relay,
            args=(stop, sessions, producer),
            kwargs={"idle_seconds": 0.02, "topic_name": lambda t: prefix + t, "topics": topics},
        )
        for producer, topics in ((held, REST), (_producer(kafka.bootstrap), PRIORITY))
    ]
    for t in loops:
        t.start()
    try:
        assert held.flushing.wait(30)  # the main loop's pass of the booking events, held in its flush
        with sessions() as s:
            add_event(
                s,
                LabResultsStored(lab_message_id="m-v", patient_id="pv", tier="svip1", result_ids=("r",)),
                occurred_at=datetime.now(UTC),
                topic=result_topic("svip1"),
            )
            s.commit()
        (svip,) = kafka.read(prefix + result_topic("svip1"), 1)
        assert parse_event(svip.value()).payload["patient_id"] == "pv"
        assert not held.release.is_set()  # published while the standard pass was still held
        with sessions() as s:
            assert s.scalar(select(func.count()).where(OutboxMessage.published_at.is_(None))) == total
    finally:
        held.release.set()
        messages = kafka.read(prefix + TOPIC, total)
        stop.set()
        for t in loops:
            t.join(30)
    assert len({parse_event(m.value()).event_id for m in messages}) == total
    with sessions() as s:
        assert s.scalar(select(func.count()).where(OutboxMessage.published_at.is_(None))) == 0


def test_each_loop_publishes_only_its_own_topics(postgres_url, kafka):
    sessions = _sessions(postgres_url)
    now = datetime.now(UTC)
    with sessions() as s:
        for tier in ("standard", "svip1"):
            add_event(
                s,
                LabResultsStored(lab_message_id=f"m-{tier}", patient_id="p", tier=tier, result_ids=("r",)),
                occurred_at=now,
                topic=result_topic(tier),
            )
        s.commit()
    producer = _producer(kafka.bootstrap)
    assert relay_once(sessions, producer, topics=PRIORITY) == (1, 0)
    assert relay_once(sessions, producer, topics=PRIORITY) == (0, 0)  # the standard one is not its
    assert relay_once(sessions, producer, topics=REST) == (1, 0)
