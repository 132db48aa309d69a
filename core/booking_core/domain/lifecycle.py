"""The booking aggregate: every transition of a booking, and what it does to its slots, hold and patient.

`BookingLifecycle` decides; it never writes. Each method takes what the unit of work read (under its locks)
and returns a `Decision`: the new status, the places to take and free, the hold's fate, the events to
publish and the notices to send. `booking_core.db.lifecycle` applies a decision with conditional updates;
it is the only code that writes a booking's status or a slot's count (tests/core/test_single_owner.py).

A repeat (cancelling a cancelled booking, moving a booking to its own slot, confirming a decided one)
returns `Decision.unchanged()`: the edges answer it like the first call, so retries are harmless.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from booking_core.domain.bookings import (
    BookingStatus,
    CancelReason,
    check_changeable,
    check_notice,
    occupies_place,
    transition,
)
from booking_core.domain.errors import InvalidValueError, NotPermittedError, SlotUnavailableError
from booking_core.domain.holds import HoldStatus, hold_expires_at
from booking_core.domain.notifications import NotificationKind
from booking_core.events import (
    BookingCancelled,
    BookingCheckedIn,
    BookingConfirmed,
    BookingFulfilled,
    BookingNoShow,
    BookingRejected,
    BookingRequested,
    BookingRescheduled,
    EventPayload,
)

S = BookingStatus
# A change this close to the appointment is sent even in the patient's quiet hours.
URGENT_WITHIN = timedelta(hours=24)


@dataclass(frozen=True)
class SlotView:
    """A slot as read under its lock."""

    id: str
    clinic_id: str
    service_id: str
    service_code: str
    starts_at: datetime
    ends_at: datetime
    capacity: int
    booked: int
    open: bool


@dataclass(frozen=True)
class BookingView:
    """A booking as read under its lock, with its hold (None when it has none)."""

    id: str
    patient_id: str
    status: BookingStatus
    slot: SlotView
    version: int
    hold_status: HoldStatus | None = None
    hold_expires_at: datetime | None = None
    package_code: str | None = None


@dataclass(frozen=True)
class NoticeIntent:
    """A notice the patient is owed because of a change; sent after the change commits."""

    kind: NotificationKind
    patient_id: str
    booking_id: str
    urgent: bool = False


@dataclass(frozen=True)
class Move:
    """The booking moves from one slot to another (reminders are re-armed for the new time)."""

    old: SlotView
    new: SlotView


@dataclass(frozen=True)
class Decision:
    """What one transition does; `changed` False for a repeat that changes nothing."""

    changed: bool
    to_status: BookingStatus | None = None
    reason: str | None = None
    take: SlotView | None = None  # a place taken on this slot
    free: SlotView | None = None  # a place given back on this slot
    move: Move | None = None
    hold: HoldStatus | None = None  # the active hold's new status
    new_hold_expires_at: datetime | None = None  # a hold to create (hold only)
    events: list[EventPayload] = field(default_factory=list)
    notices: list[NoticeIntent] = field(default_factory=list)

    @classmethod
    def unchanged(cls) -> Decision:
        """A repeat: nothing to write, nothing to send."""
        return cls(changed=False)


def _urgent(starts_at: datetime, now: datetime) -> bool:
    return starts_at - now <= URGENT_WITHIN


def _bookable(slot: SlotView, now: datetime) -> None:
    if not slot.open:
        raise SlotUnavailableError(slot.id, "the slot is closed")
    if slot.starts_at <= now:
        raise SlotUnavailableError(slot.id, "the slot has already started")
    if slot.booked >= slot.capacity:
        raise SlotUnavailableError(slot.id)


def hold(
    *,
    booking_id: str,
    patient_id: str,
    patient_active: bool,
    slot: SlotView,
    package_code: str | None,
    now: datetime,
    hold_ttl: timedelta,
) -> Decision:
    """A patient asks for a place: pending, one place taken, a hold until it is confirmed or lapses."""
    if not patient_active:
        raise NotPermittedError("the patient's account is deactivated", code="patient_deactivated")
    _bookable(slot, now)
    expires = hold_expires_at(now, hold_ttl, slot.starts_at)
    return Decision(
        changed=True,
        to_status=S.PENDING,
        reason="requested",
        take=slot,
        new_hold_expires_at=expires,
        events=[
            BookingRequested(
                booking_id=booking_id,
                patient_id=patient_id,
                slot_id=slot.id,
                clinic_id=slot.clinic_id,
                service_code=slot.service_code,
                starts_at=slot.starts_at,
                ends_at=slot.ends_at,
                package_code=package_code,
                hold_expires_at=expires,
            )
        ],
    )


def rejection_reason(
    b: BookingView, *, clinic_active: bool, service_active: bool, now: datetime
) -> str | None:
    """Why the clinic's schedule refuses this pending booking, or None when it can be confirmed."""
    if not clinic_active:
        return "clinic_closed"
    if not service_active:
        return "service_unavailable"
    if not b.slot.open:
        return "slot_closed"
    if b.slot.starts_at <= now:
        return "slot_in_past"
    if b.hold_status is not None and (
        b.hold_status is not HoldStatus.ACTIVE or (b.hold_expires_at is not None and b.hold_expires_at <= now)
    ):
        return "hold_expired"
    return None


