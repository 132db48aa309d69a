"""Booking state machine and notice cut-offs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from booking_core.domain.bookings import (
    TRANSITIONS,
    BookingStatus,
    can_transition,
    check_changeable,
    check_notice,
    occupies_place,
    transition,
)
from booking_core.domain.errors import InvalidTransitionError, NoticePeriodPassedError

S = BookingStatus
T0 = datetime(2030, 5, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (S.PENDING, S.BOOKED),
        (S.PENDING, S.CANCELLED),
        (S.BOOKED, S.ARRIVED),
        (S.BOOKED, S.NOSHOW),
        (S.BOOKED, S.CANCELLED),
        (S.ARRIVED, S.FULFILLED),
    ],
)
def test_allowed(a: S, b: S) -> None:
    assert transition(a, b) is b


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (S.CANCELLED, S.BOOKED),
        (S.FULFILLED, S.CANCELLED),
        (S.NOSHOW, S.ARRIVED),
        (S.PENDING, S.FULFILLED),
        (S.ARRIVED, S.CANCELLED),
        (S.BOOKED, S.PENDING),
    ],
)
def test_refused(a: S, b: S) -> None:
    with pytest.raises(InvalidTransitionError):
        transition(a, b)


def test_terminal_states_have_no_exits() -> None:
    assert all(not TRANSITIONS[s] for s in (S.CANCELLED, S.FULFILLED, S.NOSHOW))
    assert set(TRANSITIONS) == set(S)
    assert not can_transition("booked", "booked")


def test_capacity_and_changeability() -> None:
    assert occupies_place("pending") and occupies_place("noshow") and not occupies_place("cancelled")
    check_changeable("booked", "cancelled")
    with pytest.raises(InvalidTransitionError):
        check_changeable("arrived", "cancelled")


def test_notice_cut_off() -> None:
    check_notice(starts_at=T0, now=T0 - timedelta(hours=2), notice=timedelta(hours=2), action="cancellation")
    with pytest.raises(NoticePeriodPassedError):
        check_notice(
            starts_at=T0,
            now=T0 - timedelta(hours=1, minutes=59),
            notice=timedelta(hours=2),
            action="cancellation",
        )
