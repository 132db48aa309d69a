"""Reads under locks: the booking row, its slots in id order, then its hold, as the aggregate sees them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, Result, select
from sqlalchemy.orm import Session

from booking_core.db.models import (
    Booking,
    Hold,
    Slot,
)
from booking_core.db.session import begin_write
from booking_core.domain import lifecycle as agg
from booking_core.domain.bookings import BookingStatus
from booking_core.domain.errors import (
    NotFoundError,
)
from booking_core.domain.holds import HoldStatus


def rowcount(result: Result[Any]) -> int:
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


def slot_view(slot: Slot) -> agg.SlotView:
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
        slot=slot_view(slot),
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
