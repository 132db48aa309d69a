"""The JSON log formatter drops everything that could carry patient data."""

from __future__ import annotations

import json
import logging

from booking_core.logs import JsonFormatter


def _format(record: logging.LogRecord) -> dict[str, object]:
    out: dict[str, object] = json.loads(JsonFormatter().format(record))
    return out


def test_only_allowlisted_extras_are_emitted() -> None:
    record = logging.makeLogRecord(
        {
            "name": "booking",
            "levelname": "INFO",
            "msg": "booking confirmed",
            "booking_id": "b-123",
            "patient_name": "Jane Doe",
            "phone": "+15550100",
        }
    )
    out = _format(record)
    assert out["msg"] == "booking confirmed"
    assert out["booking_id"] == "b-123"
    assert "patient_name" not in out and "phone" not in out
    assert "Jane" not in json.dumps(out)


def test_exception_messages_are_dropped_but_type_and_frames_kept() -> None:
    try:
        raise ValueError("INSERT ... parameters: ('Jane Doe', '1980-02-01')")
    except ValueError:
        import sys

        record = logging.makeLogRecord(
            {"msg": "insert failed", "levelname": "ERROR", "exc_info": sys.exc_info()}
        )
    out = _format(record)
    assert out["exc_type"] == "ValueError"
    assert "test_exception_messages_are_dropped" in str(out["stack"])
    assert "Jane" not in json.dumps(out)
