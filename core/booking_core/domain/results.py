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
# OBX-11 result status -> our status.
HL7_STATUS = {
    "F": ResultStatus.FINAL,
    "C": ResultStatus.CORRECTED,
    "W": ResultStatus.ENTERED_IN_ERROR,
    "P": ResultStatus.PRELIMINARY,
    "R": ResultStatus.REGISTERED,
    "I": ResultStatus.REGISTERED,
}


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


def status_from_hl7(obx11: str | None) -> ResultStatus:
    """Our status for an OBX-11 code (F final, C corrected, W entered-in-error, P preliminary)."""
    return HL7_STATUS.get((obx11 or "F").strip().upper(), ResultStatus.FINAL)


def visible_to_patient(status: ResultStatus | str) -> bool:
    """Patients see final and corrected results only; W retracts, preliminary waits."""
    return ResultStatus(status) in (ResultStatus.FINAL, ResultStatus.CORRECTED)
