"""`appointment-update`: changes from clinic management applied to the booking.

Each change updates the booking (and slot capacity) and raises the matching booking event; the
`booking` consumer turns those into the patient's notification, so a change is announced once
whoever made it. A change the booking's state does not allow is dead-lettered with the reason.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from booking_consumers.decoding import Decoded, envelope_decoder, event_id_key
from booking_consumers.errors import InvalidMessageError
from booking_consumers.handlers._common import lock_booking, now, set_status
from booking_consumers.runtime import ConsumerDef, Effects
from booking_core.db.bookings import cancel_booking, move_booking
from booking_core.db.models import Booking, Slot
from booking_core.domain.bookings import BookingStatus, CancelReason, can_transition
from booking_core.domain.errors import AlreadyBookedError, SlotUnavailableError
from booking_core.events import BookingCheckedIn, BookingNoShow
from booking_core.events.appointments import AppointmentUpdated
from booking_core.outbox import add_event


def _actor(event: AppointmentUpdated) -> str:
    return f"staff:{event.staff_id}" if event.staff_id else "system:clinic-management"


def _move(session: Session, booking: Booking, event: AppointmentUpdated, at: datetime) -> None:
    if not event.new_slot_id:
        raise InvalidMessageError("missing_field", "new_slot_id")
    if event.new_slot_id == booking.slot_id:
        return
    if booking.status not in ("pending", "booked"):
        raise InvalidMessageError("invalid_transition", f"reschedule from {booking.status}")
    new_slot = session.get(Slot, event.new_slot_id)
    if new_slot is None:
        raise InvalidMessageError("unknown_slot", "new_slot_id")
    if new_slot.service_id != booking.service_id:
        raise InvalidMessageError("service_mismatch", "new_slot_id")
    try:
        move_booking(session, booking=booking, new_slot=new_slot, actor=_actor(event), now=at)
    except SlotUnavailableError as exc:
        raise InvalidMessageError("slot_full", "new_slot_id") from exc
    except AlreadyBookedError as exc:
        raise InvalidMessageError("already_booked", "new_slot_id") from exc


def _to(session: Session, booking: Booking, target: str, event: AppointmentUpdated) -> bool:
    """Move to `target`; False when already there (a repeat), InvalidMessageError when not allowed."""
    if booking.status == target:
        return False
    if not can_transition(booking.status, target):
        raise InvalidMessageError("invalid_transition", f"{event.change} from {booking.status}")
    set_status(session, booking, target, reason=None, actor=_actor(event))
    return True


def handle(session: Session, decoded: Decoded[AppointmentUpdated], effects: Effects) -> None:
    """Apply one clinic change to its booking."""
    event = decoded.payload
    booking = lock_booking(session, event.booking_id)
    if booking is None:
        raise InvalidMessageError("unknown_booking", "booking_id")
    at = now()
    if event.change == "reschedule":
        _move(session, booking, event, at)
    elif event.change == "practitioner_change":
        if not event.practitioner:
            raise InvalidMessageError("missing_field", "practitioner")
        booking.practitioner = event.practitioner
        booking.version += 1
    elif event.change == "cancel":
        previous = booking.status
        if previous == BookingStatus.CANCELLED:
            return  # a repeat
        if not can_transition(previous, BookingStatus.CANCELLED):
            raise InvalidMessageError("invalid_transition", f"{event.change} from {previous}")
        # The row is locked, so the conditional update cannot lose.
        cancel_booking(
            session,
            booking_id=booking.id,
            from_status=previous,
            reason=CancelReason.CLINIC_REQUEST.value,
            actor=_actor(event),
            cancelled_by="clinic",
            now=at,
        )
        # Written past the ORM: a later record of this batch (same session) must read the row again.
        session.expire(booking)
    elif event.change == "check_in":
        if _to(session, booking, "arrived", event):
            add_event(
                session,
                BookingCheckedIn(booking_id=booking.id, patient_id=booking.patient_id),
                occurred_at=at,
            )
    elif event.change == "no_show" and _to(session, booking, "noshow", event):
        add_event(
            session, BookingNoShow(booking_id=booking.id, patient_id=booking.patient_id), occurred_at=at
        )


DEFINITION: ConsumerDef[Decoded[AppointmentUpdated]] = ConsumerDef(
    name="appointment-update",
    decode=envelope_decoder(AppointmentUpdated),
    handle=handle,
    message_key=event_id_key,
)
