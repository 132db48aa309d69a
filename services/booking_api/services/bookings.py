"""Booking use cases: create (no overbooking, idempotent), list, read, cancel, reschedule.

Each state change commits the booking, the slot count, the hold, the status history and its outbox event
in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from booking_api.errors import ForbiddenError
from booking_api.schemas import BookingCreate, BookingPublic, BookingReschedule
from booking_api.services import idempotency
from booking_api.services.views import booking_public
from booking_core.db import bookings as booking_rows
from booking_core.db.models import Booking, BookingStatusHistory, Hold, Package, Patient, Slot
from booking_core.db.session import rollback_on_error
from booking_core.domain import bookings as rules
from booking_core.domain.bookings import BookingStatus, CancelReason
from booking_core.domain.errors import (
    AlreadyBookedError,
    InvalidTransitionError,
    InvalidValueError,
    NotFoundError,
    SlotUnavailableError,
)
from booking_core.domain.holds import HoldStatus, hold_expires_at
from booking_core.events import BookingRequested
from booking_core.outbox import add_event

CREATE_ROUTE = "POST /api/v1/bookings"


@dataclass(frozen=True)
class CreateResult:
    """The answer to POST /bookings and whether it is a replay of an earlier one."""

    status_code: int
    body: dict[str, object]
    replayed: bool


def _bookable_slot(session: Session, slot_id: str, now: datetime) -> Slot:
    slot = session.get(Slot, slot_id)
    if slot is None:
        raise NotFoundError("slot", slot_id)
    if slot.status != "open":
        raise SlotUnavailableError(slot_id, "the slot is closed")
    if slot.starts_at <= now:
        raise SlotUnavailableError(slot_id, "the slot has already started")
    return slot


def _history(
    session: Session, booking: Booking, from_status: str | None, reason: str, actor: str, now: datetime
) -> None:
    session.add(
        BookingStatusHistory(
            booking_id=booking.id,
            from_status=from_status,
            to_status=booking.status,
            reason=reason,
            actor=actor,
            at=now,
        )
    )


def create_booking(
    *,
    session: Session,
    patient_id: str,
    data: BookingCreate,
    idempotency_key: str,
    now: datetime,
    hold_ttl: timedelta,
) -> CreateResult:
    """Book a place on a slot for the patient: pending, capacity held, `booking.requested` in the outbox."""
    body = data.model_dump(mode="json")
    claimed = idempotency.claim(
        session=session,
        subject=patient_id,
        key=idempotency_key,
        fingerprint=idempotency.request_hash(CREATE_ROUTE, body),
        now=now,
    )
    if isinstance(claimed, idempotency.StoredResponse):
        return CreateResult(status_code=claimed.status_code, body=claimed.body, replayed=True)
    with rollback_on_error(session):
        if session.get(Patient, patient_id) is None:
            raise ForbiddenError("the patient is not registered", code="patient_not_registered")
        slot = _bookable_slot(session, data.slot_id, now)
        package: Package | None = None
        if data.package_code is not None:
            package = session.scalar(select(Package).where(Package.code == data.package_code, Package.active))
            if package is None:
                raise InvalidValueError("body.package_code", "unknown or inactive package")
        if not booking_rows.take_place(session, slot.id):
            raise SlotUnavailableError(slot.id)
        booking = Booking(
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
            expires_at=hold_expires_at(now, hold_ttl, slot.starts_at),
        )
        session.add(hold)
        _history(session, booking, None, "requested", "patient", now)
        add_event(
            session,
            BookingRequested(
                booking_id=booking.id,
                patient_id=patient_id,
                slot_id=slot.id,
                clinic_id=slot.clinic_id,
                service_code=slot.service.code,
                starts_at=slot.starts_at,
                ends_at=slot.ends_at,
                package_code=package.code if package else None,
                hold_expires_at=hold.expires_at,
            ),
            occurred_at=now,
        )
        out = booking_public(booking, hold).model_dump(mode="json")
        idempotency.record(claimed, status_code=201, body=out)
        session.commit()
    return CreateResult(status_code=201, body=out, replayed=False)


def _active_hold(session: Session, booking_id: str) -> Hold | None:
    return session.scalar(
        select(Hold).where(Hold.booking_id == booking_id, Hold.status == HoldStatus.ACTIVE.value)
    )


def list_bookings(*, session: Session, patient_id: str, limit: int = 100) -> list[BookingPublic]:
    """The patient's bookings, latest appointment first."""
    rows = session.scalars(
        select(Booking)
        .where(Booking.patient_id == patient_id)
        .order_by(Booking.starts_at.desc())
        .limit(limit)
    ).all()
    holds = (
        {
            h.booking_id: h
            for h in session.scalars(
                select(Hold).where(
                    Hold.booking_id.in_([b.id for b in rows]), Hold.status == HoldStatus.ACTIVE.value
                )
            )
        }
        if rows
        else {}
    )
    return [booking_public(b, holds.get(b.id)) for b in rows]


