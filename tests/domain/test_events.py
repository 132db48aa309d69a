"""Event envelopes: versioned, validated, decodable; bad input gives a reason without values."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from booking_core.events import (
    BOOKING_TOPIC,
    BookingRequested,
    EventDecodeError,
    make_event,
    parse_event,
    topic_for,
)

NOW = datetime(2030, 1, 1, 9, tzinfo=UTC)


def _requested() -> BookingRequested:
    return BookingRequested(
        booking_id="b1",
        patient_id="p1",
        slot_id="s1",
        clinic_id="c1",
        service_code="blood-draw",
        starts_at=NOW,
        ends_at=NOW,
    )


def test_roundtrip() -> None:
    env = make_event(_requested(), occurred_at=NOW)
    assert env.type == "booking.requested" and env.version == 1 and env.aggregate_id == "b1"
    back = parse_event(env.to_json())
    assert back == env and back.payload_model() == _requested()
    assert topic_for("booking.requested") == BOOKING_TOPIC


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff", "not valid JSON"),
        (b"[]", "an event must be a JSON object"),
        (json.dumps({"type": "x"}).encode(), "invalid envelope"),
    ],
)
def test_decode_errors(raw: bytes, reason: str) -> None:
    with pytest.raises(EventDecodeError) as err:
        parse_event(raw)
    assert err.value.reason.startswith(reason)


def test_unknown_type_and_bad_payload() -> None:
    env = make_event(_requested(), occurred_at=NOW).model_dump(mode="json")
    with pytest.raises(EventDecodeError, match="unknown event"):
        parse_event({**env, "type": "booking.teleported"})
    bad = {**env, "payload": {**env["payload"], "starts_at": "secret-value"}}
    with pytest.raises(EventDecodeError) as err:
        parse_event(bad)
    assert "starts_at" in err.value.reason and "secret-value" not in err.value.reason
