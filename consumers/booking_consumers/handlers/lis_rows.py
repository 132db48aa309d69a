"""Rows of a lab report: new reports as plain dicts for multi-row INSERTs, corrections on ORM objects."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from booking_consumers.handlers.lis_bulk import new_ids
from booking_core.db.models import Observation, TestResult, new_id
from booking_core.domain.results import domain_flag, visible_to_patient
from booking_core.events.lis import LabObservation, LabReport, LabResultMessage

_RETRACTED = "entered-in-error"


def _cut(value: str | None, n: int) -> str | None:
    return value[:n] if value else None


def observation_values(obs: LabObservation) -> dict[str, Any]:
    """The columns one OBX sets (lengths cut to the columns': PostgreSQL refuses longer values)."""
    flag = domain_flag(obs.flags)
    att = obs.attachment
    return {
        "code": obs.code[:64],
        "sub_id": _cut(obs.sub_id, 20),
        "name": (obs.name or obs.code)[:200],
        "value_type": obs.value_type[:8],
        "value_numeric": obs.value_numeric,
        "value_text": obs.value_text,
        "value_flagged": obs.value_flagged,
        "attachment_kind": att.kind if att else None,
        "attachment_type": _cut(att.mime_type, 100) if att else None,
        "attachment_encoding": _cut(att.encoding, 16) if att else None,
        "attachment_data": att.data if att else None,
        "unit": _cut(obs.unit, 100),
        "reference_low": obs.reference_low,
        "reference_high": obs.reference_high,
        "reference_text": _cut(obs.reference_range, 255),
        "flag": flag.value if flag else None,
        "flags": _cut("~".join(obs.flags), 64),
        "status": obs.status.value,
        "visible_to_patient": visible_to_patient(obs.status),
        "observed_at": obs.observed_at,
        "comment": obs.comment,
    }


def report_status(report: LabReport | None, statuses: set[str]) -> str:
    """The report's status: what its observations say, else OBR-25 (a test with no values)."""
    if statuses and statuses <= {_RETRACTED}:
        return _RETRACTED
    for status in ("corrected", "final", "preliminary", "registered", "cancelled"):
        if status in statuses:
            return status
    if report is not None and report.status is not None:
        return report.status.value
    return "registered"


def new_result_rows(
    *,
    patient_id: str,
    msg: LabResultMessage,
    report: LabReport,
    position: int,
    order_id: str | None,
    booking_id: str | None,
    now: datetime,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A new report and its observations as rows; ids made here, so the routed event can name them."""
    result_id, *obs_ids = new_ids(1 + len(report.observations))
    observations = [
        {"id": obs_id, "result_id": result_id, "sequence": n, "updated_at": now, **observation_values(o)}
        for n, (obs_id, o) in enumerate(zip(obs_ids, report.observations, strict=True), start=1)
    ]
    result = {
        "id": result_id,
        "patient_id": patient_id,
        "lab_order_id": order_id,
        "booking_id": booking_id,
        "test_code": report.service_code[:64],
        "test_name": (report.service_name or report.service_code)[:200],
        "status": report_status(report, {o["status"] for o in observations}),
        "comment": report.comment,
        "effective_at": report.observed_at,
        "issued_at": msg.message_datetime or now,
        "received_at": now,
        # Released to the patient by the tier's pat-test-result consumer.
        "visible_to_patient": False,
        "source_facility": msg.sending_facility[:100],
        "source_message_id": msg.control_id[:100],
        # The report's position in the message, not OBR-1: senders repeat or omit OBR-1, and the
        # (MSH-4, MSH-10, set) key is unique.
        "source_set_id": str(position),
        "filler_order_number": _cut(report.filler_order_number, 100),
        "updated_at": now,
    }
    return result, observations


def apply_update(result: TestResult, report: LabReport) -> bool:
    """Corrections and retractions on a stored report; True when the patient should hear of it.

    An observation is the same one when its code AND sub-id match (OBX-3 + OBX-4): cultures and
    newborn-screening panels repeat a code with different sub-ids, and a correction to one isolate must
    not overwrite another. OBX-11 U promotes the stored value to final without resending it.
    """
    by_key = {(o.code, o.sub_id): o for o in result.observations}
    changed = False
    for obs in report.observations:
        key = (obs.code[:64], _cut(obs.sub_id, 20))
        row = by_key.get(key)
        if row is None:
            if obs.status == _RETRACTED:
                continue
            row = Observation(
                id=new_id(), sequence=max((o.sequence for o in result.observations), default=0) + 1
            )
            result.observations.append(row)
            by_key[key] = row
        if obs.value_text is None and obs.attachment is None and obs.status == "final" and row.value_text:
            row.status = "final"  # OBX-11 U: the value sent before stands
            row.visible_to_patient = True
        else:
            for column, value in observation_values(obs).items():
                setattr(row, column, value)
        changed = changed or obs.status != _RETRACTED
    if report.comment:
        result.comment = report.comment
    result.status = report_status(report, {o.status for o in result.observations})
    if result.status == _RETRACTED:
        result.visible_to_patient = False
        result.released_at = None
    return changed
