"""Clinics: where slots happen, in their own time zone."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from booking_core.domain.errors import InvalidValueError


@dataclass(frozen=True)
class Clinic:
    """A clinic's identity and local time zone."""

    code: str
    name: str
    time_zone: str = "UTC"


def validate_time_zone(name: str, field: str = "time_zone") -> ZoneInfo:
    """The IANA zone `name`, or InvalidValueError naming `field`."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidValueError(field, f"unknown time zone {name!r}") from exc
