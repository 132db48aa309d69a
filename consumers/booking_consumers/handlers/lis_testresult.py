"""`lis-testresult`: HL7 ORU^R01 from the LIS -> stored results -> the tier's patient-result topic.

Deduplicated on MSH-4 + MSH-10 (the processed-messages key, with `lis_messages` as a second guard).
A report already stored for the same order (facility + OBR-3 filler number + OBR-4 test) is updated in
place: OBX-11 `C` replaces a value, `W` hides it from the patient. New or corrected reports are routed
by the patient's tier through the outbox. The patient is the one PID-3 names; a message naming nobody
we know, or contradicting the order's patient, is refused (DLQ) rather than shown to the wrong person.
Nothing here logs a value or an identifier from the message.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from booking_consumers.errors import InvalidMessageError
from booking_consumers.handlers._common import now
from booking_consumers.hl7_oru import parse_oru
from booking_consumers.runtime import ConsumerDef, Effects, Record
from booking_core.db.models import LabOrder, Observation, Patient, TestResult
from booking_core.db.models_events import LisMessage
from booking_core.domain.results import visible_to_patient
from booking_core.events.lis import LabObservation, LabReport, LabResultMessage
from booking_core.events.results import LabResultsStored, result_topic
from booking_core.outbox import add_event

# Most severe first: the one flag an observation row keeps.
_FLAG_ORDER = ("HH", "LL", "AA", "H", "L", "A", "HU", "LU", ">", "<")
_STORED_FLAG = {"AA": "A", "HU": "H", "LU": "L", ">": "H", "<": "L"}
_ID_TYPES = ("MR", "PI", "PT", "PN")


def decode(record: Record) -> LabResultMessage:
    """Parse the HL7 bytes (InvalidMessageError for anything malformed)."""
    if not record.value:
        raise InvalidMessageError("empty_message")
    return parse_oru(record.value)


def message_key(msg: LabResultMessage, record: Record) -> str:
    """MSH-4 + MSH-10: a message the LIS resends carries the same pair."""
    return f"hl7:{msg.dedupe_key}"


def stored_flag(obs: LabObservation) -> str | None:
    """The most severe OBX-8 flag, in the domain's vocabulary (H, L, HH, LL, A)."""
    for flag in _FLAG_ORDER:
        if flag in obs.flags:
            return _STORED_FLAG.get(flag, flag)
    return None


def find_patient(session: Session, msg: LabResultMessage) -> Patient:
    """The patient PID-3 names (medical-record-type identifiers first)."""
    ids = sorted(msg.patient_ids, key=lambda p: 0 if p.type_code in _ID_TYPES else 1)
    for pid in ids:
        patient = session.get(Patient, pid.value)
        if patient is not None:
            return patient
    raise InvalidMessageError("unknown_patient", "PID-3")


def _order(session: Session, patient: Patient, report: LabReport, facility: str) -> LabOrder | None:
    order = None
    if report.placer_order_number:
        order = session.scalars(
            select(LabOrder).where(LabOrder.placer_order_number == report.placer_order_number)
        ).first()
    if order is None and report.filler_order_number:
        order = session.scalars(
            select(LabOrder).where(
                LabOrder.source_facility == facility,
                LabOrder.filler_order_number == report.filler_order_number,
            )
        ).first()
    if order is not None and order.patient_id != patient.id:
        raise InvalidMessageError("patient_order_mismatch", f"OBR[{report.set_id}]-2")
    return order


def _existing(session: Session, facility: str, report: LabReport) -> TestResult | None:
    if not report.filler_order_number:
        return None
    return session.scalars(
        select(TestResult)
        .where(
            TestResult.source_facility == facility,
            TestResult.filler_order_number == report.filler_order_number,
            TestResult.test_code == report.service_code,
        )
        .with_for_update()
    ).first()


def _apply_values(row: Observation, obs: LabObservation) -> None:
    row.code = obs.code
    row.name = (obs.name or obs.code)[:200]
    row.value_type = obs.value_type[:8]
    row.value_numeric = obs.value_numeric
    row.value_text = obs.value_text
    row.unit = obs.unit[:32] if obs.unit else None
    row.reference_low = obs.reference_low
    row.reference_high = obs.reference_high
    row.reference_text = obs.reference_range[:100] if obs.reference_range else None
    row.flag = stored_flag(obs)
    row.status = obs.status
    row.visible_to_patient = visible_to_patient(obs.status)
    row.observed_at = obs.observed_at


