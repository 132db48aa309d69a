"""HL7 v2 on the wire: framing, character sets, batches, segments and escape sequences.

Each message is read once: its segments are split into fields a single time and indexed by name, so a
field lookup is a list index rather than a rescan. Components are split on demand (a `str.split` of one
field) and escape sequences are decoded only where the escape character occurs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from booking_consumers.errors import InvalidMessageError

_MLLP_START = "\x0b"
_MLLP_END = "\x1c"
_BOM = b"\xef\xbb\xbf"
# MSH-18 (HL7 table 0211) -> Python codec. Unlisted sets are read as UTF-8 when valid, else refused.
_CHARSETS = {
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/2": "iso8859-2",
    "8859/5": "iso8859-5",
    "8859/7": "iso8859-7",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "UNICODE": "utf-8",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "WINDOWS-1252": "cp1252",
}
_MSH18 = re.compile(rb"MSH(.)")
_ENVELOPE = frozenset({"FHS", "BHS", "BTS", "FTS"})
_SEGMENT_NAME = re.compile(r"^[A-Z][A-Z0-9]{2}$")


@dataclass(frozen=True, slots=True)
class Encoding:
    """MSH-1 and MSH-2: the field, component, repetition, escape and subcomponent characters."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    codec: str = "utf-8"


@dataclass(slots=True)
class Segment:
    """One segment: its name and its fields, numbered as HL7 numbers them (fields[1] is field 1)."""

    name: str
    fields: list[str]

    def get(self, n: int) -> str:
        """Field n as received (escaped), or '' when absent."""
        return self.fields[n] if n < len(self.fields) else ""


@dataclass(slots=True)
class RawMessage:
    """One message's segments in order, plus an index of the first segment of each name."""

    encoding: Encoding
    segments: list[Segment]
    first: dict[str, Segment]


def decode_payload(payload: bytes | str) -> tuple[str, str]:
    """The payload as text and its codec: BOM and MLLP framing removed, decoded per MSH-18."""
    codec = "utf-8"
    if isinstance(payload, str):
        text = payload.lstrip("\ufeff")
    else:
        data = payload.lstrip(b"\x0b \t\r\n")
        if data.startswith(_BOM):
            data = data[len(_BOM) :]
        codec = _declared_codec(data)
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            # A feed declaring nothing (or UTF-8) that sends Latin-1 is common; refusing it loses the
            # result, misreading it would garble names. Refuse: the reason says which.
            raise InvalidMessageError("not_utf8" if codec == "utf-8" else "bad_charset", "MSH-18") from None
    text = text.strip(_MLLP_START + _MLLP_END + "\r\n \t\x00")
    if "\x00" in text:
        text = text.replace("\x00", "")  # PostgreSQL text cannot hold NUL; it carries nothing
    if _MLLP_END in text or _MLLP_START in text:
        text = text.replace(_MLLP_END, "").replace(_MLLP_START, "")
    return text, codec


def _declared_codec(data: bytes) -> str:
    """MSH-18 read from the raw bytes (the header is ASCII in every character set HL7 allows)."""
    m = _MSH18.search(data[:1024])
    if m is None:
        return "utf-8"
    sep = m.group(1)
    end = min((i for i in (data.find(b"\r", m.start()), data.find(b"\n", m.start())) if i >= 0), default=-1)
    header = data[m.start() : end if end >= 0 else len(data)]
    fields = header.split(sep)
    # fields[0] is "MSH", fields[1] is MSH-2; MSH-18 is fields[17]
    if len(fields) <= 17:
        return "utf-8"
    first = fields[17].split(b"~")[0].strip().decode("ascii", "replace").upper()
    return _CHARSETS.get(first, "utf-8")


def split_messages(text: str) -> list[str]:
    """The messages of one payload: a single message, or a FHS/BHS batch (envelope segments dropped)."""
    lines = [s for s in re.split(r"\r\n|\r|\n", text) if s.strip()]
    if not lines:
        raise InvalidMessageError("not_hl7", "empty message")
    messages: list[list[str]] = []
    for line in lines:
        head = line[:3]
        if head in _ENVELOPE:
            continue
        if head == "MSH":
            messages.append([line])
        elif messages:
            messages[-1].append(line)
        else:
            raise InvalidMessageError("not_hl7", "message does not start with MSH")
    if not messages:
        raise InvalidMessageError("not_hl7", "batch without MSH")
    return ["\r".join(m) for m in messages]


