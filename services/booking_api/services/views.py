"""ORM rows to public schemas."""

from __future__ import annotations

from booking_api.schemas import (
    BookingPublic,
    ObservationPublic,
    ReferenceRangePublic,
    SlotPublic,
    SlotStaff,
    TestResultPublic,
    TestResultSummary,
)
from booking_core.db.lifecycle import HeldBooking
from booking_core.db.models import Booking, Hold, Observation, Slot, TestResult
from booking_core.domain.results import is_abnormal, parse_flag
from booking_core.domain.slots import free_capacity


def booking_public(booking: Booking, hold: Hold | None = None) -> BookingPublic:
    """A booking as its patient sees it."""
    return BookingPublic(
        id=booking.id,
        status=booking.status,
        slot_id=booking.slot_id,
        clinic_id=booking.clinic_id,
        service_code=booking.slot.service.code,
        package_code=booking.package.code if booking.package else None,
        starts_at=booking.starts_at,
        ends_at=booking.ends_at,
        hold_expires_at=hold.expires_at if hold is not None and hold.status == "active" else None,
        cancel_reason=booking.cancel_reason,
        created_at=booking.created_at,
        updated_at=booking.updated_at,
    )


def held_public(held: HeldBooking) -> BookingPublic:
    """A booking just created (pending, on hold), as its patient sees it."""
    return BookingPublic(
        id=held.id,
        status=held.status,
        slot_id=held.slot_id,
        clinic_id=held.clinic_id,
        service_code=held.service_code,
        package_code=held.package_code,
        starts_at=held.starts_at,
        ends_at=held.ends_at,
        hold_expires_at=held.hold_expires_at,
        cancel_reason=None,
        created_at=held.created_at,
        updated_at=held.created_at,
    )


def slot_public(slot: Slot) -> SlotPublic:
    """A slot with its free capacity."""
    return SlotPublic(
        id=slot.id,
        clinic_id=slot.clinic_id,
        service_code=slot.service.code,
        starts_at=slot.starts_at,
        ends_at=slot.ends_at,
        capacity=slot.capacity,
        free=free_capacity(slot.capacity, slot.booked),
    )


def slot_staff(slot: Slot) -> SlotStaff:
    """A slot as staff see it."""
    return SlotStaff(
        **slot_public(slot).model_dump(),
        booked=slot.booked,
        status=slot.status,
        schedule_id=slot.schedule_id,
    )


def _observation(o: Observation) -> ObservationPublic:
    has_range = o.reference_low is not None or o.reference_high is not None or o.reference_text
    return ObservationPublic(
        code=o.code,
        name=o.name,
        value_numeric=o.value_numeric,
        value_text=o.value_text,
        unit=o.unit,
        reference_range=ReferenceRangePublic(
            low=o.reference_low, high=o.reference_high, text=o.reference_text
        )
        if has_range
        else None,
        flag=(f.value if (f := parse_flag(o.flag)) else None),
        status=o.status,
        comment=o.comment,
        attachment_type=o.attachment_type if o.attachment_kind else None,
    )


def _visible(r: TestResult) -> list[Observation]:
    return [o for o in r.observations if o.visible_to_patient and o.status != "entered-in-error"]


def result_summary(r: TestResult) -> TestResultSummary:
    """A report in the patient's list."""
    return TestResultSummary(
        id=r.id,
        test_code=r.test_code,
        test_name=r.test_name,
        status=r.status,
        issued_at=r.issued_at,
        abnormal=any(is_abnormal(parse_flag(o.flag)) for o in _visible(r)),
    )


def result_public(r: TestResult) -> TestResultPublic:
    """A report with the observations the patient may see."""
    return TestResultPublic(
        **result_summary(r).model_dump(),
        conclusion=r.conclusion,
        comment=r.comment,
        effective_at=r.effective_at,
        observations=[_observation(o) for o in _visible(r)],
    )
