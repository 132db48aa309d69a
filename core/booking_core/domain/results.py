"""Test results, modelled on FHIR DiagnosticReport/Observation: values, reference ranges, flags, status."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class ResultStatus(StrEnum):
    """FHIR DiagnosticReport/Observation status values used here."""

    REGISTERED = "registered"
    PRELIMINARY = "preliminary"
    FINAL = "final"
    CORRECTED = "corrected"
    ENTERED_IN_ERROR = "entered-in-error"
    CANCELLED = "cancelled"  # the test could not be done (OBR-25 / OBX-11 X, OBX-11 N)


class Flag(StrEnum):
    """Abnormal flags (HL7 OBX-8 / FHIR interpretation)."""

    NORMAL = "N"
    HIGH = "H"
    LOW = "L"
    CRITICAL_HIGH = "HH"
    CRITICAL_LOW = "LL"
    ABNORMAL = "A"


ABNORMAL_FLAGS = frozenset({Flag.HIGH, Flag.LOW, Flag.CRITICAL_HIGH, Flag.CRITICAL_LOW, Flag.ABNORMAL})
CRITICAL_FLAGS = frozenset({Flag.CRITICAL_HIGH, Flag.CRITICAL_LOW})
# The one HL7 -> FHIR status vocabulary (the parser, the handler and the API use these two maps).
# OBX-11 (HL7 table 0085) -> Observation status.
OBX_STATUS: dict[str, ResultStatus] = {
    "F": ResultStatus.FINAL,
    "C": ResultStatus.CORRECTED,
    "W": ResultStatus.ENTERED_IN_ERROR,  # posted against the wrong patient or test: retract it
    "D": ResultStatus.ENTERED_IN_ERROR,  # deleted
    "P": ResultStatus.PRELIMINARY,
    "R": ResultStatus.PRELIMINARY,  # entered, not verified
    "S": ResultStatus.PRELIMINARY,  # partial
    "I": ResultStatus.REGISTERED,  # specimen in the lab, no result yet
    "O": ResultStatus.REGISTERED,  # order detail only, no result
    "U": ResultStatus.FINAL,  # the preliminary value already sent is now final
    "X": ResultStatus.CANCELLED,  # the result cannot be obtained
    "N": ResultStatus.CANCELLED,  # not asked for
}
# OBR-25 (HL7 table 0123) -> DiagnosticReport status; also the status of an OBX whose OBX-11 is empty.
OBR_STATUS: dict[str, ResultStatus] = {
    "F": ResultStatus.FINAL,
    "C": ResultStatus.CORRECTED,
    "P": ResultStatus.PRELIMINARY,
    "A": ResultStatus.PRELIMINARY,  # some results available
    "R": ResultStatus.PRELIMINARY,
    "O": ResultStatus.REGISTERED,
    "I": ResultStatus.REGISTERED,
    "S": ResultStatus.REGISTERED,
    "X": ResultStatus.CANCELLED,
    "Y": ResultStatus.CANCELLED,  # no order on record for this test
    "Z": ResultStatus.CANCELLED,  # no record of this patient
}
# OBX-8 flags (HL7 table 0078) that mean "outside the reference range", and the domain flag each maps to.
HL7_ABNORMAL = {
    "H": "H", "L": "L", "HH": "HH", "LL": "LL", "A": "A", "AA": "A",
    ">": "H", "<": "L", "HU": "H", "LU": "L", "POS": "A", "DET": "A",
}  # fmt: skip
HL7_CRITICAL = frozenset({"HH", "LL", "AA"})


@dataclass(frozen=True)
class ReferenceRange:
    """A numeric reference interval; either bound may be open."""

    low: float | None = None
    high: float | None = None
    text: str | None = None

    def contains(self, value: float) -> bool:
        """True when value lies within the range (bounds inclusive)."""
        if self.low is not None and value < self.low:
            return False
        return not (self.high is not None and value > self.high)


_RANGE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*[-\u2013]\s*(-?\d+(?:\.\d+)?)\s*$")
_UPPER = re.compile(r"^\s*<=?\s*(-?\d+(?:\.\d+)?)\s*$")
_LOWER = re.compile(r"^\s*>=?\s*(-?\d+(?:\.\d+)?)\s*$")


def parse_reference_range(text: str | None) -> ReferenceRange | None:
    """A range from OBX-7 forms "3.5-5.0", "<5", ">10"; None when empty; text-only when not numeric."""
    if text is None or not text.strip():
        return None
    if m := _RANGE.match(text):
        return ReferenceRange(low=float(m.group(1)), high=float(m.group(2)), text=text.strip())
    if m := _UPPER.match(text):
        return ReferenceRange(high=float(m.group(1)), text=text.strip())
    if m := _LOWER.match(text):
        return ReferenceRange(low=float(m.group(1)), text=text.strip())
    return ReferenceRange(text=text.strip())


def compute_flag(value: float, ref: ReferenceRange | None, *, critical_factor: float = 2.0) -> Flag | None:
    """H/L outside the range, HH/LL beyond `critical_factor` times the bound's distance; None if no range."""
    if ref is None or (ref.low is None and ref.high is None):
        return None
    if ref.high is not None and value > ref.high:
        span = ref.high - (ref.low if ref.low is not None else 0.0)
        return (
            Flag.CRITICAL_HIGH if span > 0 and value > ref.high + span * (critical_factor - 1) else Flag.HIGH
        )
    if ref.low is not None and value < ref.low:
        return Flag.CRITICAL_LOW if value < ref.low / critical_factor else Flag.LOW
    return Flag.NORMAL


