"""Results routed by tier: `lis-testresult` -> `pat-test-result[-svip1|-svip2]` (opaque ids only)."""

from __future__ import annotations

from typing import ClassVar

from booking_core.events.envelope import EventPayload, register_event
from booking_core.topology import CONSUMERS

RESULT_TOPICS: dict[str, str] = {c.tier: c.topic for c in CONSUMERS.values() if c.tier is not None}


def result_topic(tier: str) -> str:
    """The patient-result topic of a tier (unknown tiers go to the standard one)."""
    return RESULT_TOPICS.get(tier, RESULT_TOPICS["standard"])


@register_event
class LabResultsStored(EventPayload):
    """Results of one LIS message were stored; the tier's consumer releases them to the patient.

    Published with `topic=result_topic(tier)`; the class topic is the standard tier's.
    """

    event_type: ClassVar[str] = "lab_results.stored"
    aggregate_type: ClassVar[str] = "lab_message"
    topic: ClassVar[str] = RESULT_TOPICS["standard"]

    lab_message_id: str  # our row id, never the LIS control id
    patient_id: str
    tier: str
    result_ids: tuple[str, ...]  # new or corrected reports to release
    retracted_result_ids: tuple[str, ...] = ()
    corrected: bool = False
    urgent: bool = False  # a critical (HH/LL/AA) value: notify even in quiet hours

    def aggregate_id(self) -> str:
        """The stored LIS message id."""
        return self.lab_message_id
