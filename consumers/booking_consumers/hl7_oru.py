"""HL7 v2 ORU parsing into `booking_core.events.lis` objects (v2.2 to v2.8, single messages and batches).

Parse at the edge, and refuse only what cannot be a result for a patient: not HL7, not a result message,
no control id, no patient identifier, an OBX before any OBR. Those raise `InvalidMessageError` with a
reason code and a detail naming the field (never its value), which the poll loop turns into a DLQ record.
Anything else a real feed sends (an unexpected value type, a bad date, an unknown status) is kept and
flagged rather than dropped, and never costs the message's other reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo

from booking_consumers.errors import InvalidMessageError
from booking_consumers.hl7_values import offset_of, parse_timestamp, read_value, reference_bounds
from booking_consumers.hl7_wire import (
    Encoding,
    RawMessage,
    Segment,
    component,
    decode_payload,
    first_sub,
    parse_raw,
    split_messages,
    unescape,
)
from booking_core.domain.results import report_status_from_hl7, status_from_hl7
from booking_core.events.lis import LabObservation, LabReport, LabResultMessage, PatientIdentifier

# MSH-9 triggers of unsolicited results (R03: v2.1's display-oriented form); v2.2/2.3 feeds often send
# "ORU" alone.
_TRIGGERS = frozenset({"", "R01", "R03", "R30", "R31", "R32"})
# Segments that end an OBR group's comments (an NTE after them belongs elsewhere).
_GROUP_BREAK = frozenset({"SPM", "TQ1", "TQ2", "CTD", "FT1", "CTI", "ORC"})


# A timestamp without an offset from a sender whose zone nobody knows: placing it anywhere would misdate
# the result, so the message is refused (lis-testresult first looks the zone up from the clinics).
UNKNOWN_TIME_ZONE = "unknown_time_zone"
_ZONE_SETTINGS = (
    "the sender's zone is unknown: set BOOKING_LIS_FACILITY_TIME_ZONES or BOOKING_LIS_DEFAULT_TIME_ZONE "
    "(spec.lis), then replay"
)


@dataclass(frozen=True)
class ParseOptions:
    """Where a timestamp without an offset was taken: a zone per sending facility, else the default.

    `default_zone=None`: no default; a message needing one raises InvalidMessageError(UNKNOWN_TIME_ZONE).
    """

    default_zone: tzinfo | None = UTC
    facility_zones: Mapping[str, tzinfo] = field(default_factory=dict)


DEFAULT_OPTIONS = ParseOptions()


def parse_payload(
    payload: bytes | str, options: ParseOptions = DEFAULT_OPTIONS
) -> tuple[LabResultMessage, ...]:
    """Every result message of one payload (a batch yields several); InvalidMessageError if one is bad."""
    text, codec = decode_payload(payload)
    texts = split_messages(text)
    out: list[LabResultMessage] = []
    for i, one in enumerate(texts):
        try:
            out += _parse_one(one, codec, options)
        except InvalidMessageError as exc:
            if len(texts) > 1:
                raise InvalidMessageError(exc.reason, f"message {i + 1}: {exc.detail}"[:255]) from None
            raise
    return tuple(out)


def parse_oru(payload: bytes | str, options: ParseOptions = DEFAULT_OPTIONS) -> LabResultMessage:
    """Parse one ORU message (the first of a batch); raises InvalidMessageError (reason, field)."""
    return parse_payload(payload, options)[0]


def _parse_one(text: str, codec: str, options: ParseOptions) -> list[LabResultMessage]:
    raw = parse_raw(text, codec)
    enc = raw.encoding
    msh = raw.first["MSH"]
    kind = msh.get(9)
    if first_sub(component(kind, enc, 1), enc).strip().upper() != "ORU" or (
        first_sub(component(kind, enc, 2), enc).strip().upper() not in _TRIGGERS
    ):
        raise InvalidMessageError("unsupported_message_type", "MSH-9")
    facility = _hd(msh.get(4), enc) or _hd(msh.get(3), enc)
    if not facility:
        raise InvalidMessageError("missing_field", "MSH-4")
    control_id = unescape(msh.get(10), enc).strip()
    if not control_id:
        raise InvalidMessageError("missing_field", "MSH-10")
    msh7 = first_sub(component(msh.get(7), enc, 1), enc)
    zone = offset_of(msh7) or options.facility_zones.get(facility) or options.default_zone
    sent_at = _at(msh7, zone, "MSH-7")
    version = component(msh.get(12), enc, 1).strip() or None
    groups = _patient_groups(raw)
    if not groups:
        raise InvalidMessageError("missing_segment", "PID")
    out = []
    for n, (pid, segments) in enumerate(groups):
        patient_ids = _patient_ids(pid, enc)
        if not patient_ids:
            raise InvalidMessageError("missing_field", "PID-3")
        if not any(s.name == "OBR" for s in segments):
            raise InvalidMessageError("missing_segment", "OBR")
        reports = _reports(segments, enc, zone)
        out.append(
            LabResultMessage(
                sending_facility=facility,
                # A second patient in one message gets its own key: MSH-10 alone names the first.
                control_id=control_id if n == 0 else f"{control_id}#{n + 1}",
                patient_ids=patient_ids,
                reports=reports,
                message_datetime=sent_at,
                version=version,
            )
        )
    return out


def _at(raw: str, zone: tzinfo | None, where: str) -> datetime | None:
    """A timestamp placed in the sender's zone; refused when it has no offset and the zone is unknown."""
    value = parse_timestamp(raw, zone)
    if value is not None and value.tzinfo is None:
        raise InvalidMessageError(UNKNOWN_TIME_ZONE, f"{where} has no UTC offset and {_ZONE_SETTINGS}")
    return value


