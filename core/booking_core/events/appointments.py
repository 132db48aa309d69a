"""Appointment changes from clinic management (key = booking id)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field

from booking_core.events.envelope import EventPayload, register_event
from booking_core.topology import CONSUMERS

APPOINTMENT_UPDATE_TOPIC = CONSUMERS["appointment-update"].topic

AppointmentChange = Literal["reschedule", "cancel", "practitioner_change", "check_in", "no_show", "fulfil"]


@register_event
class AppointmentUpdated(EventPayload):
    """A clinic changed an appointment; the fields the change needs must be present."""

    event_type: ClassVar[str] = "appointment.updated"
    aggregate_type: ClassVar[str] = "booking"
    topic: ClassVar[str] = APPOINTMENT_UPDATE_TOPIC

    booking_id: str = Field(min_length=1)
    change: AppointmentChange
    changed_at: AwareDatetime
    new_slot_id: str | None = None  # reschedule
    practitioner: str | None = Field(default=None, max_length=200)  # practitioner_change
    reason: str | None = Field(default=None, max_length=64)  # cancel
    staff_id: str | None = None

    def aggregate_id(self) -> str:
        """The booking id."""
        return self.booking_id
