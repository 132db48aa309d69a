"""Latency observations of the consumers, taken from the events' envelopes and counted on commit.

Handlers call these in one line each; the values come from `booking_core.observability.metrics`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from booking_consumers import metrics as consumer_metrics
from booking_consumers.runtime import Effects
from booking_core.events import EventEnvelope
from booking_core.observability import metrics
from booking_core.observability.deferred import after_commit

# The notification the booking consumer raises for its decision names the outcome.
_DECISIONS = {"booking_confirmed": "booked", "booking_cancelled": "rejected"}
metrics.initialise(metrics.CONFIRMATION_LATENCY, metrics.RESULT_VISIBLE)


@contextmanager
def booking_decision(session: Session, requested: EventEnvelope, effects: Effects) -> Iterator[None]:
    """Observe requested -> booked/rejected if the wrapped code decided the booking (else nothing)."""
    before = len(effects.notifications)
    yield
    decided = [_DECISIONS[n.event_type] for n in effects.notifications[before:] if n.event_type in _DECISIONS]
    if decided:
        at = datetime.now(UTC)
        after_commit(session, lambda: metrics.observe_confirmation(requested.occurred_at, decided[0], at))


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