def _hd(value: str, enc: Encoding) -> str:
    """An HD's namespace id (HD.1), else its universal id (HD.2: an OID or CLIA number)."""
    if not value:
        return ""
    return unescape(component(value, enc, 1), enc).strip() or unescape(component(value, enc, 2), enc).strip()


def _patient_groups(raw: RawMessage) -> list[tuple[Segment, list[Segment]]]:
    groups: list[tuple[Segment, list[Segment]]] = []
    pending: list[Segment] = []  # OBR/OBX before any PID: reported as such below
    for seg in raw.segments:
        if seg.name == "PID":
            groups.append((seg, []))
        elif groups:
            groups[-1][1].append(seg)
        elif seg.name in {"OBR", "OBX"}:
            pending.append(seg)
    if pending and not groups:
        return []
    return groups


def _patient_ids(pid: Segment, enc: Encoding) -> tuple[PatientIdentifier, ...]:
    out = []
    # PID-3 (internal ids); v2.2/2.3 feeds may carry the id only in PID-2 (external) or PID-4 (alternate).
    for n in (3, 2, 4):
        for rep in pid.get(n).split(enc.repetition):
            if not rep:
                continue
            parts = rep.split(enc.component)
            value = unescape(parts[0], enc).strip()
            if not value:
                continue
            authority = parts[3] if len(parts) > 3 else ""
            subs = authority.split(enc.subcomponent)
            out.append(
                PatientIdentifier(
                    value=value,
                    authority=unescape(subs[0], enc).strip() or None,
                    authority_oid=unescape(subs[1], enc).strip() or None if len(subs) > 1 else None,
                    type_code=unescape(parts[4], enc).strip().upper() or None if len(parts) > 4 else None,
                )
            )
        if out:
            break
    return tuple(out)


def patient_ids(pid: Segment, enc: Encoding) -> tuple[PatientIdentifier, ...]:
    """The identifiers of one PID segment, read as the parser reads them (the priority lane's look)."""
    return _patient_ids(pid, enc)


def _text(value: str, enc: Encoding) -> str | None:
    value = unescape(value, enc).strip()
    return value or None


def _code(value: str, enc: Encoding) -> tuple[str | None, str | None, str | None]:
    """CE/CWE: (code, text, system) from the primary triplet, else the alternate (components 4-6)."""
    if not value:
        return None, None, None
    if enc.repetition in value:
        value = value.split(enc.repetition, 1)[0]
    if enc.escape in value or enc.subcomponent in value:
        parts = [unescape(first_sub(p, enc), enc) for p in value.split(enc.component)]
    else:
        parts = value.split(enc.component)
    n = len(parts)
    if n < 6:
        parts += [""] * (6 - n)
    code, text, system = parts[0].strip(), parts[1].strip(), parts[2].strip()
    if not code:
        code, system = parts[3].strip(), parts[5].strip() or system
    return code or None, text or parts[4].strip() or None, system or None


def _int(value: str, default: int) -> int:
    value = value.strip()
    return int(value) if value.isdigit() else default


def _comment(nte: Segment, enc: Encoding) -> str | None:
    # NTE-3 is FT and repeats: one line per repetition.
    lines = [unescape(r, enc).rstrip() for r in nte.get(3).split(enc.repetition)]
    text = "\n".join(lines).strip("\n")
    return text or None


def _join(old: str | None, new: str | None) -> str | None:
    if new is None:
        return old
    return new if old is None else f"{old}\n{new}"


