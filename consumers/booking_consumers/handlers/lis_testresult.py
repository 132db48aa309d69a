"""`lis-testresult`: HL7 ORU from the LIS -> stored results -> the tier's patient-result topic.

A poll batch is applied in one transaction with a handful of statements, not a savepoint per message:
one multi-row claim of the processed-message keys (the dedupe), one read each of the batch's patients,
lab orders and previously stored reports, then multi-row INSERTs of messages, reports and observations.
Every check that can refuse a message (unknown patient, an order or report of another patient) runs
before anything of it is written, so a refused message leaves nothing behind.

A report already stored for the same order (facility + OBR-3 filler number + OBR-4 test) is updated in
place: OBX-11 `C` replaces a value, `W` hides it from the patient; observations are matched by code and
sub-id. New or corrected reports are routed by the patient's tier through the outbox. The patient is the
one PID-3 names by an identifier type and authority configured as ours; a message naming nobody we know,
or contradicting the order's patient, is refused (DLQ) rather than shown to the wrong person.
Nothing here logs a value or an identifier from the message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, tzinfo
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from booking_consumers.errors import InvalidMessageError
from booking_consumers.handlers._common import cached_patient, now, warm_patients
from booking_consumers.handlers.lis_bulk import OutboxRows, any_of, copy_rows, insert_new_messages
from booking_consumers.handlers.lis_orders import find_order, load_orders
from booking_consumers.handlers.lis_patients import DEFAULT_RULES, IdentifierRule, candidates
from booking_consumers.handlers.lis_rows import apply_update, new_result_rows
from booking_consumers.handlers.lis_zones import place
from booking_consumers.hl7_oru import DEFAULT_OPTIONS, UNKNOWN_TIME_ZONE, ParseOptions, parse_payload
from booking_consumers.runtime import ConsumerDef, Effects, Record, claim_many
from booking_core.db.models import Observation, Patient, ProcessedMessage, TestResult, new_id
from booking_core.events.lis import LabResultMessage
from booking_core.events.results import LabResultsStored, result_topic
from booking_core.outbox import outbox_row

NAME = "lis-testresult"
_RETRACTED = "entered-in-error"
ReportKey = tuple[str, str, str]  # MSH-4, OBR-3 filler number, OBR-4 test code


@dataclass(frozen=True)
class LisPayload:
    """One Kafka record: a message, or every message of a FHS/BHS batch.

    `unplaced` holds the bytes when a timestamp's zone is not configured: `messages` are then read for
    their keys only (times placed in UTC) and the handler parses them again in the clinics' zone.
    """

    messages: tuple[LabResultMessage, ...]
    batch_key: str | None = None
    unplaced: bytes | None = None


def make_decoder(options: ParseOptions) -> Any:
    """A decoder parsing with `options` (time zones)."""

    def decode(record: Record) -> LisPayload:
        """Parse the HL7 bytes (InvalidMessageError for anything malformed)."""
        if not record.value:
            raise InvalidMessageError("empty_message")
        unplaced = None
        try:
            messages = parse_payload(record.value, options)
        except InvalidMessageError as exc:
            if exc.reason != UNKNOWN_TIME_ZONE:
                raise
            # Structurally fine (the zone is the only question): keys now, times from the clinics later.
            messages = parse_payload(record.value, replace(options, default_zone=UTC))
            unplaced = record.value
        key = None if len(messages) == 1 else "sha256:" + hashlib.sha256(record.value).hexdigest()
        return LisPayload(messages, key, unplaced)

    return decode


def message_key(payload: LisPayload, record: Record) -> str:
    """MSH-4 + MSH-10 (a message the LIS resends carries the same pair); a batch by its content."""
    if payload.batch_key is not None:
        return f"hl7batch:{payload.batch_key}"
    return f"hl7:{payload.messages[0].dedupe_key}"


def find_patient(session: Session, msg: LabResultMessage, rules: Sequence[IdentifierRule]) -> Patient:
    """The patient PID-3 names by one of our identifier types and authorities."""
    for value in candidates(msg, rules):
        patient = cached_patient(session, value)
        if patient is not None:
            return patient
    raise InvalidMessageError("unknown_patient", "PID-3")


@dataclass
class _Plan:
    """One accepted message: its patient and, per report, the order and the stored report it updates."""

    msg: LabResultMessage
    patient: Patient
    orders: list[Any]
    lis_id: str = field(default_factory=new_id)


@dataclass
class _Batch:
    """What one transaction writes, in multi-row statements at the end."""

    session: Session
    existing: dict[ReportKey, TestResult]
    results: list[dict[str, Any]] = field(default_factory=list)
    observations: list[dict[str, Any]] = field(default_factory=list)
    created: dict[ReportKey, str] = field(default_factory=dict)  # report key -> new result id
    outbox: OutboxRows = field(default_factory=OutboxRows)

    def flush(self) -> None:
        """Write the pending rows (reports before the observations that point at them)."""
        copy_rows(self.session, TestResult, self.results)
        copy_rows(self.session, Observation, self.observations)
        self.outbox.write(self.session)
        self.results, self.observations = [], []

    def stored(self, key: ReportKey) -> TestResult | None:
        """The stored report for `key`, including one created earlier in this batch."""
        if key in self.existing:
            return self.existing[key]
        if key in self.created:
            self.flush()
            found = self.session.get(TestResult, self.created.pop(key))
            if found is not None:
                self.existing[key] = found
            return found
        return None


def _report_key(msg: LabResultMessage, filler: str | None, code: str) -> ReportKey | None:
    return (msg.sending_facility[:100], filler[:100], code[:64]) if filler else None


def _load_existing(session: Session, msgs: Sequence[LabResultMessage]) -> dict[ReportKey, TestResult]:
    """The stored reports these messages may correct, row-locked, in one query."""
    keys = {
        k
        for m in msgs
        for r in m.reports
        if (k := _report_key(m, r.filler_order_number, r.service_code)) is not None
    }
    if not keys:
        return {}
    # By filler number alone (indexed, one array parameter); facility and test are matched here. Rows of
    # another facility or test with the same number are locked too: harmless, and rare.
    rows = session.scalars(
        select(TestResult)
        .where(any_of(session, TestResult.filler_order_number, sorted({k[1] for k in keys})))
        .order_by(TestResult.received_at)
        .with_for_update()
    )
    found: dict[ReportKey, TestResult] = {}
    for row in rows:
        key = (row.source_facility or "", row.filler_order_number or "", row.test_code)
        if key in keys:
            found.setdefault(key, row)
    return found


def _check(
    session: Session,
    msg: LabResultMessage,
    rules: Sequence[IdentifierRule],
    batch: _Batch,
    planned: dict[ReportKey, str],
) -> _Plan:
    """Everything that can refuse `msg`, decided before any of it is written."""
    patient = find_patient(session, msg, rules)
    orders = []
    for report in msg.reports:
        order = find_order(session, report, msg.sending_facility)
        if order is not None and order.patient_id != patient.id:
            raise InvalidMessageError("patient_order_mismatch", f"OBR[{report.set_id}]-2")
        orders.append(order)
        key = _report_key(msg, report.filler_order_number, report.service_code)
        if key is None:
            continue
        owner = batch.existing[key].patient_id if key in batch.existing else planned.get(key)
        if owner is not None and owner != patient.id:
            raise InvalidMessageError("patient_order_mismatch", f"OBR[{report.set_id}]-3")
        planned.setdefault(key, patient.id)
    return _Plan(msg, patient, orders)


def _store(batch: _Batch, plan: _Plan, stored_at: Any) -> None:
    """Queue the message's reports (new ones as rows, corrections on the stored ones) and route it."""
    msg, patient = plan.msg, plan.patient
    released: list[str] = []
    retracted: list[str] = []
    corrected = False
    for position, (report, order) in enumerate(zip(msg.reports, plan.orders, strict=True), start=1):
        key = _report_key(msg, report.filler_order_number, report.service_code)
        existing = batch.stored(key) if key is not None else None
        if existing is None:
            if report.observations and all(o.status == _RETRACTED for o in report.observations):
                continue  # retracting something never stored
            result, observations = new_result_rows(
                patient_id=patient.id,
                msg=msg,
                report=report,
                position=position,
                order_id=order.id if order else None,
                booking_id=order.booking_id if order else None,
                now=stored_at,
            )
            batch.results.append(result)
            batch.observations += observations
            if key is not None:
                batch.created[key] = result["id"]
            released.append(result["id"])
        elif apply_update(existing, report):
            corrected = True
            released.append(existing.id)
        else:
            retracted.append(existing.id)
    urgent = any(o.critical for r in msg.reports for o in r.observations)
    if released or retracted:
        batch.outbox.add(
            outbox_row(
                LabResultsStored(
                    lab_message_id=plan.lis_id,
                    patient_id=patient.id,
                    tier=patient.tier,
                    result_ids=tuple(released),
                    retracted_result_ids=tuple(retracted),
                    corrected=corrected,
                    urgent=urgent,
                ),
                occurred_at=stored_at,
                topic=result_topic(patient.tier),
            )
        )


