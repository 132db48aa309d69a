"""`booking run`'s embedded transport: the outbox read as a log drives the same handlers."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from booking_consumers import embedded
from booking_core.db.models import Booking, OutboxMessage, TestResult
from booking_core.db.models_events import ConsumerOffset
from booking_core.events import BookingRequested
from booking_core.outbox import add_event
from booking_core.topology import CONSUMERS, NOTIFICATION_QUEUES
from booking_testing.wait import wait_for
from booking_workers.broker import build_broker, send_notice, setup_broker
from booking_workers.dispatch import run_dispatcher


def test_booking_and_lis_flow_through_the_embedded_transport(sqlite_sessions, h, tmp_path):
    broker = setup_broker(broker=build_broker(None))
    url = str(sqlite_sessions.kw["bind"].url)
    with sqlite_sessions() as s:
        h.seed_patient(s)
        seed = h.seed_booking(s)
        b = s.get(Booking, seed.booking_id)
        add_event(
            s,
            BookingRequested(
                booking_id=b.id,
                patient_id=b.patient_id,
                slot_id=b.slot_id,
                clinic_id=b.clinic_id,
                service_code="S",
                starts_at=b.starts_at,
                ends_at=b.ends_at,
            ),
            occurred_at=h.now(),
        )
        embedded.inject(s, CONSUMERS["lis-testresult"].topic, "lab-1", h.hl7("abnormal").decode())
        s.commit()
    stop = threading.Event()
    thread = threading.Thread(target=embedded.start, args=(stop, url), kwargs={"idle_seconds": 0.05})
    thread.start()
    # `booking run`'s notice dispatcher (booking_workers.embedded runs it): the consumers only write notices.
    dispatcher = threading.Thread(target=run_dispatcher, args=(stop, sqlite_sessions, send_notice))
    dispatcher.start()
    try:

        def done():
            with sqlite_sessions() as s:
                booked = s.get(Booking, seed.booking_id).status == "booked"
                results = s.scalars(select(TestResult)).all()
                return booked and results and all(r.visible_to_patient for r in results)

        wait_for(done, timeout=20, what="booked and results visible")
        wait_for(lambda: broker.queues[NOTIFICATION_QUEUES["standard"]].qsize() >= 2, timeout=20,
                 what="two notices on the broker")  # fmt: skip
    finally:
        stop.set()
        thread.join(10)
        dispatcher.join(10)
    assert not thread.is_alive() and not dispatcher.is_alive()
    kinds = sorted(m.kwargs["event_type"] for m in _drain(broker, NOTIFICATION_QUEUES["standard"]))
    assert kinds == ["booking_confirmed", "results_available"]
    with sqlite_sessions() as s:
        offsets = {o.group_id: o.last_id for o in s.scalars(select(ConsumerOffset))}
        assert offsets["pat-booking-be.booking"] >= 1 and offsets["pat-booking-be.lis-testresult"] >= 1
        # Rows every reader has passed are published, so the cron's cleanup applies to them.
        passed = s.scalars(
            select(OutboxMessage).where(OutboxMessage.event_type.in_(("booking.requested", "raw")))
        ).all()
        assert len(passed) == 2 and all(r.published_at is not None for r in passed)


def test_rows_are_published_once_every_reader_group_passed_them_then_cleaned_up(sqlite_sessions):
    from booking_workers.cron_tasks import cleanup_outbox

    topic, other = "t.shared", "t.other"
    with sqlite_sessions() as s:
        for i in range(3):
            embedded.inject(s, topic, f"k{i}", {"n": i})
        embedded.inject(s, other, "k", {"n": 0})
        s.commit()
    readers = {topic: ["g.a", "g.b"]}
    a = embedded.OutboxTransport(sqlite_sessions, "g.a", [topic], readers=readers)
    b = embedded.OutboxTransport(sqlite_sessions, "g.b", [topic], readers=readers)

    def consume(transport, n):
        records = transport.poll(n, 0)
        for r in records:
            transport.done(r)
        transport.commit()

    def published():
        with sqlite_sessions() as s:
            rows = s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
            return [(r.key, r.published_at is not None) for r in rows]

    consume(a, 10)
    assert published() == [("k0", False), ("k1", False), ("k2", False), ("k", False)]  # g.b has not read
    consume(b, 2)
    assert published() == [("k0", True), ("k1", True), ("k2", False), ("k", False)]
    consume(b, 10)
    assert published() == [("k0", True), ("k1", True), ("k2", True), ("k", False)]
    # A restarted transport resumes from its stored position and marks nothing twice.
    again = embedded.OutboxTransport(sqlite_sessions, "g.a", [topic], readers=readers)
    assert again.poll(10, 0) == []

    deleted = cleanup_outbox(
        sqlite_sessions, now=datetime.now(UTC) + timedelta(days=365), retention=timedelta(days=1)
    )
    assert deleted == 3 and published() == [("k", False)]


def test_topic_readers_follow_the_topology():
    readers = embedded.topic_readers("pfx.")
    assert readers[CONSUMERS["lis-testresult"].topic] == ["pfx.pat-booking-be.lis-testresult"]
    assert sum(len(groups) for groups in readers.values()) == len(CONSUMERS)


def _drain(broker, queue):
    import dramatiq

    q = broker.queues[queue]
    out = []
    while not q.empty():
        out.append(dramatiq.Message.decode(q.get_nowait()))
    return out
