"""The booking unit of work: a cancellation frees its place, releases its hold and raises its event once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from booking_core.db import lifecycle
from booking_core.db.migrate import upgrade
from booking_core.db.models import (
    Booking,
    BookingStatusHistory,
    Clinic,
    Hold,
    OutboxMessage,
    Patient,
    Service,
    Slot,
)
from booking_core.db.session import begin_write, make_engine, make_session_factory
from booking_core.domain.errors import ConcurrentChangeError, SlotUnavailableError
from booking_core.domain.holds import HoldStatus

NOW = datetime.now(UTC).replace(microsecond=0)


def _pending_booking(session: Session) -> tuple[str, str]:
    """A slot of capacity 2 with two places taken, one by a pending booking with an active hold."""
    clinic, service = Clinic(code="C1", name="Clinic"), Service(code="S1", name="Service")
    session.add_all([clinic, service, Patient(id="p-1")])
    session.flush()
    start = NOW + timedelta(days=1)
    slot = Slot(
        clinic_id=clinic.id,
        service_id=service.id,
        starts_at=start,
        ends_at=start + timedelta(minutes=15),
        capacity=2,
        booked=2,
    )
    session.add(slot)
    session.flush()
    booking = Booking(
        patient_id="p-1",
        slot_id=slot.id,
        clinic_id=clinic.id,
        service_id=service.id,
        status="pending",
        starts_at=start,
        ends_at=start + timedelta(minutes=15),
    )
    session.add(booking)
    session.flush()
    session.add(
        Hold(slot_id=slot.id, patient_id="p-1", booking_id=booking.id, expires_at=NOW + timedelta(minutes=5))
    )
    session.commit()
    return booking.id, slot.id


def _cancel(session: Session, booking_id: str) -> bool:
    """A clinic cancellation; True when this call changed the booking (False: a repeat)."""
    begin_write(session)
    # Read under the booking's lock, as the unit of work does, so a racing call sees the winner's write.
    before = lifecycle.lock_booking(session, booking_id).version
    lifecycle.cancel_booking(session, booking_id=booking_id, by="clinic", actor="system:test", now=NOW)
    session.flush()
    return session.scalar(select(Booking.version).where(Booking.id == booking_id)) != before


def test_cancel_frees_the_place_once_and_writes_one_event(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        booking_id, slot_id = _pending_booking(s)
    for expected in (True, False):  # the second call finds the booking no longer pending
        with sessions() as s:
            assert _cancel(s, booking_id) is expected
            s.commit()
    with sessions() as s:
        booking = s.get(Booking, booking_id)
        assert booking is not None
        assert (booking.status, booking.cancel_reason, booking.version) == ("cancelled", "clinic_request", 2)
        assert s.scalar(select(Slot.booked).where(Slot.id == slot_id)) == 1
        assert s.scalars(select(Hold.status)).all() == ["released"]
        history = s.scalars(select(BookingStatusHistory)).all()
        assert [(h.from_status, h.to_status, h.actor) for h in history] == [
            ("pending", "cancelled", "system:test")
        ]
        [event] = s.scalars(select(OutboxMessage)).all()
        assert event.event_type == "booking.cancelled" and event.key == booking_id
        assert event.payload["payload"]["previous_status"] == "pending"
        assert event.payload["payload"]["slot_id"] == slot_id


def test_reject_is_the_same_step_with_its_own_event(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        booking_id, slot_id = _pending_booking(s)
        slot = s.get(Slot, slot_id)
        assert slot is not None
        slot.status = "closed"
        s.commit()
    for expected in (True, False):
        with sessions() as s:
            d = lifecycle.confirm_booking(s, booking_id=booking_id, actor="system:test", now=NOW)
            assert d.changed is expected
            s.commit()
    with sessions() as s:
        booking = s.get(Booking, booking_id)
        assert booking is not None
        assert (booking.status, booking.cancel_reason, booking.updated_at) == ("cancelled", "rejected", NOW)
        assert s.scalar(select(Slot.booked).where(Slot.id == slot_id)) == 1
        assert s.scalars(select(Hold.status)).all() == ["released"]
        [event] = s.scalars(select(OutboxMessage)).all()
        assert event.event_type == "booking.rejected" and event.payload["payload"]["reason"] == "slot_closed"


def test_move_takes_the_new_place_frees_the_old_and_moves_the_hold(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        booking_id, old_slot_id = _pending_booking(s)
        old = s.get(Slot, old_slot_id)
        assert old is not None
        new = Slot(
            clinic_id=old.clinic_id,
            service_id=old.service_id,
            starts_at=old.starts_at + timedelta(days=1),
            ends_at=old.ends_at + timedelta(days=1),
            capacity=1,
            booked=1,
        )
        s.add(new)
        s.commit()
        new_slot_id = new.id
    with sessions() as s:
        with pytest.raises(SlotUnavailableError):
            lifecycle.reschedule_booking(
                s, booking_id=booking_id, new_slot_id=new_slot_id, actor="system:test", now=NOW
            )
        s.rollback()
        s.execute(update(Slot).where(Slot.id == new_slot_id).values(booked=0))
        s.commit()
    with sessions() as s:
        lifecycle.reschedule_booking(
            s, booking_id=booking_id, new_slot_id=new_slot_id, actor="system:test", now=NOW
        )
        s.commit()
        new = s.get(Slot, new_slot_id)
        assert new is not None
    with sessions() as s:
        booking = s.get(Booking, booking_id)
        assert booking is not None
        assert (booking.slot_id, booking.starts_at, booking.version) == (new_slot_id, new.starts_at, 2)
        assert s.scalar(select(Slot.booked).where(Slot.id == old_slot_id)) == 1
        assert s.scalar(select(Slot.booked).where(Slot.id == new_slot_id)) == 1
        assert s.scalars(select(Hold.slot_id)).all() == [new_slot_id]
        [history] = s.scalars(select(BookingStatusHistory)).all()
        assert (history.from_status, history.to_status, history.reason) == (
            "pending",
            "pending",
            "rescheduled",
        )
        [event] = s.scalars(select(OutboxMessage)).all()
        assert event.event_type == "booking.rescheduled"
        assert event.payload["payload"]["old_slot_id"] == old_slot_id


def test_a_write_that_finds_another_state_refuses(sessions: sessionmaker[Session]) -> None:
    """The conditional writes are the last guard: a stale read cannot free a place twice."""
    with sessions() as s:
        booking_id, slot_id = _pending_booking(s)
    with sessions() as s:
        lo = lifecycle.Loaded(s, booking_id, patient_id=None, also=None)
        # Someone else's commit between the read and the write (impossible under the locks; simulated).
        s.execute(update(Booking).where(Booking.id == booking_id).values(version=Booking.version + 1))
        from booking_core.domain import lifecycle as agg

        d = agg.cancel(lo.view, by="clinic", now=NOW)
        with pytest.raises(ConcurrentChangeError):
            lifecycle._apply(s, lo.booking, lo.view, d, actor="system:test", now=NOW)
        s.rollback()
    with sessions() as s:
        assert s.scalar(select(Slot.booked).where(Slot.id == slot_id)) == 2
        assert s.scalar(select(Hold.status)) == HoldStatus.ACTIVE.value


def test_racing_cancellations_free_one_place(postgres_url: str) -> None:
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    sessions = make_session_factory(engine)
    with sessions() as s:
        booking_id, slot_id = _pending_booking(s)
    barrier = threading.Barrier(6)
    wins: list[bool] = []

    def race() -> None:
        with sessions() as s:
            barrier.wait()
            wins.append(_cancel(s, booking_id))
            s.commit()

    threads = [threading.Thread(target=race) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with sessions() as s:
        assert sorted(wins) == [False] * 5 + [True]
        assert len(s.scalars(select(BookingStatusHistory)).all()) == 1
        assert s.scalar(select(Slot.booked).where(Slot.id == slot_id)) == 1
        assert len(s.scalars(select(OutboxMessage)).all()) == 1
    engine.dispose()


def test_opposite_moves_between_two_slots_do_not_deadlock(postgres_url: str) -> None:
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    sessions = make_session_factory(engine)
    n = 6  # 12 threads: within the engine pool (5 + 10 overflow)
    with sessions() as s:
        clinic, service = Clinic(code="C1", name="Clinic"), Service(code="S1", name="Service")
        s.add_all([clinic, service, *[Patient(id=f"p-{i}") for i in range(2 * n)]])
        s.flush()
        start = NOW + timedelta(days=1)
        slots = [
            Slot(
                clinic_id=clinic.id,
                service_id=service.id,
                starts_at=start + timedelta(hours=h),
                ends_at=start + timedelta(hours=h, minutes=15),
                capacity=2 * n,
                booked=n,
            )
            for h in (0, 1)
        ]
        s.add_all(slots)
        s.flush()
        moves = []  # (booking, to slot): half from the first slot to the second, half back
        for i in range(2 * n):
            here, there = slots[i % 2], slots[1 - i % 2]
            booking = Booking(
                patient_id=f"p-{i}",
                slot_id=here.id,
                clinic_id=clinic.id,
                service_id=service.id,
                status="booked",
                starts_at=here.starts_at,
                ends_at=here.ends_at,
            )
            s.add(booking)
            s.flush()
            moves.append((booking.id, there.id))
        s.commit()
    barrier = threading.Barrier(2 * n, timeout=60)
    errors: list[BaseException] = []

    def move(booking_id: str, slot_id: str) -> None:
        with sessions() as s:
            barrier.wait()
            try:
                lifecycle.reschedule_booking(
                    s, booking_id=booking_id, new_slot_id=slot_id, actor="system:test", now=NOW
                )
                s.commit()
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=move, args=m) for m in moves]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with sessions() as s:
        assert set(s.scalars(select(Slot.booked))) == {n}
        assert len(s.scalars(select(OutboxMessage)).all()) == 2 * n
    engine.dispose()
