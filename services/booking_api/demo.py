"""Demo data for `booking run`: clinics, services, schedules and 14 days of slots, the test catalogue,
and one demo patient with a result, a recommendation and an inbox entry. Idempotent: run it every start.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from booking_core.db.models import (
    Clinic,
    Notification,
    NotificationPreference,
    Observation,
    Package,
    Patient,
    Recommendation,
    Schedule,
    Service,
    Test,
    TestResult,
)
from booking_core.db.schedules import materialize_slots

DEMO_PATIENT_ID = "demo-patient-0001"
DEMO_DAYS = 14

CLINICS = [
    ("CENTRAL", "Central Clinic", "Europe/Berlin", "1 Main Street"),
    ("NORTH", "North Clinic", "Europe/Berlin", "20 Harbour Road"),
]
# code, name, minutes, price cents
SERVICES = [
    ("blood-draw", "Blood draw", 15, 0),
    ("gp-consult", "GP consultation", 20, 6000),
    ("health-screening", "Health screening", 30, 12000),
]
# code, name, specimen, unit, price cents
TESTS = [
    ("GLU", "Glucose (fasting)", "serum", "mmol/L", 800),
    ("HBA1C", "HbA1c", "whole blood", "mmol/mol", 1500),
    ("LDL", "LDL cholesterol", "serum", "mmol/L", 900),
    ("HDL", "HDL cholesterol", "serum", "mmol/L", 900),
    ("TSH", "Thyroid-stimulating hormone", "serum", "mIU/L", 1800),
    ("CBC", "Complete blood count", "whole blood", None, 1200),
    ("CREA", "Creatinine", "serum", "umol/L", 700),
    ("VITD", "Vitamin D (25-OH)", "serum", "nmol/L", 2500),
]
PACKAGES = [
    (
        "BASIC-CHECK",
        "Basic check-up",
        "Blood count, glucose and kidney function",
        2400,
        ("CBC", "CREA", "GLU"),
    ),
    ("CARDIO", "Heart health", "Cholesterol and glucose", 2300, ("GLU", "HDL", "LDL")),
    ("DIABETES", "Diabetes screening", "Fasting glucose and HbA1c", 2000, ("GLU", "HBA1C")),
    ("THYROID", "Thyroid check", "TSH", 1800, ("TSH",)),
]
# service code, weekdays, start, end, capacity
SCHEDULES = [
    ("blood-draw", range(5), time(7, 30), time(11, 30), 4),
    ("gp-consult", range(5), time(9, 0), time(17, 0), 1),
    ("health-screening", (1, 3), time(13, 0), time(16, 0), 2),
]


def _upsert_by_code(
    session: Session, model: type[Clinic | Service | Test | Package], code: str, **values: object
) -> Clinic | Service | Test | Package:
    row = session.scalar(select(model).where(model.code == code))
    if row is None:
        row = model(code=code, **values)
        session.add(row)
        session.flush()
    return row  # type: ignore[return-value]


def seed_demo(session: Session, *, now: datetime | None = None) -> str:
    """Create the demo data if missing and top up slots for the next 14 days; returns the demo patient id."""
    now = now or datetime.now(UTC)
    clinics = [
        _upsert_by_code(session, Clinic, code, name=name, time_zone=tz, address=addr)
        for code, name, tz, addr in CLINICS
    ]
    services = {
        code: _upsert_by_code(session, Service, code, name=name, duration_minutes=minutes, price_cents=price)
        for code, name, minutes, price in SERVICES
    }
    tests = {
        code: _upsert_by_code(session, Test, code, name=name, specimen=specimen, unit=unit, price_cents=price)
        for code, name, specimen, unit, price in TESTS
    }
    for code, name, desc, price, members in PACKAGES:
        pkg = _upsert_by_code(session, Package, code, name=name, description=desc, price_cents=price)
        assert isinstance(pkg, Package)
        if not pkg.tests:
            pkg.tests = [t for c, t in tests.items() if c in members]  # type: ignore[misc]
    for clinic in clinics:
        has_schedules = session.scalar(select(Schedule.id).where(Schedule.clinic_id == clinic.id).limit(1))
        if has_schedules is None:
            for service_code, weekdays, start, end, capacity in SCHEDULES:
                svc = services[service_code]
                assert isinstance(svc, Service)
                for wd in weekdays:
                    session.add(
                        Schedule(
                            clinic_id=clinic.id,
                            service_id=svc.id,
                            weekday=wd,
                            start_time=start,
                            end_time=end,
                            slot_minutes=svc.duration_minutes,
                            capacity=capacity,
                        )
                    )
            session.flush()
        assert isinstance(clinic, Clinic)
        materialize_slots(
            session, clinic=clinic, first=now.date(), last=now.date() + timedelta(days=DEMO_DAYS), now=now
        )
    _seed_patient(session, now)
    session.commit()
    return DEMO_PATIENT_ID


def _seed_patient(session: Session, now: datetime) -> None:
    if session.get(Patient, DEMO_PATIENT_ID) is not None:
        return
    session.add(
        Patient(
            id=DEMO_PATIENT_ID,
            tier="standard",
            given_name="Demo",
            family_name="Patient",
            date_of_birth=date(1980, 5, 17),
            sex="female",
            time_zone="Europe/Berlin",
            email="demo.patient@example.org",
            phone="+49000000000",
        )
    )
    session.flush()
    session.add(
        NotificationPreference(
            patient_id=DEMO_PATIENT_ID, quiet_hours_start=time(22, 0), quiet_hours_end=time(7, 0)
        )
    )
    result = TestResult(
        patient_id=DEMO_PATIENT_ID,
        test_code="LIPID",
        test_name="Lipid panel",
        status="final",
        issued_at=now - timedelta(days=3),
        effective_at=now - timedelta(days=4),
        visible_to_patient=True,
        released_at=now - timedelta(days=3),
        source_facility="DEMO-LAB",
        source_message_id="DEMO-0001",
        source_set_id="1",
    )
    result.observations = [
        Observation(
            sequence=1,
            code="LDL",
            name="LDL cholesterol",
            value_type="NM",
            value_numeric=4.6,
            unit="mmol/L",
            reference_low=0.0,
            reference_high=3.0,
            reference_text="0-3.0",
            flag="H",
            status="final",
        ),
        Observation(
            sequence=2,
            code="HDL",
            name="HDL cholesterol",
            value_type="NM",
            value_numeric=1.4,
            unit="mmol/L",
            reference_low=1.0,
            reference_high=None,
            reference_text=">1.0",
            flag="N",
            status="final",
        ),
    ]
    session.add(result)
    cardio = session.scalar(select(Package).where(Package.code == "CARDIO"))
    if cardio is not None:
        session.add(
            Recommendation(
                patient_id=DEMO_PATIENT_ID,
                package_id=cardio.id,
                rule_id="abnormal-lipids",
                reason="A recent LDL cholesterol result was above the reference range",
            )
        )
    session.add(
        Notification(
            patient_id=DEMO_PATIENT_ID,
            kind="results_available",
            title="Your results are ready",
            body="Sign in to see your latest test results.",
            dedupe_key="demo:results:LIPID",
        )
    )