def _insert_messages(session: Session, plans: Sequence[_Plan], stored_at: Any) -> set[str]:
    """The `lis_messages` rows (a second guard, unique on MSH-4 + MSH-10); ids of those not stored before."""
    return insert_new_messages(
        session,
        [
            {
                "id": p.lis_id,
                "source_facility": p.msg.sending_facility[:100],
                "control_id": p.msg.control_id[:100],
                "patient_id": p.patient.id,
                "tier": p.patient.tier,
                "results": len(p.msg.reports),
                "received_at": stored_at,
            }
            for p in plans
        ],
    )


def _placed(
    session: Session, events: Sequence[tuple[LisPayload, str]], options: ParseOptions
) -> tuple[list[tuple[LisPayload, str]], dict[int, InvalidMessageError]]:
    """Events with unplaced timestamps parsed in their clinic's zone, and those still unplaced (refused)."""
    out: list[tuple[LisPayload, str]] = []
    refused: dict[int, InvalidMessageError] = {}
    cache: dict[str, tzinfo | None] = {}  # sender -> zone, for this batch's transaction
    for i, (payload, key) in enumerate(events):
        if payload.unplaced is not None:
            try:
                payload = LisPayload(
                    place(session, payload.unplaced, payload.messages, options, cache), payload.batch_key
                )
            except InvalidMessageError as exc:
                refused[i] = exc
        out.append((payload, key))
    return out, refused


