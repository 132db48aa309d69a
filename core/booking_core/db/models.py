"""SQLAlchemy models: the whole schema of pat-booking-be (revision 0001 creates it).

Tables (string UUID keys for entities, integer keys for append-only logs; portable PostgreSQL/SQLite):

- patients: synced from the customer database (tier, time zone, birth date, sex, contact), source_version
  makes the sync last-writer-wins.
- clinics, services (what a slot offers), tests (lab catalogue), packages + package_tests: master data with
  an active flag, price in minor units and source_version.
- schedules (weekly rules a staff member enters) and slots (capacity, booked; CHECK booked <= capacity).
- holds: the capacity a pending booking reserves until it is confirmed or expires.
- bookings (FHIR Appointment statuses, reminder markers) and booking_status_history.
- idempotency_keys: the first answer to a POST per (patient, Idempotency-Key).
- outbox: events written in the same transaction as the change, relayed to Kafka (published_at).
- processed_messages: (consumer, message_key) unique; makes every consumer handler idempotent.
- lab_orders, test_results (FHIR DiagnosticReport), observations (FHIR Observation): values, units,
  reference ranges, flags, status, visibility to the patient, HL7 source (MSH-4, MSH-10).
- recommendations: package suggestions with their reason and rule id.
- notification_preferences (channels, quiet hours, urgent override) and notifications (in-app inbox).
- phi_audit_log: who read which patient's record, when.

All timestamps are UTC: `UTCDateTime` stores aware datetimes and returns aware datetimes on every backend.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Time,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from booking_core.db.base import Base

__all__ = [
    "Base",
    "Booking",
    "BookingStatusHistory",
    "Clinic",
    "Hold",
    "IdempotencyKey",
    "LabOrder",
    "Notification",
    "NotificationPreference",
    "Observation",
    "OutboxMessage",
    "Package",
    "PackageTest",
    "Patient",
    "PhiAuditLog",
    "ProcessedMessage",
    "Recommendation",
    "Schedule",
    "Service",
    "Slot",
    "Test",
    "TestResult",
    "new_id",
    "utcnow",
]


def new_id() -> str:
    """A new primary key: a random UUID as text (portable across PostgreSQL and SQLite)."""
    return str(uuid.uuid4())


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no offset, so values are stored as naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSONB on PostgreSQL (indexable, compact), JSON text on SQLite.
JSONType = JSON().with_variant(JSONB(), "postgresql")
# SQLite only autoincrements INTEGER PRIMARY KEY columns.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")
ID = String(36)


def _pk() -> Mapped[str]:
    return mapped_column(ID, primary_key=True, default=new_id)


def _created() -> Mapped[datetime]:
    return mapped_column(UTCDateTime(), nullable=False, default=utcnow)


class Patient(Base):
    """A patient, owned by the customer database and synced by the `customer` consumer."""

    __tablename__ = "patients"
    __table_args__ = (CheckConstraint("tier IN ('standard', 'svip1', 'svip2')", name="tier"),)

    # The customer database's id; also the `sub` of the patient's JWT.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tier: Mapped[str] = mapped_column(String(16), nullable=False, default="standard")
    given_name: Mapped[str | None] = mapped_column(String(200))
    family_name: Mapped[str | None] = mapped_column(String(200))
    date_of_birth: Mapped[date | None] = mapped_column(Date)
    sex: Mapped[str | None] = mapped_column(String(16))
    time_zone: Mapped[str] = mapped_column(String(64), nullable=False, default="UTC")
    locale: Mapped[str] = mapped_column(String(16), nullable=False, default="en")
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(32))
    push_token: Mapped[str | None] = mapped_column(String(512))
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    source_version: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow
    )


class Clinic(Base):
    """A clinic that offers slots."""

    __tablename__ = "clinics"

    id: Mapped[str] = _pk()
    code: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    time_zone: Mapped[str] = mapped_column(String(64), nullable=False, default="UTC")
    address: Mapped[str | None] = mapped_column(String(500))
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    source_version: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    created_at: Mapped[datetime] = _created()


class Service(Base):
    """What a slot offers: a consultation, a blood draw, a screening visit."""

    __tablename__ = "services"

    id: Mapped[str] = _pk()
    code: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    duration_minutes: Mapped[int] = mapped_column(Integer, nullable=False, default=15)
    price_cents: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    currency: Mapped[str] = mapped_column(String(3), nullable=False, default="EUR")
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    source_version: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow
    )


class Test(Base):
    """A lab test of the catalogue (synced by `sync-test-master-data`)."""

    __tablename__ = "tests"
    __test__ = False  # not a pytest test class

    id: Mapped[str] = _pk()
    code: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    loinc: Mapped[str | None] = mapped_column(String(32))
    specimen: Mapped[str | None] = mapped_column(String(64))
    unit: Mapped[str | None] = mapped_column(String(32))
    price_cents: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    currency: Mapped[str] = mapped_column(String(3), nullable=False, default="EUR")
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    source_version: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow
    )


class Package(Base):
    """A bundle of tests sold together (synced by `sync-test-master-data`)."""

    __tablename__ = "packages"

    id: Mapped[str] = _pk()
    code: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    price_cents: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    currency: Mapped[str] = mapped_column(String(3), nullable=False, default="EUR")
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    source_version: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow
    )

    tests: Mapped[list[Test]] = relationship(secondary="package_tests", lazy="selectin", order_by="Test.code")


class PackageTest(Base):
    """Membership of a test in a package."""

    __tablename__ = "package_tests"

    package_id: Mapped[str] = mapped_column(ForeignKey("packages.id", ondelete="CASCADE"), primary_key=True)
    test_id: Mapped[str] = mapped_column(ForeignKey("tests.id", ondelete="CASCADE"), primary_key=True)


class Schedule(Base):
    """A weekly rule: on `weekday`, from start to end local time, slots of `slot_minutes` with `capacity`."""

    __tablename__ = "schedules"
    __table_args__ = (
        CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday"),
        CheckConstraint("slot_minutes > 0", name="slot_minutes_positive"),
        CheckConstraint("capacity >= 0", name="capacity_nonnegative"),
        CheckConstraint("start_time < end_time", name="start_before_end"),
    )

    id: Mapped[str] = _pk()
    clinic_id: Mapped[str] = mapped_column(
        ForeignKey("clinics.id", ondelete="CASCADE"), nullable=False, index=True
    )
    service_id: Mapped[str] = mapped_column(ForeignKey("services.id"), nullable=False)
    weekday: Mapped[int] = mapped_column(Integer, nullable=False)  # 0 = Monday
    start_time: Mapped[time] = mapped_column(Time, nullable=False)
    end_time: Mapped[time] = mapped_column(Time, nullable=False)
    slot_minutes: Mapped[int] = mapped_column(Integer, nullable=False)
    capacity: Mapped[int] = mapped_column(Integer, nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = _created()


class Slot(Base):
    """A bookable time at a clinic for one service; `booked` <= `capacity` (CHECK + conditional UPDATE)."""

    __tablename__ = "slots"
    __table_args__ = (
        CheckConstraint("booked <= capacity", name="not_overbooked"),
        CheckConstraint("booked >= 0", name="booked_nonnegative"),
        CheckConstraint("capacity >= 0", name="capacity_nonnegative"),
        CheckConstraint("status IN ('open', 'closed')", name="status"),
        UniqueConstraint("clinic_id", "service_id", "starts_at", name="uq_slots_clinic_service_start"),
        Index("ix_slots_service_starts_at", "service_id", "starts_at"),
        # The slot search's keyset pages walk these in (starts_at, id) order (revision 0007).
        Index("ix_slots_clinic_starts_at_id", "clinic_id", "starts_at", "id"),
        Index("ix_slots_starts_at_id", "starts_at", "id"),
    )

    id: Mapped[str] = _pk()
    clinic_id: Mapped[str] = mapped_column(ForeignKey("clinics.id", ondelete="CASCADE"), nullable=False)
    service_id: Mapped[str] = mapped_column(ForeignKey("services.id"), nullable=False)
    schedule_id: Mapped[str | None] = mapped_column(ForeignKey("schedules.id", ondelete="SET NULL"))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    capacity: Mapped[int] = mapped_column(Integer, nullable=False)
    booked: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default=text("0"))
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="open")
    created_at: Mapped[datetime] = _created()

    clinic: Mapped[Clinic] = relationship(lazy="joined", innerjoin=True)
    service: Mapped[Service] = relationship(lazy="joined", innerjoin=True)


class Booking(Base):
    """An appointment (FHIR Appointment statuses: pending, booked, arrived, fulfilled, cancelled, noshow)."""

    __tablename__ = "bookings"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'booked', 'arrived', 'fulfilled', 'cancelled', 'noshow')", name="status"
        ),
        Index("ix_bookings_patient_starts_at", "patient_id", "starts_at"),
        Index("ix_bookings_status_starts_at", "status", "starts_at"),
        # One live booking per patient and slot; cancelled ones do not count, so rebooking works.
        Index(
            "uq_bookings_patient_slot_active",
            "patient_id",
            "slot_id",
            unique=True,
            postgresql_where=text("status IN ('pending', 'booked', 'arrived')"),
            sqlite_where=text("status IN ('pending', 'booked', 'arrived')"),
        ),
    )

    id: Mapped[str] = _pk()
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), nullable=False)
    slot_id: Mapped[str] = mapped_column(ForeignKey("slots.id"), nullable=False, index=True)
    clinic_id: Mapped[str] = mapped_column(ForeignKey("clinics.id"), nullable=False)
    service_id: Mapped[str] = mapped_column(ForeignKey("services.id"), nullable=False)
    package_id: Mapped[str | None] = mapped_column(ForeignKey("packages.id"))
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    # Copied from the slot so reminders and no-show marking need no join; rewritten on reschedule.
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    practitioner: Mapped[str | None] = mapped_column(String(200))
    cancel_reason: Mapped[str | None] = mapped_column(String(64))
    reminder_24h_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reminder_2h_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow
    )

    slot: Mapped[Slot] = relationship(lazy="joined", innerjoin=True)
    package: Mapped[Package | None] = relationship(lazy="joined")


class BookingStatusHistory(Base):
    """Every status change of a booking, who made it and why."""

    __tablename__ = "booking_status_history"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    booking_id: Mapped[str] = mapped_column(
        ForeignKey("bookings.id", ondelete="CASCADE"), nullable=False, index=True
    )
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16), nullable=False)
    reason: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(
        String(100), nullable=False
    )  # "patient", "staff:<id>", "system:<task>"
    at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)


class Hold(Base):
    """Capacity a pending booking reserves until confirmed (`converted`) or past `expires_at` (`expired`)."""

    __tablename__ = "holds"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'converted', 'expired', 'released')", name="status"),
        Index("ix_holds_status_expires_at", "status", "expires_at"),
    )

    id: Mapped[str] = _pk()
    slot_id: Mapped[str] = mapped_column(ForeignKey("slots.id"), nullable=False)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), nullable=False)
    booking_id: Mapped[str | None] = mapped_column(ForeignKey("bookings.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    created_at: Mapped[datetime] = _created()


class IdempotencyKey(Base):
    """The first successful answer to a POST, replayed for retries with the same key and body."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("patient_id", "key", name="uq_idempotency_keys_patient_key"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255), nullable=False)
    patient_id: Mapped[str] = mapped_column(String(64), nullable=False)
    # sha256 of method, route and canonical body: the same key with another request is refused.
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[Any] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow, index=True)


