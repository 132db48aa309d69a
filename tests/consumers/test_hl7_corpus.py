"""The HL7 v2 corpus (tests/consumers/hl7_corpus, public messages written by others; see its SOURCES.md).

Every message a lab could legitimately send must be accepted with every OBX value, unit, range, flag,
status and comment preserved; every malformed one must be refused for its real fault. "Preserved" is
checked against a reading made here by a deliberately naive splitter (split on the separators, a small
unescape table), not against the parser's own output, plus hand-written expectations for the cases the
issue names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from booking_consumers.errors import InvalidMessageError
from booking_consumers.hl7_oru import parse_payload
from booking_core.events.lis import LabObservation, LabReport, LabResultMessage

CORPUS = Path(__file__).parent / "hl7_corpus"
FILES = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name != "SOURCES.md")

# The malformed ones and their real fault: (reason, the field the detail must name).
EXPECTED_REFUSALS = {
    "ruby-hl7/empty.hl7": ("not_hl7", ""),  # zero bytes
    "ruby-hl7/empty-batch.hl7": ("not_hl7", "MSH"),  # FHS/BHS/BTS/FTS and no message
    "ruby-hl7/adt_a01.hl7": ("unsupported_message_type", "MSH-9"),
    "ruby-hl7/rqi_r04.hl7": ("unsupported_message_type", "MSH-9"),
    "ruby-hl7/test2.hl7": ("unsupported_message_type", "MSH-9"),  # ORM^O01
    "ruby-hl7/lotsunknowns.hl7": ("unsupported_message_type", "MSH-9"),  # ORM^O01
    "fhir-converter/ADT-A01-01.hl7": ("unsupported_message_type", "MSH-9"),
    "fhir-converter/MDM-T02-01.hl7": ("unsupported_message_type", "MSH-9"),
    "hapi-hl7v2/cv.04_001_chem.hl7": ("unsupported_message_type", "MSH-9"),  # ERP^Z99 query response
    "node-hl7-complete/bad-phone-example.hl7": ("unsupported_message_type", "MSH-9"),  # SIU^S12
    "python-hl7/sample_batch1.hl7": ("unsupported_message_type", "MSH-9"),  # a batch of ADT^A04
    "linuxforhealth/CodeableConceptTest-L356.hl7": ("missing_field", "MSH-4"),  # no sender at all
    "linuxforhealth/FHIRConverterTest-L329.hl7": ("missing_field", "PID-3"),  # PID-3 empty
    "linuxforhealth/Hl7ObservationFHIRConversionTest-L494.hl7": ("missing_field", "PID-3"),
    "linuxforhealth/Hl7MessageTest-L401.hl7": ("missing_segment", "OBR"),  # ORU with PID only
}

# -- the naive reading ---------------------------------------------------------------------------------

OBX11 = {"F": "final", "C": "corrected", "W": "entered-in-error", "D": "entered-in-error", "P": "preliminary"}
OBX11 |= {"R": "preliminary", "S": "preliminary", "I": "registered", "O": "registered", "U": "final"}
OBX11 |= {"X": "cancelled", "N": "cancelled"}
OBR25 = {"F": "final", "C": "corrected", "P": "preliminary", "A": "preliminary", "R": "preliminary"}
OBR25 |= {"O": "registered", "I": "registered", "S": "registered", "X": "cancelled"}
# PRT (participation, v2.7+) sits between an OBX and its NTEs: it does not end the OBX.
STRUCTURE = {"OBR", "ORC", "SPM", "OBX", "PID", "TQ1", "CTD", "FT1", "CTI", "TXA", "PV1", "NK1"}


@dataclass
class NaiveMessage:
    sep: dict[str, str]
    segments: list[list[str]]


@dataclass
class NaiveObx:
    fields: list[str]
    comments: list[str] = field(default_factory=list)


@dataclass
class NaiveGroup:
    obr: list[str] | None
    comments: list[str] = field(default_factory=list)
    obx: list[NaiveObx] = field(default_factory=list)


def naive_messages(raw: bytes) -> list[NaiveMessage]:
    text = raw.decode("utf-8", "replace").lstrip("\ufeff").strip("\x0b\x1c\r\n ")
    lines = [ln for ln in text.replace("\r\n", "\r").replace("\n", "\r").split("\r") if ln.strip()]
    out: list[NaiveMessage] = []
    for ln in lines:
        if ln[:3] in {"FHS", "BHS", "BTS", "FTS"}:
            continue
        if ln.startswith("MSH"):
            fs = ln[3]
            enc = ln[4:].split(fs)[0]
            esc = enc[2] if len(enc) > 2 and enc[2] != "&" else None
            out.append(NaiveMessage({"f": fs, "c": enc[0], "r": enc[1], "e": esc or ""}, []))
            fields = ln.split(fs)
            out[-1].segments.append(["MSH", fs, *fields[1:]])
        elif ln[:3].isalnum() and ln[:3].isupper() and len(ln) > 3 and ln[3] == out[-1].sep["f"]:
            out[-1].segments.append(ln.split(out[-1].sep["f"]))
        else:  # a continuation line
            out[-1].segments[-1][-1] += "\n" + ln
    return out


def unesc(value: str, sep: dict[str, str]) -> str:
    e = sep["e"]
    if not e:
        return value
    for code, char in (("F", sep["f"]), ("S", sep["c"]), ("R", sep["r"]), ("T", "&"), (".br", "\n")):
        value = value.replace(f"{e}{code}{e}", char)
    return value.replace(f"{e}E{e}", e)


def fld(seg: list[str], n: int) -> str:
    return seg[n] if n < len(seg) else ""


def comp(value: str, sep: dict[str, str], n: int) -> str:
    parts = value.split(sep["r"])[0].split(sep["c"])
    return unesc(parts[n - 1].split("&")[0], sep).strip() if n <= len(parts) else ""


def groups_of(msg: NaiveMessage) -> list[NaiveGroup]:
    groups: list[NaiveGroup] = []
    last: NaiveObx | None = None
    in_obr = False
    for seg in msg.segments:
        name = seg[0]
        if name == "OBR":
            groups.append(NaiveGroup(seg))
            last, in_obr = None, True
        elif name == "OBX":
            if not groups or not in_obr:
                groups.append(NaiveGroup(None))
                in_obr = True
            last = NaiveObx(seg)
            groups[-1].obx.append(last)
        elif name == "NTE":
            text = "\n".join(unesc(r, msg.sep) for r in fld(seg, 3).split(msg.sep["r"])).strip()
            if last is not None:
                last.comments.append(text)
            elif groups and groups[-1].obr is not None and in_obr:
                groups[-1].comments.append(text)
        elif name in STRUCTURE:
            last = None
            if name in {"ORC", "PID"}:
                in_obr = False
    return groups


# -- the comparison ------------------------------------------------------------------------------------


def expected_status(obx: list[str], obr: list[str] | None, sep: dict[str, str]) -> str:
    code = comp(fld(obx, 11), sep, 1).upper()
    if code:
        return OBX11.get(code, "registered")
    code = comp(fld(obr or [], 25), sep, 1).upper()
    return OBR25.get(code, "registered") if code else "final"


def check_value(o: LabObservation, raw: str, vtype: str, sep: dict[str, str], where: str) -> list[str]:
    """Problems with OBX-5's reading; [] when nothing was lost or changed."""
    if not raw.strip(sep["r"] + sep["c"] + " "):
        return [] if o.value_text is None and o.value_numeric is None else [f"{where}: value out of nothing"]
    if not o.value_text:
        return [f"{where}: OBX-5 silently empty"]
    reps = [r for r in raw.split(sep["r"]) if r]
    comps = [unesc(c, sep).strip() for c in reps[0].split(sep["c"])]
    if vtype == "NM" and not o.value_flagged:
        got = o.value_numeric
        want = float(comps[0].lstrip("<>=")) if comps[0] else None
        return [] if got == want else [f"{where}: NM {got} != {want}"]
    if vtype == "SN" and not o.value_flagged:
        want = "".join(comps)
        return [] if o.value_text == want else [f"{where}: SN {o.value_text!r} != {want!r}"]
    if vtype in {"CE", "CWE", "CNE"}:
        c = comps + [""] * 9
        want = c[1] or c[4] or c[8] or c[0] or c[3]
        return [] if o.value_text.split("; ")[0] == want else [f"{where}: coded {o.value_text!r} != {want!r}"]
    if vtype in {"ST", "TX", "FT"}:
        want = "\n".join(unesc(r, sep) for r in reps).strip()
        return [] if o.value_text == want else [f"{where}: text {o.value_text!r} != {want!r}"]
    if vtype in {"ED", "RP"} and o.attachment is not None:
        want = comps[0] if vtype == "RP" else sep["c"].join(comps[4:])
        return [] if o.attachment.data == want else [f"{where}: attachment data differs"]
    # Anything else (and flagged values): every word sent must be readable in the stored text.
    words = [w for r in reps for c in r.split(sep["c"]) for w in unesc(c, sep).replace("&", " ").split()]
    missing = [w for w in words if w not in o.value_text]
    return [f"{where}: lost {missing}"] if missing else []


