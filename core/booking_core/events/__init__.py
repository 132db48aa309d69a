"""Event schemas: versioned envelopes and their payloads, with the topic each is published to.

Importing this package registers every payload class, so `parse_event` knows them all.
"""

from booking_core.events.bookings import (
    BOOKING_TOPIC,
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
from booking_core.events.envelope import (
    REGISTRY,
    EventDecodeError,
    EventEnvelope,
    EventPayload,
    make_event,
    parse_event,
    register_event,
    topic_for,
)

__all__ = [
    "BOOKING_TOPIC",
    "REGISTRY",
    "BookingCancelled",
    "BookingCheckedIn",
    "BookingConfirmed",
    "BookingEvent",
    "BookingFulfilled",
    "BookingNoShow",
    "BookingRejected",
    "BookingRequested",
    "BookingRescheduled",
    "EventDecodeError",
    "EventEnvelope",
    "EventPayload",
    "make_event",
    "parse_event",
    "register_event",
    "topic_for",
]
