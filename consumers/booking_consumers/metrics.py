"""Prometheus metrics of the consumers, labelled by consumer name (never by anything from a message)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONSUMED = Counter("booking_consumer_messages_consumed", "Messages taken from the transport", ["consumer"])
PROCESSED = Counter("booking_consumer_messages_processed", "Messages whose handler committed", ["consumer"])
DUPLICATES = Counter(
    "booking_consumer_messages_duplicate", "Messages skipped as already processed", ["consumer"]
)
DEAD_LETTERED = Counter(
    "booking_consumer_messages_dead_lettered",
    "Messages sent to the dead-letter topic",
    ["consumer", "reason"],
)
RETRIES = Counter(
    "booking_consumer_retries", "Handler attempts that failed transiently and were retried", ["consumer"]
)
PROCESSING_SECONDS = Histogram(
    "booking_consumer_processing_seconds",
    "Time from decode to committed handler transaction",
    ["consumer"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LAG = Gauge(
    "booking_consumer_lag", "Messages behind the end of the log, per partition", ["consumer", "partition"]
)
