"""Booking writes shared by the API, the cron and the consumers: take or free a place, end or move a booking.

Every change is a conditional UPDATE that only one transaction can win, so a place is never taken past
capacity nor freed twice, however many API requests, cron runs or consumers race on the same row.

Lock order: every writer takes the booking's row first, then slot rows (in id order when there are two),
then the booking's hold. The hold is only ever written under its booking's lock, so two writers of one
booking queue on that row instead of deadlocking. The caller commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import CursorResult, Result, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from booking_core.db.models import Booking, BookingStatusHistory, Hold, Slot
from booking_core.domain.bookings import BookingStatus, CancelReason, holds_capacity
from booking_core.domain.errors import AlreadyBookedError, SlotUnavailableError
from booking_core.domain.holds import HoldStatus
from booking_core.events import BookingCancelled, BookingRejected, BookingRescheduled
from booking_core.outbox import add_event


def _rowcount(result: Result[Any]) -> int:
    return cast(CursorResult[Any], result).rowcount


def take_place(session: Session, slot_id: str) -> bool:
    """Take one place on an open slot; False when it is full or closed."""
    # The database decides: concurrent requests serialize on the row and the condition is re-checked,
    # so `booked` can never pass `capacity` (the CHECK constraint is the second line of defence).
    result = session.execute(
        update(Slot)
        .where(Slot.id == slot_id, Slot.booked < Slot.capacity, Slot.status == "open")
        .values(booked=Slot.booked + 1)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


def free_place(session: Session, slot_id: str) -> None:
    """Give one place back on a slot (never below zero)."""
    session.execute(
        update(Slot)
        .where(Slot.id == slot_id, Slot.booked > 0)
        .values(booked=Slot.booked - 1)
        .execution_options(synchronize_session=False)
    )


class _Ended(NamedTuple):
    patient_id: str
    slot_id: str
    starts_at: datetime


def _end(
    session: Session,
    *,
    booking_id: str,
    from_status: str,
    reason: str,
    actor: str,
    now: datetime,
    hold_status: HoldStatus,
) -> _Ended | None:
    """The step every cancellation shares; None (and no change) when the booking is not `from_status`."""
    # The status condition is the claim: of two racing cancellations (patient and hold expiry, or two
    # cron runs) only one matches, so the place is freed and the event written exactly once.
    row = session.execute(
        update(Booking)
        .where(Booking.id == booking_id, Booking.status == from_status)
        .values(
            status=BookingStatus.CANCELLED.value,
            cancel_reason=reason,
            version=Booking.version + 1,
            updated_at=now,
        )
        .returning(Booking.patient_id, Booking.slot_id, Booking.starts_at)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    if row is None:
        return None
    ended = _Ended(*row)
    if holds_capacity(from_status):
        free_place(session, ended.slot_id)
    session.execute(
        update(Hold)
        .where(Hold.booking_id == booking_id, Hold.status == HoldStatus.ACTIVE.value)
        .values(status=hold_status.value)
        .execution_options(synchronize_session=False)
    )
    session.add(
        BookingStatusHistory(
            booking_id=booking_id,
            from_status=from_status,
            to_status=BookingStatus.CANCELLED.value,
            reason=reason,
            actor=actor,
            at=now,
        )
    )
    return ended


def cancel_booking(
    session: Session,
    *,
    booking_id: str,
    from_status: str,
    reason: str,
    actor: str,
    cancelled_by: str,
    now: datetime,
    hold_status: HoldStatus = HoldStatus.RELEASED,
) -> bool:
    """Cancel the booking if it is still `from_status`; False (and no change) when it is not.

    The winner frees the booking's place, gives its active hold `hold_status` (released, or expired for
    the cron), records the status history and stages `booking.cancelled` in the outbox, all in the
    caller's transaction.
    """
    ended = _end(
        session,
        booking_id=booking_id,
        from_status=from_status,
        reason=reason,
        actor=actor,
        now=now,
        hold_status=hold_status,
    )
    if ended is None:
        return False
    add_event(
        session,
        BookingCancelled(
            booking_id=booking_id,
            patient_id=ended.patient_id,
            slot_id=ended.slot_id,
            starts_at=ended.starts_at,
            previous_status=from_status,
            reason=reason,
            cancelled_by=cancelled_by,
        ),
        occurred_at=now,
    )
    return True


def reject_booking(session: Session, *, booking_id: str, why: str, actor: str, now: datetime) -> bool:
    """Cancel a still-pending booking the clinic's schedule refuses; `booking.rejected` carries `why`.

    The same step as cancel_booking (place freed, hold released, history), False when no longer pending.
    """
    ended = _end(
        session,
        booking_id=booking_id,
        from_status=BookingStatus.PENDING.value,
        reason=CancelReason.REJECTED.value,
        actor=actor,
        now=now,
        hold_status=HoldStatus.RELEASED,
    )
    if ended is None:
        return False
    add_event(
        session,
        BookingRejected(
            booking_id=booking_id, patient_id=ended.patient_id, slot_id=ended.slot_id, reason=why
        ),
        occurred_at=now,
    )
    return True


def move_booking(
    session: Session, *, booking: Booking, new_slot: Slot, actor: str, now: datetime
) -> Hold | None:
    """Move a booking (row-locked, checked by the caller's rules) to `new_slot`; its active hold moves too.

    Takes a place on the new slot and frees the old one, records the history and stages
    `booking.rescheduled`. SlotUnavailableError when the new slot is full or closed, AlreadyBookedError
    when the patient already has a live booking there; the caller then rolls back. Returns the active hold.
    """
    # Two moves in opposite directions would each update one slot and wait for the other's: lock both
    # rows in one order first.
    session.execute(
        select(Slot.id).where(Slot.id.in_([booking.slot_id, new_slot.id])).order_by(Slot.id).with_for_update()
    )
    if not take_place(session, new_slot.id):
        raise SlotUnavailableError(new_slot.id)
    free_place(session, booking.slot_id)
    old_slot_id, old_starts_at = booking.slot_id, booking.starts_at
    booking.slot = new_slot
    booking.slot_id = new_slot.id
    booking.clinic_id = new_slot.clinic_id
    booking.starts_at = new_slot.starts_at
    booking.ends_at = new_slot.ends_at
    booking.reminder_24h_sent_at = None
    booking.reminder_2h_sent_at = None
    booking.version += 1
    booking.updated_at = now
    try:
        session.flush()
    except IntegrityError as exc:
        raise AlreadyBookedError("you already have a booking on that slot") from exc
    hold = session.scalar(
        select(Hold).where(Hold.booking_id == booking.id, Hold.status == HoldStatus.ACTIVE.value)
    )
    if hold is not None:
        hold.slot_id = new_slot.id
    session.add(
        BookingStatusHistory(
            booking_id=booking.id,
            from_status=booking.status,
            to_status=booking.status,
            reason="rescheduled",
            actor=actor,
            at=now,
        )
    )
    add_event(
        session,
        BookingRescheduled(
            booking_id=booking.id,
            patient_id=booking.patient_id,
            old_slot_id=old_slot_id,
            new_slot_id=new_slot.id,
            old_starts_at=old_starts_at,
            new_starts_at=new_slot.starts_at,
            new_ends_at=new_slot.ends_at,
        ),
        occurred_at=now,
    )
    return hold
