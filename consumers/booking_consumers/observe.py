"""Latency observations of the consumers, taken from the events' envelopes and counted on commit.

Handlers call these in one line each; the values come from `booking_core.observability.metrics`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session

from booking_consumers import metrics as consumer_metrics
from booking_core.domain.bookings import BookingStatus
from booking_core.domain.lifecycle import Decision
from booking_core.events import EventEnvelope
from booking_core.observability import metrics
from booking_core.observability.deferred import after_commit

metrics.initialise(metrics.CONFIRMATION_LATENCY, metrics.RESULT_VISIBLE)


def booking_decided(session: Session, requested: EventEnvelope, decision: Decision) -> None:
    """Observe requested -> booked/rejected when this delivery decided the booking (else nothing)."""
    if not decision.changed:
        return
    outcome = "booked" if decision.to_status is BookingStatus.BOOKED else "rejected"
    at = datetime.now(UTC)
    after_commit(session, lambda: metrics.observe_confirmation(requested.occurred_at, outcome, at))


def result_visible(session: Session, stored: EventEnvelope, tier: str) -> None:
    """Observe LIS receipt -> visible: `stored` is the lab_results.stored event, raised on receipt."""
    at = datetime.now(UTC)
    after_commit(session, lambda: metrics.observe_result_visible(stored.occurred_at, tier, at))


def consumer_started(name: str) -> None:
    """Create the consumer's counters at zero, so the first message is an increase to `rate()`."""
    for counter in (
        consumer_metrics.CONSUMED,
        consumer_metrics.PROCESSED,
        consumer_metrics.DUPLICATES,
        consumer_metrics.RETRIES,
    ):
        counter.labels(name)
