"""Result delivery time, last stage: LIS receipt -> results-available notification sent.

The notification job carries only opaque ids; its ref is the stored LIS message, whose receipt time
and patient tier the worker reads back here (one primary-key lookup per sent results notification).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from booking_core.db.models_events import LisMessage
from booking_core.observability import metrics
from booking_workers import metrics as worker_metrics
from booking_workers.notifications.store import DeliveryKey

RESULTS_AVAILABLE = "results_available"
metrics.initialise(metrics.RESULT_NOTIFIED)
# The outcomes the delivered-ratio rule divides, at zero per channel from the start (see `initialise`).
for _channel in sorted(metrics.CHANNELS):
    for _outcome in ("sent", "permanent_failure", "gave_up"):
        worker_metrics.NOTIFICATIONS.labels(_channel, _outcome)


def result_notified(sessions: sessionmaker[Session], key: DeliveryKey, sent_at: datetime) -> None:
    """Observe LIS receipt -> sent for a results notification on `key.channel`; other events are skipped."""
    if key.event_type != RESULTS_AVAILABLE:
        return
    try:
        with sessions() as session:
            row = session.execute(
                select(LisMessage.received_at, LisMessage.tier).where(LisMessage.id == key.ref_id)
            ).first()
    except SQLAlchemyError:
        return  # the send already happened; a lost observation must not turn it into a retry
    if row is not None:
        metrics.observe_result_notified(row.received_at, row.tier, key.channel, sent_at)