def _reports(segments: list[Segment], enc: Encoding, zone: tzinfo | None) -> tuple[LabReport, ...]:
    reports: list[LabReport] = []
    obr: Segment | None = None
    orc: Segment | None = None
    observations: list[LabObservation] = []
    report_comment: str | None = None
    last_obx: Segment | None = None
    obx_comment: str | None = None
    in_group = False  # NTEs after an SPM/TQ1... belong to neither the report nor the last OBX

    def close_obx() -> None:
        nonlocal last_obx, obx_comment
        if last_obx is not None and obr is not None:
            observations.append(_observation(last_obx, obr, enc, zone, len(observations) + 1, obx_comment))
        last_obx, obx_comment = None, None

    def close_obr() -> None:
        nonlocal obr, observations, report_comment
        close_obx()
        if obr is not None:
            reports.append(_report(obr, orc, enc, zone, len(reports) + 1, report_comment, observations))
        obr, observations, report_comment = None, [], None

    for seg in segments:
        name = seg.name
        if name == "OBR":
            close_obr()
            obr, in_group = seg, True
        elif name == "ORC":
            close_obr()
            orc, in_group = seg, False
        elif name == "OBX":
            if obr is None:
                # v2.6+ patient observations (height, pregnancy...) before the first order: kept as a
                # report of their own rather than dropped.
                obr = Segment("OBR", ["OBR", "0", "", "", f"{enc.component}Patient observations"])
            close_obx()
            last_obx, in_group = seg, False
        elif name == "NTE":
            if last_obx is not None:
                obx_comment = _join(obx_comment, _comment(seg, enc))
            elif obr is not None and in_group:
                report_comment = _join(report_comment, _comment(seg, enc))
        elif name in _GROUP_BREAK:
            close_obx()
            in_group = False
    close_obr()
    return tuple(reports)


def _report(
    obr: Segment,
    orc: Segment | None,
    enc: Encoding,
    zone: tzinfo | None,
    ordinal: int,
    comment: str | None,
    observations: list[LabObservation],
) -> LabReport:
    set_id = _int(obr.get(1), ordinal)
    code, name, _system = _code(obr.get(4), enc)
    placer = _text(component(obr.get(2), enc, 1), enc)
    filler = _text(component(obr.get(3), enc, 1), enc)
    if orc is not None:
        placer = placer or _text(component(orc.get(2), enc, 1), enc)
        filler = filler or _text(component(orc.get(3), enc, 1), enc)
    return LabReport(
        set_id=set_id,
        service_code=code or name or f"OBR-{set_id}",
        placer_order_number=placer,
        filler_order_number=filler,
        service_name=name,
        observed_at=_at(first_sub(component(obr.get(7), enc, 1), enc), zone, f"OBR[{set_id}]-7"),
        status=report_status_from_hl7(component(obr.get(25), enc, 1)),
        comment=comment,
        observations=tuple(observations),
    )


_OBX_FIELDS = 15


def _observation(
    obx: Segment, obr: Segment, enc: Encoding, zone: tzinfo | None, ordinal: int, comment: str | None
) -> LabObservation:
    f = obx.fields
    if len(f) < _OBX_FIELDS:
        f = f + [""] * (_OBX_FIELDS - len(f))
    set_id = _int(f[1], ordinal)
    value_type = component(f[2], enc, 1).strip().upper()
    code, name, system = _code(f[3], enc)
    status = status_from_hl7(component(f[11], enc, 1), component(obr.get(25), enc, 1))
    value = read_value(value_type, f[5], enc)
    unit = None
    if f[6]:
        unit_code, unit_text, _ = _code(f[6], enc)
        unit = unit_code or unit_text
    reference = _text(f[7], enc) if f[7] else None
    low, high = reference_bounds(reference)
    flags: tuple[str, ...] = ()
    if f[8]:
        flags = tuple(
            x
            for x in (
                unescape(first_sub(component(r, enc, 1), enc), enc).strip().upper()
                for r in f[8].split(enc.repetition)
            )
            if x
        )
    return LabObservation(
        set_id=set_id,
        code=code or name or f"OBX-{set_id}",
        status=status,
        value_type=value_type or "ST",
        sub_id=_text(f[4], enc) if f[4] else None,
        name=name,
        coding_system=system,
        value_numeric=value.numeric,
        comparator=value.comparator,
        value_text=value.text,
        value_flagged=value.flagged,
        attachment=value.attachment,
        unit=unit,
        reference_range=reference,
        reference_low=low,
        reference_high=high,
        flags=flags,
        observed_at=_at(first_sub(component(f[14], enc, 1), enc), zone, f"OBX[{set_id}]-14"),
        comment=comment,
    )
