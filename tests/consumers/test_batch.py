"""A poll batch on PostgreSQL with the real lis-testresult handler: one transaction, multi-row writes."""

from __future__ import annotations

from sqlalchemy import event, func, select

from booking_consumers.handlers.registry import definition
from booking_consumers.runtime import Consumer, Record
from booking_core.db.models import LabOrder, OutboxMessage, ProcessedMessage, TestResult
from booking_core.db.models_events import DeadLetter, LisMessage


def test_lis_batch_with_poison_in_the_middle_commits_once_on_postgres(postgres_url, h):
    sessions = h.pg_sessions_for(postgres_url)
    with sessions() as s:
        h.seed_patient(s, "PAT-1")
        h.seed_patient(s, "PAT-2")
        h.seed_patient(s, "PAT-V", tier="svip2")
        s.add(LabOrder(patient_id="PAT-2", placer_order_number="ORD-OTHER", source_facility="CENTRAL-LAB"))
        s.commit()
    values = [
        h.hl7("normal", control_id="M1"),
        h.hl7("abnormal", control_id="M2", order="O2"),
        h.hl7("wrong_patient", control_id="M4"),  # unknown patient: DLQ
        h.hl7("normal", control_id="M1"),  # resent: duplicate
        h.hl7("corrected", control_id="C1"),  # corrects M1's report, stored earlier in this transaction
        h.hl7("normal", control_id="M6", order="ORD-OTHER"),  # another patient's order: DLQ
        h.hl7("malformed", control_id="M5"),  # NM "five point one": stored as flagged text
        h.hl7("multi_obr", control_id="M3", mrn="PAT-V", order="O3"),
    ]
    records = [Record("lis", 0, i, b"k", v) for i, v in enumerate(values)]
    transport = h.FakeTransport(batches=[records])
    commits = []
    event.listen(sessions.kw["bind"], "commit", lambda _conn: commits.append(1))
    consumer = Consumer(definition("lis-testresult"), transport, sessions)

    assert consumer.run_batch() == len(values)

    assert len(commits) == 1
    assert transport.done_offsets == list(range(len(values))) and transport.commits == 1
    assert [(hdrs["x-dlq-reason"], r.offset) for r, hdrs in transport.dlq] == [
        ("unknown_patient", 2),
        ("patient_order_mismatch", 5),
    ]
    with sessions() as s:
        assert sorted(s.scalars(select(LisMessage.control_id))) == ["C1", "M1", "M2", "M3", "M5"]
        assert s.scalar(select(func.count()).select_from(ProcessedMessage)) == 5
        assert sorted(s.scalars(select(DeadLetter.source_offset))) == [2, 5]
        glu = s.scalars(select(TestResult).where(TestResult.filler_order_number == "ACC-1001")).one()
        assert glu.status == "corrected" and glu.patient_id == "PAT-1"
        routed = s.scalar(select(func.count()).where(OutboxMessage.event_type == "lab_results.stored"))
        assert routed == 5  # M1, M2, the correction, M5, M3: nothing from a refused record