def confirm(b: BookingView, *, clinic_active: bool, service_active: bool, now: datetime) -> Decision:
    """Confirm a pending booking against the clinic's schedule, or reject it (its place is freed)."""
    if b.status is not S.PENDING:
        return Decision.unchanged()  # decided, cancelled or expired meanwhile
    why = rejection_reason(b, clinic_active=clinic_active, service_active=service_active, now=now)
    if why is not None:
        return Decision(
            changed=True,
            to_status=S.CANCELLED,
            reason=CancelReason.REJECTED.value,
            free=b.slot,
            hold=HoldStatus.RELEASED,
            events=[BookingRejected(booking_id=b.id, patient_id=b.patient_id, slot_id=b.slot.id, reason=why)],
            notices=[NoticeIntent(NotificationKind.BOOKING_CANCELLED, b.patient_id, b.id)],
        )
    return Decision(
        changed=True,
        to_status=S.BOOKED,
        hold=HoldStatus.CONVERTED,
        events=[
            BookingConfirmed(
                booking_id=b.id, patient_id=b.patient_id, slot_id=b.slot.id, starts_at=b.slot.starts_at
            )
        ],
        notices=[NoticeIntent(NotificationKind.BOOKING_CONFIRMED, b.patient_id, b.id)],
    )


def _cancelled(
    b: BookingView,
    *,
    reason: CancelReason,
    by: str,
    now: datetime,
    hold: HoldStatus = HoldStatus.RELEASED,
    notify: bool = True,
) -> Decision:
    transition(b.status, S.CANCELLED)
    return Decision(
        changed=True,
        to_status=S.CANCELLED,
        reason=reason.value,
        free=b.slot if occupies_place(b.status) else None,
        hold=hold,
        events=[
            BookingCancelled(
                booking_id=b.id,
                patient_id=b.patient_id,
                slot_id=b.slot.id,
                starts_at=b.slot.starts_at,
                previous_status=b.status.value,
                reason=reason.value,
                cancelled_by=by,
            )
        ],
        notices=(
            [
                NoticeIntent(
                    NotificationKind.BOOKING_CANCELLED,
                    b.patient_id,
                    b.id,
                    urgent=_urgent(b.slot.starts_at, now),
                )
            ]
            if notify
            else []
        ),
    )


