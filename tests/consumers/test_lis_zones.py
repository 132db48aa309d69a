"""lis-testresult without a configured zone: it starts on an empty database and never misdates a result.

Found on kind (issue 13): on a fresh database with no clinics the consumer refused to start
("BOOKING_LIS_DEFAULT_TIME_ZONE is required: the clinics use 0 time zones") and crash-looped.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from booking_consumers.handlers import lis_config
from booking_consumers.runtime import Consumer, Record
from booking_consumers.settings import ConsumerSettings
from booking_core.db.models import Clinic, ProcessedMessage, TestResult
from booking_core.db.models_events import DeadLetter

# MSH-7 and OBR-7 without a UTC offset: local time of a sender whose zone no setting gives.
NAIVE = "MSH|^~\\&|LIS|{facility}|PB|H|20250701090000||ORU^R01|{cid}|P|2.5.1"
OFFSET = "MSH|^~\\&|LIS|{facility}|PB|H|20250701090000+0700||ORU^R01|{cid}|P|2.5.1"


def hl7(cid: str, *, msh: str = NAIVE, facility: str = "LAB") -> bytes:
    return "\r".join(
        [
            msh.format(cid=cid, facility=facility),
            "PID|1||PAT-1^^^HOSP^MR",
            "OBR|1|O-" + cid + "|A-" + cid + "|GLU^Glucose^L|||20250701070000",
            "OBX|1|NM|GLU^Glucose^L||5.1|mmol/L||N|||F",
        ]
    ).encode()


@pytest.fixture(params=["sqlite", "postgres"])
def sessions(request, h):
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_sessions")
    return h.pg_sessions_for(request.getfixturevalue("postgres_url"))


def settings_for(sessions, **values) -> ConsumerSettings:
    url = sessions.kw["bind"].url.render_as_string(hide_password=False)
    return ConsumerSettings(database_url=url, **values)


def run(sessions, h, defn, values, offset=0):
    transport = h.FakeTransport()
    consumer = Consumer(defn, transport, sessions, stop=threading.Event(), backoff_max=0.01)
    records = [Record("lis", 0, offset + i, None, v) for i, v in enumerate(values)]
    return consumer.process_batch(records), transport


def observed(sessions) -> dict[str, datetime]:
    with sessions() as s:
        return {r.filler_order_number: r.effective_at for r in s.scalars(select(TestResult))}


def test_starts_on_an_empty_database_without_a_zone_setting(sessions):
    defn = lis_config.definition(settings_for(sessions))  # was SystemExit: "the clinics use 0 time zones"
    assert defn.name == "lis-testresult"


def test_an_unplaceable_timestamp_is_dead_lettered_then_placed_once_clinics_exist(sessions, h):
    defn = lis_config.definition(settings_for(sessions))
    with sessions() as s:
        h.seed_patient(s, "PAT-1")
        s.commit()
    outcomes, transport = run(sessions, h, defn, [hl7("M1"), hl7("M2", msh=OFFSET)])
    # The message with offsets is stored; the one without is refused, not read as UTC.
    assert outcomes == ["dead_lettered", "processed"]
    ((_, headers),) = transport.dlq
    assert headers["x-dlq-reason"] == "unknown_time_zone"
    assert headers["x-dlq-detail"].startswith("MSH-7 has no UTC offset")
    assert "BOOKING_LIS_DEFAULT_TIME_ZONE" in headers["x-dlq-detail"]
    with sessions() as s:
        assert s.scalars(select(DeadLetter.reason)).all() == ["unknown_time_zone"]
        # Un-claimed: the replay after the fix is not taken for a duplicate.
        assert s.scalars(select(ProcessedMessage.message_key)).all() == ["hl7:LAB|M2"]
    assert observed(sessions) == {"A-M2": datetime(2025, 7, 1, 0, 0, tzinfo=UTC)}

    # The master data brings the clinics (one zone): the replayed record is placed in it.
    with sessions() as s:
        s.add(Clinic(code="C1", name="One", time_zone="Asia/Ho_Chi_Minh"))
        s.commit()
    outcomes, _ = run(sessions, h, defn, [hl7("M1")], offset=10)
    assert outcomes == ["processed"]
    assert observed(sessions)["A-M1"] == datetime(2025, 7, 1, 0, 0, tzinfo=UTC)  # 07:00 at UTC+7

    # Clinics in two zones: no single answer, so refused again, unless the sender is a clinic by code.
    with sessions() as s:
        s.add(Clinic(code="BERLIN-LAB", name="Two", time_zone="Europe/Berlin"))
        s.commit()
    outcomes, transport = run(sessions, h, defn, [hl7("M3"), hl7("M4", facility="BERLIN-LAB")], offset=20)
    assert outcomes == ["dead_lettered", "processed"]
    assert [d[1]["x-dlq-reason"] for d in transport.dlq] == ["unknown_time_zone"]
    assert observed(sessions)["A-M4"] == datetime(2025, 7, 1, 5, 0, tzinfo=UTC)  # 07:00 CEST


def test_configured_zones_win_and_need_no_clinics(sessions, h):
    settings = settings_for(
        sessions, lis_default_time_zone="Asia/Tokyo", lis_facility_time_zones={"LAB": "Europe/Berlin"}
    )
    defn = lis_config.definition(settings)
    with sessions() as s:
        h.seed_patient(s, "PAT-1")
        s.commit()
    outcomes, _ = run(sessions, h, defn, [hl7("M1"), hl7("M2", facility="OTHER")])
    assert outcomes == ["processed", "processed"]
    assert observed(sessions) == {
        "A-M1": datetime(2025, 7, 1, 5, 0, tzinfo=UTC),  # the facility's zone
        "A-M2": datetime(2025, 6, 30, 22, 0, tzinfo=UTC),  # the default zone
    }


def test_a_malformed_zone_setting_still_stops_the_process(sqlite_sessions):
    settings = settings_for(sqlite_sessions)
    with pytest.raises(SystemExit, match="BOOKING_LIS_DEFAULT_TIME_ZONE: 'Mars/Base' is not an IANA"):
        lis_config.definition(settings.model_copy(update={"lis_default_time_zone": "Mars/Base"}))
    with pytest.raises(SystemExit, match=r"BOOKING_LIS_FACILITY_TIME_ZONES\['LAB'\]"):
        lis_config.definition(settings.model_copy(update={"lis_facility_time_zones": {"LAB": "UTC+7"}}))