class OutboxMessage(Base):
    """An event waiting for the relay; written in the transaction of the change it describes."""

    __tablename__ = "outbox"
    __table_args__ = (
        # The relay's work queue: only unpublished rows, in id order.
        Index(
            "ix_outbox_unpublished",
            "id",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
        Index("ix_outbox_published_at", "published_at"),
        # The SVIP result topics' relay loop: its topics' unpublished rows only (revision 0009).
        Index(
            "ix_outbox_unpublished_topic",
            "topic",
            "id",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(ID, nullable=False, unique=True)
    event_type: Mapped[str] = mapped_column(String(100), nullable=False)
    topic: Mapped[str] = mapped_column(String(255), nullable=False)
    key: Mapped[str] = mapped_column(String(255), nullable=False)  # the aggregate id, never PHI
    payload: Mapped[Any] = mapped_column(JSONType, nullable=False)
    headers: Mapped[dict[str, str]] = mapped_column(JSONType, nullable=False, default=dict)
    created_at: Mapped[datetime] = _created()
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(String(500))


class ProcessedMessage(Base):
    """A message a consumer has already applied; inserted in the handler's transaction."""

    __tablename__ = "processed_messages"
    __table_args__ = (UniqueConstraint("consumer", "message_key", name="uq_processed_messages_consumer_key"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    consumer: Mapped[str] = mapped_column(String(100), nullable=False)
    message_key: Mapped[str] = mapped_column(String(255), nullable=False)
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow, index=True)


class LabOrder(Base):
    """A lab order (HL7 ORC/OBR placer and filler numbers)."""

    __tablename__ = "lab_orders"
    __table_args__ = (
        UniqueConstraint("source_facility", "filler_order_number", name="uq_lab_orders_facility_filler"),
    )

    id: Mapped[str] = _pk()
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), nullable=False, index=True)
    booking_id: Mapped[str | None] = mapped_column(ForeignKey("bookings.id", ondelete="SET NULL"))
    placer_order_number: Mapped[str | None] = mapped_column(String(100))
    filler_order_number: Mapped[str | None] = mapped_column(String(100))
    source_facility: Mapped[str | None] = mapped_column(String(100))  # MSH-4
    status: Mapped[str] = mapped_column(String(32), nullable=False, default="active")
    ordered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = _created()


# The one status vocabulary (booking_core.domain.results.ResultStatus) as a CHECK.
RESULT_STATUSES = (
    "status IN ('registered', 'preliminary', 'final', 'corrected', 'entered-in-error', 'cancelled')"
)


class TestResult(Base):
    """A report (FHIR DiagnosticReport): one OBR group of an ORU^R01 message and its observations."""

    __tablename__ = "test_results"
    __test__ = False  # not a pytest test class
    __table_args__ = (
        CheckConstraint(RESULT_STATUSES, name="status"),
        # MSH-4 + MSH-10 identify a message; OBR-1 tells its report groups apart.
        UniqueConstraint(
            "source_facility", "source_message_id", "source_set_id", name="uq_test_results_source"
        ),
        Index("ix_test_results_patient_issued_at", "patient_id", "issued_at"),
    )

    id: Mapped[str] = _pk()
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), nullable=False)
    lab_order_id: Mapped[str | None] = mapped_column(ForeignKey("lab_orders.id", ondelete="SET NULL"))
    booking_id: Mapped[str | None] = mapped_column(ForeignKey("bookings.id", ondelete="SET NULL"))
    test_code: Mapped[str] = mapped_column(String(64), nullable=False)
    test_name: Mapped[str] = mapped_column(String(200), nullable=False)
    status: Mapped[str] = mapped_column(String(32), nullable=False, default="final")
    conclusion: Mapped[str | None] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)  # the lab's NTE notes on the order (OBR)
    effective_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # specimen collected
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    visible_to_patient: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # made visible to the patient
    source_facility: Mapped[str | None] = mapped_column(String(100))  # MSH-4
    source_message_id: Mapped[str | None] = mapped_column(String(100))  # MSH-10
    source_set_id: Mapped[str] = mapped_column(String(32), nullable=False, default="1")  # OBR-1
    filler_order_number: Mapped[str | None] = mapped_column(String(100), index=True)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow
    )

    observations: Mapped[list[Observation]] = relationship(
        back_populates="result",
        lazy="selectin",
        order_by="Observation.sequence",
        cascade="all, delete-orphan",
    )


