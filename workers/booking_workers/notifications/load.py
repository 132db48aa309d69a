"""Everything one notification job reads, in one statement: the patient, their choices, and what the
event is about (the booking and its clinic, or the stored LIS message for a results notice).

Issue 15's profile: the job read the patient and preferences, then the booking, then the clinic, and
after the send the LIS message again for the delivery-time metric, each a round trip and an ORM load.
The statements are built once (per kind of event) and executed with parameters on an autocommit
session, so a job pays one round trip and no BEGIN/ROLLBACK for its reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

from sqlalchemy import Connection, Select, bindparam, select
from sqlalchemy.orm import Session

from booking_core.db.models import Booking, Clinic, NotificationPreference, Patient
from booking_core.db.models_events import LisMessage
from booking_core.domain.notifications import Preferences
from booking_workers.notifications import pgraw

_PATIENT = (
    Patient.id,
    Patient.active,
    Patient.time_zone,
    Patient.email,
    Patient.phone,
    Patient.push_token,
    NotificationPreference.patient_id.label("pref_id"),
    NotificationPreference.email.label("pref_email"),
    NotificationPreference.sms.label("pref_sms"),
    NotificationPreference.push.label("pref_push"),
    NotificationPreference.in_app.label("pref_in_app"),
    NotificationPreference.quiet_hours_start,
    NotificationPreference.quiet_hours_end,
    NotificationPreference.urgent_override,
)


def _base(*extra: Any) -> Select[*tuple[Any, ...]]:
    return (
        select(*_PATIENT, *extra)
        .outerjoin(NotificationPreference, NotificationPreference.patient_id == Patient.id)
        .where(Patient.id == bindparam("patient_id"))
    )


# A booking event: the booking (by the job's ref) and its clinic's name.
_WITH_BOOKING = (
    _base(Booking.id.label("booking_id"), Booking.status, Booking.starts_at, Clinic.name.label("clinic_name"))
    .outerjoin(Booking, Booking.id == bindparam("ref_id"))
    .outerjoin(Clinic, Clinic.id == Booking.clinic_id)
)
# A results notice: the stored LIS message's receipt time and tier (the delivery-time metric).
_WITH_RESULT = _base(LisMessage.received_at, LisMessage.tier.label("result_tier")).outerjoin(
    LisMessage, LisMessage.id == bindparam("ref_id")
)

# The same for psycopg directly (pgraw), on the worker's autocommit connection.
_PG = {False: pgraw.Statement(_WITH_BOOKING), True: pgraw.Statement(_WITH_RESULT)}


@dataclass(frozen=True)
class Loaded:
    """One job's reads: the patient's addresses and choices, and the event's subject if found."""

    patient_id: str
    active: bool
    time_zone: str | None
    addresses: dict[str, str | None]  # channel value -> address
    prefs: Preferences
    booking_id: str | None = None
    booking_status: str | None = None
    starts_at: datetime | None = None
    clinic_name: str | None = None
    result_received_at: datetime | None = None
    result_tier: str | None = None


def _prefs(row: Mapping[Any, Any]) -> Preferences:
    if row["pref_id"] is None:  # nobody chose yet: the domain's defaults, as the API shows them
        return Preferences()
    start: time | None = row["quiet_hours_start"]
    end: time | None = row["quiet_hours_end"]
    return Preferences(
        email=row["pref_email"],
        sms=row["pref_sms"],
        push=row["pref_push"],
        in_app=row["pref_in_app"],
        quiet_hours_start=start,
        quiet_hours_end=end,
        urgent_override=row["urgent_override"],
    )


def _same(value: datetime | None) -> datetime | None:
    return value


def load(session: Connection | Session, *, patient_id: str, ref_id: str, results: bool) -> Loaded | None:
    """The job's reads in one round trip; None when the patient is unknown."""
    params = {"patient_id": patient_id, "ref_id": ref_id}
    row: Mapping[Any, Any]
    link = pgraw.driver(session)
    if link is not None:
        stmt = _PG[results]
        found = stmt.execute(link, params)
        if not found:
            return None
        row = dict(zip(stmt.columns, found[0], strict=True))
        utc = pgraw.utc  # UTCDateTime's result conversion, which SQLAlchemy would have applied
    else:
        result = session.execute(_WITH_RESULT if results else _WITH_BOOKING, params).first()
        if result is None:
            return None
        row, utc = result._mapping, _same
    return Loaded(
        patient_id=row["id"],
        active=row["active"],
        time_zone=row["time_zone"],
        addresses={
            "email": row["email"],
            "sms": row["phone"],
            "push": row["push_token"],
            "in_app": row["id"],
        },
        prefs=_prefs(row),
        booking_id=None if results else row["booking_id"],
        booking_status=None if results else row["status"],
        starts_at=None if results else utc(row["starts_at"]),
        clinic_name=None if results else row["clinic_name"],
        result_received_at=utc(row["received_at"]) if results else None,
        result_tier=row["result_tier"] if results else None,
    )
