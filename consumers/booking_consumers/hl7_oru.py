"""HL7 v2 ORU^R01 parsing with the `hl7` library into `booking_core.events.lis` models.

Parse at the edge: anything that is not a well-formed result message raises `InvalidMessageError` with a
reason code and a detail naming the field (never its value), which the poll loop turns into a DLQ record.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import hl7
from pydantic import ValidationError

from booking_consumers.errors import InvalidMessageError
from booking_core.events.lis import (
    OBX_STATUS,
    LabObservation,
    LabReport,
    LabResultMessage,
    PatientIdentifier,
)

_NUMERIC = re.compile(r"^\s*(<=|>=|<|>|=)?\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*$")
_RANGE = re.compile(
    r"^\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*(?:-|\u2013|to)\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*$", re.IGNORECASE
)
_DTM = re.compile(r"^\d{4}(\d{2}){0,5}(\.\d{1,4})?([+-]\d{4})?$")
_TEXT_TYPES = frozenset({"ST", "TX", "FT"})
_CODED_TYPES = frozenset({"CE", "CWE", "CNE", "CF"})


def _field(msg: hl7.Message, seg: str, n: int, field: int, rep: int = 1, comp: int = 1) -> str | None:
    """One component of one field, unescaped; None when absent or empty."""
    try:
        value: str = msg.extract_field(seg, n, field, rep, comp)
    except (IndexError, KeyError):
        return None
    value = value.replace("\r", "\n").strip()
    return value or None


def _repetitions(msg: hl7.Message, seg: str, n: int, field: int) -> int:
    segment = msg.segments(seg)[n - 1]
    if field >= len(segment):
        return 0
    raw = str(segment[field])
    return raw.count(msg.separators[2]) + 1 if raw else 0


def _timestamp(value: str | None, where: str) -> datetime | None:
    if not value:
        return None
    if not _DTM.match(value):
        raise InvalidMessageError("invalid_timestamp", where)
    try:
        ts: datetime = hl7.parse_datetime(value)
    except ValueError as exc:
        raise InvalidMessageError("invalid_timestamp", where) from exc
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _number(value: str) -> tuple[str | None, float] | None:
    m = _NUMERIC.match(value)
    if m is None:
        return None
    return m.group(1), float(m.group(2))


def _reference(text: str | None) -> tuple[float | None, float | None]:
    if not text:
        return None, None
    m = _RANGE.match(text)
    if m:
        return float(m.group(1)), float(m.group(2))
    bound = _number(text)
    if bound is not None and bound[0] in {"<", "<="}:
        return None, bound[1]
    if bound is not None and bound[0] in {">", ">="}:
        return bound[1], None
    return None, None


def _observation(msg: hl7.Message, n: int) -> LabObservation:
    where = f"OBX[{n}]"
    value_type = (_field(msg, "OBX", n, 2) or "").upper()
    status_code = (_field(msg, "OBX", n, 11) or "").upper()
    if status_code not in OBX_STATUS:
        raise InvalidMessageError("invalid_result_status", f"{where}-11")
    code = _field(msg, "OBX", n, 3, 1, 1)
    if code is None:
        raise InvalidMessageError("missing_field", f"{where}-3")
    raw_value = _field(msg, "OBX", n, 5)
    numeric: float | None = None
    comparator: str | None = None
    text: str | None = None
    if raw_value is not None and status_code not in {"W", "D", "X"}:
        if value_type == "NM":
            parsed = _number(raw_value)
            if parsed is None:
                raise InvalidMessageError("invalid_numeric_value", f"{where}-5")
            comparator, numeric = parsed
        elif value_type == "SN":
            # SN: comparator ^ num1 [^ separator ^ num2]; ratios/ranges are kept as text.
            comparator = _field(msg, "OBX", n, 5, 1, 1)
            num1 = _field(msg, "OBX", n, 5, 1, 2)
            sep = _field(msg, "OBX", n, 5, 1, 3)
            if num1 is None or _number(num1) is None:
                raise InvalidMessageError("invalid_numeric_value", f"{where}-5")
            if sep is None:
                numeric = float(num1)
            text = "".join(p for p in (comparator, num1, sep, _field(msg, "OBX", n, 5, 1, 4)) if p)
        elif value_type in _CODED_TYPES:
            text = _field(msg, "OBX", n, 5, 1, 2) or _field(msg, "OBX", n, 5, 1, 1)
        elif value_type in _TEXT_TYPES:
            text = raw_value
        else:
            raise InvalidMessageError("unsupported_value_type", f"{where}-2")
    reference = _field(msg, "OBX", n, 7)
    low, high = _reference(reference)
    flags = tuple(
        f.upper()
        for f in (_field(msg, "OBX", n, 8, r, 1) for r in range(1, _repetitions(msg, "OBX", n, 8) + 1))
        if f and f.upper() != "N"
    )
    set_id = _int(_field(msg, "OBX", n, 1), n, f"{where}-1")
    return LabObservation(
        set_id=set_id,
        code=code,
        name=_field(msg, "OBX", n, 3, 1, 2),
        coding_system=_field(msg, "OBX", n, 3, 1, 3),
        value_type=value_type or "ST",
        value_numeric=numeric,
        comparator=comparator,
        value_text=text,
        unit=_field(msg, "OBX", n, 6, 1, 1),
        reference_range=reference,
        reference_low=low,
        reference_high=high,
        flags=flags,
        status=OBX_STATUS[status_code],
        observed_at=_timestamp(_field(msg, "OBX", n, 14), f"{where}-14"),
    )


def _patient_ids(msg: hl7.Message) -> tuple[PatientIdentifier, ...]:
    out = []
    for r in range(1, _repetitions(msg, "PID", 1, 3) + 1):
        value = _field(msg, "PID", 1, 3, r, 1)
        if value:
            out.append(
                PatientIdentifier(
                    value=value,
                    authority=_field(msg, "PID", 1, 3, r, 4),
                    type_code=_field(msg, "PID", 1, 3, r, 5),
                )
            )
    return tuple(out)


def _parse_message(text: str) -> hl7.Message:
    text = text.replace("\r\n", "\r").replace("\n", "\r").strip("\r")
    if not text.startswith("MSH"):
        raise InvalidMessageError("not_hl7", "message does not start with MSH")
    try:
        return hl7.parse(text)
    except (hl7.ParseException, ValueError, IndexError) as exc:
        raise InvalidMessageError("not_hl7", type(exc).__name__) from exc


def _reports(msg: hl7.Message) -> list[LabReport]:
    reports: list[LabReport] = []
    current: dict[str, Any] | None = None
    obr_n = obx_n = 0
    for segment in msg:
        name = str(segment[0])
        if name == "OBR":
            obr_n += 1
            if current is not None:
                reports.append(LabReport(**current))
            service = _field(msg, "OBR", obr_n, 4, 1, 1)
            if service is None:
                raise InvalidMessageError("missing_field", f"OBR[{obr_n}]-4")
            current = {
                "set_id": _int(_field(msg, "OBR", obr_n, 1), obr_n, f"OBR[{obr_n}]-1"),
                "placer_order_number": _field(msg, "OBR", obr_n, 2),
                "filler_order_number": _field(msg, "OBR", obr_n, 3),
                "service_code": service,
                "service_name": _field(msg, "OBR", obr_n, 4, 1, 2),
                "observed_at": _timestamp(_field(msg, "OBR", obr_n, 7), f"OBR[{obr_n}]-7"),
                "observations": [],
            }
        elif name == "OBX":
            obx_n += 1
            if current is None:
                raise InvalidMessageError("obx_without_obr", f"OBX[{obx_n}]")
            current["observations"].append(_observation(msg, obx_n))
    if current is not None:
        reports.append(LabReport(**current))
    return reports


def parse_oru(payload: bytes | str) -> LabResultMessage:
    """Parse one ORU^R01 message; raises InvalidMessageError (reason, field) for anything malformed."""
    try:
        return _parse_oru(payload)
    except ValidationError as exc:
        # The pydantic message quotes input values (PHI): keep only the failing locations.
        fields = ",".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
        raise InvalidMessageError("invalid_message", fields[:200]) from None


def _parse_oru(payload: bytes | str) -> LabResultMessage:
    if isinstance(payload, bytes):
        try:
            payload = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidMessageError("not_utf8", "payload is not UTF-8") from exc
    msg = _parse_message(payload)
    if (_field(msg, "MSH", 1, 9, 1, 1), _field(msg, "MSH", 1, 9, 1, 2)) != ("ORU", "R01"):
        raise InvalidMessageError("unsupported_message_type", "MSH-9")
    facility = _field(msg, "MSH", 1, 4, 1, 1)
    control_id = _field(msg, "MSH", 1, 10)
    if facility is None or control_id is None:
        raise InvalidMessageError("missing_field", "MSH-4" if facility is None else "MSH-10")
    if not _has(msg, "PID"):
        raise InvalidMessageError("missing_segment", "PID")
    patient_ids = _patient_ids(msg)
    if not patient_ids:
        raise InvalidMessageError("missing_field", "PID-3")
    reports = _reports(msg)
    if not reports or not any(r.observations for r in reports):
        raise InvalidMessageError("missing_segment", "OBR/OBX")
    return LabResultMessage(
        sending_facility=facility,
        control_id=control_id,
        message_datetime=_timestamp(_field(msg, "MSH", 1, 7), "MSH-7"),
        patient_ids=patient_ids,
        reports=tuple(reports),
    )


def _int(value: str | None, default: int, where: str) -> int:
    try:
        return int(value) if value else default
    except ValueError as exc:
        raise InvalidMessageError("invalid_set_id", where) from exc


def _has(msg: hl7.Message, seg: str) -> bool:
    return any(str(s[0]) == seg for s in msg)
