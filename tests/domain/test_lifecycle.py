"""The booking aggregate's decisions (pure): what each transition changes, and what a repeat changes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from booking_core.domain import lifecycle as agg
from booking_core.domain.bookings import BookingStatus as S
from booking_core.domain.errors import (
    InvalidTransitionError,
    InvalidValueError,
    NoticePeriodPassedError,
    NotPermittedError,
    SlotUnavailableError,
)
from booking_core.domain.holds import HoldStatus
from booking_core.domain.notifications import NotificationKind as K

NOW = datetime(2030, 5, 1, 9, 0, tzinfo=UTC)


def slot(
    sid: str = "a", hours: float = 48, capacity: int = 1, booked: int = 1, service: str = "s"
) -> agg.SlotView:
    start = NOW + timedelta(hours=hours)
    return agg.SlotView(
        sid, "c", service, "blood", start, start + timedelta(minutes=15), capacity, booked, True
    )


def booking(status: S = S.BOOKED, **kw: object) -> agg.BookingView:
    b = agg.BookingView(id="b1", patient_id="p1", status=status, slot=slot(), version=1)
    return replace(b, **kw)  # type: ignore[arg-type]


def test_cancel_frees_the_place_and_owes_a_notice_once() -> None:
    d = agg.cancel(booking(), by="patient", now=NOW, notice=timedelta(hours=2))
    assert (d.to_status, d.free, d.take, d.hold) == (S.CANCELLED, slot(), None, HoldStatus.RELEASED)
    assert [n.kind for n in d.notices] == [K.BOOKING_CANCELLED] and not d.notices[0].urgent
    assert [e.event_type for e in d.events] == ["booking.cancelled"]
    assert agg.cancel(booking(S.CANCELLED), by="patient", now=NOW) == agg.Decision.unchanged()


def test_patient_rules_on_cancel() -> None:
    with pytest.raises(InvalidTransitionError):
        agg.cancel(booking(S.ARRIVED), by="patient", now=NOW)
    with pytest.raises(NoticePeriodPassedError):
        agg.cancel(booking(slot=slot(hours=1)), by="patient", now=NOW, notice=timedelta(hours=2))
    # The clinic may cancel late; a cancellation within 24 h is urgent.
    late = agg.cancel(booking(slot=slot(hours=1)), by="clinic", now=NOW)
    assert late.reason == "clinic_request" and late.notices[0].urgent


def test_reschedule_moves_the_place_and_a_repeat_changes_nothing() -> None:
    new = slot("b", hours=72, booked=0)
    d = agg.reschedule(booking(), new, now=NOW)
    assert (d.take, d.free, d.move) == (new, slot(), agg.Move(slot(), new))
    assert [n.kind for n in d.notices] == [K.BOOKING_RESCHEDULED]
    assert agg.reschedule(booking(), slot(), now=NOW) == agg.Decision.unchanged()
    with pytest.raises(SlotUnavailableError):
        agg.reschedule(booking(), slot("b", booked=1), now=NOW)
    with pytest.raises(InvalidValueError):
        agg.reschedule(booking(), slot("b", booked=0, service="other"), now=NOW)


def test_confirm_or_reject_and_a_decided_booking_is_left_alone() -> None:
    pending = booking(S.PENDING, hold_status=HoldStatus.ACTIVE, hold_expires_at=NOW + timedelta(minutes=5))
    ok = agg.confirm(pending, clinic_active=True, service_active=True, now=NOW)
    assert (ok.to_status, ok.hold, [n.kind for n in ok.notices]) == (
        S.BOOKED,
        HoldStatus.CONVERTED,
        [K.BOOKING_CONFIRMED],
    )
    lapsed = replace(pending, hold_expires_at=NOW)
    no = agg.confirm(lapsed, clinic_active=True, service_active=True, now=NOW)
    assert (no.to_status, no.free, no.reason) == (S.CANCELLED, slot(), "rejected")
    assert no.events[0].reason == "hold_expired"  # type: ignore[attr-defined]
    assert agg.confirm(booking(S.BOOKED), clinic_active=True, service_active=True, now=NOW).changed is False


def test_expire_hold_only_cancels_a_pending_booking_whose_hold_lapsed() -> None:
    pending = booking(S.PENDING, hold_status=HoldStatus.ACTIVE, hold_expires_at=NOW)
    d = agg.expire_hold(pending, now=NOW)
    assert (d.to_status, d.hold, d.reason) == (S.CANCELLED, HoldStatus.EXPIRED, "hold_expired")
    assert (
        agg.expire_hold(replace(pending, hold_expires_at=NOW + timedelta(seconds=1)), now=NOW).changed
        is False
    )
    assert agg.expire_hold(booking(S.BOOKED, hold_status=HoldStatus.CONVERTED), now=NOW).changed is False


def test_visit_steps_keep_the_place() -> None:
    arrived = agg.check_in(booking())
    assert (arrived.to_status, arrived.free) == (S.ARRIVED, None)
    assert agg.check_in(booking(S.ARRIVED)).changed is False
    assert agg.fulfil(booking(S.ARRIVED)).to_status is S.FULFILLED
    assert agg.no_show(booking()).to_status is S.NOSHOW
    with pytest.raises(InvalidTransitionError):
        agg.no_show(booking(S.CANCELLED))


def test_deactivation_cancels_live_appointments_without_a_notice() -> None:
    d = agg.patient_deactivated(booking(S.PENDING), now=NOW)
    assert (d.to_status, d.reason, d.notices) == (S.CANCELLED, "patient_deactivated", [])
    assert agg.patient_deactivated(booking(S.ARRIVED), now=NOW).changed is False


def test_hold_refuses_an_inactive_patient_and_a_full_slot() -> None:
    kw = {
        "booking_id": "b",
        "patient_id": "p",
        "package_code": None,
        "now": NOW,
        "hold_ttl": timedelta(minutes=10),
    }
    d = agg.hold(patient_active=True, slot=slot(booked=0), **kw)  # type: ignore[arg-type]
    assert (d.to_status, d.take, d.new_hold_expires_at) == (
        S.PENDING,
        slot(booked=0),
        NOW + timedelta(minutes=10),
    )
    with pytest.raises(SlotUnavailableError):
        agg.hold(patient_active=True, slot=slot(booked=1), **kw)  # type: ignore[arg-type]
    with pytest.raises(NotPermittedError):
        agg.hold(patient_active=False, slot=slot(booked=0), **kw)  # type: ignore[arg-type]
