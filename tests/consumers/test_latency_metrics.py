"""Confirmation latency and result delivery time, observed by the real consumer loop from event timestamps."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import REGISTRY
from sqlalchemy import select, update

from booking_consumers.handlers.registry import definition
from booking_core.db.models import Booking, Slot
from booking_core.events import BookingRequested, make_event
from booking_core.events.results import RESULT_TOPICS
from booking_core.observability.deferred import after_commit
from booking_core.topology import CONSUMERS


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _requested(sessions, h, *, close_slot: bool = False, tag: str = ""):
    with sessions() as s:
        h.seed_patient(s, f"PAT-{tag}")
        seed = h.seed_booking(s, f"PAT-{tag}", tag=tag)
        b = s.get(Booking, seed.booking_id)
        event = BookingRequested(
            booking_id=b.id,
            patient_id=b.patient_id,
            slot_id=b.slot_id,
            clinic_id=b.clinic_id,
            service_code="S",
            starts_at=b.starts_at,
            ends_at=b.ends_at,
        )
        if close_slot:
            s.execute(update(Slot).where(Slot.id == seed.slot_id).values(status="closed"))
        s.commit()
    # Requested 5 s ago: the latency is measured from the event's own time, not from when it arrived.
    return make_event(event, occurred_at=h.now() - timedelta(seconds=5), event_id=f"e-{tag}").to_json()


def test_confirmation_latency_counts_each_decision_once_from_the_request_time(sqlite_sessions, h):
    count0 = sample("booking_confirmation_latency_seconds_count", outcome="booked")
    sum0 = sample("booking_confirmation_latency_seconds_sum", outcome="booked")
    low0 = sample("booking_confirmation_latency_seconds_bucket", outcome="booked", le="2.5")
    high0 = sample("booking_confirmation_latency_seconds_bucket", outcome="booked", le="10.0")
    value = _requested(sqlite_sessions, h, tag="a")
    outcomes, _, _ = h.run_records(definition("booking"), sqlite_sessions, [value, value])
    assert outcomes == ["processed", "duplicate"]
    assert sample("booking_confirmation_latency_seconds_count", outcome="booked") == count0 + 1
    observed = sample("booking_confirmation_latency_seconds_sum", outcome="booked") - sum0
    assert 5 <= observed < 60
    # in the 5-10 s bucket, not a sub-second one
    assert sample("booking_confirmation_latency_seconds_bucket", outcome="booked", le="2.5") == low0
    assert sample("booking_confirmation_latency_seconds_bucket", outcome="booked", le="10.0") == high0 + 1


def test_a_rejection_is_observed_as_rejected(sqlite_sessions, h):
    booked0 = sample("booking_confirmation_latency_seconds_count", outcome="booked")
    rejected0 = sample("booking_confirmation_latency_seconds_count", outcome="rejected")
    value = _requested(sqlite_sessions, h, close_slot=True, tag="r")
    h.run_records(definition("booking"), sqlite_sessions, [value])
    assert sample("booking_confirmation_latency_seconds_count", outcome="rejected") == rejected0 + 1
    assert sample("booking_confirmation_latency_seconds_count", outcome="booked") == booked0


def test_no_observation_when_the_booking_was_no_longer_pending(sqlite_sessions, h):
    value = _requested(sqlite_sessions, h, tag="c")
    with sqlite_sessions() as s:
        s.execute(update(Booking).where(Booking.patient_id == "PAT-c").values(status="cancelled"))
        s.commit()
    before = sum(
        sample("booking_confirmation_latency_seconds_count", outcome=o) for o in ("booked", "rejected")
    )
    h.run_records(definition("booking"), sqlite_sessions, [value])
    after = sum(
        sample("booking_confirmation_latency_seconds_count", outcome=o) for o in ("booked", "rejected")
    )
    assert after == before


def test_result_visible_per_tier_once_per_released_message(sqlite_sessions, h):
    with sqlite_sessions() as s:
        h.seed_patient(s, "PAT-1")
        h.seed_patient(s, "PAT-V", tier="svip1")
        s.commit()
    h.run_records(
        definition("lis-testresult"),
        sqlite_sessions,
        [h.hl7("normal", control_id="V1"), h.hl7("multi_obr", control_id="V2", mrn="PAT-V", order="ORD-9")],
        topic=CONSUMERS["lis-testresult"].topic,
    )
    standard0 = sample("booking_result_visible_seconds_count", tier="standard")
    svip0 = sample("booking_result_visible_seconds_count", tier="svip1")
    for tier, consumer in (("standard", "pat-test-result"), ("svip1", "pat-test-result-svip1")):
        with sqlite_sessions() as s:
            records = [h.outbox_record(r) for r in h.outbox_rows(s, RESULT_TOPICS[tier])]
        assert len(records) == 1
        h.run_records(definition(consumer), sqlite_sessions, records + records)  # a redelivery too
    assert sample("booking_result_visible_seconds_count", tier="standard") == standard0 + 1
    assert sample("booking_result_visible_seconds_count", tier="svip1") == svip0 + 1


def test_deferred_observations_run_on_commit_and_never_after_a_rollback(sqlite_sessions):
    ran: list[str] = []
    with sqlite_sessions() as s:
        s.execute(select(1))
        after_commit(s, lambda: ran.append("rolled back"))
        s.rollback()
        s.execute(select(1))
        with s.begin_nested():
            after_commit(s, lambda: ran.append("released savepoint"))
        try:
            with s.begin_nested():
                after_commit(s, lambda: ran.append("refused record"))
                raise RuntimeError("a record's savepoint rolls back")
        except RuntimeError:
            pass
        after_commit(s, lambda: ran.append("outer"))
        assert ran == []  # nothing before the outermost COMMIT
        s.commit()
    assert ran == ["released savepoint", "outer"]
