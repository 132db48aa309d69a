"""Request and response bodies (BookingCreate, BookingPublic, ...); the OpenAPI document comes from them."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Code = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
BookingStatusName = Literal["pending", "booked", "arrived", "fulfilled", "cancelled", "noshow"]
ResultStatusName = Literal["registered", "preliminary", "final", "corrected", "entered-in-error", "cancelled"]
FlagName = Literal["N", "H", "L", "HH", "LL", "A"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- catalogue -------------------------------------------------------------------------------------------


class ClinicPublic(_Out):
    """A clinic."""

    id: str
    code: str
    name: str
    time_zone: str
    address: str | None


class ServicePublic(_Out):
    """A bookable service (what a slot offers)."""

    code: str
    name: str
    duration_minutes: int
    price_cents: int
    currency: str


class TestPublic(_Out):
    """A lab test of the catalogue."""

    __test__ = False  # not a pytest test class

    code: str
    name: str
    specimen: str | None
    unit: str | None
    price_cents: int
    currency: str


class PackagePublic(BaseModel):
    """A package of tests."""

    code: str
    name: str
    description: str | None
    price_cents: int
    currency: str
    tests: list[str]


class CataloguePublic(BaseModel):
    """The active catalogue: services, tests and packages."""

    services: list[ServicePublic]
    tests: list[TestPublic]
    packages: list[PackagePublic]


# --- slots -----------------------------------------------------------------------------------------------


class SlotPublic(BaseModel):
    """A slot with free capacity."""

    id: str
    clinic_id: str
    service_code: str
    starts_at: datetime
    ends_at: datetime
    capacity: int
    free: int


class SlotPage(BaseModel):
    """One page of a slot search, in (starts_at, id) order."""

    items: list[SlotPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` (with the same search parameters) for the next page; null on the last"
    )


class SlotStaff(SlotPublic):
    """A slot as staff see it."""

    booked: int
    status: Literal["open", "closed"]
    schedule_id: str | None


class SlotCreate(_In):
    """A single slot created by staff."""

    service_code: Code
    starts_at: datetime
    ends_at: datetime
    capacity: int = Field(ge=0, le=1000)


class SlotUpdate(_In):
    """Change a slot's capacity (never below what is booked) or close/reopen it."""

    capacity: int | None = Field(default=None, ge=0, le=1000)
    status: Literal["open", "closed"] | None = None


class ScheduleCreate(_In):
    """A weekly rule: on `weekday` (0 = Monday) from start to end local time."""

    service_code: Code
    weekday: int = Field(ge=0, le=6)
    start_time: time
    end_time: time
    slot_minutes: int = Field(ge=5, le=480)
    capacity: int = Field(ge=0, le=1000)


class SchedulePublic(BaseModel):
    """A weekly schedule rule of a clinic."""

    id: str
    clinic_id: str
    service_code: str
    weekday: int
    start_time: time
    end_time: time
    slot_minutes: int
    capacity: int
    active: bool


class SlotGenerate(_In):
    """Create the slots a clinic's active schedules give on these local dates (existing ones are kept)."""

    date_from: date
    date_to: date


class SlotGenerateResult(BaseModel):
    """How many slots were created."""

    created: int


# --- bookings --------------------------------------------------------------------------------------------


class BookingCreate(_In):
    """Book a place on a slot, optionally for a package of tests."""

    slot_id: Id
    package_code: Code | None = None


class BookingReschedule(_In):
    """Move a booking to another slot of the same service."""

    slot_id: Id


class BookingPublic(BaseModel):
    """A booking as its patient sees it."""

    id: str
    status: BookingStatusName
    slot_id: str
    clinic_id: str
    service_code: str
    package_code: str | None
    starts_at: datetime
    ends_at: datetime
    hold_expires_at: datetime | None
    cancel_reason: str | None
    created_at: datetime
    updated_at: datetime


# --- results, recommendations, notifications -------------------------------------------------------------


class ReferenceRangePublic(BaseModel):
    """A reference interval; either bound may be open, `text` is what the lab sent."""

    low: float | None
    high: float | None
    text: str | None


class ObservationPublic(BaseModel):
    """One value of a report."""

    code: str
    name: str
    value_numeric: float | None
    value_text: str | None
    unit: str | None
    reference_range: ReferenceRangePublic | None
    flag: FlagName | None
    status: ResultStatusName
    comment: str | None = None  # the lab's note on this value
    attachment_type: str | None = None  # a report the lab attached (PDF, image): its media type


class TestResultSummary(BaseModel):
    """A report in the list."""

    __test__ = False  # not a pytest test class

    id: str
    test_code: str
    test_name: str
    status: ResultStatusName
    issued_at: datetime
    abnormal: bool


class TestResultPublic(TestResultSummary):
    """A report with its observations."""

    conclusion: str | None
    comment: str | None = None  # the lab's note on the whole test (why it was cancelled, how to read it)
    effective_at: datetime | None
    observations: list[ObservationPublic]


class RecommendationPublic(BaseModel):
    """A suggested package and why."""

    id: str
    package_code: str
    package_name: str
    reason: str
    rule_id: str
    created_at: datetime


class NotificationPublic(_Out):
    """An in-app inbox entry."""

    id: str
    kind: str
    title: str
    body: str
    created_at: datetime
    read_at: datetime | None


class NotificationPreferencesUpdate(_In):
    """Channels and quiet hours (local time in the patient's time zone; may wrap past midnight)."""

    email: bool = True
    sms: bool = True
    push: bool = True
    in_app: bool = True
    quiet_hours_start: time | None = None
    quiet_hours_end: time | None = None
    urgent_override: bool = True


class NotificationPreferencesPublic(_Out):
    """A patient's notification preferences."""

    email: bool
    sms: bool
    push: bool
    in_app: bool
    quiet_hours_start: time | None
    quiet_hours_end: time | None
    urgent_override: bool


class Health(BaseModel):
    """Liveness or readiness."""

    status: Literal["ok", "ready"]