def parse_flag(value: str | None) -> Flag | None:
    """A flag from OBX-8 ("H", "LL", "A", "N"); None when empty or unknown."""
    if not value or not value.strip():
        return None
    v = value.strip().upper()
    return Flag(v) if v in Flag._value2member_map_ else None


def is_abnormal(flag: Flag | str | None) -> bool:
    """True for H, L, HH, LL and A."""
    return flag is not None and Flag(flag) in ABNORMAL_FLAGS


_SINGLE = {"N": Flag.NORMAL, **{k: Flag(v) for k, v in HL7_ABNORMAL.items()}}


def status_from_hl7(obx11: str | None, obr25: str | None = None) -> ResultStatus:
    """Our status for OBX-11, falling back to OBR-25 when OBX-11 is empty, then to final.

    An unknown code is registered (stored, never shown): an unverified value must not reach a patient.
    """
    code = (obx11 or "").strip().upper()
    if code:
        return OBX_STATUS.get(code, ResultStatus.REGISTERED)
    code = (obr25 or "").strip().upper()
    if code:
        return OBR_STATUS.get(code, ResultStatus.REGISTERED)
    return ResultStatus.FINAL


def report_status_from_hl7(obr25: str | None) -> ResultStatus | None:
    """OBR-25 as a report status; None when empty or unknown (the observations decide then)."""
    return OBR_STATUS.get((obr25 or "").strip().upper())


def domain_flag(hl7_flags: tuple[str, ...]) -> Flag | None:
    """The most severe of OBX-8's flags in the domain vocabulary (H, L, HH, LL, A)."""
    if not hl7_flags:
        return None
    if len(hl7_flags) == 1 and hl7_flags[0] in _SINGLE:
        return _SINGLE[hl7_flags[0]]
    mapped = {HL7_ABNORMAL[f] for f in hl7_flags if f in HL7_ABNORMAL}
    for flag in (Flag.CRITICAL_HIGH, Flag.CRITICAL_LOW, Flag.HIGH, Flag.LOW, Flag.ABNORMAL):
        if flag.value in mapped:
            return flag
    return Flag.NORMAL if "N" in hl7_flags else None


def visible_to_patient(status: ResultStatus | str) -> bool:
    """Patients see final, corrected and cancelled results (with why); W retracts, preliminary waits."""
    return ResultStatus(status) in (ResultStatus.FINAL, ResultStatus.CORRECTED, ResultStatus.CANCELLED)
