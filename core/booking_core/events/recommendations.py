"""Recommendation requests: raised per confirmed booking, served by `pat-booking-recommend-test`."""

from __future__ import annotations

from typing import ClassVar

from booking_core.events.envelope import EventPayload, register_event
from booking_core.topology import CONSUMERS

RECOMMEND_TOPIC = CONSUMERS["pat-booking-recommend-test"].topic


@register_event
class RecommendationRequested(EventPayload):
    """Compute test-package recommendations for a patient (after a booking, or on demand)."""

    event_type: ClassVar[str] = "recommendation.requested"
    aggregate_type: ClassVar[str] = "patient"
    topic: ClassVar[str] = RECOMMEND_TOPIC

    patient_id: str
    booking_id: str | None = None
    package_code: str | None = None  # the package booked, if any
    trigger: str = "booking_confirmed"

    def aggregate_id(self) -> str:
        """The patient id (opaque customer-database id)."""
        return self.patient_id
