"""API test helpers: the app on a migrated database (SQLite and PostgreSQL), tokens and a small world."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from booking_api.app import create_app
from booking_api.settings import ApiSettings
from booking_api.tokens import mint_token
from booking_core.db.migrate import upgrade
from booking_core.db.models import (
    Clinic,
    Observation,
    OutboxMessage,
    Package,
    Patient,
    Service,
    Slot,
    Test,
    TestResult,
)
from booking_core.db.session import make_engine, make_session_factory
from booking_testing.procs import free_port


def prod_like_settings(db_url: str, **overrides: object) -> ApiSettings:
    """Settings as in production, verifying tokens with a per-test HS256 shared secret (not the dev key)."""
    values: dict[str, object] = {
        "database_url": db_url,
        "environment": "test",
        "auth_issuer": "https://issuer.test",
        "auth_audience": "pat-booking-api",
        "auth_shared_secret": SecretStr(secrets.token_urlsafe(32)),
        **overrides,
    }
    return ApiSettings(**values)  # type: ignore[arg-type]


def token_for(
    settings: ApiSettings, subject: str, role: str = "patient", clinics: list[str] | None = None
) -> str:
    """A valid bearer token signed with the settings' shared secret (or the dev key in dev)."""
    return mint_token(
        settings=settings,
        subject=subject,
        role=role,  # type: ignore[arg-type]
        now=datetime.now(UTC),
        ttl=timedelta(hours=1),
        clinics=clinics,
    )


@dataclass
class World:
    """Seeded data: two patients, one clinic, two services, slots of capacity 1, 2 and 5."""

    clinic_id: str
    slot1: str  # blood-draw, capacity 1, tomorrow
    slot2: str  # blood-draw, capacity 2, in two days
    slot5: str  # blood-draw, capacity 5, in three days
    slot_soon: str  # blood-draw, capacity 3, in one hour (inside the notice period)
    slot_gp: str  # gp-consult, capacity 1
    result_a: str  # a released result of patient A
    patients: tuple[str, str] = ("patient-a", "patient-b")
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class Api:
    """The app under test, its database and helpers."""

    client: TestClient
    sessions: sessionmaker[Session]
    settings: ApiSettings
    world: World

    def auth(
        self, subject: str = "patient-a", role: str = "patient", clinics: list[str] | None = None
    ) -> dict[str, str]:
        """Authorization header for subject."""
        return {"Authorization": f"Bearer {token_for(self.settings, subject, role, clinics)}"}

    def book(self, slot_id: str, subject: str = "patient-a", key: str | None = None, **body: object):
        """POST /bookings with a fresh (or given) Idempotency-Key."""
        headers = {**self.auth(subject), "Idempotency-Key": key or str(uuid.uuid4())}
        return self.client.post("/api/v1/bookings", json={"slot_id": slot_id, **body}, headers=headers)

    def outbox(self, event_type: str | None = None, key: str | None = None) -> list[OutboxMessage]:
        """Outbox rows, optionally filtered."""
        with self.sessions() as s:
            stmt = select(OutboxMessage).order_by(OutboxMessage.id)
            if event_type:
                stmt = stmt.where(OutboxMessage.event_type == event_type)
            if key:
                stmt = stmt.where(OutboxMessage.key == key)
            return list(s.scalars(stmt))

    def booked(self, slot_id: str) -> int:
        """The slot's booked count."""
        with self.sessions() as s:
            return int(s.scalar(select(Slot.booked).where(Slot.id == slot_id)) or 0)

    def count(self, model: type) -> int:
        """Rows in a table."""
        with self.sessions() as s:
            return int(s.scalar(select(func.count()).select_from(model)) or 0)


def seed_world(session: Session, now: datetime) -> World:
    """Insert the test world."""
    clinic = Clinic(code="C1", name="Clinic One", time_zone="UTC")
    blood = Service(code="blood-draw", name="Blood draw", duration_minutes=15)
    gp = Service(code="gp-consult", name="GP", duration_minutes=20)
    test = Test(code="GLU", name="Glucose", price_cents=800)
    pkg = Package(code="DIABETES", name="Diabetes", price_cents=2000)
    session.add_all([clinic, blood, gp, test, pkg])
    session.add_all([Patient(id="patient-a", tier="standard"), Patient(id="patient-b", tier="svip1")])
    session.flush()
    pkg.tests = [test]

    def slot(service: Service, hours: float, capacity: int) -> str:
        start = (now + timedelta(hours=hours)).replace(microsecond=0)
        s = Slot(
            clinic_id=clinic.id,
            service_id=service.id,
            starts_at=start,
            ends_at=start + timedelta(minutes=15),
            capacity=capacity,
        )
        session.add(s)
        session.flush()
        return s.id

    result = TestResult(
        patient_id="patient-a",
        test_code="GLU",
        test_name="Glucose",
        status="final",
        visible_to_patient=True,
        source_facility="LAB",
        source_message_id="M1",
    )
    result.observations = [
        Observation(
            sequence=1,
            code="GLU",
            name="Glucose",
            value_numeric=7.9,
            unit="mmol/L",
            reference_low=3.9,
            reference_high=5.6,
            reference_text="3.9-5.6",
            flag="H",
        )
    ]
    session.add(result)
    world = World(
        clinic_id=clinic.id,
        slot1=slot(blood, 24, 1),
        slot2=slot(blood, 48, 2),
        slot5=slot(blood, 72, 5),
        slot_soon=slot(blood, 1, 3),
        slot_gp=slot(gp, 24, 1),
        result_a=result.id,
    )
    session.commit()
    return world


def make_api(db_url: str, settings: ApiSettings) -> Iterator[Api]:
    """The app for `settings` on a migrated, seeded database."""
    upgrade(db_url)
    engine = make_engine(db_url)
    sessions = make_session_factory(engine)
    with sessions() as s:
        world = seed_world(s, datetime.now(UTC))
    app = create_app(settings, session_factory=sessions)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(client=client, sessions=sessions, settings=settings, world=world)
    engine.dispose()


@pytest.fixture
def api(db_url: str) -> Iterator[Api]:
    """The app on a migrated, seeded database, verifying tokens with a test HS256 secret."""
    yield from make_api(db_url, prod_like_settings(db_url))


def today() -> date:
    """Today in UTC."""
    return datetime.now(UTC).date()


@contextmanager
def api_process(db_url: str, workers: int) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`booking api` with `workers` uvicorn workers on a migrated database: (the process, its port),
    stopped afterwards. The caller waits for what it needs to be ready."""
    upgrade(db_url)
    port = free_port()
    env = {
        **os.environ,
        "BOOKING_DATABASE_URL": db_url,
        "BOOKING_PORT": str(port),
        "BOOKING_WORKERS": str(workers),
        "BOOKING_LOG_LEVEL": "WARNING",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "booking_core.cli", "api"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
