"""Each consumer's handler through the real loop on SQLite (the same code runs on PostgreSQL)."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import func, select, text, update

from booking_consumers.handlers.registry import definition
from booking_consumers.runtime import Record
from booking_core.db.models import (
    Booking,
    BookingStatusHistory,
    Hold,
    Observation,
    Package,
    Patient,
    ProcessedMessage,
    Recommendation,
    Slot,
    Test,
    TestResult,
)
from booking_core.db.models_events import DeadLetter, LisMessage
from booking_core.events import BookingCancelled, BookingRequested
from booking_core.events.appointments import AppointmentUpdated
from booking_core.events.customer import CustomerUpserted
from booking_core.events.master_data import PackageUpserted, TestUpserted
from booking_core.events.recommendations import RecommendationRequested
from booking_core.events.results import RESULT_TOPICS
from booking_core.topology import CONSUMERS


def requested(seed, session):
    b = session.get(Booking, seed.booking_id)
    return BookingRequested(
        booking_id=b.id,
        patient_id=b.patient_id,
        slot_id=b.slot_id,
        clinic_id=b.clinic_id,
        service_code="S",
        starts_at=b.starts_at,
        ends_at=b.ends_at,
    )


# -- booking -----------------------------------------------------------------------------------------


def test_booking_confirmed_once_with_one_notification_and_a_recommendation_request(sqlite_sessions, h):
    with sqlite_sessions() as s:
        h.seed_patient(s)
        seed = h.seed_booking(s)
        event = requested(seed, s)
        s.commit()
    value = h.envelope_bytes(event, event_id="e-1")
    outcomes, _, notes = h.run_records(definition("booking"), sqlite_sessions, [value, value])
    assert outcomes == ["processed", "duplicate"]
    assert [(n.event_type, n.ref_id, n.tier) for n in notes.sent] == [
        ("booking_confirmed", seed.booking_id, "standard")
    ]
    with sqlite_sessions() as s:
        assert s.get(Booking, seed.booking_id).status == "booked"
        assert s.scalars(select(Hold)).one().status == "converted"
        types = [r.event_type for r in h.outbox_rows(s)]
        assert types == ["booking.confirmed", "recommendation.requested"]
        # Keyed by the booking that raised it, never by the patient id (Kafka keys carry no PHI).
        assert h.outbox_rows(s, CONSUMERS["pat-booking-recommend-test"].topic)[0].key == seed.booking_id


def test_booking_rejected_when_the_slot_closed(sqlite_sessions, h):
    with sqlite_sessions() as s:
        h.seed_patient(s)
        seed = h.seed_booking(s)
        s.get(Slot, seed.slot_id).status = "closed"
        event = requested(seed, s)
        s.commit()
    outcomes, _, notes = h.run_records(definition("booking"), sqlite_sessions, [h.envelope_bytes(event)])
    assert outcomes == ["processed"]
    assert [n.event_type for n in notes.sent] == ["booking_cancelled"]
    with sqlite_sessions() as s:
        b = s.get(Booking, seed.booking_id)
        assert (b.status, b.cancel_reason) == ("cancelled", "rejected")
        assert s.get(Slot, seed.slot_id).booked == 0
        row = h.outbox_rows(s)[0]
        assert row.event_type == "booking.rejected" and row.payload["payload"]["reason"] == "slot_closed"


def test_booking_consumer_passes_over_the_events_it_does_not_act_on(sqlite_sessions, h):
    # Status events (its own confirmations included) are for downstream systems: no transaction, no key.
    event = BookingCancelled(
        booking_id="b1",
        patient_id="PAT-1",
        slot_id="s1",
        starts_at=h.now() + timedelta(hours=3),
        previous_status="booked",
        reason="patient_request",
        cancelled_by="patient",
    )
    record = Record(
        topic="t",
        partition=0,
        offset=0,
        key=b"b1",
        value=h.envelope_bytes(event),
        headers={"event-type": "booking.cancelled"},
    )
    outcomes, _, notes = h.run_records(definition("booking"), sqlite_sessions, [record])
    assert outcomes == ["passed_over"] and notes.sent == []
    with sqlite_sessions() as s:
        assert s.scalar(select(func.count()).select_from(ProcessedMessage)) == 0


def test_clinic_cancel_owes_an_urgent_notice_on_the_patients_tier(sqlite_sessions, h):
    with sqlite_sessions() as s:
        h.seed_patient(s, tier="svip1")
        seed = h.seed_booking(s)
        s.get(Booking, seed.booking_id).status = "booked"
        s.get(Slot, seed.slot_id).starts_at = h.now() + timedelta(hours=3)
        s.get(Booking, seed.booking_id).starts_at = h.now() + timedelta(hours=3)
        s.commit()
    ev = AppointmentUpdated(booking_id=seed.booking_id, change="cancel", changed_at=h.now())
    _, _, notes = h.run_records(definition("appointment-update"), sqlite_sessions, [h.envelope_bytes(ev)])
    assert [(n.event_type, n.tier, n.urgent) for n in notes.sent] == [("booking_cancelled", "svip1", True)]


# -- appointment-update ----------------------------------------------------------------------------


def test_appointment_updates(sqlite_sessions, h):
    with sqlite_sessions() as s:
        h.seed_patient(s)
        seed = h.seed_booking(s)
        s.get(Booking, seed.booking_id).status = "booked"
        other = Slot(
            clinic_id=seed.clinic_id,
            service_id=seed.service_id,
            starts_at=h.now() + timedelta(days=3),
            ends_at=h.now() + timedelta(days=3, minutes=15),
            capacity=1,
            booked=0,
        )
        s.add(other)
        s.commit()
        other_id = other.id

    def upd(change, **kw):
        return h.envelope_bytes(
            AppointmentUpdated(booking_id=seed.booking_id, change=change, changed_at=h.now(), **kw)
        )

    outcomes, transport, _ = h.run_records(
        definition("appointment-update"),
        sqlite_sessions,
        [
            upd("practitioner_change", practitioner="Dr. Who"),
            upd("reschedule", new_slot_id=other_id),
            upd("check_in"),
            upd("cancel", reason="clinic_request"),  # arrived -> cancelled is not allowed
            upd("reschedule"),  # no slot given
        ],
    )
    assert outcomes == ["processed", "processed", "processed", "dead_lettered", "dead_lettered"]
    assert [d[1]["x-dlq-reason"] for d in transport.dlq] == ["invalid_transition", "missing_field"]
    with sqlite_sessions() as s:
        b = s.get(Booking, seed.booking_id)
        assert (b.status, b.practitioner, b.slot_id) == ("arrived", "Dr. Who", other_id)
        assert s.get(Slot, seed.slot_id).booked == 0 and s.get(Slot, other_id).booked == 1
        assert [r.event_type for r in h.outbox_rows(s)] == ["booking.rescheduled", "booking.checked_in"]


def test_clinic_cancel_releases_the_place_and_raises_the_event(sqlite_sessions, h):
    with sqlite_sessions() as s:
        h.seed_patient(s)
        seed = h.seed_booking(s)
        s.get(Booking, seed.booking_id).status = "booked"
        s.commit()
    ev = AppointmentUpdated(
        booking_id=seed.booking_id, change="cancel", changed_at=h.now(), reason="clinic_request"
    )
    outcomes, _, _ = h.run_records(definition("appointment-update"), sqlite_sessions, [h.envelope_bytes(ev)])
    assert outcomes == ["processed"]
    with sqlite_sessions() as s:
        assert s.get(Booking, seed.booking_id).status == "cancelled"
        assert s.get(Slot, seed.slot_id).booked == 0
        (row,) = h.outbox_rows(s)
        assert row.event_type == "booking.cancelled" and row.payload["payload"]["cancelled_by"] == "clinic"


def test_clinic_cancel_of_a_pending_booking_releases_its_hold(sqlite_sessions, h, monkeypatch):
    from booking_consumers.handlers import appointment_update
    from booking_workers.cron_tasks import expire_holds

    with sqlite_sessions() as s:
        h.seed_patient(s)
        seed = h.seed_booking(s, hold_ttl=timedelta(minutes=10))
        s.commit()
    at = h.now().replace(microsecond=0) + timedelta(seconds=1)
    monkeypatch.setattr(appointment_update, "now", lambda: at)
    ev = AppointmentUpdated(
        booking_id=seed.booking_id, change="cancel", changed_at=at, reason="clinic_request", staff_id="st-1"
    )
    outcomes, _, _ = h.run_records(definition("appointment-update"), sqlite_sessions, [h.envelope_bytes(ev)])
    assert outcomes == ["processed"]
    with sqlite_sessions() as s:
        b = s.get(Booking, seed.booking_id)
        assert (b.status, b.cancel_reason, b.version, b.updated_at) == ("cancelled", "clinic_request", 2, at)
        # Released with the booking: before, it stayed active until the cron marked it expired.
        assert s.scalars(select(Hold.status)).all() == ["released"]
        assert s.get(Slot, seed.slot_id).booked == 0
        (history,) = s.scalars(select(BookingStatusHistory)).all()
        assert (history.from_status, history.reason, history.actor) == (
            "pending",
            "clinic_request",
            "staff:st-1",
        )
        (row,) = h.outbox_rows(s)
        assert row.payload["payload"]["previous_status"] == "pending"
    # Once the hold's time has passed, the cron has nothing left to expire or free.
    assert expire_holds(sqlite_sessions, now=at + timedelta(hours=1)) == 0
    with sqlite_sessions() as s:
        assert s.scalars(select(Hold.status)).all() == ["released"]
        assert s.get(Slot, seed.slot_id).booked == 0


def test_clinic_reschedule_moves_the_hold_and_refuses_a_second_booking_there(sqlite_sessions, h):
    with sqlite_sessions() as s:
        h.seed_patient(s)
        seed = h.seed_booking(s)
        other = Slot(
            clinic_id=seed.clinic_id,
            service_id=seed.service_id,
            starts_at=h.now() + timedelta(days=3),
            ends_at=h.now() + timedelta(days=3, minutes=15),
            capacity=2,
            booked=0,
        )
        s.add(other)
        s.flush()
        # The patient's second booking, already on the slot the first is moved to next.
        s.add(
            Booking(
                patient_id="PAT-1",
                slot_id=other.id,
                clinic_id=seed.clinic_id,
                service_id=seed.service_id,
                status="booked",
                starts_at=other.starts_at,
                ends_at=other.ends_at,
            )
        )
        other.booked = 1
        s.commit()
        other_id = other.id
    ev = AppointmentUpdated(
        booking_id=seed.booking_id, change="reschedule", changed_at=h.now(), new_slot_id=other_id
    )
    outcomes, transport, _ = h.run_records(
        definition("appointment-update"), sqlite_sessions, [h.envelope_bytes(ev)]
    )
    assert outcomes == ["dead_lettered"]
    assert [d[1]["x-dlq-reason"] for d in transport.dlq] == ["already_booked"]
    with sqlite_sessions() as s:
        assert s.get(Booking, seed.booking_id).slot_id == seed.slot_id
        assert (s.get(Slot, seed.slot_id).booked, s.get(Slot, other_id).booked) == (1, 1)
        s.execute(update(Booking).where(Booking.slot_id == other_id).values(status="cancelled"))
        s.get(Slot, other_id).booked = 0
        s.commit()
    outcomes, _, _ = h.run_records(definition("appointment-update"), sqlite_sessions, [h.envelope_bytes(ev)])
    assert outcomes == ["processed"]
    with sqlite_sessions() as s:
        b = s.get(Booking, seed.booking_id)
        assert (b.status, b.slot_id) == ("pending", other_id)
        assert s.scalars(select(Hold.slot_id)).all() == [other_id]
        assert (s.get(Slot, seed.slot_id).booked, s.get(Slot, other_id).booked) == (0, 1)
        (history,) = s.scalars(select(BookingStatusHistory)).all()
        assert (history.reason, history.actor) == ("rescheduled", "system:clinic-management")


# -- customer, master data ----------------------------------------------------------------------------


def test_customer_last_writer_wins_with_tier_changes(sqlite_sessions, h):
    def cu(v, tier, name):
        return h.envelope_bytes(
            CustomerUpserted(
                customer_id="C-9",
                source_version=v,
                tier=tier,
                given_name=name,
                date_of_birth=date(1970, 2, 3),
                sex="M",
            )
        )

    outcomes, transport, _ = h.run_records(
        definition("customer"),
        sqlite_sessions,
        [cu(2, "standard", "Two"), cu(1, "svip2", "One"), cu(3, "SVIP1", "Three"), cu(4, "gold", "Four")],
    )
    assert outcomes == ["processed", "processed", "processed", "dead_lettered"]
    assert transport.dlq[0][1]["x-dlq-reason"] == "invalid_field"
    with sqlite_sessions() as s:
        p = s.get(Patient, "C-9")
        assert (p.source_version, p.tier, p.given_name, p.sex) == (3, "svip1", "Three", "male")


def test_customer_deactivation_cancels_pending_and_booked_appointments(sqlite_sessions, h):
    with sqlite_sessions() as s:
        h.seed_patient(s)
        pending = h.seed_booking(s, tag="p")
        booked = h.seed_booking(s, tag="b")
        arrived = h.seed_booking(s, tag="a")
        s.get(Booking, booked.booking_id).status = "booked"
        s.get(Booking, arrived.booking_id).status = "arrived"
        s.get(Patient, "PAT-1").source_version = 1
        s.commit()
    off = CustomerUpserted(customer_id="PAT-1", source_version=2, tier="standard", active=False)
    outcomes, _, notes = h.run_records(definition("customer"), sqlite_sessions, [h.envelope_bytes(off)])
    assert outcomes == ["processed"]
    with sqlite_sessions() as s:
        assert s.get(Patient, "PAT-1").active is False
        for seed in (pending, booked):
            b = s.get(Booking, seed.booking_id)
            assert (b.status, b.cancel_reason) == ("cancelled", "patient_deactivated")
            assert s.get(Slot, seed.slot_id).booked == 0  # the place is back for other patients
        # A visit that already happened is history, not a booking to cancel.
        assert s.get(Booking, arrived.booking_id).status == "arrived"
        assert s.get(Slot, arrived.slot_id).booked == 1
        cancelled = [r.payload["payload"] for r in h.outbox_rows(s) if r.event_type == "booking.cancelled"]
        assert sorted(c["booking_id"] for c in cancelled) == sorted([pending.booking_id, booked.booking_id])
        assert {(c["reason"], c["cancelled_by"]) for c in cancelled} == {("patient_deactivated", "system")}
    # The closed account is not notified.
    assert notes.sent == []


def test_master_data_upserts_and_deactivates(sqlite_sessions, h):
    values = [
        h.envelope_bytes(TestUpserted(code="GLU", name="Glucose", source_version=1, price_cents=500)),
        h.envelope_bytes(TestUpserted(code="HBA1C", name="HbA1c", source_version=1)),
        h.envelope_bytes(
            PackageUpserted(code="DIABETES", name="Diabetes", source_version=1, test_codes=("GLU", "HBA1C"))
        ),
        h.envelope_bytes(TestUpserted(code="GLU", name="Glucose (old)", source_version=0)),
        h.envelope_bytes(TestUpserted(code="HBA1C", name="HbA1c", source_version=2, active=False)),
    ]
    outcomes, _, _ = h.run_records(definition("sync-test-master-data"), sqlite_sessions, values)
    assert outcomes == ["processed"] * 5
    with sqlite_sessions() as s:
        glu = s.scalars(select(Test).where(Test.code == "GLU")).one()
        assert (glu.name, glu.price_cents) == ("Glucose", 500)
        assert not s.scalars(select(Test).where(Test.code == "HBA1C")).one().active
        pkg = s.scalars(select(Package).where(Package.code == "DIABETES")).one()
        assert [t.code for t in pkg.tests] == ["GLU", "HBA1C"]


# -- lis-testresult -> pat-test-result ------------------------------------------------------------------


def _lis(sessions, h, values):
    return h.run_records(
        definition("lis-testresult"), sessions, values, topic=CONSUMERS["lis-testresult"].topic
    )


def _release(sessions, h, tier_topic, consumer):
    with sessions() as s:
        records = [h.outbox_record(r) for r in h.outbox_rows(s, tier_topic)]
    return h.run_records(definition(consumer), sessions, records)


def test_lis_results_stored_hidden_then_released_by_tier(sqlite_sessions, h):
    with sqlite_sessions() as s:
        h.seed_patient(s, "PAT-1")
        h.seed_patient(s, "PAT-V", tier="svip1")
        s.commit()
    outcomes, transport, _ = _lis(
        sqlite_sessions,
        h,
        [
            h.hl7("normal", control_id="M1"),
            h.hl7("abnormal", control_id="M2", order="ORD-2"),
            h.hl7("multi_obr", control_id="M3", mrn="PAT-V", order="ORD-3"),
            h.hl7("normal", control_id="M1"),  # the LIS resends: same MSH-4 + MSH-10
            h.hl7("wrong_patient", control_id="M4"),
            h.hl7("malformed", control_id="M5", order="ORD-5"),  # NM "five point one": kept as text
        ],
    )
    assert outcomes == ["processed", "processed", "processed", "duplicate", "dead_lettered", "processed"]
    assert [d[1]["x-dlq-reason"] for d in transport.dlq] == ["unknown_patient"]
    with sqlite_sessions() as s:
        assert s.query(LisMessage).count() == 4
        results = s.scalars(select(TestResult).order_by(TestResult.test_code, TestResult.id)).all()
        assert sorted(r.test_code for r in results) == ["CBC", "GLU", "GLU", "LIPID", "UA"]
        misfit = next(o for r in results for o in r.observations if o.value_text == "five point one")
        assert (misfit.value_numeric, misfit.value_flagged) == (None, True)
        assert not any(r.visible_to_patient for r in results)  # released by the tier consumer
        lipid = next(r for r in results if r.test_code == "LIPID")
        assert [(o.value_numeric, o.flag) for o in lipid.observations] == [
            (7.9, "H"),
            (12.4, "HH"),
            (0.7, "L"),
        ]
        assert {r.topic for r in h.outbox_rows(s)} == {RESULT_TOPICS["standard"], RESULT_TOPICS["svip1"]}
        assert len(h.outbox_rows(s, RESULT_TOPICS["standard"])) == 3
        assert {r.key for r in h.outbox_rows(s)} <= {m.id for m in s.scalars(select(LisMessage))}
        assert s.scalars(select(DeadLetter.reason)).all() == ["unknown_patient"]

    _, _, notes = _release(sqlite_sessions, h, RESULT_TOPICS["standard"], "pat-test-result")
    assert [(n.patient_id, n.event_type, n.tier, n.urgent) for n in notes.sent] == [
        ("PAT-1", "results_available", "standard", False),
        ("PAT-1", "results_available", "standard", True),  # HH triglycerides
        ("PAT-1", "results_available", "standard", False),
    ]
    _, _, svip = _release(sqlite_sessions, h, RESULT_TOPICS["svip1"], "pat-test-result-svip1")
    assert [(n.patient_id, n.tier) for n in svip.sent] == [("PAT-V", "svip1")]
    with sqlite_sessions() as s:
        assert all(r.visible_to_patient and r.released_at for r in s.scalars(select(TestResult)))


def test_correction_replaces_and_retraction_hides(sqlite_sessions, h):
    with sqlite_sessions() as s:
        h.seed_patient(s)
        s.commit()
    _lis(sqlite_sessions, h, [h.hl7("normal", control_id="M1")])
    _release(sqlite_sessions, h, RESULT_TOPICS["standard"], "pat-test-result")
    outcomes, _, _ = _lis(sqlite_sessions, h, [h.hl7("corrected", control_id="M2")])
    assert outcomes == ["processed"]
    with sqlite_sessions() as s:
        (result,) = s.scalars(select(TestResult)).all()
        (obs,) = result.observations
        assert (result.status, obs.status, obs.value_numeric, obs.flag) == (
            "corrected",
            "corrected",
            6.3,
            "H",
        )
        assert result.visible_to_patient
        last = h.outbox_rows(s, RESULT_TOPICS["standard"])[-1]
        assert last.payload["payload"]["corrected"] is True
    _lis(sqlite_sessions, h, [h.hl7("retracted", control_id="M3")])
    with sqlite_sessions() as s:
        (result,) = s.scalars(select(TestResult)).all()
        assert (result.status, result.visible_to_patient) == ("entered-in-error", False)
        assert not s.scalars(select(Observation)).one().visible_to_patient


def test_lis_refuses_a_report_for_another_patients_order(sqlite_sessions, h):
    with sqlite_sessions() as s:
        h.seed_patient(s, "PAT-1")
        h.seed_patient(s, "PAT-2")
        s.commit()
    _lis(sqlite_sessions, h, [h.hl7("normal", control_id="M1", mrn="PAT-1")])
    # Same filler order number and test, but PID-3 names another patient.
    outcomes, transport, _ = _lis(sqlite_sessions, h, [h.hl7("corrected", control_id="M2", mrn="PAT-2")])
    assert outcomes == ["dead_lettered"] and transport.dlq[0][1]["x-dlq-reason"] == "patient_order_mismatch"
    with sqlite_sessions() as s:
        assert s.scalars(select(Observation)).one().value_numeric == 5.1


# -- recommendations -------------------------------------------------------------------------------------


def test_recommendations_stored_with_reasons(sqlite_sessions, h):
    with sqlite_sessions() as s:
        h.seed_patient(s, dob=date(1970, 1, 1), sex="male")
        for code in ("CARDIO", "DIABETES", "THYROID", "BASIC-CHECK"):
            s.add(Package(code=code, name=code))
        s.commit()
    ev = RecommendationRequested(patient_id="PAT-1", booking_id="b1")
    outcomes, _, _ = h.run_records(
        definition("pat-booking-recommend-test"),
        sqlite_sessions,
        [h.envelope_bytes(ev), h.envelope_bytes(ev)],
    )
    assert outcomes == ["processed", "processed"]  # two requests (different event ids), same rows
    with sqlite_sessions() as s:
        recs = s.scalars(select(Recommendation)).all()
        assert {(r.package.code, r.rule_id) for r in recs} == {
            ("CARDIO", "cardio-risk-40"),
            ("DIABETES", "diabetes-screen-45"),
            ("BASIC-CHECK", "annual-check-up"),
        }
        assert all(r.reason for r in recs)


def test_concurrent_recommendation_requests_for_one_patient_upsert_without_a_retry(postgres_url, h):
    # Requests are keyed by booking, so two for one patient can be in flight on two partitions at once.
    import threading

    from booking_consumers.handlers.recommend_test import recommend
    from booking_consumers.metrics import RETRIES
    from booking_consumers.recommend_rules import default_rules

    sessions = h.pg_sessions_for(postgres_url)
    with sessions() as s:
        h.seed_patient(s, dob=date(1970, 1, 1), sex="male")
        for code in ("CARDIO", "DIABETES", "BASIC-CHECK"):
            s.add(Package(code=code, name=code))
        s.commit()
    retries_before = RETRIES.labels("pat-booking-recommend-test")._value.get()
    first = sessions()
    assert (
        recommend(first, RecommendationRequested(patient_id="PAT-1", booking_id="b1"), default_rules()) == 3
    )
    first.flush()  # rows inserted, not committed: the second request's upsert waits on them
    result: list[list[str]] = []
    second = threading.Thread(
        target=lambda: result.append(
            h.run_records(
                definition("pat-booking-recommend-test"),
                sessions,
                [h.envelope_bytes(RecommendationRequested(patient_id="PAT-1", booking_id="b2"))],
            )[0]
        )
    )
    second.start()

    def second_waits_on_the_first() -> bool:
        with sessions() as s:
            waiting = s.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        return bool(waiting)

    # The race this test is about: the second upsert must be blocked on the first's rows when they commit.
    h.wait_for(second_waits_on_the_first, what="the second upsert waiting on the first's rows")
    first.commit()
    first.close()
    second.join(30)
    assert result == [["processed"]]
    assert RETRIES.labels("pat-booking-recommend-test")._value.get() == retries_before
    with sessions() as s:
        assert len(s.scalars(select(Recommendation)).all()) == 3