def check_observation(
    o: LabObservation, n: NaiveObx, group: NaiveGroup, sep: dict[str, str], where: str
) -> list[str]:
    f = n.fields
    problems = []
    code = comp(fld(f, 3), sep, 1) or comp(fld(f, 3), sep, 4) or comp(fld(f, 3), sep, 2)
    if code and o.code != code:
        problems.append(f"{where}: code {o.code!r} != {code!r}")
    unit = comp(fld(f, 6), sep, 1) or comp(fld(f, 6), sep, 2) or None
    if o.unit != unit:
        problems.append(f"{where}: unit {o.unit!r} != {unit!r}")
    ref = unesc(fld(f, 7), sep).strip() or None
    if o.reference_range != ref:
        problems.append(f"{where}: range {o.reference_range!r} != {ref!r}")
    flags = tuple(
        x.split(sep["c"])[0].strip().upper()
        for x in fld(f, 8).split(sep["r"])
        if x.split(sep["c"])[0].strip()
    )
    if o.flags != flags:
        problems.append(f"{where}: flags {o.flags} != {flags}")
    status = expected_status(f, group.obr, sep)
    if o.status != status:
        problems.append(f"{where}: status {o.status} != {status}")
    sub_id = unesc(fld(f, 4), sep).strip() or None
    if o.sub_id != sub_id:
        problems.append(f"{where}: sub-id {o.sub_id!r} != {sub_id!r}")
    for c in n.comments:
        if c and (o.comment is None or c not in o.comment):
            problems.append(f"{where}: comment lost")
    vtype = comp(fld(f, 2), sep, 1).upper()
    return problems + check_value(o, fld(f, 5), vtype, sep, where)