class Observation(Base):
    """One measured value (FHIR Observation / HL7 OBX) of a report."""

    __tablename__ = "observations"
    __table_args__ = (
        CheckConstraint(RESULT_STATUSES, name="status"),
        UniqueConstraint("result_id", "sequence", name="uq_observations_result_sequence"),
    )

    id: Mapped[str] = _pk()
    result_id: Mapped[str] = mapped_column(ForeignKey("test_results.id", ondelete="CASCADE"), nullable=False)
    sequence: Mapped[int] = mapped_column(Integer, nullable=False, default=1)  # position in the OBR group
    code: Mapped[str] = mapped_column(String(64), nullable=False)
    sub_id: Mapped[str | None] = mapped_column(String(20))  # OBX-4: one of several values with one code
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    value_type: Mapped[str] = mapped_column(String(8), nullable=False, default="NM")  # OBX-2
    value_numeric: Mapped[float | None] = mapped_column(Float)
    value_text: Mapped[str | None] = mapped_column(Text)  # what the patient reads, for every value type
    # OBX-5 did not fit OBX-2 (an NM of "NEG"): stored as text rather than dropped.
    value_flagged: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    # An ED/RP value: its media type and the data (ED, as received) or the pointer (RP).
    attachment_kind: Mapped[str | None] = mapped_column(String(2))
    attachment_type: Mapped[str | None] = mapped_column(String(100))
    attachment_encoding: Mapped[str | None] = mapped_column(String(16))
    attachment_data: Mapped[str | None] = mapped_column(Text)
    unit: Mapped[str | None] = mapped_column(String(100))
    reference_low: Mapped[float | None] = mapped_column(Float)
    reference_high: Mapped[float | None] = mapped_column(Float)
    reference_text: Mapped[str | None] = mapped_column(String(255))  # OBX-7 as received
    flag: Mapped[str | None] = mapped_column(String(4))  # H, L, HH, LL, A, N: the most severe
    flags: Mapped[str | None] = mapped_column(String(64))  # every OBX-8 code as received, "~"-joined
    comment: Mapped[str | None] = mapped_column(Text)  # the lab's NTE notes on this value
    status: Mapped[str] = mapped_column(String(32), nullable=False, default="final")
    visible_to_patient: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    observed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow
    )

    result: Mapped[TestResult] = relationship(back_populates="observations")


