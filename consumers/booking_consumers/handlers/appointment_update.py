"""`appointment-update`: changes from clinic management applied to the booking.

Each change updates the booking (and slot capacity) and raises the matching booking event; the
`booking` consumer turns those into the patient's notification, so a change is announced once
whoever made it. A change the booking's state does not allow is dead-lettered with the reason.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from booking_consumers.decoding import Decoded, envelope_decoder, event_id_key
from booking_consumers.errors import InvalidMessageError
from booking_consumers.handlers._common import lock_booking, now, release_place, set_status, take_place
from booking_consumers.runtime import ConsumerDef, Effects
from booking_core.db.models import Booking, Slot
from booking_core.domain.bookings import CancelReason, can_transition, holds_capacity
from booking_core.events import BookingCancelled, BookingCheckedIn, BookingNoShow, BookingRescheduled
from booking_core.events.appointments import AppointmentUpdated
from booking_core.outbox import add_event


def _actor(event: AppointmentUpdated) -> str:
    return f"staff:{event.staff_id}" if event.staff_id else "system:clinic-management"


def _move(session: Session, booking: Booking, event: AppointmentUpdated) -> None:
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
    if not take_place(session, new_slot.id):
        raise InvalidMessageError("slot_full", "new_slot_id")
    release_place(session, booking.slot_id)
    old_slot_id, old_starts_at = booking.slot_id, booking.starts_at
    booking.slot_id = new_slot.id
    booking.clinic_id = new_slot.clinic_id
    booking.starts_at = new_slot.starts_at
    booking.ends_at = new_slot.ends_at
    booking.reminder_24h_sent_at = None
    booking.reminder_2h_sent_at = None
    booking.version += 1
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
        occurred_at=now(),
    )


def _to(session: Session, booking: Booking, target: str, event: AppointmentUpdated) -> bool:
    """Move to `target`; False when already there (a repeat), InvalidMessageError when not allowed."""
    if booking.status == target:
        return False
    if not can_transition(booking.status, target):
        raise InvalidMessageError("invalid_transition", f"{event.change} from {booking.status}")
    set_status(
        session, booking, target, reason=event.reason if target == "cancelled" else None, actor=_actor(event)
    )
    return True


def handle(session: Session, decoded: Decoded[AppointmentUpdated], effects: Effects) -> None:
    """Apply one clinic change to its booking."""
    event = decoded.payload
    booking = lock_booking(session, event.booking_id)
    if booking is None:
        raise InvalidMessageError("unknown_booking", "booking_id")
    at = now()
    if event.change == "reschedule":
        _move(session, booking, event)
    elif event.change == "practitioner_change":
        if not event.practitioner:
            raise InvalidMessageError("missing_field", "practitioner")
        booking.practitioner = event.practitioner
        booking.version += 1
    elif event.change == "cancel":
        previous = booking.status
        if _to(session, booking, "cancelled", event):
            booking.cancel_reason = CancelReason.CLINIC_REQUEST.value
            if holds_capacity(previous):
                release_place(session, booking.slot_id)
            add_event(
                session,
                BookingCancelled(
                    booking_id=booking.id,
                    patient_id=booking.patient_id,
                    slot_id=booking.slot_id,
                    starts_at=booking.starts_at,
                    previous_status=previous,
                    reason=CancelReason.CLINIC_REQUEST.value,
                    cancelled_by="clinic",
                ),
                occurred_at=at,
            )
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
