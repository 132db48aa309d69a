"""A whole flow, logged as in production (JSON, here at DEBUG), writes no patient data into any log line.

Booking through the API -> `booking` consumer (confirm, recommendation request) -> the recommend-test
consumer -> notification worker (email); an HL7 result with the patient's id, name, date of birth, a
critical value and a diagnosis text -> `lis-testresult` -> `pat-test-result` -> notification; an HL7
result for an unknown patient (dead-lettered); the patient reading results, recommendations and another
patient's record. Everything runs on the embedded stack (`booking run`'s SQLite, in-memory broker,
outbox-as-log) with the real handlers, workers and cron.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from booking_api.app import create_app
from booking_api.auth import mint_token
from booking_api.settings import ApiSettings
from booking_consumers import embedded as consumers_embedded
from booking_core.db.migrate import upgrade
from booking_core.db.models import (
    Booking,
    Clinic,
    Package,
    Patient,
    Recommendation,
    Service,
    Slot,
    TestResult,
)
from booking_core.db.models_events import DeadLetter
from booking_core.db.session import make_engine, make_session_factory
from booking_core.logs import configure_logging
from booking_core.topology import CONSUMERS
from booking_testing.wait import wait_for
from booking_workers import broker as b
from booking_workers.settings import CronSettings, WorkerSettings

PATIENT_ID = "CUST-88412-QZ"
GIVEN, FAMILY = "Ysolde", "Marchetti-Quan"
DOB = date(1966, 4, 23)
EMAIL, PHONE = "ysolde.mq@example.org", "+84907771234"
CRITICAL_VALUE = "13.8764"  # four decimals: no duration or timestamp in a log line looks like it
DIAGNOSIS = "Suspected familial hypercholesterolaemia"
MRN_OTHER, GIVEN_OTHER, FAMILY_OTHER, DOB_OTHER = "CUST-55109-XW", "Oswin", "Pellegrino", "19511130"

PHI = [
    PATIENT_ID,
    GIVEN,
    FAMILY,
    DOB.isoformat(),
    DOB.strftime("%Y%m%d"),
    EMAIL,
    PHONE,
    CRITICAL_VALUE,
    DIAGNOSIS,
    "hypercholesterol",
    MRN_OTHER,
    GIVEN_OTHER,
    FAMILY_OTHER,
    DOB_OTHER,
]


def _oru(control_id: str, mrn: str, family: str, given: str, dob: str) -> str:
    segments = [
        f"MSH|^~\\&|LIS|CENTRAL-LAB|PATBOOK|HOSP|20250301090000+0700||ORU^R01^ORU_R01|{control_id}|P|2.5.1",
        f"PID|1||{mrn}^^^HOSP^MR||{family}^{given}^^^^^L||{dob}|F|||1 Rue Secret^^Hanoi||{PHONE}",
        f"OBR|1|ORD-{control_id}|ACC-{control_id}|LIPID^Lipid panel^L|||20250301070000+0700"
        "|||||||||||||||20250301085500+0700||CH|F",
        f"OBX|1|NM|2571-8^Triglycerides^LN||{CRITICAL_VALUE}|mmol/L|<1.7|HH|||F",
        f"OBX|2|TX|59462-2^Interpretation^LN||{DIAGNOSIS}||||||F",
    ]
    return "\r".join(segments)


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The production formatter on the root logger at DEBUG, writing into a buffer (the handler writes
    to sys.stderr, so both the log lines and any logging error land there); the previous setup restored."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {n: logging.getLogger(n).level for n in ("sqlalchemy.engine", "httpx", "httpcore", "urllib3")}
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    configure_logging("DEBUG", "json")
    yield buf
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, lvl in levels.items():
        logging.getLogger(name).setLevel(lvl)


def _seed(sessions: Any) -> str:
    with sessions() as s:
        s.add(
            Patient(
                id=PATIENT_ID,
                tier="standard",
                given_name=GIVEN,
                family_name=FAMILY,
                date_of_birth=DOB,
                sex="female",
                email=EMAIL,
                phone=PHONE,
            )
        )
        for code in ("CARDIO", "DIABETES", "BASIC-CHECK"):
            s.add(Package(code=code, name=code))
        clinic, service = Clinic(code="C1", name="Clinic"), Service(code="blood-draw", name="Blood draw")
        s.add_all([clinic, service])
        s.flush()
        starts = datetime.now(UTC) + timedelta(days=3)
        slot = Slot(
            clinic_id=clinic.id,
            service_id=service.id,
            starts_at=starts,
            ends_at=starts + timedelta(minutes=15),
            capacity=2,
        )
        s.add(slot)
        s.commit()
        return slot.id


def test_a_full_flow_writes_no_phi_to_the_logs(tmp_path: Path, json_logs: io.StringIO) -> None:
    url = f"sqlite:///{tmp_path}/booking.db"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    slot_id = _seed(sessions)
    mail = tmp_path / "mail"
    previous = b._broker
    b.setup_broker(broker=b.build_broker(None))
    stop = threading.Event()
    from booking_workers import embedded as workers_embedded

    threads = [
        threading.Thread(
            target=consumers_embedded.start, args=(stop, url), kwargs={"idle_seconds": 0.05}, daemon=True
        ),
        threading.Thread(
            target=workers_embedded.start,
            args=(stop,),
            kwargs={
                "settings": WorkerSettings(database_url=url, mail_dir=str(mail)),
                "cron_settings": CronSettings(database_url=url),
                "cron_interval": 0.5,
            },
            daemon=True,
        ),
    ]
    settings = ApiSettings(database_url=url)
    now = datetime.now(UTC)
    token = mint_token(settings=settings, subject=PATIENT_ID, role="patient", now=now, ttl=timedelta(hours=1))
    auth = {"Authorization": f"Bearer {token}"}
    try:
        with TestClient(create_app(settings, session_factory=sessions)) as client:
            created = client.post(
                "/api/v1/bookings",
                json={"slot_id": slot_id},
                headers={**auth, "Idempotency-Key": str(uuid.uuid4())},
            )
            assert created.status_code == 201, created.text
            booking_id = created.json()["id"]
            with sessions() as s:
                lis = CONSUMERS["lis-testresult"].topic
                consumers_embedded.inject(
                    s, lis, "lab-1", _oru("PHI-1", PATIENT_ID, FAMILY, GIVEN, "19660423")
                )
                consumers_embedded.inject(
                    s, lis, "lab-2", _oru("PHI-2", MRN_OTHER, FAMILY_OTHER, GIVEN_OTHER, DOB_OTHER)
                )
                s.commit()
            for t in threads:
                t.start()

            def settled() -> bool:
                with sessions() as s:
                    booking = s.get(Booking, booking_id)
                    results = s.scalars(select(TestResult)).all()
                    return (
                        booking is not None
                        and booking.status == "booked"
                        and bool(results)
                        and all(r.visible_to_patient for r in results)
                        and s.scalars(select(Recommendation)).first() is not None
                        and s.scalars(select(DeadLetter)).first() is not None
                    )

            wait_for(settled, timeout=60, what="booking confirmed, results released, recommendations, DLQ")
            wait_for(lambda: len(list(mail.glob("*.eml"))) >= 2, timeout=60, what="two emails")
            # The patient reads what the flow produced; reads of results are audit-logged.
            results = client.get("/api/v1/test-results", headers=auth)
            assert results.status_code == 200 and results.json()
            one = client.get(f"/api/v1/test-results/{results.json()[0]['id']}", headers=auth)
            assert one.status_code == 200
            assert client.get("/api/v1/recommendations", headers=auth).json()
            assert client.get("/api/v1/notifications", headers=auth).status_code == 200
            assert client.get(f"/api/v1/bookings/{booking_id}", headers=auth).status_code == 200
            other = mint_token(
                settings=settings, subject=MRN_OTHER, role="patient", now=now, ttl=timedelta(hours=1)
            )
            assert (
                client.get(
                    f"/api/v1/bookings/{booking_id}", headers={"Authorization": f"Bearer {other}"}
                ).status_code
                == 404
            )
    finally:
        stop.set()
        for t in threads:
            if t.is_alive():
                t.join(30)
        if previous is not None:
            b.setup_broker(broker=previous)
        engine.dispose()
    assert not any(t.is_alive() for t in threads)

    logged = json_logs.getvalue()
    lines = [line for line in logged.splitlines() if line.strip()]
    not_json = [line for line in lines if not line.startswith("{")]
    assert not not_json, "\n".join(not_json[:80])  # every line is the JSON formatter's
    records = [json.loads(line) for line in lines]
    loggers = {r["logger"] for r in records}
    messages = {r["msg"] for r in records}
    # The flow really logged: API access lines, the dead-lettered message, the workers.
    assert "request" in messages and "message dead-lettered" in messages, sorted(messages)
    assert any(name.startswith("booking_workers") for name in loggers), sorted(loggers)
    leaked = [p for p in PHI if p.lower() in logged.lower()]
    assert not leaked, f"PHI in logs: {leaked}\n" + "\n".join(
        line for line in lines if any(p.lower() in line.lower() for p in leaked)
    )
