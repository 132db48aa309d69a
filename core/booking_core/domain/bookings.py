"""Bookings: FHIR Appointment statuses, the transitions between them, and notice cut-offs."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from booking_core.domain.errors import InvalidTransitionError, InvalidValueError, NoticePeriodPassedError


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
# Statuses that occupy a place on the slot.
ACTIVE_STATUSES: frozenset[BookingStatus] = frozenset({S.PENDING, S.BOOKED, S.ARRIVED})
# Statuses a patient may still cancel or reschedule.
CHANGEABLE_STATUSES: frozenset[BookingStatus] = frozenset({S.PENDING, S.BOOKED})

_ALIASES = {"checked-in": S.ARRIVED, "checkedin": S.ARRIVED, "no-show": S.NOSHOW, "canceled": S.CANCELLED}


class CancelReason(StrEnum):
    """Why a booking was cancelled (no free text: it could carry PHI)."""

    PATIENT_REQUEST = "patient_request"
    CLINIC_REQUEST = "clinic_request"
    HOLD_EXPIRED = "hold_expired"
    REJECTED = "rejected"
    OTHER = "other"


def parse_status(value: str) -> BookingStatus:
    """A status from FHIR spellings, accepting `checked-in` for arrived."""
    v = value.strip().lower()
    if v in _ALIASES:
        return _ALIASES[v]
    try:
        return BookingStatus(v)
    except ValueError as exc:
        raise InvalidValueError("status", f"unknown booking status {value!r}") from exc


def can_transition(current: BookingStatus | str, target: BookingStatus | str) -> bool:
    """True when the state machine allows current -> target."""
    return BookingStatus(target) in TRANSITIONS[BookingStatus(current)]


def transition(current: BookingStatus | str, target: BookingStatus | str) -> BookingStatus:
    """The new status, or InvalidTransitionError."""
    if not can_transition(current, target):
        raise InvalidTransitionError(str(current), str(target))
    return BookingStatus(target)


def holds_capacity(status: BookingStatus | str) -> bool:
    """True when a booking in `status` occupies its slot."""
    return BookingStatus(status) in ACTIVE_STATUSES


def check_notice(*, starts_at: datetime, now: datetime, notice: timedelta, action: str) -> None:
    """Raise NoticePeriodPassedError when `now` is within `notice` of the appointment."""
    if now > starts_at - notice:
        hours = notice.total_seconds() / 3600
        raise NoticePeriodPassedError(f"{action} is possible until {hours:g} h before the appointment")


def check_changeable(status: BookingStatus | str, action: str) -> None:
    """Raise InvalidTransitionError unless a patient may still cancel or reschedule."""
    if BookingStatus(status) not in CHANGEABLE_STATUSES:
        raise InvalidTransitionError(str(status), action)


def due_reminders(*, starts_at: datetime, now: datetime, sent_24h: bool, sent_2h: bool) -> list[str]:
    """Reminders ("24h", "2h") due now and not yet sent; inside 2 h only the 2 h one is due."""
    if now >= starts_at:
        return []
    left = starts_at - now
    if left <= timedelta(hours=2):
        return [] if sent_2h else ["2h"]
    if left <= timedelta(hours=24):
        return [] if sent_24h else ["24h"]
    return []
