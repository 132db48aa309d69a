"""Slots from schedules, result flags and ranges, tiers, catalogue and preferences."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from booking_core.domain.catalogue import Price, is_newer
from booking_core.domain.errors import InvalidValueError
from booking_core.domain.holds import hold_expires_at
from booking_core.domain.notifications import Channel, Preferences
from booking_core.domain.patients import Tier, age_on, parse_sex, parse_tier
from booking_core.domain.results import (
    Flag,
    ResultStatus,
    compute_flag,
    is_abnormal,
    parse_flag,
    parse_reference_range,
    status_from_hl7,
    visible_to_patient,
)
from booking_core.domain.slots import ScheduleRule, expand_rule, free_capacity, search_window


def test_expand_rule_in_local_time_across_dst() -> None:
    rule = ScheduleRule(weekday=0, start=time(9), end=time(10), slot_minutes=20, capacity=2)
    # summer time starts on 2030-03-31: the Monday before is CET, the one after CEST
    slots = expand_rule(rule, first=date(2030, 3, 18), last=date(2030, 4, 1), time_zone="Europe/Berlin")
    assert len(slots) == 9
    assert slots[0].starts_at == datetime(2030, 3, 18, 8, 0, tzinfo=UTC)  # CET = UTC+1
    assert slots[6].starts_at == datetime(2030, 4, 1, 7, 0, tzinfo=UTC)  # CEST = UTC+2
    assert all(s.capacity == 2 for s in slots)


def test_schedule_rule_validation() -> None:
    with pytest.raises(InvalidValueError) as err:
        ScheduleRule(weekday=0, start=time(10), end=time(9), slot_minutes=20, capacity=1)
    assert err.value.field == "end_time"


def test_search_window() -> None:
    today = date(2030, 1, 1)
    assert search_window(None, None, today=today) == (today, date(2030, 1, 7))
    assert search_window(date(2030, 1, 1), date(2030, 12, 31), today=today) == (today, date(2030, 1, 31))
    assert search_window(date(2030, 1, 5), date(2030, 1, 1), today=today) is None
    assert search_window(date.max, None, today=today) == (date.max, date.max)
    assert free_capacity(3, 5) == 0 and free_capacity(5, 3) == 2


def test_holds() -> None:
    now = datetime(2030, 1, 1, 9, tzinfo=UTC)
    from datetime import timedelta

    assert hold_expires_at(now, timedelta(minutes=10), now + timedelta(minutes=5)) == now + timedelta(
        minutes=5
    )


@pytest.mark.parametrize(
    ("text", "low", "high"), [("3.5-5.0", 3.5, 5.0), ("<5", None, 5.0), (">1.0", 1.0, None)]
)
def test_reference_ranges(text: str, low: float | None, high: float | None) -> None:
    r = parse_reference_range(text)
    assert r is not None and (r.low, r.high) == (low, high)


def test_flags_and_status() -> None:
    ref = parse_reference_range("3.9-5.6")
    assert compute_flag(4.2, ref) is Flag.NORMAL
    assert compute_flag(6.0, ref) is Flag.HIGH
    assert compute_flag(9.0, ref) is Flag.CRITICAL_HIGH
    assert compute_flag(3.0, ref) is Flag.LOW
    assert compute_flag(1.0, ref) is Flag.CRITICAL_LOW
    assert compute_flag(1.0, parse_reference_range("negative")) is None
    assert parse_flag(" hh ") is Flag.CRITICAL_HIGH and parse_flag("?") is None
    assert is_abnormal("A") and not is_abnormal("N") and not is_abnormal(None)
    assert status_from_hl7("C") is ResultStatus.CORRECTED
    assert status_from_hl7("W") is ResultStatus.ENTERED_IN_ERROR
    assert visible_to_patient("final") and visible_to_patient("corrected")
    assert not visible_to_patient("entered-in-error") and not visible_to_patient("preliminary")


def test_tiers_sex_age() -> None:
    assert (
        parse_tier("SVIP1") is Tier.SVIP1
        and parse_tier("svip-2") is Tier.SVIP2
        and parse_tier(None) is Tier.STANDARD
    )
    with pytest.raises(InvalidValueError):
        parse_tier("gold")
    assert parse_sex("F").value == "female" and parse_sex("x").value == "unknown"
    assert age_on(date(1980, 5, 17), date(2030, 5, 16)) == 49
    assert age_on(date(1980, 5, 17), date(2030, 5, 17)) == 50


def test_catalogue_and_preferences() -> None:
    assert str(Price(1999, "eur")) == "19.99 EUR"
    with pytest.raises(InvalidValueError):
        Price(-1)
    assert is_newer(3, 2) and not is_newer(2, 2) and is_newer(1, None)
    p = Preferences(sms=False, quiet_hours_start=time(22), quiet_hours_end=time(7))
    assert Channel.SMS not in p.channels and Channel.EMAIL in p.channels
    with pytest.raises(InvalidValueError):
        Preferences(quiet_hours_start=time(22))