def compare(parsed: tuple[LabResultMessage, ...], naive: list[NaiveMessage]) -> list[str]:
    """Every difference between the parser's reading and the naive one."""
    reports: list[LabReport] = [r for m in parsed for r in m.reports]
    groups = [(g, m.sep) for m in naive for g in groups_of(m)]
    if len(reports) != len(groups):
        return [f"{len(reports)} reports, the naive reading finds {len(groups)}"]
    problems = []
    for i, (report, (group, sep)) in enumerate(zip(reports, groups, strict=True)):
        if len(report.observations) != len(group.obx):
            problems.append(f"OBR #{i + 1}: {len(report.observations)} OBX != {len(group.obx)}")
            continue
        for c in group.comments:
            if c and (report.comment is None or c not in report.comment):
                problems.append(f"OBR #{i + 1}: comment lost")
        for j, (o, n) in enumerate(zip(report.observations, group.obx, strict=True)):
            problems += check_observation(o, n, group, sep, f"OBR #{i + 1} OBX #{j + 1}")
    return problems


# -- the suite -----------------------------------------------------------------------------------------


def _name(p: Path) -> str:
    return p.relative_to(CORPUS).as_posix()


def outcome(path: Path) -> tuple[str, str]:
    """("accepted-correct" | "rejected-rightly" | "misread" | "rejected-wrongly", why)."""
    raw = path.read_bytes()
    refusal = EXPECTED_REFUSALS.get(_name(path))
    try:
        parsed = parse_payload(raw)
    except InvalidMessageError as exc:
        if refusal and exc.reason == refusal[0] and refusal[1] in exc.detail:
            return "rejected-rightly", exc.reason
        return "rejected-wrongly", f"{exc.reason} {exc.detail}"
    if refusal:
        return "misread", f"accepted, expected {refusal}"
    problems = compare(parsed, naive_messages(raw))
    return ("misread", "; ".join(problems[:5])) if problems else ("accepted-correct", "")


def test_corpus_has_forty_messages_from_five_sources():
    sources = {p.relative_to(CORPUS).parts[0] for p in FILES}
    assert len(FILES) >= 40 and len(sources) >= 5
    listed = (CORPUS / "SOURCES.md").read_text()
    unlisted = [p.name for p in FILES if re.sub(r"-L\d+\.hl7$", "", p.name) not in listed]
    assert not unlisted, f"origin not recorded in SOURCES.md: {unlisted}"


