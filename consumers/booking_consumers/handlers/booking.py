"""`booking`: confirm or reject requested bookings.

The consumer reads `booking.requested` only (`accepts`): the other booking events (confirmed and
rejected, which it raises itself, cancelled, rescheduled...) are for downstream systems and are passed
over by the poll loop without a transaction. Notices are owed by whoever changes a booking, in the same
transaction (the booking aggregate's notice intents), so this consumer no longer relays them.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from booking_consumers import observe
from booking_consumers.decoding import Decoded, envelope_decoder, event_id_key
from booking_consumers.errors import InvalidMessageError
from booking_consumers.handlers._common import now
from booking_consumers.runtime import ConsumerDef, Effects
from booking_core.db import lifecycle
from booking_core.domain.errors import NotFoundError
from booking_core.events import BookingEvent, BookingRequested

ACTOR = "system:consumer-booking"


def handle(session: Session, decoded: Decoded[BookingEvent], effects: Effects) -> None:
    """Confirm a requested booking, or reject it; a booking decided meanwhile is left alone."""
    event = decoded.payload
    if not isinstance(event, BookingRequested):
        return
    try:
        decision = lifecycle.confirm_booking(session, booking_id=event.booking_id, actor=ACTOR, now=now())
    except NotFoundError as exc:
        raise InvalidMessageError("unknown_booking", "booking_id") from exc
    observe.booking_decided(session, decoded.envelope, decision)


DEFINITION: ConsumerDef[Decoded[BookingEvent]] = ConsumerDef(
    name="booking",
    decode=envelope_decoder(BookingRequested),
    handle=handle,
    message_key=event_id_key,
    accepts=frozenset({BookingRequested.event_type}),
)