def cancel(b: BookingView, *, by: str, now: datetime, notice: timedelta | None = None) -> Decision:
    """Cancel (a patient within `notice`, the clinic at any time); cancelling twice changes nothing."""
    if b.status is S.CANCELLED:
        return Decision.unchanged()
    if by == "patient":
        check_changeable(b.status, S.CANCELLED.value)
    if notice is not None:
        check_notice(starts_at=b.slot.starts_at, now=now, notice=notice, action="cancellation")
    reason = CancelReason.PATIENT_REQUEST if by == "patient" else CancelReason.CLINIC_REQUEST
    return _cancelled(b, reason=reason, by=by, now=now)


def reschedule(b: BookingView, new: SlotView, *, now: datetime, notice: timedelta | None = None) -> Decision:
    """Move to another slot of the same service; the same slot again changes nothing."""
    if new.id == b.slot.id:
        return Decision.unchanged()
    check_changeable(b.status, "rescheduled")
    if notice is not None:
        check_notice(starts_at=b.slot.starts_at, now=now, notice=notice, action="rescheduling")
    if new.service_id != b.slot.service_id:
        raise InvalidValueError("slot_id", "the new slot must offer the same service")
    _bookable(new, now)
    return Decision(
        changed=True,
        to_status=b.status,
        reason="rescheduled",
        take=new,
        free=b.slot,
        move=Move(old=b.slot, new=new),
        events=[
            BookingRescheduled(
                booking_id=b.id,
                patient_id=b.patient_id,
                old_slot_id=b.slot.id,
                new_slot_id=new.id,
                old_starts_at=b.slot.starts_at,
                new_starts_at=new.starts_at,
                new_ends_at=new.ends_at,
            )
        ],
        notices=[
            NoticeIntent(
                NotificationKind.BOOKING_RESCHEDULED, b.patient_id, b.id, urgent=_urgent(new.starts_at, now)
            )
        ],
    )


def expire_hold(b: BookingView, *, now: datetime) -> Decision:
    """A lapsed hold: its still-pending booking is cancelled and the place freed; otherwise no change."""
    if b.status is not S.PENDING or b.hold_status is not HoldStatus.ACTIVE:
        return Decision.unchanged()
    if b.hold_expires_at is None or b.hold_expires_at > now:
        return Decision.unchanged()
    return _cancelled(b, reason=CancelReason.HOLD_EXPIRED, by="system", now=now, hold=HoldStatus.EXPIRED)


def _step(b: BookingView, target: BookingStatus, event: EventPayload, reason: str | None) -> Decision:
    if b.status is target:
        return Decision.unchanged()
    transition(b.status, target)
    return Decision(changed=True, to_status=target, reason=reason, events=[event])


def check_in(b: BookingView) -> Decision:
    """The patient arrived (booked -> arrived)."""
    return _step(b, S.ARRIVED, BookingCheckedIn(booking_id=b.id, patient_id=b.patient_id), None)


def no_show(b: BookingView, *, reason: str | None = None) -> Decision:
    """The patient did not come (booked -> noshow); the past slot keeps its place."""
    return _step(b, S.NOSHOW, BookingNoShow(booking_id=b.id, patient_id=b.patient_id), reason)


def fulfil(b: BookingView) -> Decision:
    """The appointment took place (arrived -> fulfilled)."""
    return _step(b, S.FULFILLED, BookingFulfilled(booking_id=b.id, patient_id=b.patient_id), None)


def patient_deactivated(b: BookingView, *, now: datetime) -> Decision:
    """The customer database closed the patient: a pending or booked appointment is cancelled.

    The place goes back to other patients at once; no notice is sent (the account is closed and the
    notifier refuses inactive patients), the clinic sees `booking.cancelled` with reason
    `patient_deactivated`. Arrived and finished appointments stay as they are: they are history.
    """
    if b.status not in (S.PENDING, S.BOOKED):
        return Decision.unchanged()
    return _cancelled(b, reason=CancelReason.PATIENT_DEACTIVATED, by="system", now=now, notify=False)
