"""The booking unit of work: read under locks, let the aggregate decide, write with conditional updates.

This module and `booking_core.domain.lifecycle` are the only code that changes a booking's status or a
slot's `booked` count (tests/core/test_single_owner.py checks it). The API, the consumers and the cron call
the use cases below inside their own transaction and commit; one call is one transition of one booking.

Why it cannot overbook or leak a place, on PostgreSQL and on SQLite alike:
- `begin_write` opens the transaction before the first read. On SQLite pysqlite would otherwise open it
  at the first write, after the reads it depends on; `BEGIN IMMEDIATE` takes SQLite's single write lock
  up front, so writers queue and each one reads what the previous one committed (FOR UPDATE is ignored
  there). On PostgreSQL the rows are locked instead.
- One lock order everywhere: the booking's row, then its slots in id order, then its hold.
- Every write checks the state it expects: the booking's status and version, `booked < capacity` for a
  place taken, `booked > 0` for a place freed, the hold still active. A write that finds another state
  raises ConcurrentChangeError (or SlotUnavailableError) and the caller's transaction rolls back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Result, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from booking_core.db.models import (
    Booking,
    BookingStatusHistory,
    Clinic,
    Hold,
    Package,
    Patient,
    Service,
    Slot,
    new_id,
)
from booking_core.db.notify_outbox import add_notice
from booking_core.db.session import begin_write
from booking_core.domain import lifecycle as agg
from booking_core.domain.bookings import BookingStatus
from booking_core.domain.errors import (
    AlreadyBookedError,
    ConcurrentChangeError,
    InvalidValueError,
    NotFoundError,
    NotPermittedError,
    SlotUnavailableError,
)
from booking_core.domain.holds import HoldStatus
from booking_core.events.recommendations import RecommendationRequested
from booking_core.outbox import add_event


def _rowcount(result: Result[Any]) -> int:
    return cast(CursorResult[Any], result).rowcount


def lock_booking(session: Session, booking_id: str, patient_id: str | None = None) -> Booking:
    """The booking, row-locked until commit; NotFoundError when missing (or someone else's)."""
    stmt = select(Booking.id).where(Booking.id == booking_id)
    if patient_id is not None:
        # Someone else's booking is indistinguishable from a missing one.
        stmt = stmt.where(Booking.patient_id == patient_id)
    # The lock is taken on the bare row: with the eager joins (slot, package) in the locking query,
    # PostgreSQL would re-check a concurrently moved booking against its old slot row and drop it.
    if session.scalar(stmt.with_for_update()) is None:
        raise NotFoundError("booking", booking_id)
    booking = session.get(Booking, booking_id, populate_existing=True)
    assert booking is not None
    return booking


def _lock_slots(session: Session, ids: Sequence[str]) -> dict[str, Slot]:
    stmt = (
        select(Slot)
        .where(Slot.id.in_(sorted(set(ids))))
        .order_by(Slot.id)
        .with_for_update(of=Slot)
        .execution_options(populate_existing=True)
    )
    return {s.id: s for s in session.scalars(stmt).unique()}


def _slot_view(slot: Slot) -> agg.SlotView:
    return agg.SlotView(
        id=slot.id,
        clinic_id=slot.clinic_id,
        service_id=slot.service_id,
        service_code=slot.service.code,
        starts_at=slot.starts_at,
        ends_at=slot.ends_at,
        capacity=slot.capacity,
        booked=slot.booked,
        open=slot.status == "open",
    )


def _hold(session: Session, booking_id: str) -> Hold | None:
    # The latest hold: a booking has one, created with it.
    return session.scalars(
        select(Hold)
        .where(Hold.booking_id == booking_id)
        .order_by(Hold.created_at.desc())
        .execution_options(populate_existing=True)
    ).first()


def _view(booking: Booking, slot: Slot, hold: Hold | None) -> agg.BookingView:
    return agg.BookingView(
        id=booking.id,
        patient_id=booking.patient_id,
        status=BookingStatus(booking.status),
        slot=_slot_view(slot),
        version=booking.version,
        hold_status=HoldStatus(hold.status) if hold is not None else None,
        hold_expires_at=hold.expires_at if hold is not None else None,
        package_code=booking.package.code if booking.package is not None else None,
    )


class Loaded:
    """A booking read under its locks, ready for the aggregate."""

    def __init__(
        self, session: Session, booking_id: str, *, patient_id: str | None, also: str | None
    ) -> None:
        begin_write(session)
        self.booking = lock_booking(session, booking_id, patient_id)
        wanted = [self.booking.slot_id] + ([also] if also else [])
        self.slots = _lock_slots(session, wanted)
        self.hold = _hold(session, booking_id)
        self.view = _view(self.booking, self.slots[self.booking.slot_id], self.hold)


def _take(session: Session, slot_id: str) -> None:
    won = session.execute(
        update(Slot)
        .where(Slot.id == slot_id, Slot.booked < Slot.capacity, Slot.status == "open")
        .values(booked=Slot.booked + 1)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(won) != 1:
        raise SlotUnavailableError(slot_id)


def _free(session: Session, slot_id: str) -> None:
    won = session.execute(
        update(Slot)
        .where(Slot.id == slot_id, Slot.booked > 0)
        .values(booked=Slot.booked - 1)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(won) != 1:
        raise ConcurrentChangeError("the slot has no place to give back")


def _apply(
    session: Session, booking: Booking, view: agg.BookingView, d: agg.Decision, *, actor: str, now: datetime
) -> None:
    """Write one decision on an existing booking: booking row, places, hold, history, events, notices."""
    if not d.changed or d.to_status is None:
        return
    values: dict[str, Any] = {"status": d.to_status.value, "version": Booking.version + 1, "updated_at": now}
    if d.to_status is BookingStatus.CANCELLED:
        values["cancel_reason"] = d.reason
    if d.move is not None:
        new = d.move.new
        values.update(
            slot_id=new.id,
            clinic_id=new.clinic_id,
            starts_at=new.starts_at,
            ends_at=new.ends_at,
            # Re-armed: the reminders name the new time.
            reminder_24h_sent_at=None,
            reminder_2h_sent_at=None,
        )
    # Places first, in slot id order, so two moves in opposite directions cannot deadlock.
    steps = [(s.id, +1) for s in [d.take] if s is not None] + [(s.id, -1) for s in [d.free] if s is not None]
    for slot_id, delta in sorted(steps):
        _take(session, slot_id) if delta > 0 else _free(session, slot_id)
    try:
        won = session.execute(
            update(Booking)
            .where(
                Booking.id == view.id,
                Booking.status == view.status.value,
                Booking.version == view.version,
                Booking.slot_id == view.slot.id,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    except IntegrityError as exc:
        raise AlreadyBookedError("you already have a booking on that slot") from exc
    if _rowcount(won) != 1:
        raise ConcurrentChangeError("the booking changed meanwhile")
    if d.hold is not None or d.move is not None:
        hold_values: dict[str, Any] = {}
        if d.hold is not None:
            hold_values["status"] = d.hold.value
        if d.move is not None:
            hold_values["slot_id"] = d.move.new.id
        session.execute(
            update(Hold)
            .where(Hold.booking_id == view.id, Hold.status == HoldStatus.ACTIVE.value)
            .values(**hold_values)
            .execution_options(synchronize_session=False)
        )
    session.add(
        BookingStatusHistory(
            booking_id=view.id,
            from_status=view.status.value,
            to_status=d.to_status.value,
            reason=d.reason,
            actor=actor,
            at=now,
        )
    )
    _publish(session, d, now=now)
    # Written past the ORM: the next reader of this session must load the row again.
    session.expire(booking)


def _publish(session: Session, d: agg.Decision, *, now: datetime) -> None:
    """Stage the decision's events, and its notices keyed by the event that caused them."""
    cause = ""
    for event in d.events:
        row = add_event(session, event, occurred_at=now)
        cause = cause or row.event_id
    for notice in d.notices:
        add_notice(session, notice, cause=cause, now=now)


# -- the use cases ------------------------------------------------------------------------------------


def hold_booking(
    session: Session,
    *,
    patient_id: str,
    slot_id: str,
    package_code: str | None,
    now: datetime,
    hold_ttl: timedelta,
) -> tuple[Booking, Hold]:
    """A patient asks for a place: a pending booking, one place taken, an active hold."""
    begin_write(session)
    patient = session.get(Patient, patient_id, populate_existing=True)
    if patient is None:
        raise NotPermittedError("the patient is not registered", code="patient_not_registered")
    slots = _lock_slots(session, [slot_id])
    if slot_id not in slots:
        raise NotFoundError("slot", slot_id)
    slot = slots[slot_id]
    package: Package | None = None
    if package_code is not None:
        package = session.scalar(select(Package).where(Package.code == package_code, Package.active))
        if package is None:
            raise InvalidValueError("body.package_code", "unknown or inactive package")
    booking = Booking(
        id=new_id(),
        patient_id=patient_id,
        slot_id=slot.id,
        clinic_id=slot.clinic_id,
        service_id=slot.service_id,
        package_id=package.id if package else None,
        status=BookingStatus.PENDING.value,
        starts_at=slot.starts_at,
        ends_at=slot.ends_at,
        created_at=now,
        updated_at=now,
    )
    d = agg.hold(
        booking_id=booking.id,
        patient_id=patient_id,
        patient_active=patient.active,
        slot=_slot_view(slot),
        package_code=package_code,
        now=now,
        hold_ttl=hold_ttl,
    )
    assert d.take is not None and d.new_hold_expires_at is not None
    _take(session, slot.id)
    booking.slot = slot
    booking.package = package
    session.add(booking)
    try:
        session.flush()
    except IntegrityError as exc:
        raise AlreadyBookedError("you already have a booking on this slot") from exc
    hold = Hold(
        status=HoldStatus.ACTIVE.value,
        slot_id=slot.id,
        patient_id=patient_id,
        booking_id=booking.id,
        created_at=now,
        expires_at=d.new_hold_expires_at,
    )
    session.add(hold)
    session.add(
        BookingStatusHistory(
            booking_id=booking.id,
            from_status=None,
            to_status=BookingStatus.PENDING.value,
            reason="requested",
            actor="patient",
            at=now,
        )
    )
    _publish(session, d, now=now)
    return booking, hold


def confirm_booking(session: Session, *, booking_id: str, actor: str, now: datetime) -> agg.Decision:
    """Confirm a pending booking or reject it; a decided one is left alone."""
    lo = Loaded(session, booking_id, patient_id=None, also=None)
    clinic = session.get(Clinic, lo.booking.clinic_id)
    service = session.get(Service, lo.booking.service_id)
    d = agg.confirm(
        lo.view,
        clinic_active=clinic is not None and clinic.active,
        service_active=service is not None and service.active,
        now=now,
    )
    package = lo.view.package_code
    _apply(session, lo.booking, lo.view, d, actor=actor, now=now)
    if d.changed and d.to_status is BookingStatus.BOOKED:
        add_event(
            session,
            RecommendationRequested(
                patient_id=lo.view.patient_id, booking_id=booking_id, package_code=package
            ),
            occurred_at=now,
        )
    return d


def cancel_booking(
    session: Session,
    *,
    booking_id: str,
    by: str,
    actor: str,
    now: datetime,
    patient_id: str | None = None,
    notice: timedelta | None = None,
) -> Booking:
    """Cancel (patient: own booking, within the notice; clinic: any time); a repeat changes nothing."""
    lo = Loaded(session, booking_id, patient_id=patient_id, also=None)
    d = agg.cancel(lo.view, by=by, now=now, notice=notice)
    _apply(session, lo.booking, lo.view, d, actor=actor, now=now)
    return lo.booking


def reschedule_booking(
    session: Session,
    *,
    booking_id: str,
    new_slot_id: str,
    actor: str,
    now: datetime,
    patient_id: str | None = None,
    notice: timedelta | None = None,
) -> Booking:
    """Move a booking to another slot of its service; the same slot again changes nothing."""
    lo = Loaded(session, booking_id, patient_id=patient_id, also=new_slot_id)
    new = lo.slots.get(new_slot_id)
    if new is None:
        raise NotFoundError("slot", new_slot_id)
    d = agg.reschedule(lo.view, _slot_view(new), now=now, notice=notice)
    _apply(session, lo.booking, lo.view, d, actor=actor, now=now)
    return lo.booking


def expire_hold(session: Session, *, booking_id: str, actor: str, now: datetime) -> agg.Decision:
    """Cancel a still-pending booking whose hold has lapsed (cron)."""
    lo = Loaded(session, booking_id, patient_id=None, also=None)
    d = agg.expire_hold(lo.view, now=now)
    _apply(session, lo.booking, lo.view, d, actor=actor, now=now)
    return d


def check_in(session: Session, *, booking_id: str, actor: str, now: datetime) -> agg.Decision:
    """booked -> arrived."""
    lo = Loaded(session, booking_id, patient_id=None, also=None)
    d = agg.check_in(lo.view)
    _apply(session, lo.booking, lo.view, d, actor=actor, now=now)
    return d


def mark_noshow(
    session: Session, *, booking_id: str, actor: str, now: datetime, reason: str | None = None
) -> agg.Decision:
    """booked -> noshow."""
    lo = Loaded(session, booking_id, patient_id=None, also=None)
    d = agg.no_show(lo.view, reason=reason)
    _apply(session, lo.booking, lo.view, d, actor=actor, now=now)
    return d


def fulfil(session: Session, *, booking_id: str, actor: str, now: datetime) -> agg.Decision:
    """arrived -> fulfilled."""
    lo = Loaded(session, booking_id, patient_id=None, also=None)
    d = agg.fulfil(lo.view)
    _apply(session, lo.booking, lo.view, d, actor=actor, now=now)
    return d


def patient_deactivated(session: Session, *, patient_id: str, actor: str, now: datetime) -> int:
    """Cancel every pending or booked appointment of a deactivated patient; returns how many."""
    ids = session.scalars(
        select(Booking.id).where(
            Booking.patient_id == patient_id,
            Booking.status.in_([BookingStatus.PENDING.value, BookingStatus.BOOKED.value]),
        )
    ).all()
    done = 0
    for booking_id in ids:
        lo = Loaded(session, booking_id, patient_id=patient_id, also=None)
        d = agg.patient_deactivated(lo.view, now=now)
        _apply(session, lo.booking, lo.view, d, actor=actor, now=now)
        done += int(d.changed)
    return done
