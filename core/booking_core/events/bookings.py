"""Booking events, all on the booking topic keyed by booking id (one booking's events stay in order)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import AwareDatetime

from booking_core.events.envelope import EventPayload, register_event
from booking_core.topology import CONSUMERS

BOOKING_TOPIC = CONSUMERS["booking"].topic


class BookingEvent(EventPayload):
    """Fields every booking event has."""

    aggregate_type: ClassVar[str] = "booking"
    topic: ClassVar[str] = BOOKING_TOPIC

    booking_id: str
    patient_id: str

    def aggregate_id(self) -> str:
        """The booking id."""
        return self.booking_id


@register_event
class BookingRequested(BookingEvent):
    """A patient asked for a slot; capacity is held until the booking is confirmed or the hold expires."""

    event_type: ClassVar[str] = "booking.requested"

    slot_id: str
    clinic_id: str
    service_code: str
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    package_code: str | None = None
    hold_expires_at: AwareDatetime | None = None


@register_event
class BookingConfirmed(BookingEvent):
    """The booking was confirmed against the clinic's schedule (pending -> booked)."""

    event_type: ClassVar[str] = "booking.confirmed"

    slot_id: str
    starts_at: AwareDatetime


@register_event
class BookingRejected(BookingEvent):
    """The clinic's schedule refused a requested booking (pending -> cancelled)."""

    event_type: ClassVar[str] = "booking.rejected"

    slot_id: str
    reason: str


@register_event
class BookingCancelled(BookingEvent):
    """A booking was cancelled; its place on the slot is free again."""

    event_type: ClassVar[str] = "booking.cancelled"

    slot_id: str
    starts_at: AwareDatetime
    previous_status: str
    reason: str
    cancelled_by: str  # "patient", "staff", "clinic", "system"


@register_event
class BookingRescheduled(BookingEvent):
    """A booking moved to another slot of the same service."""

    event_type: ClassVar[str] = "booking.rescheduled"

    old_slot_id: str
    new_slot_id: str
    old_starts_at: AwareDatetime
    new_starts_at: AwareDatetime
    new_ends_at: AwareDatetime


@register_event
class BookingCheckedIn(BookingEvent):
    """The patient arrived at the clinic (booked -> arrived)."""

    event_type: ClassVar[str] = "booking.checked_in"


@register_event
class BookingFulfilled(BookingEvent):
    """The appointment took place (arrived -> fulfilled)."""

    event_type: ClassVar[str] = "booking.fulfilled"


@register_event
class BookingNoShow(BookingEvent):
    """The patient did not come (booked -> noshow)."""

    event_type: ClassVar[str] = "booking.noshow"
