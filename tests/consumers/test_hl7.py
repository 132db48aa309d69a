"""HL7 ORU^R01 parsing: fixtures in, typed messages or reasoned refusals out."""

from __future__ import annotations

import pytest

from booking_consumers.errors import InvalidMessageError
from booking_consumers.hl7_oru import parse_oru


def test_normal(h):
    msg = parse_oru(h.hl7("normal", control_id="C-1", mrn="M-1", order="O-1"))
    assert msg.dedupe_key == "CENTRAL-LAB|C-1"
    assert msg.patient_ids[0].value == "M-1" and msg.patient_ids[0].type_code == "MR"
    (report,) = msg.reports
    assert (report.placer_order_number, report.filler_order_number, report.service_code) == (
        "O-1",
        "ACC-1001",
        "GLU",
    )
    (obs,) = report.observations
    assert obs.value_numeric == 5.1 and obs.unit == "mmol/L"
    assert (obs.reference_low, obs.reference_high, obs.reference_range) == (3.9, 5.5, "3.9-5.5")
    assert obs.flags == ("N",) and not obs.abnormal and obs.status == "final"
    assert obs.observed_at is not None and obs.observed_at.utcoffset() is not None


def test_abnormal_flags_and_one_sided_ranges(h):
    obs = parse_oru(h.hl7("abnormal")).reports[0].observations
    assert [o.flags for o in obs] == [("H",), ("HH",), ("L", "A")]
    assert all(o.abnormal for o in obs) and obs[1].critical and not obs[0].critical
    assert (obs[0].reference_low, obs[0].reference_high) == (None, 5.2)
    assert (obs[2].reference_low, obs[2].reference_high) == (1.0, None)


def test_correction_and_retraction_statuses(h):
    assert parse_oru(h.hl7("corrected")).reports[0].observations[0].status == "corrected"
    retracted = parse_oru(h.hl7("retracted")).reports[0].observations[0]
    assert retracted.status == "entered-in-error" and retracted.value_numeric is None


def test_multi_obr_and_value_types(h):
    msg = parse_oru(h.hl7("multi_obr"))
    assert [r.service_code for r in msg.reports] == ["CBC", "UA"]
    assert [len(r.observations) for r in msg.reports] == [3, 3]
    color, appearance, leuko = msg.reports[1].observations
    assert color.value_text == "Yellow" and appearance.value_text == "Clear"
    assert (leuko.comparator, leuko.value_numeric, leuko.value_text) == ("<", 5.0, "<5")
    assert [p.type_code for p in msg.patient_ids] == ["MR", "SS"]


def test_escapes_are_decoded(h):
    obs = parse_oru(h.hl7("escaped")).reports[0].observations[0]
    assert obs.value_text == "Sample A & B: fragments | no atypia.\nRatio 1^2 \\ reviewed"


@pytest.mark.parametrize(
    ("payload", "reason", "field"),
    [
        (b"", "not_hl7", ""),
        (b"\xff\xfe\x00", "not_utf8", "MSH-18"),
        (b"PID|1||X", "not_hl7", "MSH"),
        (b"MSH|^~\\&|A|F|C|D|20250101||ADT^A01|X|P|2.5\rPID|1||1", "unsupported_message_type", "MSH-9"),
        (b"MSH|^~\\&|A|F|C|D|20250101||ORU^R01||P|2.5\rPID|1||1", "missing_field", "MSH-10"),
        (b"MSH|^~\\&|||C|D|20250101||ORU^R01|X|P|2.5\rPID|1||1\rOBR|1|||T", "missing_field", "MSH-4"),
        (
            b"MSH|^~\\&|A|F|C|D|20250101||ORU^R01|X|P|2.5\rOBR|1|||T\rOBX|1|NM|A||1||||||F",
            "missing_segment",
            "PID",
        ),
        (b"MSH|^~\\&|A|F|C|D|20250101||ORU^R01|X|P|2.5\rPID|1||1", "missing_segment", "OBR"),
        (
            b"MSH|^~\\&|A|F|C|D|20250101||ORU^R01|X|P|2.5\rPID|1||1\rOBX|1|NM|A||1||||||F",
            "missing_segment",
            "OBR",
        ),
        (b"MSH|^~\\&|A|F|C|D|20250101||ORU^R01|X|P|2.5\rPID|1||^^^H^MR\rOBR|1|||T", "missing_field", "PID-3"),
    ],
)
def test_structural_faults_are_refused_with_a_reason_naming_the_field(payload, reason, field):
    with pytest.raises(InvalidMessageError) as info:
        parse_oru(payload)
    assert info.value.reason == reason
    assert field in info.value.detail


def test_a_value_that_does_not_fit_its_type_is_kept_as_flagged_text(h):
    (obs,) = parse_oru(h.hl7("malformed")).reports[0].observations
    assert (obs.value_text, obs.value_numeric, obs.value_flagged) == ("five point one", None, True)


def test_unknown_type_status_and_bad_dates_do_not_cost_the_message():
    msg = parse_oru(
        b"MSH|^~\\&|A|F|C|D|2025-13-45||ORU^R01|X|P|2.5\rPID|1||1\rOBR|1|||T|||20251340\r"
        b"OBX|1|ZZ|A||1||||||Q|||notadate"
    )
    (obs,) = msg.reports[0].observations
    assert msg.message_datetime is None and msg.reports[0].observed_at is None and obs.observed_at is None
    assert (obs.value_text, obs.value_flagged, obs.status) == ("1", True, "registered")


def test_refusal_never_quotes_values():
    with pytest.raises(InvalidMessageError) as info:
        parse_oru(b"MSH|^~\\&|A|F|C|D|20250101||ADT^A01|SECRET-CID|P|2.5\rPID|1||SECRET-MRN^^^H^MR")
    assert info.value.reason == "unsupported_message_type"
    assert "SECRET" not in str(info.value) and "SECRET" not in info.value.detail
