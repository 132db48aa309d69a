"""Bookings: FHIR Appointment statuses, the transitions between them, and notice cut-offs.

The transitions themselves (what each does to slots, holds and notices) live in `lifecycle`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from booking_core.domain.errors import InvalidTransitionError, NoticePeriodPassedError


class BookingStatus(StrEnum):
    """FHIR Appointment.status values this system uses."""

    PENDING = "pending"  # requested, capacity held, awaiting confirmation
    BOOKED = "booked"  # confirmed
    ARRIVED = "arrived"  # checked in at the clinic
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"
    NOSHOW = "noshow"


S = BookingStatus
TRANSITIONS: dict[BookingStatus, frozenset[BookingStatus]] = {
    S.PENDING: frozenset({S.BOOKED, S.CANCELLED}),
    S.BOOKED: frozenset({S.ARRIVED, S.CANCELLED, S.NOSHOW}),
    S.ARRIVED: frozenset({S.FULFILLED}),
    S.FULFILLED: frozenset(),
    S.CANCELLED: frozenset(),
    S.NOSHOW: frozenset(),
}
# Statuses a patient may still cancel or reschedule.
CHANGEABLE_STATUSES: frozenset[BookingStatus] = frozenset({S.PENDING, S.BOOKED})


class CancelReason(StrEnum):
    """Why a booking was cancelled (no free text: it could carry PHI)."""

    PATIENT_REQUEST = "patient_request"
    CLINIC_REQUEST = "clinic_request"
    HOLD_EXPIRED = "hold_expired"
    REJECTED = "rejected"
    PATIENT_DEACTIVATED = "patient_deactivated"
    OTHER = "other"


def can_transition(current: BookingStatus | str, target: BookingStatus | str) -> bool:
    """True when the state machine allows current -> target."""
    return BookingStatus(target) in TRANSITIONS[BookingStatus(current)]


def transition(current: BookingStatus | str, target: BookingStatus | str) -> BookingStatus:
    """The new status, or InvalidTransitionError."""
    if not can_transition(current, target):
        raise InvalidTransitionError(str(current), str(target))
    return BookingStatus(target)


def occupies_place(status: BookingStatus | str) -> bool:
    """True when a booking in `status` counts in its slot's `booked`: every status but cancelled.

    An appointment that took place (or was missed) keeps its place: the slot is in the past and its
    count stays equal to the bookings made on it.
    """
    return BookingStatus(status) is not S.CANCELLED


def check_notice(*, starts_at: datetime, now: datetime, notice: timedelta, action: str) -> None:
    """Raise NoticePeriodPassedError when `now` is within `notice` of the appointment."""
    if now > starts_at - notice:
        hours = notice.total_seconds() / 3600
        raise NoticePeriodPassedError(f"{action} is possible until {hours:g} h before the appointment")


def check_changeable(status: BookingStatus | str, action: str) -> None:
    """Raise InvalidTransitionError unless a patient may still cancel or reschedule."""
    if BookingStatus(status) not in CHANGEABLE_STATUSES:
        raise InvalidTransitionError(str(status), action)
