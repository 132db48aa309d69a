"""The one backoff rule: doubling from the base, capped, jittered into the upper part of the range."""

from __future__ import annotations

import pytest

from booking_core.backoff import backoff_delay


def test_the_delay_doubles_per_attempt_until_the_cap() -> None:
    exact = [backoff_delay(n, base=0.5, cap=30.0, jitter=0.0) for n in range(1, 9)]
    assert exact == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_a_huge_attempt_count_stays_at_the_cap() -> None:
    assert backoff_delay(10_000, base=2_000, cap=300_000, jitter=0.0) == 300_000


def test_jitter_draws_from_the_upper_part_of_the_range() -> None:
    assert backoff_delay(3, base=1.0, cap=60.0, rand=lambda: 0.0) == 4.0
    assert backoff_delay(3, base=1.0, cap=60.0, rand=lambda: 0.999999) == pytest.approx(2.0, abs=1e-5)
    drawn = {backoff_delay(4, base=1.0, cap=60.0) for _ in range(200)}
    assert all(4.0 <= d <= 8.0 for d in drawn) and len(drawn) > 100


def test_the_first_attempt_waits_the_base_and_a_zero_attempt_is_not_shorter() -> None:
    assert backoff_delay(1, base=0.2, cap=5.0, jitter=0.0) == 0.2
    assert backoff_delay(0, base=0.2, cap=5.0, jitter=0.0) == 0.2


def test_a_jitter_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="jitter"):
        backoff_delay(1, base=1.0, cap=2.0, jitter=1.5)
