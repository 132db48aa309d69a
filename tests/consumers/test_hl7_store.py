"""lis-testresult storing what real feeds send: comments, sub-ids, misfits, attachments, batches, patients."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from booking_consumers.handlers.lis_patients import parse_rules
from booking_consumers.handlers.lis_testresult import definition
from booking_consumers.runtime import Consumer, Record
from booking_core.db.models import Observation, ProcessedMessage, TestResult
from booking_core.db.models_events import LisMessage

MSH = "MSH|^~\\&|LIS|LAB|PB|H|20250301090000+0700||ORU^R01|{cid}|P|2.5.1"


def hl7(cid: str, *segments: str, pid: str = "PID|1||PAT-1^^^HOSP^MR") -> bytes:
    return "\r".join([MSH.format(cid=cid), pid, *segments]).encode()


def run(sessions, h, values, defn=None):
    """One poll batch through the real loop (one transaction)."""
    transport = h.FakeTransport()
    consumer = Consumer(defn or definition(), transport, sessions, stop=threading.Event(), backoff_max=0.01)
    records = [Record("lis", 0, i, None, v) for i, v in enumerate(values)]
    return consumer.process_batch(records), transport


@pytest.fixture(params=["sqlite", "postgres"])
def sessions(request, h):
    """Both backends: COPY and array statements on PostgreSQL, executemany on SQLite."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_sessions")
    return h.pg_sessions_for(request.getfixturevalue("postgres_url"))


@pytest.fixture
def patient(sessions, h):
    with sessions() as s:
        h.seed_patient(s, "PAT-1")
        s.commit()
    return "PAT-1"


def test_comments_flags_misfits_and_attachments_are_stored(sessions, h, patient):
    outcomes, _ = run(
        sessions,
        h,
        [
            hl7(
                "M1",
                "OBR|1|O1|A1|UA^Urinalysis^L",
                "NTE|1||Fasting sample",
                "OBX|1|NM|PROT^Protein^L||NEG|mg/dL|<15|N|||F",
                "NTE|1||Dipstick~confirmed",
                "OBX|2|ED|PDF^Report^L||LAB^Application^PDF^Base64^JVBERi0=||||||F",
                "OBX|3|NM|GLU^Glucose^L||12.1|mmol/L|3.9-5.5|H~A|||F",
            )
        ],
    )
    assert outcomes == ["processed"]
    with sessions() as s:
        (result,) = s.scalars(select(TestResult)).all()
        assert result.comment == "Fasting sample"
        prot, pdf, glu = result.observations
        assert (prot.value_text, prot.value_numeric, prot.value_flagged, prot.comment) == (
            "NEG",
            None,
            True,
            "Dipstick\nconfirmed",
        )
        assert (pdf.attachment_kind, pdf.attachment_type, pdf.attachment_data) == (
            "ED",
            "application/pdf",
            "JVBERi0=",
        )
        assert (glu.flag, glu.flags, glu.value_numeric) == ("H", "H~A", 12.1)


def test_corrections_match_code_and_sub_id(sessions, h, patient):
    first = hl7(
        "M1",
        "OBR|1|O1|ACC-9|CUL^Urine culture^L",
        "OBX|1|CWE|ORG^Organism^L|1|^E. coli||||||F",
        "OBX|2|CWE|ORG^Organism^L|2|^K. pneumoniae||||||F",
    )
    fix = hl7("M2", "OBR|1|O1|ACC-9|CUL^Urine culture^L", "OBX|1|CWE|ORG^Organism^L|2|^K. oxytoca||||||C")
    assert run(sessions, h, [first])[0] == ["processed"]
    assert run(sessions, h, [fix])[0] == ["processed"]
    with sessions() as s:
        (result,) = s.scalars(select(TestResult)).all()
        assert [(o.sub_id, o.value_text, o.status) for o in result.observations] == [
            ("1", "E. coli", "final"),
            ("2", "K. oxytoca", "corrected"),
        ]


def test_a_correction_in_the_same_batch_as_its_original(sessions, h, patient):
    first = hl7("M1", "OBR|1|O1|ACC-1|GLU^Glucose^L", "OBX|1|NM|GLU^Glucose^L||5.1|mmol/L||N|||F")
    fix = hl7("M2", "OBR|1|O1|ACC-1|GLU^Glucose^L", "OBX|1|NM|GLU^Glucose^L||6.3|mmol/L||H|||C")
    outcomes, _ = run(sessions, h, [first, fix, first])
    assert outcomes == ["processed", "processed", "duplicate"]
    with sessions() as s:
        (result,) = s.scalars(select(TestResult)).all()
        assert [(o.value_numeric, o.status) for o in result.observations] == [(6.3, "corrected")]


def test_cancelled_test_without_results_is_recorded(sessions, h, patient):
    obr = "OBR|1|O1|ACC-2|K^Potassium^L" + "|" * 21 + "X"
    assert run(sessions, h, [hl7("M1", obr, "NTE|1||Haemolysed")])[0] == ["processed"]
    with sessions() as s:
        (result,) = s.scalars(select(TestResult)).all()
        assert (result.status, result.comment, result.observations) == ("cancelled", "Haemolysed", [])


