"""Recommendation requests: raised per confirmed booking, served by `pat-booking-recommend-test`."""

from __future__ import annotations

import uuid
from typing import ClassVar

from pydantic import Field

from booking_core.events.envelope import EventPayload, register_event
from booking_core.topology import CONSUMERS

RECOMMEND_TOPIC = CONSUMERS["pat-booking-recommend-test"].topic


@register_event
class RecommendationRequested(EventPayload):
    """Compute test-package recommendations for a patient (after a booking, or on demand).

    Keyed by the booking that raised the request, else by the request's own id: never by the patient id
    (a Kafka key is PHI-free metadata). Nothing needs one patient's requests in order on one partition:
    the consumer recomputes from the database and upserts, so requests commute.
    """

    event_type: ClassVar[str] = "recommendation.requested"
    aggregate_type: ClassVar[str] = "recommendation_request"
    topic: ClassVar[str] = RECOMMEND_TOPIC

    patient_id: str
    booking_id: str | None = None
    package_code: str | None = None  # the package booked, if any
    trigger: str = "booking_confirmed"
    # Opaque; the key of a request no booking raised. Optional on the wire (older producers omit it).
    request_id: str = Field(default_factory=lambda: str(uuid.uuid4()), min_length=1, max_length=64)

    def aggregate_id(self) -> str:
        """The booking id that raised the request, else the request id; never the patient id."""
        return self.booking_id or self.request_id
