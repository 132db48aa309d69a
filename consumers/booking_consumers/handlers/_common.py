"""Small database helpers the handlers share."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from booking_core.db import lifecycle
from booking_core.db.models import Booking, Patient
from booking_core.domain.errors import NotFoundError

_PATIENTS = "booking_consumers.patients"


def now() -> datetime:
    """The current UTC time (one place, so tests can reason about it)."""
    return datetime.now(UTC)


def cached_patient(session: Session, patient_id: str) -> Patient | None:
    """The patient, read at most once per transaction (a batch of records shares one).

    The session's identity map holds objects weakly, so a patient nothing else references would be
    selected again for the next record; this keeps them for the session's life. Only for reads: a tier
    changed meanwhile is seen by the next transaction, as with any snapshot.
    """
    cache: dict[str, Patient | None] = session.info.setdefault(_PATIENTS, {})
    if patient_id in cache:
        return cache[patient_id]
    patient = session.get(Patient, patient_id)
    if patient is not None:
        cache[patient_id] = patient
    return patient


def warm_patients(session: Session, patient_ids: Iterable[str]) -> None:
    """Load these patients in one query for cached_patient (ids not found are remembered as absent)."""
    cache: dict[str, Patient | None] = session.info.setdefault(_PATIENTS, {})
    wanted = {i for i in patient_ids if i not in cache}
    if not wanted:
        return
    found = {p.id: p for p in session.scalars(select(Patient).where(Patient.id.in_(wanted)))}
    for patient_id in wanted:
        cache[patient_id] = found.get(patient_id)


def lock_booking(session: Session, booking_id: str) -> Booking | None:
    """The booking, row-locked until commit (booking_core.db.lifecycle.lock_booking), or None."""
    try:
        return lifecycle.lock_booking(session, booking_id)
    except NotFoundError:
        return None
