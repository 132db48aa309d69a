from datetime import UTC, datetime, time

from booking_workers.notifications.quiet_hours import hold_delay_ms, quiet_until


def test_outside_the_window_nothing_is_held() -> None:
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # 13:00 in Amsterdam
    assert quiet_until(now, "Europe/Amsterdam", time(21), time(8)) is None


def test_evening_is_held_until_next_morning_local_time() -> None:
    now = datetime(2026, 3, 10, 21, 30, tzinfo=UTC)  # 22:30 in Amsterdam (UTC+1)
    assert quiet_until(now, "Europe/Amsterdam", time(21), time(8)) == datetime(2026, 3, 11, 7, 0, tzinfo=UTC)


def test_early_morning_is_held_until_the_same_morning() -> None:
    now = datetime(2026, 3, 10, 3, 0, tzinfo=UTC)  # 23:00 the day before in New York (EDT, UTC-4)
    # US daylight time began on 8 March 2026, so 08:00 EDT is 12:00 UTC.
    assert quiet_until(now, "America/New_York", time(21), time(8)) == datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def test_window_that_does_not_wrap() -> None:
    now = datetime(2026, 6, 1, 13, 30, tzinfo=UTC)
    assert quiet_until(now, "UTC", time(13), time(14)) == datetime(2026, 6, 1, 14, 0, tzinfo=UTC)
    assert quiet_until(now, "UTC", time(14), time(15)) is None


def test_dst_change_night_uses_the_new_offset() -> None:
    # Europe/Amsterdam springs forward on 29 March 2026: 08:00 local is 06:00 UTC that morning.
    now = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    assert quiet_until(now, "Europe/Amsterdam", time(21), time(8)) == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)


def test_no_window_and_unknown_zone() -> None:
    now = datetime(2026, 6, 1, 23, 0, tzinfo=UTC)
    assert quiet_until(now, "Europe/Amsterdam", None, None) is None
    assert quiet_until(now, "Not/AZone", time(22), time(7)) == datetime(2026, 6, 2, 7, 0, tzinfo=UTC)


def test_hold_delay() -> None:
    now = datetime(2026, 6, 1, 23, 0, tzinfo=UTC)
    assert hold_delay_ms(now, datetime(2026, 6, 2, 7, 0, tzinfo=UTC), margin_s=0) == 8 * 3600 * 1000
