"""Result delivery time, last stage: LIS receipt -> results-available notification sent.

The notification job carries only opaque ids; its ref is the stored LIS message, whose receipt time
and patient tier the job reads with the patient (notifications.load: no extra round trip).
"""

from __future__ import annotations

from datetime import datetime

from booking_core.observability import metrics
from booking_workers import metrics as worker_metrics

RESULTS_AVAILABLE = "results_available"
metrics.initialise(metrics.RESULT_NOTIFIED)
# The outcomes the delivered-ratio rule divides, at zero per channel from the start (see `initialise`).
for _channel in sorted(metrics.CHANNELS):
    for _outcome in ("sent", "permanent_failure", "gave_up"):
        worker_metrics.NOTIFICATIONS.labels(_channel, _outcome)


def result_notified(received_at: datetime | None, tier: str, channel: str, sent_at: datetime) -> None:
    """Observe LIS receipt -> sent for a results notification on `channel` (the job read the receipt)."""
    if received_at is not None:
        metrics.observe_result_notified(received_at, tier, channel, sent_at)
