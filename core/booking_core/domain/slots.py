"""Slots: weekly schedule rules expanded into bookable times, and free capacity."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from booking_core.domain.errors import InvalidValueError

MAX_SLOT_SEARCH_DAYS = 31


@dataclass(frozen=True)
class ScheduleRule:
    """On `weekday` (0 = Monday), `start` to `end` local time: slots of `slot_minutes` with `capacity`."""

    weekday: int
    start: time
    end: time
    slot_minutes: int
    capacity: int

    def __post_init__(self) -> None:
        if not 0 <= self.weekday <= 6:
            raise InvalidValueError("weekday", "weekday must be 0 (Monday) to 6 (Sunday)")
        if self.slot_minutes <= 0:
            raise InvalidValueError("slot_minutes", "slot_minutes must be positive")
        if self.capacity < 0:
            raise InvalidValueError("capacity", "capacity must not be negative")
        if self.start >= self.end:
            raise InvalidValueError("end_time", "end_time must be after start_time")


@dataclass(frozen=True)
class SlotTime:
    """One generated slot, in UTC."""

    starts_at: datetime
    ends_at: datetime
    capacity: int


def _days(first: date, last: date) -> Iterator[date]:
    d = first
    while d <= last:
        yield d
        if d == date.max:
            return
        d += timedelta(days=1)


def expand_rule(rule: ScheduleRule, *, first: date, last: date, time_zone: str) -> list[SlotTime]:
    """The slots `rule` produces on the local dates first..last (inclusive), converted to UTC."""
    tz = ZoneInfo(time_zone)
    step = timedelta(minutes=rule.slot_minutes)
    out: list[SlotTime] = []
    for day in _days(first, last):
        if day.weekday() != rule.weekday:
            continue
        start = datetime.combine(day, rule.start, tzinfo=tz)
        end_of_day = datetime.combine(day, rule.end, tzinfo=tz)
        while start + step <= end_of_day:
            out.append(
                SlotTime(
                    starts_at=start.astimezone(UTC),
                    ends_at=(start + step).astimezone(UTC),
                    capacity=rule.capacity,
                )
            )
            start += step
    return out


def free_capacity(capacity: int, booked: int) -> int:
    """Places still free on a slot (never negative)."""
    return max(capacity - booked, 0)


def add_days(d: date, days: int) -> date:
    """`d` plus `days`, saturating at the calendar's ends instead of overflowing."""
    try:
        return d + timedelta(days=days)
    except OverflowError:
        return date.max if days > 0 else date.min


def search_window(date_from: date | None, date_to: date | None, *, today: date) -> tuple[date, date] | None:
    """The search range: a week from today by default, cut to MAX_SLOT_SEARCH_DAYS; None if reversed."""
    first = date_from or today
    last = date_to or add_days(first, 6)
    if last < first:
        return None
    return first, min(last, add_days(first, MAX_SLOT_SEARCH_DAYS - 1))


def is_bookable(*, status: str, capacity: int, booked: int, starts_at: datetime, now: datetime) -> bool:
    """An open slot in the future with a free place."""
    return status == "open" and starts_at > now and booked < capacity