def parse_raw(text: str, codec: str = "utf-8") -> RawMessage:
    """Split one message into segments and fields (once), with its encoding characters."""
    if not text.startswith("MSH") or len(text) < 8:
        raise InvalidMessageError("not_hl7", "message does not start with MSH")
    fs = text[3]
    end = text.find(fs, 4)
    chars = text[4 : end if end >= 0 else 9]
    if fs.isalnum() or len(chars) < 2 or "\r" in chars:
        raise InvalidMessageError("not_hl7", "MSH-1/MSH-2")
    if len(chars) == 3 and chars[2] == "&":
        # "^~&": the escape character lost on the way (seen in ELR samples); '&' is the subcomponent.
        chars = chars[:2] + "\x00&"
    elif len(chars) > 4 and chars[3] == chars[2]:
        # "^~\\&": an escape character doubled by a Java/JSON string round trip.
        chars = chars[:3] + chars[4:]
    enc = Encoding(
        field=fs,
        component=chars[0],
        repetition=chars[1],
        escape=chars[2] if len(chars) > 2 else "\x00",
        subcomponent=chars[3] if len(chars) > 3 else "&",
        codec=codec,
    )
    segments: list[Segment] = []
    first: dict[str, Segment] = {}
    for line in text.split("\r"):
        if not line:
            continue
        parts = line.split(fs)
        name = parts[0].strip().upper()
        if name == "MSH":
            # MSH-1 is the separator itself: shift so that parts[n] is MSH-n.
            parts = [name, fs, *parts[1:]]
        elif not _SEGMENT_NAME.match(name):
            # Long free text broken over lines by a mail gateway: keep it with the previous segment.
            if segments:
                segments[-1].fields[-1] += "\n" + line
                continue
            raise InvalidMessageError("not_hl7", "segment name")
        seg = Segment(name, parts)
        segments.append(seg)
        first.setdefault(name, seg)
    return RawMessage(enc, segments, first)


def components(value: str, enc: Encoding) -> list[str]:
    """The components of one field repetition (escaped)."""
    return value.split(enc.component)


def component(value: str, enc: Encoding, n: int) -> str:
    """Component n (1-based) of one field repetition, escaped; '' when absent."""
    if enc.component not in value:
        return value if n == 1 else ""
    parts = value.split(enc.component)
    return parts[n - 1] if n <= len(parts) else ""


def first_sub(value: str, enc: Encoding) -> str:
    """The first subcomponent of a component."""
    return value.split(enc.subcomponent, 1)[0] if enc.subcomponent in value else value


_FORMAT = {".br": "\n", ".sp": "\n", ".sk": " ", ".in": "", ".ti": "", ".ce": "\n", ".fi": "", ".nf": ""}


def unescape(value: str, enc: Encoding) -> str:
    """Decode HL7 escape sequences (\\F\\ \\S\\ \\Xhh\\ \\.br\\ ...); other text is returned as is."""
    esc = enc.escape
    if not esc or esc not in value:
        return value
    out: list[str] = []
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if c != esc:
            j = value.find(esc, i)
            j = n if j < 0 else j
            out.append(value[i:j])
            i = j
            continue
        end = value.find(esc, i + 1)
        if end < 0:
            out.append(value[i:])
            break
        seq = value[i + 1 : end]
        out.append(_escape_sequence(seq, enc, value[i : end + 1]))
        i = end + 1
    return "".join(out)


def _escape_sequence(seq: str, enc: Encoding, raw: str) -> str:
    simple = {
        "F": enc.field,
        "S": enc.component,
        "T": enc.subcomponent,
        "R": enc.repetition,
        "E": enc.escape,
        "P": "#",
        "H": "",
        "N": "",
    }
    if seq in simple:
        return simple[seq]
    if seq[:1] == "X" and len(seq) > 1:
        try:
            return bytes.fromhex(seq[1:]).decode(enc.codec, "replace")
        except ValueError:
            return raw
    head = seq.split(" ", 1)[0].split("+", 1)[0].split("-", 1)[0]
    if head[:3] in _FORMAT:
        if head[:3] == ".sp":
            count = seq[3:].strip().lstrip("+")
            return "\n" * (int(count) if count.isdigit() and 0 < int(count) < 10 else 1)
        return _FORMAT[head[:3]]
    if seq[:1] in {"C", "M", "Z"}:
        return ""  # character-set switches and local escapes: no text of their own
    return raw