def _own_booking(session: Session, patient_id: str, booking_id: str, *, lock: bool = False) -> Booking:
    # Someone else's booking is indistinguishable from a missing one.
    stmt = select(Booking).where(Booking.id == booking_id, Booking.patient_id == patient_id)
    if lock:
        stmt = stmt.with_for_update(of=Booking)
    booking = session.scalar(stmt)
    if booking is None:
        raise NotFoundError("booking", booking_id)
    return booking


def get_booking(*, session: Session, patient_id: str, booking_id: str) -> BookingPublic:
    """One of the patient's bookings; 404 for anyone else's."""
    booking = _own_booking(session, patient_id, booking_id)
    return booking_public(booking, _active_hold(session, booking.id))


def cancel_booking(
    *, session: Session, patient_id: str, booking_id: str, now: datetime, notice: timedelta
) -> BookingPublic:
    """Cancel the patient's booking (idempotent), freeing its place; `booking.cancelled` in the outbox."""
    with rollback_on_error(session):
        booking = _own_booking(session, patient_id, booking_id, lock=True)
        if booking.status == BookingStatus.CANCELLED:
            out = booking_public(booking)
            session.rollback()
            return out
        rules.check_changeable(booking.status, BookingStatus.CANCELLED.value)
        rules.check_notice(starts_at=booking.starts_at, now=now, notice=notice, action="cancellation")
        previous = booking.status
        rules.transition(previous, BookingStatus.CANCELLED)
        # The row is locked, so the conditional update cannot lose; if it ever did, nothing changed.
        if not booking_rows.cancel_booking(
            session,
            booking_id=booking.id,
            from_status=previous,
            reason=CancelReason.PATIENT_REQUEST.value,
            actor="patient",
            cancelled_by="patient",
            now=now,
        ):
            raise InvalidTransitionError(previous, BookingStatus.CANCELLED.value)
        session.refresh(booking, ["status", "cancel_reason", "version", "updated_at"])
        out = booking_public(booking)
        session.commit()
    return out


def reschedule_booking(
    *,
    session: Session,
    patient_id: str,
    booking_id: str,
    data: BookingReschedule,
    now: datetime,
    notice: timedelta,
) -> BookingPublic:
    """Move the patient's booking to another slot of the same service (same slot again: no change)."""
    with rollback_on_error(session):
        booking = _own_booking(session, patient_id, booking_id, lock=True)
        if booking.slot_id == data.slot_id:
            out = booking_public(booking, _active_hold(session, booking.id))
            session.rollback()
            return out
        rules.check_changeable(booking.status, "rescheduled")
        rules.check_notice(starts_at=booking.starts_at, now=now, notice=notice, action="rescheduling")
        new_slot = _bookable_slot(session, data.slot_id, now)
        if new_slot.service_id != booking.service_id:
            raise InvalidValueError("body.slot_id", "the new slot must offer the same service")
        hold = booking_rows.move_booking(
            session, booking=booking, new_slot=new_slot, actor="patient", now=now
        )
        out = booking_public(booking, hold)
        session.commit()
    return out
