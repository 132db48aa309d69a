"""`booking run`'s embedded transport: the outbox read as a log drives the same handlers."""

from __future__ import annotations

import threading
import time

from sqlalchemy import select

from booking_consumers import embedded
from booking_core.broker import build_broker, setup_broker
from booking_core.db.models import Booking, TestResult
from booking_core.db.models_events import ConsumerOffset
from booking_core.events import BookingRequested
from booking_core.outbox import add_event
from booking_core.topology import CONSUMERS, NOTIFICATION_QUEUES


def wait_for(cond, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


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
    try:

        def done():
            with sqlite_sessions() as s:
                booked = s.get(Booking, seed.booking_id).status == "booked"
                results = s.scalars(select(TestResult)).all()
                return booked and results and all(r.visible_to_patient for r in results)

        wait_for(done)
        wait_for(lambda: broker.queues[NOTIFICATION_QUEUES["standard"]].qsize() >= 2)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    kinds = sorted(m.kwargs["event_type"] for m in _drain(broker, NOTIFICATION_QUEUES["standard"]))
    assert kinds == ["booking_confirmed", "results_available"]
    with sqlite_sessions() as s:
        offsets = {o.group_id: o.last_id for o in s.scalars(select(ConsumerOffset))}
        assert offsets["pat-booking-be.booking"] >= 1 and offsets["pat-booking-be.lis-testresult"] >= 1


def _drain(broker, queue):
    import dramatiq

    q = broker.queues[queue]
    out = []
    while not q.empty():
        out.append(dramatiq.Message.decode(q.get_nowait()))
    return out
