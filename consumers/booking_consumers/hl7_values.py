"""OBX-5 by its OBX-2 value type (HL7 v2.5.1 table 0125 and later additions), and HL7 timestamps.

Every type becomes something a patient can read (`text`), plus a number where the type is numeric and an
attachment where it is one. A value that does not fit its declared type is kept as text and flagged:
dropping it, or refusing the whole message for it, would hide a result from the patient.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo

from booking_consumers.hl7_wire import Encoding, first_sub, unescape
from booking_core.events.lis import Attachment

_NUMBER = re.compile(r"^\s*(<=|>=|<>|<|>|=)?\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*$")
_RANGE = re.compile(
    r"^\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*(?:-|\u2013|to)\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*$", re.IGNORECASE
)
_DTM = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,4})?\s*([+-]\d{4})?$")
_CODED = frozenset({"CE", "CWE", "CNE", "CF", "CD"})
_TEXT = frozenset({"ST", "TX", "FT", "ID", "IS", "SI", "GTS"})
_NAMES = frozenset({"XPN", "PN"})
_PEOPLE = frozenset({"XCN", "CN"})


@dataclass(frozen=True, slots=True)
class Value:
    """OBX-5 read by its type."""

    text: str | None = None
    numeric: float | None = None
    comparator: str | None = None
    flagged: bool = False
    attachment: Attachment | None = None


def number(text: str) -> tuple[str | None, float] | None:
    """A number with an optional comparator ("<0.5" -> ("<", 0.5)); None when not one."""
    m = _NUMBER.match(text)
    if m is None:
        return None
    return m.group(1), float(m.group(2))


def reference_bounds(text: str | None) -> tuple[float | None, float | None]:
    """OBX-7 as numeric bounds: "3.5-5.0", "<5", ">10"; (None, None) for text ranges."""
    if not text:
        return None, None
    m = _RANGE.match(text)
    if m:
        return float(m.group(1)), float(m.group(2))
    bound = number(text)
    if bound is not None and bound[0] in {"<", "<="}:
        return None, bound[1]
    if bound is not None and bound[0] in {">", ">="}:
        return bound[1], None
    return None, None


def _parts(rep: str, enc: Encoding) -> list[str]:
    return [unescape(p, enc) for p in rep.split(enc.component)]


def _nonempty(*values: str) -> list[str]:
    return [v.strip() for v in values if v and v.strip()]


def _get(parts: list[str], n: int) -> str:
    return parts[n - 1] if n <= len(parts) else ""


def read_value(value_type: str, field: str, enc: Encoding) -> Value:
    """OBX-5 (all repetitions, escaped) read as `value_type`."""
    if not field:
        return Value()
    reps = [r for r in field.split(enc.repetition) if r]
    if not reps:
        return Value()
    if value_type == "NM":
        return _nm(reps, enc)
    if value_type == "SN":
        return _sn(reps, enc)
    if value_type in {"ED", "RP"}:
        return _attachment(value_type, reps[0], enc)
    if value_type in _TEXT:
        # Free text: a literal component separator is text too, so the repetition is taken whole.
        sep = "\n" if value_type in {"TX", "FT"} else "; " if value_type != "ST" else "\n"
        return Value(text=_text(sep.join(unescape(r, enc) for r in reps)))
    render = _RENDER.get(value_type)
    if render is not None:
        texts = [t for t in (render(_parts(r, enc), enc) for r in reps) if t]
        if texts:
            return Value(text="; ".join(texts))
        return Value(text=_generic(reps, enc), flagged=True)
    # Unknown or missing OBX-2: keep what was sent, readably, and flag it when a type was declared.
    return Value(text=_generic(reps, enc), flagged=bool(value_type))


def _text(value: str) -> str | None:
    value = value.replace("\r", "\n").strip()
    return value or None


def _generic(reps: list[str], enc: Encoding) -> str | None:
    out = []
    for r in reps:
        comps = [
            " ".join(_nonempty(*unescape(c, enc).split(enc.subcomponent))) for c in r.split(enc.component)
        ]
        out.append(" ".join(_nonempty(*comps)))
    return _text("; ".join(o for o in out if o))


def _nm(reps: list[str], enc: Encoding) -> Value:
    raw = unescape(reps[0], enc).strip()
    parsed = number(raw)
    if parsed is None or len(reps) > 1 or enc.component in reps[0]:
        return Value(text=_generic(reps, enc), flagged=True)
    comparator, value = parsed
    return Value(text=raw, numeric=value, comparator=comparator)


def _sn(reps: list[str], enc: Encoding) -> Value:
    comps = _parts(reps[0], enc)
    comparator = _get(comps, 1).strip() or None
    num1, sep, num2 = _get(comps, 2).strip(), _get(comps, 3).strip(), _get(comps, 4).strip()
    if len(comps) == 1:
        # "<5" or "12" sent in one component: tolerated, read as a number with a comparator.
        parsed = number(comps[0])
        if parsed is not None:
            return Value(text=comps[0].strip(), numeric=parsed[1], comparator=parsed[0])
        return Value(text=_generic(reps, enc), flagged=True)
    ok_comp = comparator in {None, "<", ">", "<=", ">=", "=", "<>"}
    n1 = number(num1) if num1 else None
    n2 = number(num2) if num2 else None
    text = "".join(_nonempty(comparator or "", num1, sep, num2)) or None
    if not ok_comp or (num1 and (n1 is None or n1[0])) or (num2 and (n2 is None or n2[0])) or len(reps) > 1:
        return Value(text=_generic(reps, enc), flagged=True)
    if n1 is None:
        return Value(text=text, flagged=bool(sep or num2))
    if sep == "" and not num2:
        return Value(text=text, numeric=n1[1], comparator=comparator)
    if sep in {":", "/", "-", "+", "."}:
        # A ratio (1:128), a range (10-20) or a category (2+): no single number to chart.
        return Value(text=text, comparator=comparator)
    return Value(text=text, flagged=True)


def _attachment(kind: str, rep: str, enc: Encoding) -> Value:
    comps = rep.split(enc.component)
    if kind == "RP":
        pointer = unescape(_get(comps, 1), enc).strip()
        mime = _mime(_get(comps, 3), _get(comps, 4))
        if not pointer:
            return Value(text=_generic([rep], enc), flagged=True)
        att = Attachment(kind="RP", mime_type=mime, data=pointer)
        return Value(text=f"Attachment ({mime or 'document'}), available from the lab", attachment=att)
    mime = _mime(_get(comps, 2), _get(comps, 3))
    encoding = _get(comps, 4).strip() or None
    # ED-5 may itself contain component separators only if escaped; take the rest of the field whole.
    data = enc.component.join(comps[4:]) if len(comps) > 4 else ""
    data = unescape(data, enc)
    if not data:
        return Value(text=_generic([rep], enc), flagged=True)
    att = Attachment(kind="ED", mime_type=mime, encoding=encoding, data=data)
    return Value(text=f"Attachment ({mime or 'document'})", attachment=att)


def _mime(type_: str, subtype: str) -> str | None:
    t, s = type_.strip().lower(), subtype.strip().lower()
    if t and s:
        return f"{t}/{s}"
    return t or s or None


def _coded(p: list[str], enc: Encoding) -> str | None:
    # CWE: identifier ^ text ^ system ^ alternate identifier ^ alternate text ^ alternate system ...
    text = _get(p, 2).strip() or _get(p, 5).strip() or _get(p, 9).strip()
    return text or _get(p, 1).strip() or _get(p, 4).strip() or None


def _xpn(p: list[str], enc: Encoding) -> str | None:
    family = first_sub(_get(p, 1), enc)
    return " ".join(_nonempty(_get(p, 5), _get(p, 2), _get(p, 3), family, _get(p, 4), _get(p, 6))) or None


def _xcn(p: list[str], enc: Encoding) -> str | None:
    family = first_sub(_get(p, 2), enc)
    name = " ".join(_nonempty(_get(p, 6), _get(p, 3), _get(p, 4), family, _get(p, 5), _get(p, 7)))
    return name or _get(p, 1).strip() or None


def _xad(p: list[str], enc: Encoding) -> str | None:
    street = first_sub(_get(p, 1), enc)
    state_zip = " ".join(_nonempty(_get(p, 4), _get(p, 5)))
    return ", ".join(_nonempty(street, _get(p, 2), _get(p, 3), state_zip, _get(p, 6))) or None


def _xtn(p: list[str], enc: Encoding) -> str | None:
    # XTN-1 is the formatted number (deprecated after 2.5 but still sent); else build it from its parts.
    formatted = _get(p, 1).strip()
    country, area, local, ext = _get(p, 5), _get(p, 6), _get(p, 7), _get(p, 8)
    email = _get(p, 4).strip()
    parts = _nonempty(
        f"+{country.strip()}" if country.strip() else "",
        f"({area.strip()})" if area.strip() else "",
        local,
        f"ext. {ext.strip()}" if ext.strip() else "",
    )
    built = " ".join(parts)
    return formatted or built or email or _get(p, 12).strip() or None


def _dtm(p: list[str], enc: Encoding) -> str | None:
    return readable_datetime(_get(p, 1).strip()) or (_get(p, 1).strip() or None)


def _tm(p: list[str], enc: Encoding) -> str | None:
    raw = _get(p, 1).strip()
    m = re.match(r"^(\d{2})(\d{2})?(\d{2})?(\.\d+)?([+-]\d{4})?$", raw)
    if not m:
        return raw or None
    out = m.group(1) + ":" + (m.group(2) or "00") + (":" + m.group(3) if m.group(3) else "")
    return out + (f" {m.group(5)}" if m.group(5) else "")


def _dr(p: list[str], enc: Encoding) -> str | None:
    start = readable_datetime(first_sub(_get(p, 1), enc)) or ""
    end = readable_datetime(first_sub(_get(p, 2), enc)) or ""
    return " to ".join(_nonempty(start, end)) or None


def _money(p: list[str], enc: Encoding) -> str | None:
    # CP: price (MO: quantity & currency) ^ type ^ range...; MO: quantity ^ currency
    first = _get(p, 1)
    if enc.subcomponent in first:
        qty, _, cur = first.partition(enc.subcomponent)
        return " ".join(_nonempty(qty, cur.split(enc.subcomponent)[0])) or None
    return " ".join(_nonempty(first, _get(p, 2))) or None


def _array(p: list[str], enc: Encoding) -> str | None:
    return ", ".join(_nonempty(*p)) or None


def _joined(p: list[str], enc: Encoding) -> str | None:
    return " ".join(_nonempty(*(" ".join(_nonempty(*c.split(enc.subcomponent))) for c in p))) or None


def _hd(p: list[str], enc: Encoding) -> str | None:
    return _get(p, 1).strip() or _get(p, 2).strip() or None


_RENDER = {
    **dict.fromkeys(_CODED, _coded),
    **dict.fromkeys(_NAMES, _xpn),
    **dict.fromkeys(_PEOPLE, _xcn),
    "XON": lambda p, enc: _get(p, 1).strip() or _get(p, 10).strip() or None,
    "XAD": _xad,
    "AD": _xad,
    "XTN": _xtn,
    "TN": lambda p, enc: _get(p, 1).strip() or None,
    "DT": _dtm,
    "DTM": _dtm,
    "TS": _dtm,
    "TM": _tm,
    "DR": _dr,
    "CP": _money,
    "MO": _money,
    "NA": _array,
    "MA": _array,
    "HD": _hd,
    "CX": _joined,
    "CK": _joined,
    "EI": _joined,
}


def readable_datetime(raw: str) -> str | None:
    """An HL7 DT/DTM as "2025-03-01", "2025-03-01 07:30" (with its offset when sent); None if not one."""
    m = _DTM.match(raw)
    if m is None:
        return None
    y, mo, d, h, mi, s, _frac, off = m.groups()
    out = y + (f"-{mo}" if mo else "") + (f"-{d}" if d else "")
    if h:
        out += f" {h}:{mi or '00'}" + (f":{s}" if s else "")
    if off:
        out += f" {off}"
    return out


def parse_timestamp(raw: str, zone: tzinfo | None) -> datetime | None:
    """An HL7 DTM (TS.1) as an aware datetime; without an offset it is the sender's local time (`zone`).

    None when empty or not a valid timestamp: a bad date is not a reason to lose the result. Naive when
    the value has no offset and `zone` is None (nobody knows the sender's zone): the caller refuses it.
    """
    raw = raw.strip()
    if not raw:
        return None
    m = _DTM.match(raw)
    if m is None:
        return None
    y, mo, d, h, mi, s, frac, off = m.groups()
    try:
        micro = round(float(frac) * 1_000_000) if frac else 0
        naive = datetime(
            int(y), int(mo or 1), int(d or 1), int(h or 0), int(mi or 0), int(s or 0), min(micro, 999_999)
        )
    except ValueError:
        return None
    if off:
        sign = 1 if off[0] == "+" else -1
        hours, minutes = int(off[1:3]), int(off[3:5])
        if hours > 14 or minutes > 59:
            return None
        return naive.replace(tzinfo=timezone(sign * timedelta(hours=hours, minutes=minutes)))
    return naive.replace(tzinfo=zone)


def offset_of(raw: str) -> tzinfo | None:
    """The UTC offset a DTM carries (MSH-7's tells the sender's zone), or None."""
    m = _DTM.match(raw.strip())
    if m is None or not m.group(8):
        return None
    off = m.group(8)
    sign = 1 if off[0] == "+" else -1
    try:
        return timezone(sign * timedelta(hours=int(off[1:3]), minutes=int(off[3:5])))
    except ValueError:
        return None
