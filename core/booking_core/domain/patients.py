"""Patients: tiers (standard, SVIP1, SVIP2), sex and age."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from booking_core.domain.errors import InvalidValueError


class Tier(StrEnum):
    """Service tier; SVIP tiers get their own result topics and notification queues."""

    STANDARD = "standard"
    SVIP1 = "svip1"
    SVIP2 = "svip2"


class Sex(StrEnum):
    """Administrative sex (FHIR AdministrativeGender)."""

    MALE = "male"
    FEMALE = "female"
    OTHER = "other"
    UNKNOWN = "unknown"


def parse_tier(value: str | None) -> Tier:
    """A tier from upstream spellings ("SVIP1", "svip-1", "", None -> standard)."""
    if value is None or not value.strip():
        return Tier.STANDARD
    norm = value.strip().lower().replace("-", "").replace("_", "").replace(" ", "")
    try:
        return Tier(norm)
    except ValueError as exc:
        raise InvalidValueError("tier", f"unknown tier {value!r}") from exc


def parse_sex(value: str | None) -> Sex:
    """Sex from FHIR words or HL7 codes (M, F, O, U)."""
    if not value:
        return Sex.UNKNOWN
    v = value.strip().lower()
    return {"m": Sex.MALE, "f": Sex.FEMALE, "o": Sex.OTHER, "u": Sex.UNKNOWN}.get(v) or (
        Sex(v) if v in Sex._value2member_map_ else Sex.UNKNOWN
    )


def age_on(date_of_birth: date, on: date) -> int:
    """Age in whole years on `on`."""
    years = on.year - date_of_birth.year
    if (on.month, on.day) < (date_of_birth.month, date_of_birth.day):
        years -= 1
    return years