class Recommendation(Base):
    """A suggested package for a patient, with the rule that produced it and why."""

    __tablename__ = "recommendations"
    __table_args__ = (
        UniqueConstraint(
            "patient_id", "package_id", "rule_id", name="uq_recommendations_patient_package_rule"
        ),
    )

    id: Mapped[str] = _pk()
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), nullable=False, index=True)
    package_id: Mapped[str] = mapped_column(ForeignKey("packages.id"), nullable=False)
    rule_id: Mapped[str] = mapped_column(String(64), nullable=False)
    reason: Mapped[str] = mapped_column(String(500), nullable=False)
    created_at: Mapped[datetime] = _created()
    dismissed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    package: Mapped[Package] = relationship(lazy="joined", innerjoin=True)


class NotificationPreference(Base):
    """A patient's channels and quiet hours (local time in the patient's time zone)."""

    __tablename__ = "notification_preferences"

    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), primary_key=True)
    email: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    sms: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    push: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    in_app: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    quiet_hours_start: Mapped[time | None] = mapped_column(Time)
    quiet_hours_end: Mapped[time | None] = mapped_column(Time)
    # Urgent messages (e.g. a cancelled appointment today) are sent even in quiet hours.
    urgent_override: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow
    )


class Notification(Base):
    """An in-app inbox entry; `dedupe_key` makes writing it idempotent."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_patient_created_at", "patient_id", "created_at"),)

    id: Mapped[str] = _pk()
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), nullable=False)
    kind: Mapped[str] = mapped_column(String(64), nullable=False)
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    dedupe_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = _created()
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PhiAuditLog(Base):
    """Who read or changed which patient's protected health information, and when."""

    __tablename__ = "phi_audit_log"
    __table_args__ = (Index("ix_phi_audit_log_patient_at", "patient_id", "at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    actor: Mapped[str] = mapped_column(String(100), nullable=False)  # "patient:<id>", "staff:<id>"
    patient_id: Mapped[str] = mapped_column(String(64), nullable=False)
    resource_type: Mapped[str] = mapped_column(String(64), nullable=False)
    resource_id: Mapped[str] = mapped_column(String(64), nullable=False)
    action: Mapped[str] = mapped_column(String(32), nullable=False)  # read, list, update
    request_id: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
