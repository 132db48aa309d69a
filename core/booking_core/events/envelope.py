"""Versioned event envelopes: what the outbox stores and Kafka carries.

An event is an `EventEnvelope` (id, type, version, time, aggregate, payload) whose payload validates
against the `EventPayload` subclass registered for its (type, version). Payload classes declare their
topic, so the outbox and the relay never spell a topic name.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError


class EventDecodeError(ValueError):
    """Bytes that are not a valid event of a known type and version; `reason` goes to the DLQ."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EventPayload(BaseModel):
    """Base of every event payload; subclasses set the class variables and are registered."""

    # Consumers ignore fields they do not know: a producer may add optional fields within a version.
    model_config = ConfigDict(frozen=True, extra="ignore")

    event_type: ClassVar[str]
    version: ClassVar[int] = 1
    aggregate_type: ClassVar[str]
    topic: ClassVar[str]

    def aggregate_id(self) -> str:
        """The id of the aggregate the event is about; the Kafka key (never PHI)."""
        raise NotImplementedError


class EventEnvelope(BaseModel):
    """The metadata every event carries, and its payload as JSON-ready data."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    type: str
    version: int = Field(ge=1)
    occurred_at: AwareDatetime
    aggregate_type: str
    aggregate_id: str
    payload: dict[str, Any]

    def payload_model(self) -> EventPayload:
        """The payload validated against its registered class (EventDecodeError if unknown or invalid)."""
        cls = REGISTRY.get((self.type, self.version))
        if cls is None:
            raise EventDecodeError(f"unknown event {self.type} v{self.version}")
        try:
            return cls.model_validate(self.payload)
        except ValidationError as exc:
            raise EventDecodeError(f"invalid {self.type} v{self.version} payload: {_fields(exc)}") from exc

    def to_json(self) -> bytes:
        """The envelope as UTF-8 JSON, the Kafka message value."""
        return self.model_dump_json().encode()


P = TypeVar("P", bound=EventPayload)
REGISTRY: dict[tuple[str, int], type[EventPayload]] = {}


def register_event(cls: type[P]) -> type[P]:
    """Class decorator: make a payload class known to `parse_event` and the outbox."""
    key = (cls.event_type, cls.version)
    if key in REGISTRY and REGISTRY[key] is not cls:
        raise ValueError(f"event {key} registered twice")
    REGISTRY[key] = cls
    return cls


def topic_for(event_type: str, version: int = 1) -> str:
    """The topic a registered event type is published to."""
    cls = REGISTRY.get((event_type, version))
    if cls is None:
        raise KeyError(f"unknown event {event_type} v{version}")
    return cls.topic


def make_event(payload: EventPayload, *, occurred_at: datetime, event_id: str | None = None) -> EventEnvelope:
    """Wrap a payload in an envelope."""
    return EventEnvelope(
        event_id=event_id or str(uuid.uuid4()),
        type=payload.event_type,
        version=payload.version,
        occurred_at=occurred_at,
        aggregate_type=payload.aggregate_type,
        aggregate_id=payload.aggregate_id(),
        payload=payload.model_dump(mode="json"),
    )


def parse_event(raw: bytes | str | dict[str, Any]) -> EventEnvelope:
    """Decode and validate an envelope and its payload; EventDecodeError with a reason otherwise."""
    try:
        data = json.loads(raw) if isinstance(raw, bytes | str) else raw
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EventDecodeError("not valid JSON") from exc
    if not isinstance(data, dict):
        raise EventDecodeError("an event must be a JSON object")
    try:
        envelope = EventEnvelope.model_validate(data)
    except ValidationError as exc:
        raise EventDecodeError(f"invalid envelope: {_fields(exc)}") from exc
    envelope.payload_model()
    return envelope


def _fields(exc: ValidationError) -> str:
    # Field names and error kinds only: values may be PHI and the reason travels to the DLQ.
    return ", ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['type']}" for e in exc.errors())
