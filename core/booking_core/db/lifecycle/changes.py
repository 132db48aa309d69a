"""Transitions of an existing booking: read under locks (`locked`), let the aggregate decide, write the
decision with conditional updates (booking row, places, hold, history, events, notices)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from booking_core.db.lifecycle.locked import Loaded, rowcount, slot_view
from booking_core.db.models import (
    Booking,
    BookingStatusHistory,
    Clinic,
    Hold,
    Service,
    Slot,
)
from booking_core.db.notify_outbox import add_notice
from booking_core.domain import lifecycle as agg
from booking_core.domain.bookings import BookingStatus
from booking_core.domain.errors import (
    AlreadyBookedError,
    ConcurrentChangeError,
    NotFoundError,
    SlotUnavailableError,
)
from booking_core.domain.holds import HoldStatus
from booking_core.events.recommendations import RecommendationRequested
from booking_core.outbox import add_event


def _take(session: Session, slot_id: str) -> None:
    won = session.execute(
        update(Slot)
        .where(Slot.id == slot_id, Slot.booked < Slot.capacity, Slot.status == "open")
        .values(booked=Slot.booked + 1)
        .execution_options(synchronize_session=False)
    )
    if rowcount(won) != 1:
        raise SlotUnavailableError(slot_id)


def _free(session: Session, slot_id: str) -> None:
    won = session.execute(
        update(Slot)
        .where(Slot.id == slot_id, Slot.booked > 0)
        .values(booked=Slot.booked - 1)
        .execution_options(synchronize_session=False)
    )
    if rowcount(won) != 1:
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
    if rowcount(won) != 1:
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
    d = agg.reschedule(lo.view, slot_view(new), now=now, notice=notice)
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
