"""HL7 framing, encodings, every OBX-5 value type, statuses, codes, comments and time zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from booking_consumers.errors import InvalidMessageError
from booking_consumers.hl7_oru import ParseOptions, parse_oru, parse_payload

MSH = "MSH|^~\\&|LIS|LAB|PB|H|20250301090000+0700||ORU^R01|C1|P|2.5.1"
PID = "PID|1||M1^^^H^MR"
OBR = "OBR|1|O1|A1|GLU^Glucose^L|||20250301070000+0700"


def one(*obx: str, msh: str = MSH, obr: str = OBR, sep: str = "\r") -> bytes:
    return sep.join([msh, PID, obr, *obx]).encode()


def obs(value_type: str, value: str, status: str = "F"):
    return parse_oru(one(f"OBX|1|{value_type}|X^Test^L||{value}||||||{status}")).reports[0].observations[0]


# -- framing and encodings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wrap",
    [
        lambda b: b,
        lambda b: b"\xef\xbb\xbf" + b,  # UTF-8 BOM
        lambda b: b"\x0b" + b + b"\x1c\x0d",  # MLLP start and end blocks
        lambda b: b.replace(b"\r", b"\n"),
        lambda b: b.replace(b"\r", b"\r\n") + b"\r\n",
    ],
    ids=["cr", "bom", "mllp", "lf", "crlf"],
)
def test_framing_and_segment_separators(wrap):
    msg = parse_oru(wrap(one("OBX|1|NM|X^Test^L||5.1|mmol/L|3.9-5.5|N|||F", "NTE|1||fasting")))
    (o,) = msg.reports[0].observations
    assert (msg.control_id, o.value_numeric, o.unit, o.comment) == ("C1", 5.1, "mmol/L", "fasting")


def test_latin1_feed_declared_in_msh18():
    msh = MSH + "||||||8859/1"
    payload = one("OBX|1|ST|X^Test^L||Erhöht||||||F", "NTE|1||Müller", msh=msh)
    latin1 = payload.decode().encode("latin-1")
    o = parse_oru(latin1).reports[0].observations[0]
    assert (o.value_text, o.comment) == ("Erhöht", "Müller")


def test_utf8_declared_as_unicode():
    o = parse_oru(one("OBX|1|ST|X^Test^L||Tăng cao||||||F", msh=MSH + "||||||UNICODE UTF-8")).reports[0]
    assert o.observations[0].value_text == "Tăng cao"


def test_undeclared_latin1_is_refused_not_garbled():
    from booking_consumers.errors import InvalidMessageError

    with pytest.raises(InvalidMessageError) as info:
        parse_oru(one("OBX|1|ST|X^Test^L||Erhöht||||||F").decode().encode("latin-1"))
    assert info.value.reason == "not_utf8" and info.value.detail == "MSH-18"


def test_non_default_encoding_characters():
    text = (
        "MSH!$%*@!LIS!LAB!PB!H!20250301090000+0700!!ORU$R01!C1!P!2.5.1\r"
        "PID!1!!M1$$$H@2.16.1$MR\r"
        "OBR!1!O1!A1!GLU$Glucose$L\r"
        "OBX!1!CWE!X$Test$L!!POS$Positive *F* 1*S*2$L!!!A%H!!!F"
    )
    msg = parse_oru(text.encode())
    o = msg.reports[0].observations[0]
    assert (o.value_text, o.flags) == ("Positive ! 1$2", ("A", "H"))
    assert (msg.patient_ids[0].authority, msg.patient_ids[0].authority_oid) == ("H", "2.16.1")


def test_escape_sequences_are_decoded():
    o = obs("TX", r"a\F\b\S\c\T\d\R\e\E\f\X41\\.br\next")
    assert o.value_text == "a|b^c&d~e\\fA\nnext"


# -- every OBX-5 value type -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text", "numeric", "comparator"),
    [
        ("<^5", "<5", 5.0, "<"),
        ("^182", "182", 182.0, None),
        ("^1^:^128", "1:128", None, None),
        ("^10^-^20", "10-20", None, None),
        (">=^2.5", ">=2.5", 2.5, ">="),
        ("^2^+", "2+", None, None),
    ],
)
def test_structured_numeric(value, text, numeric, comparator):
    o = obs("SN", value)
    assert (o.value_text, o.value_numeric, o.comparator, o.value_flagged) == (
        text,
        numeric,
        comparator,
        False,
    )


def test_numeric_and_a_number_that_is_not_one():
    assert (obs("NM", "7.9").value_numeric, obs("NM", "<0.5").comparator) == (7.9, "<")
    neg = obs("NM", "NEG")
    assert (neg.value_text, neg.value_numeric, neg.value_flagged) == ("NEG", None, True)


def test_a_misfit_value_does_not_cost_the_sibling_groups():
    msg = parse_oru(
        one(
            "OBX|1|NM|X^Test^L||NEG||||||F",
            "OBR|2|O1|A2|CBC^CBC^L",
            "OBX|1|NM|718-7^Hb^LN||13.2|g/dL|12-16|N|||F",
        )
    )
    assert [r.observations[0].value_text for r in msg.reports] == ["NEG", "13.2"]


@pytest.mark.parametrize(
    ("value_type", "value", "text"),
    [
        ("CWE", "^Bordetella pertussis^SNM", "Bordetella pertussis"),
        ("CE", "L-12345^^SNM", "L-12345"),
        ("CWE", "^^^POS^Positive^L", "Positive"),
        ("CNE", "260373001^Detected^SCT~10828004^Positive^SCT", "Detected; Positive"),
        ("ST", "Clear", "Clear"),
        ("TX", "line a~line b~line c", "line a\nline b\nline c"),
        ("FT", r"para one\.br\para two~para three", "para one\npara two\npara three"),
        ("XTN", "^PRN^PH^^1^555^5551234^12", "+1 (555) 5551234 ext. 12"),
        ("XTN", "(206)3345232", "(206)3345232"),
        (
            "XAD",
            "2222 Home Street^Apt 2^Ann Arbor^MI^99999^USA",
            "2222 Home Street, Apt 2, Ann Arbor, MI 99999, USA",
        ),
        ("XPN", "Everyman^Adam^A^Jr^Dr", "Dr Adam A Everyman Jr"),
        ("XCN", "1234^Admit^Alan^A^III^Dr", "Dr Alan A Admit III"),
        ("DT", "20250301", "2025-03-01"),
        ("DTM", "202503010730-0500", "2025-03-01 07:30 -0500"),
        ("TS", "20250301073015", "2025-03-01 07:30:15"),
        ("TM", "0730", "07:30"),
        ("CP", "12.50&USD^UP", "12.50 USD"),
        ("NA", "1^2.5^3", "1, 2.5, 3"),
        ("DR", "20250101^20250131", "2025-01-01 to 2025-01-31"),
        ("ZZ", "whatever^else", "whatever else"),
    ],
)
def test_every_value_type_reads_as_text(value_type, value, text):
    assert obs(value_type, value).value_text == text


def test_attachments_are_kept_never_empty_never_refused():
    ed = obs("ED", "LAB^Application^PDF^Base64^JVBERi0xLjQK")
    assert ed.attachment is not None
    assert (ed.attachment.kind, ed.attachment.mime_type, ed.attachment.encoding, ed.attachment.data) == (
        "ED",
        "application/pdf",
        "Base64",
        "JVBERi0xLjQK",
    )
    assert ed.value_text == "Attachment (application/pdf)"
    rp = obs("RP", "https://lab.example/r/1^LAB^image^JPEG")
    assert rp.attachment is not None and rp.attachment.data == "https://lab.example/r/1"
    assert rp.value_text and not rp.value_flagged


# -- header, codes, statuses, comments ------------------------------------------------------------------


def test_sending_facility_from_hd2_or_msh3():
    assert (
        parse_oru(one("OBX|1|ST|X||a", msh=MSH.replace("|LAB|", "|^1234^CLIA|"))).sending_facility == "1234"
    )
    assert parse_oru(one("OBX|1|ST|X||a", msh=MSH.replace("|LIS|LAB|", "|LIS||"))).sending_facility == "LIS"


def test_message_type_without_trigger_event():
    msh = "MSH|^~\\&|LIS|LAB|PB|H|19940502161633||ORU|C1|D|2.2"
    assert parse_oru(one("OBX|1|ST|X||a", msh=msh)).version == "2.2"


@pytest.mark.parametrize(
    ("obx11", "obr25", "status"),
    [
        ("O", "", "registered"),
        ("N", "", "cancelled"),
        ("U", "", "final"),
        ("X", "", "cancelled"),
        ("", "P", "preliminary"),
        ("", "C", "corrected"),
        ("", "", "final"),
    ],
)
def test_result_status_with_obr25_fallback(obx11, obr25, status):
    obr = OBR + "|" * 18 + obr25
    msg = parse_oru(one(f"OBX|1|ST|X||a||||||{obx11}", obr=obr))
    assert msg.reports[0].observations[0].status == status


def test_cancelled_test_without_results_is_recorded():
    obr = "OBR|1|O1|A1|GLU^Glucose^L" + "|" * 21 + "X"
    msg = parse_oru(one("NTE|1||Specimen haemolysed", obr=obr))
    (report,) = msg.reports
    assert (report.status, report.observations, report.comment) == ("cancelled", (), "Specimen haemolysed")


def test_alternate_codes_and_sub_ids():
    msg = parse_oru(
        one(
            "OBX|1|CWE|^^^ORG^Organism^L|1|^E. coli||||||F",
            "OBX|2|CWE|^^^ORG^Organism^L|2|^K. pneumoniae||||||F",
            obr="OBR|1|O1|A1|^^^CUL^Urine culture^L",
        )
    )
    (report,) = msg.reports
    assert (report.service_code, report.service_name) == ("CUL", "Urine culture")
    assert [(o.code, o.sub_id, o.value_text) for o in report.observations] == [
        ("ORG", "1", "E. coli"),
        ("ORG", "2", "K. pneumoniae"),
    ]


def test_comments_stay_with_their_report_and_observation():
    msg = parse_oru(
        one("NTE|1||Fasting sample", "OBX|1|NM|X||9.9|||H|||F", "NTE|1||Repeated~Confirmed", "NTE|2||Called")
    )
    (report,) = msg.reports
    assert report.comment == "Fasting sample"
    assert report.observations[0].comment == "Repeated\nConfirmed\nCalled"


# -- time zones and batches -------------------------------------------------------------------------------


def test_timestamps_without_offset_take_msh7s_offset():
    msg = parse_oru(one("OBX|1|ST|X||a||||||F|||20250301080000", obr="OBR|1|O1|A1|GLU|||20250301070000"))
    assert msg.reports[0].observed_at == datetime(2025, 3, 1, 0, 0, tzinfo=UTC)
    assert msg.reports[0].observations[0].observed_at == datetime(
        2025, 3, 1, 8, 0, tzinfo=timezone(timedelta(hours=7))
    )


def test_timestamps_without_any_offset_take_the_facility_zone_else_the_default():
    msh = "MSH|^~\\&|LIS|LAB|PB|H|20250701090000||ORU^R01|C1|P|2.5.1"
    payload = one("OBX|1|ST|X||a", msh=msh, obr="OBR|1|O1|A1|GLU|||20250701070000")
    berlin = ParseOptions(
        default_zone=ZoneInfo("Asia/Ho_Chi_Minh"), facility_zones={"LAB": ZoneInfo("Europe/Berlin")}
    )
    assert parse_oru(payload, berlin).reports[0].observed_at == datetime(2025, 7, 1, 5, 0, tzinfo=UTC)
    other = ParseOptions(default_zone=ZoneInfo("Asia/Ho_Chi_Minh"))
    assert parse_oru(payload, other).reports[0].observed_at == datetime(2025, 7, 1, 0, 0, tzinfo=UTC)


def test_without_a_zone_a_timestamp_without_offset_is_refused_naming_the_field():
    unknown = ParseOptions(default_zone=None)
    naive_msh = "MSH|^~\\&|LIS|LAB|PB|H|20250701090000||ORU^R01|C1|P|2.5.1"
    with pytest.raises(InvalidMessageError, match="MSH-7 has no UTC offset") as exc:
        parse_oru(one("OBX|1|ST|X||a", msh=naive_msh), unknown)
    assert exc.value.reason == "unknown_time_zone"
    dated_obx = one("OBX|1|ST|X||a||||||F|||20250301080000", msh=naive_msh.replace("090000|", "090000+0700|"))
    assert parse_oru(dated_obx, unknown).reports[0].observations[0].observed_at == datetime(
        2025, 3, 1, 1, 0, tzinfo=UTC
    )  # MSH-7's offset is the sender's zone
    no_dates = "MSH|^~\\&|LIS|LAB|PB|H|||ORU^R01|C1|P|2.5.1"
    assert parse_oru(one("OBX|1|ST|X||a", msh=no_dates), unknown).message_datetime is None
    with pytest.raises(InvalidMessageError, match=r"OBR\[1\]-7"):
        parse_oru(one("OBX|1|ST|X||a", msh=no_dates, obr="OBR|1|O1|A1|GLU|||20250701070000"), unknown)
    with pytest.raises(InvalidMessageError, match=r"OBX\[1\]-14"):
        parse_oru(one("OBX|1|ST|X||a||||||F|||20250301080000", msh=no_dates), unknown)


def test_batch_envelope_is_split():
    first = one("OBX|1|ST|X||a").decode()
    second = first.replace("|C1|", "|C2|")
    batch = "\r".join(["FHS|^~\\&|LIS", "BHS|^~\\&|LIS", first, second, "BTS|2", "FTS|1"])
    assert [m.control_id for m in parse_payload(batch.encode())] == ["C1", "C2"]
