"""`booking`: confirm or reject requested bookings; notify patients of booking changes.

This consumer is the one place that turns booking events into patient notifications, whoever changed
the booking (the patient through the API, the clinic through `appointment-update`, this consumer):
booking_confirmed, booking_rescheduled, booking_cancelled. Events it raises itself (confirmed,
rejected) carry nothing new and are acknowledged without effect.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from booking_consumers import observe
from booking_consumers.decoding import Decoded, envelope_decoder, event_id_key
from booking_consumers.errors import InvalidMessageError
from booking_consumers.handlers._common import cached_patient, lock_booking, now, set_status
from booking_consumers.runtime import ConsumerDef, Effects
from booking_core.db.bookings import reject_booking
from booking_core.db.models import Booking, Clinic, Hold, Service
from booking_core.events import (
    BookingCancelled,
    BookingCheckedIn,
    BookingConfirmed,
    BookingEvent,
    BookingFulfilled,
    BookingNoShow,
    BookingRejected,
    BookingRequested,
    BookingRescheduled,
)
from booking_core.events.recommendations import RecommendationRequested
from booking_core.outbox import add_event

ACTOR = "system:consumer-booking"
URGENT_WITHIN = timedelta(hours=24)


def _tier(session: Session, patient_id: str) -> str:
    patient = cached_patient(session, patient_id)
    return patient.tier if patient is not None else "standard"


def rejection_reason(session: Session, booking: Booking) -> str | None:
    """Why the clinic's schedule refuses this pending booking, or None when it can be confirmed."""
    slot = booking.slot
    clinic = session.get(Clinic, booking.clinic_id)
    service = session.get(Service, booking.service_id)
    if clinic is None or not clinic.active:
        return "clinic_closed"
    if service is None or not service.active:
        return "service_unavailable"
    if slot.status != "open":
        return "slot_closed"
    if slot.starts_at <= now():
        return "slot_in_past"
    hold = session.scalars(select(Hold).where(Hold.booking_id == booking.id)).first()
    if hold is not None and (hold.status not in ("active", "converted") or hold.expires_at <= now()):
        return "hold_expired"
    return None


def _confirm_or_reject(session: Session, event: BookingRequested, effects: Effects) -> None:
    booking = lock_booking(session, event.booking_id)
    if booking is None:
        raise InvalidMessageError("unknown_booking", "booking_id")
    if booking.status != "pending":
        return  # cancelled or expired meanwhile, or already decided: nothing to confirm
    hold = session.scalars(select(Hold).where(Hold.booking_id == booking.id)).first()
    reason = rejection_reason(session, booking)
    at = now()
    tier = _tier(session, booking.patient_id)
    if reason is None:
        set_status(session, booking, "booked", reason=None, actor=ACTOR)
        if hold is not None:
            hold.status = "converted"
        add_event(
            session,
            BookingConfirmed(
                booking_id=booking.id,
                patient_id=booking.patient_id,
                slot_id=booking.slot_id,
                starts_at=booking.starts_at,
            ),
            occurred_at=at,
        )
        add_event(
            session,
            RecommendationRequested(
                patient_id=booking.patient_id,
                booking_id=booking.id,
                package_code=booking.package.code if booking.package is not None else None,
            ),
            occurred_at=at,
        )
        effects.notify(
            patient_id=booking.patient_id, event_type="booking_confirmed", ref_id=booking.id, tier=tier
        )
        return
    booking_id, patient_id = booking.id, booking.patient_id
    # The row is locked and pending, so the conditional update cannot lose. A pending booking's hold is
    # active: the cron expires a hold and cancels its pending booking in one transaction.
    reject_booking(session, booking_id=booking_id, why=reason, actor=ACTOR, now=at)
    # Written past the ORM: a later record of this batch (same session) must read the row again.
    session.expire(booking)
    effects.notify(patient_id=patient_id, event_type="booking_cancelled", ref_id=booking_id, tier=tier)


def handle(session: Session, decoded: Decoded[BookingEvent], effects: Effects) -> None:
    """Apply one booking event."""
    event = decoded.payload
    if isinstance(event, BookingRequested):
        with observe.booking_decision(session, decoded.envelope, effects):
            _confirm_or_reject(session, event, effects)
    elif isinstance(event, BookingCancelled):
        urgent = event.starts_at - now() <= URGENT_WITHIN
        effects.notify(
            patient_id=event.patient_id,
            event_type="booking_cancelled",
            ref_id=event.booking_id,
            tier=_tier(session, event.patient_id),
            urgent=urgent,
        )
    elif isinstance(event, BookingRescheduled):
        effects.notify(
            patient_id=event.patient_id,
            event_type="booking_rescheduled",
            ref_id=event.booking_id,
            tier=_tier(session, event.patient_id),
            urgent=event.new_starts_at - now() <= URGENT_WITHIN,
        )
    # BookingConfirmed/Rejected (raised here), CheckedIn, Fulfilled, NoShow: no patient-facing effect.


DEFINITION: ConsumerDef[Decoded[BookingEvent]] = ConsumerDef(
    name="booking",
    decode=envelope_decoder(
        BookingRequested,
        BookingConfirmed,
        BookingRejected,
        BookingCancelled,
        BookingRescheduled,
        BookingCheckedIn,
        BookingFulfilled,
        BookingNoShow,
    ),
    handle=handle,
    message_key=event_id_key,
)
