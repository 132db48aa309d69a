"""The transactional outbox: an event row written in the caller's transaction, relayed to Kafka later.

The caller commits; if its transaction rolls back, the event was never written. The relay
(`wrk--batch-publisher`) publishes unpublished rows in id order and sets `published_at`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from booking_core.db.models import OutboxMessage
from booking_core.events import EventEnvelope, EventPayload, make_event, topic_for
from booking_core.telemetry import inject_headers

# Payload fields that hold a patient identifier (the customer database's id is the patient id).
PATIENT_ID_FIELDS = ("patient_id", "customer_id")


class PhiKeyError(ValueError):
    """An event whose Kafka key would be a patient identifier; keys are opaque ids, never PHI."""


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
    Raises PhiKeyError if that key equals a patient identifier of the payload: Kafka keys are visible to
    every broker operator, tool and log that lists keys, so they never carry PHI.
    """
    row = OutboxMessage(**outbox_row(event, occurred_at=occurred_at, topic=topic))
    session.add(row)
    return row


def outbox_row(
    event: EventEnvelope | EventPayload,
    *,
    occurred_at: datetime | None = None,
    topic: str | None = None,
) -> dict[str, Any]:
    """The outbox row `add_event` stages, as column values, for callers that insert rows in bulk."""
    if isinstance(event, EventPayload):
        if occurred_at is None:
            raise ValueError("occurred_at is required when adding a bare payload")
        event = make_event(event, occurred_at=occurred_at)
    if any(event.payload.get(f) == event.aggregate_id for f in PATIENT_ID_FIELDS):
        # The message names neither value: both are the patient id.
        raise PhiKeyError(f"{event.type} would be keyed by a patient identifier")
    headers = {
        "content-type": "application/json",
        "event-id": event.event_id,
        "event-type": event.type,
        "event-version": str(event.version),
        **inject_headers(),
    }
    return {
        "event_id": event.event_id,
        "event_type": event.type,
        "topic": topic or topic_for(event.type, event.version),
        "key": event.aggregate_id,
        "payload": event.model_dump(mode="json"),
        "headers": headers,
        "created_at": event.occurred_at,
    }


def encode_payload(payload: Any) -> bytes:
    """The Kafka value of an outbox row: its JSON payload (HL7 text is stored as a JSON string)."""
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return json.dumps(payload, separators=(",", ":"), default=str).encode("utf-8")
