"""Names shared by the operator, the consumers and the workers: topics, consumer groups, queues.

The operator renders KEDA triggers from this table and the consumers subscribe from it, so a topic
name is written exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConsumerSpec:
    """One of the nine Kafka consumers: what it reads and the group it reads as."""

    name: str
    topic: str
    group: str
    purpose: str

    @property
    def dlq_topic(self) -> str:
        """Where undecodable or invalid messages go, with the reason in headers."""
        return f"{self.topic}.dlq"


GROUP_PREFIX = "pat-booking-be"


def _c(name: str, topic: str, purpose: str) -> ConsumerSpec:
    return ConsumerSpec(name=name, topic=topic, group=f"{GROUP_PREFIX}.{name}", purpose=purpose)


CONSUMERS: dict[str, ConsumerSpec] = {
    c.name: c
    for c in (
        _c("appointment-update", "pat-booking.appointment-update.v1", "Appointment update processing"),
        _c("booking", "pat-booking.booking.v1", "Booking event processing"),
        _c("customer", "customer.profile.v1", "Customer data synchronization"),
        _c("lis-testresult", "lis.testresult.hl7.v1", "LIS test results (HL7 v2 ORU^R01)"),
        _c(
            "pat-booking-recommend-test",
            "pat-booking.recommend-test.v1",
            "Test package recommendations",
        ),
        _c("pat-test-result", "pat-booking.test-result.v1", "Patient test results"),
        _c("pat-test-result-svip1", "pat-booking.test-result.svip1.v1", "SVIP tier 1 test results"),
        _c("pat-test-result-svip2", "pat-booking.test-result.svip2.v1", "SVIP tier 2 test results"),
        _c("sync-test-master-data", "test-master-data.v1", "Test master data synchronization"),
    )
}

WORKERS: dict[str, str] = {
    "batch-publisher": "Batch job publisher (the transactional outbox relay)",
    "default": "Default worker queue",
    "notifications": "Notification processing",
}

# Dramatiq queues. SVIP tiers get their own notification queues so they never wait behind a
# standard backlog; the notifications worker consumes all three.
NOTIFICATION_QUEUES: dict[str, str] = {
    "standard": "notifications",
    "svip1": "notifications-svip1",
    "svip2": "notifications-svip2",
}
DEFAULT_QUEUE = "default"
OUTBOX_QUEUE = "batch-publisher"
