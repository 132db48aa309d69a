"""Decoders from records to typed events; every failure becomes InvalidMessageError with a reason code."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from booking_consumers.errors import InvalidMessageError
from booking_consumers.runtime import Record
from booking_core.events import EventDecodeError, EventEnvelope, EventPayload, parse_event

P = TypeVar("P", bound=EventPayload)


@dataclass(frozen=True)
class Decoded(Generic[P]):
    """An envelope and its validated payload."""

    envelope: EventEnvelope
    payload: P


def envelope_decoder(*accepted: type[P]) -> Callable[[Record], Decoded[P]]:
    """A decoder for JSON envelopes whose payload is one of `accepted` (anything else is invalid)."""

    def decode(record: Record) -> Decoded[P]:
        if not record.value:
            raise InvalidMessageError("empty_message")
        try:
            envelope = parse_event(record.value)
            payload = envelope.payload_model()
        except EventDecodeError as exc:
            # The envelope module's reasons name fields and error kinds only, never values.
            reason = "unknown_event_type" if str(exc.reason).startswith("unknown event") else "invalid_event"
            raise InvalidMessageError(reason, exc.reason[:255]) from None
        if not isinstance(payload, accepted):
            raise InvalidMessageError("unexpected_event_type", f"{envelope.type} v{envelope.version}")
        return Decoded(envelope, payload)

    return decode


def event_id_key(decoded: Decoded[P], record: Record) -> str:
    """The idempotency key of an enveloped event: its event id (the outbox row's, stable on republish)."""
    return decoded.envelope.event_id