def test_a_batch_record_stores_each_message(sessions, h, patient):
    one = hl7("B1", "OBR|1|O1|ACC-1|GLU", "OBX|1|NM|GLU||5.1||||||F").decode()
    two = one.replace("|B1|", "|B2|").replace("ACC-1", "ACC-2")
    batch = "\r".join(["FHS|^~\\&|LIS", "BHS|^~\\&|LIS", one, two, "BTS|2", "FTS|1"]).encode()
    assert run(sessions, h, [batch, batch])[0] == ["processed", "duplicate"]
    with sessions() as s:
        assert sorted(s.scalars(select(LisMessage.control_id))) == ["B1", "B2"]


def test_patients_are_matched_by_identifier_type_and_authority(sessions, h):
    with sessions() as s:
        h.seed_patient(s, "OURS-1")
        h.seed_patient(s, "123-45-6789")  # a patient whose id happens to equal someone's SSN
        s.commit()
    obr = ["OBR|1|O1|ACC-1|GLU", "OBX|1|NM|GLU||5.1||||||F"]
    ssn_first = "PID|1||123-45-6789^^^SSA^SS~OURS-1^^^&2.16.840.1.113883.19.5&ISO^MR"
    defn = definition(rules=parse_rules(["MR@2.16.840.1.113883.19.5"]))
    outcomes, transport = run(
        sessions,
        h,
        [
            hl7("M1", *obr, pid=ssn_first),
            hl7("M2", *obr, pid="PID|1||OURS-1^^^OTHER^MR"),  # an MR, but from another authority
            hl7("M3", *obr, pid="PID|1||123-45-6789^^^SSA^SS"),  # an SSN only: never our key
        ],
        defn,
    )
    assert outcomes == ["processed", "dead_lettered", "dead_lettered"]
    assert [d[1]["x-dlq-reason"] for d in transport.dlq] == ["unknown_patient", "unknown_patient"]
    with sessions() as s:
        assert s.scalars(select(TestResult.patient_id)).all() == ["OURS-1"]
        # Refused messages leave nothing behind, not even their processed-message key.
        assert s.scalars(select(ProcessedMessage.message_key)).all() == ["hl7:LAB|M1"]
    with pytest.raises(ValueError, match="SS"):
        parse_rules(["SS@*"])


def test_observations_keep_their_position_when_set_ids_repeat(sessions, h, patient):
    msg = hl7(
        "M1",
        "OBR|1|O1|ACC-1|CUL",
        "OBX|1|ST|A||one||||||F",
        "SPM|1|S1",
        "OBX|1|ST|B||two||||||F",
    )
    assert run(sessions, h, [msg])[0] == ["processed"]
    with sessions() as s:
        assert [
            (o.sequence, o.value_text) for o in s.scalars(select(Observation).order_by(Observation.sequence))
        ] == [
            (1, "one"),
            (2, "two"),
        ]


def test_every_valid_corpus_message_is_stored_whole(sessions, h):
    """The public corpus through the real consumer: nothing refused, every observation stored."""
    from booking_consumers.errors import InvalidMessageError
    from booking_consumers.handlers.lis_patients import candidates
    from booking_consumers.hl7_oru import parse_payload

    # The ones the parser accepts; test_hl7_corpus checks that they are exactly the valid ones.
    parsed = {}
    for p in sorted((Path(__file__).parent / "hl7_corpus").rglob("*.*")):
        try:
            parsed[p] = parse_payload(p.read_bytes())
        except InvalidMessageError:
            continue
    valid = list(parsed)
    assert len(valid) >= 40
    rules = parse_rules(["*@*"])  # this corpus's patients are whoever its messages name
    with sessions() as s:
        for pid in {candidates(m, rules)[0] for msgs in parsed.values() for m in msgs}:
            h.seed_patient(s, pid[:64])
        s.commit()
    outcomes, transport = run(sessions, h, [p.read_bytes() for p in valid], definition(rules=rules))
    assert transport.dlq == []
    assert set(outcomes) <= {"processed", "duplicate"}
    # Samples copied from one another share MSH-4 + MSH-10 (stored once, whichever file or batch brings
    # it first) or the same accession and test (later ones update the stored report).
    want: dict[tuple[str, str, str, str | None], str | None] = {}
    seen: set[str] = set()
    for p in valid:
        for m in parsed[p]:
            if m.dedupe_key in seen:
                continue  # the same MSH-4 + MSH-10, in another file or batch: stored once
            seen.add(m.dedupe_key)
            for n, r in enumerate(m.reports, start=1):
                report = r.filler_order_number or f"{m.control_id}#{n}"
                for o in r.observations:
                    want[(m.sending_facility, f"{report}|{r.service_code}", o.code, o.sub_id)] = o.value_text
    keys = {m.dedupe_key for msgs in parsed.values() for m in msgs}
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(LisMessage)) == len(keys)
        rows = s.execute(
            select(TestResult, Observation).join(Observation, Observation.result_id == TestResult.id)
        )
        got = {
            (
                t.source_facility,
                f"{t.filler_order_number or f'{t.source_message_id}#{t.source_set_id}'}|{t.test_code}",
                o.code,
                o.sub_id,
            ): o.value_text
            for t, o in rows
        }
    assert got == want
