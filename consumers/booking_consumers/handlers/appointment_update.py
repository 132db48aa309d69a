"""`appointment-update`: changes from clinic management applied to the booking.

Each change goes through the booking aggregate (booking_core.db.lifecycle), which updates the booking,
the slots' counts and the hold, raises the booking event and owes the patient their notice, all in
this record's transaction. A change the booking's state does not allow is dead-lettered with the reason;
a repeat (cancelling a cancelled booking, moving it to its own slot) changes nothing.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from booking_consumers.decoding import Decoded, envelope_decoder, event_id_key
from booking_consumers.errors import InvalidMessageError
from booking_consumers.handlers._common import lock_booking, now
from booking_consumers.runtime import ConsumerDef, Effects
from booking_core.db import lifecycle
from booking_core.domain.errors import (
    AlreadyBookedError,
    DomainError,
    InvalidTransitionError,
    InvalidValueError,
    NotFoundError,
    SlotUnavailableError,
)
from booking_core.events.appointments import AppointmentUpdated


def _actor(event: AppointmentUpdated) -> str:
    return f"staff:{event.staff_id}" if event.staff_id else "system:clinic-management"


def dlq_reason(exc: DomainError) -> tuple[str, str]:
    """The dead-letter reason of a refused change (the one translation of domain errors here)."""
    if isinstance(exc, NotFoundError):
        return (f"unknown_{exc.resource}", f"{exc.resource}_id")
    if isinstance(exc, SlotUnavailableError):
        return ("slot_full", "new_slot_id")
    if isinstance(exc, AlreadyBookedError):
        return ("already_booked", "new_slot_id")
    if isinstance(exc, InvalidValueError):
        return ("service_mismatch", "new_slot_id")
    if isinstance(exc, InvalidTransitionError):
        return ("invalid_transition", f"{exc.target} from {exc.current}")
    return (exc.code, "")


def _apply(session: Session, event: AppointmentUpdated) -> None:
    at, actor, bid = now(), _actor(event), event.booking_id
    if event.change == "reschedule":
        if not event.new_slot_id:
            raise InvalidMessageError("missing_field", "new_slot_id")
        lifecycle.reschedule_booking(
            session, booking_id=bid, new_slot_id=event.new_slot_id, actor=actor, now=at
        )
    elif event.change == "cancel":
        lifecycle.cancel_booking(session, booking_id=bid, by="clinic", actor=actor, now=at)
    elif event.change == "check_in":
        lifecycle.check_in(session, booking_id=bid, actor=actor, now=at)
    elif event.change == "no_show":
        lifecycle.mark_noshow(session, booking_id=bid, actor=actor, now=at)
    elif event.change == "fulfil":
        lifecycle.fulfil(session, booking_id=bid, actor=actor, now=at)
    elif event.change == "practitioner_change":
        if not event.practitioner:
            raise InvalidMessageError("missing_field", "practitioner")
        booking = lock_booking(session, bid)
        if booking is None:
            raise InvalidMessageError("unknown_booking", "booking_id")
        booking.practitioner = event.practitioner
        booking.version += 1


def handle(session: Session, decoded: Decoded[AppointmentUpdated], effects: Effects) -> None:
    """Apply one clinic change to its booking."""
    try:
        _apply(session, decoded.payload)
    except DomainError as exc:
        reason, detail = dlq_reason(exc)
        raise InvalidMessageError(reason, detail) from exc


DEFINITION: ConsumerDef[Decoded[AppointmentUpdated]] = ConsumerDef(
    name="appointment-update",
    decode=envelope_decoder(AppointmentUpdated),
    handle=handle,
    message_key=event_id_key,
)