def test_corpus_summary(capsys):
    counts = {"accepted-correct": 0, "rejected-rightly": 0, "misread": 0, "rejected-wrongly": 0}
    failures = []
    for path in FILES:
        kind, why = outcome(path)
        counts[kind] += 1
        if kind in {"misread", "rejected-wrongly"}:
            failures.append(f"{_name(path)}: {kind}: {why}")
    line = (
        f"HL7 corpus: {len(FILES)} files, {counts['accepted-correct']} accepted-correct, "
        f"{counts['rejected-rightly']} rejected-rightly, {counts['misread']} misread, "
        f"{counts['rejected-wrongly']} rejected wrongly"
    )
    with capsys.disabled():
        print("\n" + line)
    assert not failures, "\n".join([line, *failures])
    assert counts["rejected-rightly"] == len(EXPECTED_REFUSALS)


@pytest.mark.parametrize("path", FILES, ids=_name)
def test_corpus_file(path):
    kind, why = outcome(path)
    assert kind in {"accepted-correct", "rejected-rightly"}, why


# -- what the issue names, written out by hand -----------------------------------------------------------


def _parse(name: str) -> tuple[LabResultMessage, ...]:
    return parse_payload((CORPUS / name).read_bytes())


def test_culture_organism_from_coded_text_only():
    (msg,) = _parse("ruby-hl7/cerner_bordetella.hl7")
    (obs,) = msg.reports[0].observations
    assert (obs.value_type, obs.value_text, obs.flags, obs.sub_id) == (
        "CE",
        "Bordetella pertussis",
        ("A",),
        "1",
    )
    assert msg.sending_facility == "Baseline West MC"


def test_structured_numeric_and_an_unknown_type():
    (msg,) = _parse("python-hl7/sample_hl7.hl7")
    sn, fn = msg.reports[0].observations
    assert (sn.value_numeric, sn.value_text, sn.flags, sn.unit) == (182.0, "182", ("H",), "mg/dl")
    assert (fn.value_text, fn.value_flagged) == ("182", True)  # "FN" is no OBX-2 type: kept, flagged


def test_elr_facility_in_hd2_and_oid_only_authority():
    (msg,) = _parse("ruby-hl7/realm-minimal-message.hl7")
    assert msg.sending_facility == "1234"  # MSH-4 "^1234^CLIA"
    mr, second = msg.patient_ids
    assert (mr.value, mr.type_code, mr.authority, mr.authority_oid) == (
        "36363636",
        "MR",
        "MPI",
        "2.16.840.1.113883.19.3.2.1",
    )
    assert second.authority is None and second.authority_oid == "2.16.840.1.113883.4.1"


def test_batch_is_split_into_its_messages():
    msgs = _parse("ruby-hl7/realm-batch.hl7")
    assert [len(m.reports) for m in msgs] == [2, 1]
    assert msgs[0].reports[0].observations[0].value_text == "Campylobacter jejuni"


def test_v22_without_trigger_sub_ids_and_comments():
    (msg,) = _parse("ruby-hl7/obxobr.hl7")
    first = msg.reports[0]
    assert first.comment == "Something related to request"
    assert [o.sub_id for o in first.observations] == ["1", "2", "3", "4", "5"]
    assert first.observations[0].comment == "Something related to findings"
    assert {o.status for r in msg.reports for o in r.observations} == {"preliminary"}  # OBR-25 P


def test_pending_values_and_obr25_fallback():
    (msg,) = _parse("fhir-converter/LAB-ORU-1.hl7")
    leuko = msg.reports[0].observations[0]
    assert (leuko.status, leuko.value_text) == ("registered", None)  # OBX-11 I, no value yet
    assert msg.reports[1].status is None and msg.reports[0].status == "final"


def test_attachments_kept_and_patient_observations_not_dropped():
    (msg,) = _parse("fhir-converter/ORU-R01-01.hl7")
    rp = msg.reports[0].observations[0]
    assert rp.attachment is not None and rp.attachment.data == "https://testurl.com"
    ed = msg.reports[1].observations[0]
    assert ed.value_flagged and ed.value_text  # an ED without its data: kept as text, flagged
    order = msg.reports[2]
    assert "Salmonella" in (order.comment or "") and "E.coli O157:H7 & other STECs" in (order.comment or "")
    assert order.observations[2].value_flagged and order.observations[2].value_text == "27; 25"  # NM "27~25"


def test_obr_without_obx_is_recorded():
    (msg,) = _parse("hapi-hl7v2/messages-txt-L4-L10-oru.hl7")
    assert [len(r.observations) for r in msg.reports] == [0, 0, 0]
    assert [r.status for r in msg.reports] == ["preliminary"] * 3
