"""The transactional outbox: an event row written in the caller's transaction, relayed to Kafka later.

The caller commits; if its transaction rolls back, the event was never written. The relay
(`wrk--batch-publisher`) publishes unpublished rows in id order and sets `published_at`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from booking_core.db.models import OutboxMessage
from booking_core.events import EventEnvelope, EventPayload, make_event, topic_for
from booking_core.telemetry import inject_headers


def add_event(
    session: Session,
    event: EventEnvelope | EventPayload,
    *,
    occurred_at: datetime | None = None,
    topic: str | None = None,
) -> OutboxMessage:
    """Stage `event` in the outbox within `session`'s transaction; returns the (unflushed) row.

    A payload is wrapped in a new envelope (`occurred_at` required then). The row's key is the aggregate id,
    its headers carry the event type, version and id plus the current W3C trace context.
    """
    if isinstance(event, EventPayload):
        if occurred_at is None:
            raise ValueError("occurred_at is required when adding a bare payload")
        event = make_event(event, occurred_at=occurred_at)
    headers = {
        "content-type": "application/json",
        "event-id": event.event_id,
        "event-type": event.type,
        "event-version": str(event.version),
        **inject_headers(),
    }
    row = OutboxMessage(
        event_id=event.event_id,
        event_type=event.type,
        topic=topic or topic_for(event.type, event.version),
        key=event.aggregate_id,
        payload=event.model_dump(mode="json"),
        headers=headers,
        created_at=event.occurred_at,
    )
    session.add(row)
    return row
