"""Quiet hours in the patient's own time zone (pure: no I/O, the clock is a parameter)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

FALLBACK_TZ = "UTC"


def zone(name: str | None) -> ZoneInfo:
    """The patient's zone; an unknown or empty name falls back to UTC rather than failing the job."""
    try:
        return ZoneInfo(name or FALLBACK_TZ)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(FALLBACK_TZ)


def _in_window(t: time, start: time, end: time) -> bool:
    if start == end:
        return False  # an empty window: no quiet hours
    if start < end:
        return start <= t < end
    return t >= start or t < end  # wraps midnight, e.g. 21:00-08:00


def quiet_until(now: datetime, tz_name: str | None, start: time | None, end: time | None) -> datetime | None:
    """When `now` (aware) falls inside the patient's quiet window, the UTC instant it ends; else None."""
    if start is None or end is None:
        return None
    tz = zone(tz_name)
    local = now.astimezone(tz)
    if not _in_window(local.time().replace(tzinfo=None), start, end):
        return None
    day = local.date()
    # The window's end is today's `end` unless that is already past (the evening part of a wrapping window).
    if local.time().replace(tzinfo=None) >= end:
        day = day + timedelta(days=1)
    # Wall-clock time in the zone; an end inside a DST gap resolves by PEP 495 (fold=0).
    ends = datetime.combine(day, end, tzinfo=tz)
    ends_utc = ends.astimezone(UTC)
    return max(ends_utc, now.astimezone(UTC))


def hold_delay_ms(now: datetime, until: datetime, *, margin_s: float = 1.0) -> int:
    """Milliseconds from now to the end of quiet hours, plus a small margin against clock skew."""
    return max(0, int(((until - now).total_seconds() + margin_s) * 1000))