def make_batch_handler(rules: Sequence[IdentifierRule], options: ParseOptions = DEFAULT_OPTIONS) -> Any:
    """The batch handler, matching patients by `rules` and placing unzoned timestamps as `options` say."""

    def handle_batch(
        session: Session, events: Sequence[tuple[LisPayload, str]]
    ) -> list[str | InvalidMessageError]:
        """Store a transaction's messages in a few multi-row statements and route each by tier."""
        outcomes: list[str | InvalidMessageError] = ["duplicate"] * len(events)
        events, unplaced = _placed(session, events, options)
        fresh = claim_many(session, NAME, [key for _, key in events])  # the batch's one dedupe query
        todo: list[int] = []
        first: dict[str, int] = {}  # key -> the index of its first copy in this batch
        copies: list[tuple[int, int]] = []
        for i, (_, key) in enumerate(events):
            if key in first:
                copies.append((i, first[key]))
            elif key in fresh:
                first[key] = i
                todo.append(i)
        msgs = [m for i in todo if i not in unplaced for m in events[i][0].messages]
        warm_patients(session, {v for m in msgs for v in candidates(m, rules)})
        load_orders(session, msgs)
        batch = _Batch(session, _load_existing(session, msgs))
        planned: dict[ReportKey, str] = {}
        plans: list[_Plan] = []
        refused_keys: list[str] = []
        for i in todo:
            payload, key = events[i]
            if i in unplaced:
                outcomes[i] = unplaced[i]
                refused_keys.append(key)
                continue
            try:
                record_plans = [_check(session, m, rules, batch, planned) for m in payload.messages]
            except InvalidMessageError as exc:
                outcomes[i] = exc
                refused_keys.append(key)
                continue
            plans += record_plans
            outcomes[i] = "processed"
        if refused_keys:
            # Refused after the claim: un-claim, so that a redelivery after the fix is not a duplicate.
            session.execute(
                delete(ProcessedMessage).where(
                    ProcessedMessage.consumer == NAME, ProcessedMessage.message_key.in_(refused_keys)
                )
            )
        stored_at = now()
        new = _insert_messages(session, plans, stored_at)
        for plan in plans:
            if plan.lis_id in new:  # else stored before under another processed-message key
                _store(batch, plan, stored_at)
        batch.flush()
        session.flush()
        for i, original in copies:
            # A second copy in the same batch shares its first copy's fate: stored once, or refused twice.
            if isinstance(outcomes[original], InvalidMessageError):
                outcomes[i] = outcomes[original]
        return outcomes

    return handle_batch


def _unused_handle(session: Session, payload: LisPayload, effects: Effects) -> None:
    raise NotImplementedError("lis-testresult applies whole batches (handle_batch)")


def definition(
    options: ParseOptions = DEFAULT_OPTIONS, rules: Sequence[IdentifierRule] = DEFAULT_RULES
) -> ConsumerDef[LisPayload]:
    """The consumer, parsing with `options` and matching patients by `rules`."""
    return ConsumerDef(
        name=NAME,
        decode=make_decoder(options),
        handle=_unused_handle,
        message_key=message_key,
        handle_batch=make_batch_handler(rules, options),
    )


DEFINITION = definition()
