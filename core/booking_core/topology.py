"""Names shared by the operator, the consumers and the workers: topics, consumer groups, queues.

The one table of the consumers and workers: the CLI's choices, the operator's workloads and KEDA
triggers, the consumers' subscriptions and groups, the handler registry and docs/events.md (checked
by tests/core/test_topology.py) all come from it, so a name is written exactly once.

An environment's Kafka prefix (`BOOKING_KAFKA_TOPIC_PREFIX`, the CR's `connections.kafka.topicPrefix`)
prefixes topics and groups alike: the group KEDA measures is always the group the consumer reads as.
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
    # The result consumers serve one patient tier each (its topic, its notification queue).
    tier: str | None = None

    @property
    def dlq_topic(self) -> str:
        """Where undecodable or invalid messages go, with the reason in headers."""
        return f"{self.topic}.dlq"

    def topic_for(self, prefix: str) -> str:
        """The physical topic in an environment with Kafka prefix `prefix`."""
        return f"{prefix}{self.topic}"

    def group_for(self, prefix: str) -> str:
        """The consumer group in an environment with Kafka prefix `prefix` (the only way to derive it)."""
        return f"{prefix}{self.group}"


GROUP_PREFIX = "pat-booking-be"


def _c(name: str, topic: str, purpose: str, tier: str | None = None) -> ConsumerSpec:
    return ConsumerSpec(name=name, topic=topic, group=f"{GROUP_PREFIX}.{name}", purpose=purpose, tier=tier)


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
        _c("pat-test-result", "pat-booking.test-result.v1", "Patient test results", "standard"),
        _c(
            "pat-test-result-svip1",
            "pat-booking.test-result.svip1.v1",
            "SVIP tier 1 test results",
            "svip1",
        ),
        _c(
            "pat-test-result-svip2",
            "pat-booking.test-result.svip2.v1",
            "SVIP tier 2 test results",
            "svip2",
        ),
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


def docs_table() -> str:
    """The consumers as the Markdown table docs/events.md carries (checked by a test)."""
    rows = [
        "| consumer (`booking consumer NAME`) | topic | consumer group | workload | purpose |",
        "|---|---|---|---|---|",
    ]
    for c in CONSUMERS.values():
        rows.append(
            f"| `{c.name}` | `<prefix>{c.topic}` | `<prefix>{c.group}` "
            f"| `<cr>--consumer-{c.name}--<env>` | {c.purpose} |"
        )
    for w, purpose in WORKERS.items():
        rows.append(f"| worker `{w}` (`booking worker {w}`) | - | - | `<cr>--wrk--{w}--<env>` | {purpose} |")
    return "\n".join(rows)
