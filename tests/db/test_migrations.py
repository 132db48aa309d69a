"""Migrations build the models' schema on both backends, and the schema's constraints hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, MetaData, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from booking_core.db.migrate import downgrade, upgrade
from booking_core.db.models import Base, Clinic, Patient, ProcessedMessage, Service, Slot
from booking_core.db.session import make_engine

EXPECTED_TABLES = {
    "patients",
    "clinics",
    "services",
    "tests",
    "packages",
    "package_tests",
    "schedules",
    "slots",
    "holds",
    "bookings",
    "booking_status_history",
    "idempotency_keys",
    "outbox",
    "processed_messages",
    "lab_orders",
    "test_results",
    "observations",
    "recommendations",
    "notification_preferences",
    "notifications",
    "phi_audit_log",
}


def test_head_matches_models(db_url: str) -> None:
    # Head, not 0001: 0004 widened and added columns of test_results and observations.
    upgrade(db_url)
    eng = make_engine(db_url)
    try:
        with eng.connect() as conn:
            ctx = MigrationContext.configure(
                conn,
                opts={
                    "include_name": lambda name, type_, parent: type_ != "table" or name in EXPECTED_TABLES
                },
            )
            mine = MetaData()
            for table in Base.metadata.sorted_tables:
                if table.name in EXPECTED_TABLES:
                    table.to_metadata(mine)
            diff = compare_metadata(ctx, mine)
        assert diff == []
        assert set(inspect(eng).get_table_names()) >= EXPECTED_TABLES
    finally:
        eng.dispose()


def test_downgrade_to_base_and_up_again(db_url: str, engine: Engine) -> None:
    engine.dispose()
    downgrade(db_url, "base")
    assert "slots" not in inspect(engine).get_table_names()
    upgrade(db_url)
    upgrade(db_url)  # idempotent
    assert "slots" in inspect(engine).get_table_names()


def _slot(session: Session, capacity: int = 1) -> Slot:
    clinic = Clinic(code="C1", name="Clinic")
    service = Service(code="S1", name="Service")
    session.add_all([clinic, service])
    session.flush()
    start = datetime.now(UTC) + timedelta(days=1)
    slot = Slot(
        clinic_id=clinic.id,
        service_id=service.id,
        starts_at=start,
        ends_at=start + timedelta(minutes=15),
        capacity=capacity,
    )
    session.add(slot)
    session.commit()
    return slot


def test_check_constraint_refuses_overbooking(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        slot = _slot(session, capacity=1)
        session.execute(text("UPDATE slots SET booked = 1 WHERE id = :id"), {"id": slot.id})
        session.commit()
        with pytest.raises(IntegrityError):
            session.execute(text("UPDATE slots SET booked = 2 WHERE id = :id"), {"id": slot.id})
            session.commit()


def test_datetimes_come_back_aware_utc(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        slot = _slot(session)
        slot_id, starts = slot.id, slot.starts_at
    with sessions() as session:
        got = session.scalar(select(Slot.starts_at).where(Slot.id == slot_id))
        assert got is not None and got.tzinfo is not None
        assert got == starts


def test_processed_messages_unique_per_consumer(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        session.add(ProcessedMessage(consumer="booking", message_key="m1"))
        session.add(ProcessedMessage(consumer="customer", message_key="m1"))
        session.commit()
        session.add(ProcessedMessage(consumer="booking", message_key="m1"))
        with pytest.raises(IntegrityError):
            session.commit()


def test_patient_tier_is_checked(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        session.add(Patient(id="p1", tier="gold"))
        with pytest.raises(IntegrityError):
            session.commit()
