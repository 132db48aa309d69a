"""Booking writes shared by the API, the cron and the consumers: take or free a place, cancel a booking.

Every change is a conditional UPDATE that only one transaction can win, so a place is never taken past
capacity nor freed twice, however many API requests, cron runs or consumers race on the same row.
The caller commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Result, update
from sqlalchemy.orm import Session

from booking_core.db.models import Booking, BookingStatusHistory, Hold, Slot
from booking_core.domain.bookings import BookingStatus, holds_capacity
from booking_core.domain.holds import HoldStatus
from booking_core.events import BookingCancelled
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


def cancel_booking(
    session: Session,
    *,
    booking_id: str,
    from_status: str,
    reason: str,
    actor: str,
    cancelled_by: str,
    now: datetime,
) -> bool:
    """Cancel the booking if it is still `from_status`; False (and no change) when it is not.

    The winner frees the booking's place, releases its active hold, records the status history and
    stages `booking.cancelled` in the outbox, all in the caller's transaction.
    """
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
        return False
    patient_id, slot_id, starts_at = row
    if holds_capacity(from_status):
        free_place(session, slot_id)
    session.execute(
        update(Hold)
        .where(Hold.booking_id == booking_id, Hold.status == HoldStatus.ACTIVE.value)
        .values(status=HoldStatus.RELEASED.value)
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
    add_event(
        session,
        BookingCancelled(
            booking_id=booking_id,
            patient_id=patient_id,
            slot_id=slot_id,
            starts_at=starts_at,
            previous_status=from_status,
            reason=reason,
            cancelled_by=cancelled_by,
        ),
        occurred_at=now,
    )
    return True