def _report_status(observations: list[Observation]) -> str:
    statuses = {o.status for o in observations}
    if statuses <= {"entered-in-error"}:
        return "entered-in-error"
    if "corrected" in statuses:
        return "corrected"
    if "final" in statuses:
        return "final"
    return "preliminary" if "preliminary" in statuses else "registered"


def _new_result(
    session: Session, patient: Patient, msg: LabResultMessage, report: LabReport, order: LabOrder | None
) -> TestResult:
    result = TestResult(
        patient_id=patient.id,
        lab_order_id=order.id if order else None,
        booking_id=order.booking_id if order else None,
        test_code=report.service_code[:64],
        test_name=(report.service_name or report.service_code)[:200],
        effective_at=report.observed_at,
        issued_at=msg.message_datetime or now(),
        received_at=now(),
        # Released to the patient by the tier's pat-test-result consumer.
        visible_to_patient=False,
        source_facility=msg.sending_facility[:100],
        source_message_id=msg.control_id[:100],
        source_set_id=str(report.set_id),
        filler_order_number=report.filler_order_number,
    )
    for obs in report.observations:
        row = Observation(sequence=obs.set_id)
        _apply_values(row, obs)
        result.observations.append(row)
    result.status = _report_status(result.observations)
    session.add(result)
    return result


def _update_result(result: TestResult, report: LabReport) -> bool:
    """Apply corrections and retractions to a stored report; True when the patient should hear of it."""
    by_code = {o.code: o for o in result.observations}
    changed = False
    for obs in report.observations:
        row = by_code.get(obs.code)
        if row is None:
            if obs.status == "entered-in-error":
                continue
            row = Observation(sequence=max((o.sequence for o in result.observations), default=0) + 1)
            result.observations.append(row)
        _apply_values(row, obs)
        changed = changed or obs.status != "entered-in-error"
    result.status = _report_status(result.observations)
    if result.status == "entered-in-error":
        result.visible_to_patient = False
        result.released_at = None
    return changed


def handle(session: Session, msg: LabResultMessage, effects: Effects) -> None:
    """Store one ORU^R01 message and route it by the patient's tier."""
    patient = find_patient(session, msg)
    already = session.scalar(
        select(func.count())
        .select_from(LisMessage)
        .where(
            LisMessage.source_facility == msg.sending_facility[:100],
            LisMessage.control_id == msg.control_id[:100],
        )
    )
    if already:
        return  # stored under another processed-message key (a key-format change): same message
    lis_message = LisMessage(
        source_facility=msg.sending_facility[:100],
        control_id=msg.control_id[:100],
        patient_id=patient.id,
        tier=patient.tier,
        results=len(msg.reports),
    )
    session.add(lis_message)
    released: list[TestResult] = []
    retracted: list[TestResult] = []
    corrected = False
    for report in msg.reports:
        order = _order(session, patient, report, msg.sending_facility)
        existing = _existing(session, msg.sending_facility, report)
        if existing is not None and existing.patient_id != patient.id:
            raise InvalidMessageError("patient_order_mismatch", f"OBR[{report.set_id}]-3")
        if existing is None:
            if all(o.status == "entered-in-error" for o in report.observations):
                continue  # retracting something never stored
            result = _new_result(session, patient, msg, report, order)
            released.append(result)
        elif _update_result(existing, report):
            corrected = True
            released.append(existing)
        else:
            retracted.append(existing)
    session.flush()
    urgent = any(o.critical for r in msg.reports for o in r.observations)
    if released or retracted:
        add_event(
            session,
            LabResultsStored(
                lab_message_id=lis_message.id,
                patient_id=patient.id,
                tier=patient.tier,
                result_ids=tuple(r.id for r in released),
                retracted_result_ids=tuple(r.id for r in retracted),
                corrected=corrected,
                urgent=urgent,
            ),
            occurred_at=now(),
            topic=result_topic(patient.tier),
        )


DEFINITION: ConsumerDef[LabResultMessage] = ConsumerDef(
    name="lis-testresult", decode=decode, handle=handle, message_key=message_key
)
