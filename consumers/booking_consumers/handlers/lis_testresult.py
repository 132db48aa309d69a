"""`lis-testresult`: HL7 ORU^R01 from the LIS -> stored results -> the tier's patient-result topic.

Deduplicated on MSH-4 + MSH-10 (the processed-messages key, with `lis_messages` as a second guard).
A report already stored for the same order (facility + OBR-3 filler number + OBR-4 test) is updated in
place: OBX-11 `C` replaces a value, `W` hides it from the patient. New or corrected reports are routed
by the patient's tier through the outbox. The patient is the one PID-3 names; a message naming nobody
we know, or contradicting the order's patient, is refused (DLQ) rather than shown to the wrong person.
Nothing here logs a value or an identifier from the message.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, or_, select, tuple_
from sqlalchemy.orm import Session

from booking_consumers.errors import InvalidMessageError
from booking_consumers.handlers._common import cached_patient, now, warm_patients
from booking_consumers.hl7_oru import parse_oru
from booking_consumers.runtime import ConsumerDef, Effects, Record, insert_ignore
from booking_core.db.models import LabOrder, Observation, Patient, TestResult, new_id
from booking_core.db.models_events import LisMessage
from booking_core.domain.results import visible_to_patient
from booking_core.events.lis import LabObservation, LabReport, LabResultMessage
from booking_core.events.results import LabResultsStored, result_topic
from booking_core.outbox import add_event

# Most severe first: the one flag an observation row keeps.
_FLAG_ORDER = ("HH", "LL", "AA", "H", "L", "A", "HU", "LU", ">", "<")
_STORED_FLAG = {"AA": "A", "HU": "H", "LU": "L", ">": "H", "<": "L"}
_ID_TYPES = ("MR", "PI", "PT", "PN")
# session.info key: lab orders known for this transaction, by ("placer", OBR-2) or ("filler", MSH-4, OBR-3).
_ORDERS = "booking_consumers.lab_orders"


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
        patient = cached_patient(session, pid.value)
        if patient is not None:
            return patient
    raise InvalidMessageError("unknown_patient", "PID-3")


def prepare(session: Session, messages: Sequence[LabResultMessage]) -> None:
    """Load a batch's patients and lab orders in two queries instead of up to three per message.

    Neither is written by this consumer, so the caches cannot go stale within the transaction
    through a savepoint that is rolled back.
    """
    warm_patients(session, {p.value for m in messages for p in m.patient_ids})
    placers = {r.placer_order_number for m in messages for r in m.reports if r.placer_order_number}
    fillers = {
        (m.sending_facility, r.filler_order_number)
        for m in messages
        for r in m.reports
        if r.filler_order_number
    }
    if not placers and not fillers:
        return
    cache: dict[tuple[str, ...], list[LabOrder]] = session.info.setdefault(_ORDERS, {})
    for placer in placers:
        cache.setdefault(("placer", placer), [])
    for facility, filler in fillers:
        cache.setdefault(("filler", facility, filler), [])
    conds = []
    if placers:
        conds.append(LabOrder.placer_order_number.in_(placers))
    if fillers:
        conds.append(tuple_(LabOrder.source_facility, LabOrder.filler_order_number).in_(fillers))
    for order in session.scalars(select(LabOrder).where(or_(*conds))):
        if order.placer_order_number in placers:
            cache[("placer", order.placer_order_number)].append(order)
        key = ("filler", order.source_facility or "", order.filler_order_number or "")
        if key in cache:
            cache[key].append(order)


def _find_order(session: Session, report: LabReport, facility: str) -> LabOrder | None:
    """By placer number (OBR-2, the number we gave the order), else by facility + filler (OBR-3)."""
    cache: dict[tuple[str, ...], list[LabOrder]] = session.info.get(_ORDERS, {})
    placer, filler = report.placer_order_number, report.filler_order_number
    keys = ([("placer", placer)] if placer else []) + ([("filler", facility, filler)] if filler else [])
    if all(k in cache for k in keys):
        return next((cache[k][0] for k in keys if cache[k]), None)
    order = None
    if placer:
        order = session.scalars(select(LabOrder).where(LabOrder.placer_order_number == placer)).first()
    if order is None and filler:
        order = session.scalars(
            select(LabOrder).where(
                and_(LabOrder.source_facility == facility, LabOrder.filler_order_number == filler)
            )
        ).first()
    return order


def _order(session: Session, patient: Patient, report: LabReport, facility: str) -> LabOrder | None:
    order = _find_order(session, report, facility)
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
        # Ids now, not at the flush: the routed event names them and the savepoint's release flushes once.
        id=new_id(),
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
        row = Observation(id=new_id(), sequence=obs.set_id)
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
    lis_message_id = new_id()
    # One statement for the dedupe and the insert (uq_lis_messages_source); rolled back with the
    # record's savepoint if the message is refused below.
    stored = session.execute(
        insert_ignore(
            session,
            LisMessage,
            {
                "id": lis_message_id,
                "source_facility": msg.sending_facility[:100],
                "control_id": msg.control_id[:100],
                "patient_id": patient.id,
                "tier": patient.tier,
                "results": len(msg.reports),
                "received_at": now(),
            },
        ).returning(LisMessage.id)
    ).first()
    if stored is None:
        return  # stored under another processed-message key (a key-format change): same message
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
    urgent = any(o.critical for r in msg.reports for o in r.observations)
    if released or retracted:
        add_event(
            session,
            LabResultsStored(
                lab_message_id=lis_message_id,
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
    name="lis-testresult", decode=decode, handle=handle, message_key=message_key, prepare=prepare
)
