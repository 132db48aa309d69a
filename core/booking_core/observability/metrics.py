"""Histograms of the end-to-end latencies, measured from the events' own timestamps.

Labels are closed sets (outcome, tier, channel); anything else is folded into "other", so a bad value
in a message can never mint a new series, and no label ever carries an id.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import Histogram

TIERS = frozenset({"standard", "svip1", "svip2"})
CHANNELS = frozenset({"email", "sms", "push", "in_app"})
DECISIONS = frozenset({"booked", "rejected"})

# Confirmation is one consumer hop after the request: seconds normally, minutes when Kafka lags.
CONFIRMATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
# Results become visible within seconds; a notification may be held until the end of quiet hours.
RESULT_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 10800, 43200)

CONFIRMATION_LATENCY = Histogram(
    "booking_confirmation_latency_seconds",
    "From the booking.requested event to the consumer's decision, by outcome (booked, rejected)",
    ["outcome"],
    buckets=CONFIRMATION_BUCKETS,
)
RESULT_VISIBLE = Histogram(
    "booking_result_visible_seconds",
    "From the LIS message's receipt to its results being visible to the patient, by patient tier",
    ["tier"],
    buckets=RESULT_BUCKETS,
)
RESULT_NOTIFIED = Histogram(
    "booking_result_notified_seconds",
    "From the LIS message's receipt to the results-available notification sent, by tier and channel",
    ["tier", "channel"],
    buckets=RESULT_BUCKETS,
)


def initialise(*histograms: Histogram) -> None:
    """Create every label combination of `histograms` at zero in this process.

    A series that first appears with its first observation has no earlier sample, so `rate()` over it
    stays 0 until the second one: the first booking after a restart would be invisible to the rules.
    """
    sets: dict[Histogram, list[tuple[str, ...]]] = {
        CONFIRMATION_LATENCY: [(o,) for o in sorted(DECISIONS)],
        RESULT_VISIBLE: [(t,) for t in sorted(TIERS)],
        RESULT_NOTIFIED: [(t, c) for t in sorted(TIERS) for c in sorted(CHANNELS)],
    }
    for h in histograms:
        for values in sets[h]:
            h.labels(*values)


def bounded(value: str, allowed: frozenset[str]) -> str:
    """`value` when it is one of `allowed`, else "other" (label values are a closed set)."""
    return value if value in allowed else "other"


def seconds_since(start: datetime, now: datetime | None = None) -> float:
    """Seconds from `start` to `now` (default: the wall clock), never negative (clock skew)."""
    end = now or datetime.now(UTC)
    if start.tzinfo is None:  # SQLite hands naive UTC datetimes back
        start = start.replace(tzinfo=UTC)
    return max(0.0, (end - start).total_seconds())


def observe_confirmation(requested_at: datetime, outcome: str, now: datetime | None = None) -> None:
    """One booking decided: the time since it was requested."""
    CONFIRMATION_LATENCY.labels(bounded(outcome, DECISIONS)).observe(seconds_since(requested_at, now))


def observe_result_visible(received_at: datetime, tier: str, now: datetime | None = None) -> None:
    """One LIS message's results released to the patient: the time since its receipt."""
    RESULT_VISIBLE.labels(bounded(tier, TIERS)).observe(seconds_since(received_at, now))


def observe_result_notified(
    received_at: datetime, tier: str, channel: str, now: datetime | None = None
) -> None:
    """One results-available notification sent on a channel: the time since the LIS receipt."""
    RESULT_NOTIFIED.labels(bounded(tier, TIERS), bounded(channel, CHANNELS)).observe(
        seconds_since(received_at, now)
    )
