"""The event pipeline against real Apache Kafka and PostgreSQL (issue 6, "Show")."""

from __future__ import annotations

import uuid
from datetime import timedelta

import dramatiq
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from booking_api.app import create_app
from booking_api.auth import mint_token
from booking_api.settings import ApiSettings
from booking_consumers.metrics import DUPLICATES
from booking_core.db.models import Booking, Clinic, OutboxMessage, ProcessedMessage, Service, Slot, TestResult
from booking_core.db.models_events import DeadLetter, LisMessage
from booking_core.db.models_notify import NotificationIntent
from booking_core.topology import CONSUMERS
from booking_workers.broker import BrokerSettings, build_broker, send_notice, setup_broker


def _slot(sessions, h):
    with sessions() as s:
        h.seed_patient(s, "patient-a")
        clinic = Clinic(code="C1", name="Clinic")
        service = Service(code="blood-draw", name="Blood draw")
        s.add_all([clinic, service])
        s.flush()
        starts = h.now() + timedelta(days=2)
        slot = Slot(
            clinic_id=clinic.id,
            service_id=service.id,
            starts_at=starts,
            ends_at=starts + timedelta(minutes=15),
            capacity=3,
        )
        s.add(slot)
        s.commit()
        return slot.id


def test_booking_through_the_api_is_confirmed_via_kafka_with_one_confirmation(
    postgres_url, kafka_bootstrap, redis_url, h
):
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    setup_broker(broker=build_broker(redis_url, BrokerSettings(namespace=namespace)))
    pipeline = h.Pipeline(postgres_url, kafka_bootstrap, notifier=send_notice)
    try:
        _booking_flow(pipeline, h, redis_url, namespace)
    finally:
        pipeline.close()
        setup_broker(broker=build_broker(None))


def _booking_flow(pipeline, h, redis_url, namespace):
    dup_before = DUPLICATES.labels("booking")._value.get()
    slot_id = _slot(pipeline.sessions, h)
    settings = ApiSettings(database_url=pipeline.url)
    token = mint_token(
        settings=settings, subject="patient-a", role="patient", now=h.now(), ttl=timedelta(hours=1)
    )
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())}
    with TestClient(create_app(settings, session_factory=pipeline.sessions)) as client:
        first = client.post("/api/v1/bookings", json={"slot_id": slot_id}, headers=headers)
        again = client.post("/api/v1/bookings", json={"slot_id": slot_id}, headers=headers)  # a client retry
    assert first.status_code == 201, first.text
    assert again.json()["id"] == first.json()["id"]
    booking_id = first.json()["id"]
    assert first.json()["status"] == "pending"

    pipeline.relay()
    pipeline.consumer("booking")
    pipeline.consumer("pat-booking-recommend-test")

    def confirmed():
        with pipeline.sessions() as s:
            return s.get(Booking, booking_id).status == "booked"

    h.wait_for(confirmed, what="booking confirmed")
    # Deliver the request again (the relay republishes it): still one effect.
    with pipeline.sessions() as s:
        s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.event_type == "booking.requested")
            .values(published_at=None)
        )
        s.commit()

    def republished_and_seen():
        with pipeline.sessions() as s:
            published = s.scalar(select(func.count()).where(OutboxMessage.published_at.is_(None))) == 0
            # requested (x2 deliveries, 1 key); the confirmation it raised itself is passed over, unclaimed
            seen = s.scalar(select(func.count()).where(ProcessedMessage.consumer == "booking")) == 1
            return published and seen

    h.wait_for(republished_and_seen, what="duplicate delivered")
    h.wait_for(
        lambda: DUPLICATES.labels("booking")._value.get() > dup_before, what="duplicate skipped", timeout=15
    )
    queued = [
        dramatiq.Message.decode(v)
        for v in redis.Redis.from_url(redis_url).hvals(f"{namespace}:notifications.msgs")
    ]
    assert [(m.actor_name, m.kwargs["event_type"], m.kwargs["ref_id"]) for m in queued] == [
        ("send_notification", "booking_confirmed", booking_id)
    ]
    with pipeline.sessions() as s:
        confirmed_event = s.scalar(
            select(OutboxMessage.event_id).where(OutboxMessage.event_type == "booking.confirmed")
        )
        intent = s.scalar(select(NotificationIntent))
        assert intent is not None and intent.dispatched_at is not None
    assert queued[0].kwargs == {
        "patient_id": "patient-a",
        "event_type": "booking_confirmed",
        "ref_id": booking_id,
        "urgent": False,
        "cause": confirmed_event,  # each notice is deduplicated per the event that caused it
        "intent_id": intent.id,
    }
    with pipeline.sessions() as s:
        types = sorted(r.event_type for r in s.scalars(select(OutboxMessage)))
        assert types == ["booking.confirmed", "booking.requested", "recommendation.requested"]
    # What reached Kafka is keyed by the booking, never by the patient ("patient-a").
    for name in ("booking", "pat-booking-recommend-test"):
        on_kafka = h.read_topic(pipeline.bootstrap, pipeline.prefix + CONSUMERS[name].topic, timeout=3)
        assert on_kafka and {m.key().decode() for m in on_kafka} == {booking_id}, name


def test_hl7_fixtures_over_kafka_stored_released_and_dead_lettered(pipeline, h):
    with pipeline.sessions() as s:
        h.seed_patient(s, "PAT-1")
        h.seed_patient(s, "PAT-V", tier="svip2")
        s.commit()
    lis = CONSUMERS["lis-testresult"].topic
    messages = [
        h.hl7("normal", control_id="N1"),
        h.hl7("abnormal", control_id="A1", order="O2"),
        h.hl7("multi_obr", control_id="M1", mrn="PAT-V", order="O3"),
        h.hl7("escaped", control_id="E1", order="O4"),
        h.hl7("wrong_patient", control_id="W1"),
        h.hl7("malformed", control_id="X1"),  # NM "five point one": stored as flagged text
    ]
    # Every message delivered twice.
    pipeline.produce(lis, messages + messages)
    for name in ("lis-testresult", "pat-test-result", "pat-test-result-svip1", "pat-test-result-svip2"):
        pipeline.consumer(name)
    pipeline.relay()

    def released():
        with pipeline.sessions() as s:
            rs = s.scalars(select(TestResult)).all()
            return len(rs) == 6 and all(r.visible_to_patient for r in rs)

    h.wait_for(released, what="6 reports stored and released")
    h.wait_for(lambda: len(pipeline.notes.sent) >= 5, what="notifications")
    # The correction arrives later and is announced; the retraction after it hides the result.
    pipeline.produce(lis, [h.hl7("corrected", control_id="C1")], key="late")
    h.wait_for(lambda: len(pipeline.notes.sent) >= 6, what="correction notification")
    pipeline.produce(lis, [h.hl7("retracted", control_id="R1")], key="later")

    def retracted():
        with pipeline.sessions() as s:
            glu = s.scalars(select(TestResult).where(TestResult.filler_order_number == "ACC-1001")).one()
            return glu.status == "entered-in-error" and not glu.visible_to_patient

    h.wait_for(retracted, what="correction then retraction applied")
    dlq = pipeline.dlq("lis-testresult")
    with pipeline.sessions() as s:
        assert s.scalar(select(func.count()).select_from(LisMessage)) == 7
        reasons = sorted(s.scalars(select(DeadLetter.reason)))
        lipid = s.scalars(select(TestResult).where(TestResult.test_code == "LIPID")).one()
        assert [o.flag for o in lipid.observations] == ["H", "HH", "L"]
        path = s.scalars(select(TestResult).where(TestResult.test_code == "PATH")).one()
        assert path.observations[0].value_text.startswith("Sample A & B: fragments | no atypia.\n")
    # Both deliveries of each refused message are dead-lettered (they are different Kafka records).
    assert reasons == ["unknown_patient"] * 2
    assert sorted(dict(m.headers())["x-dlq-reason"].decode() for m in dlq) == reasons
    assert all(dict(m.headers())["x-dlq-consumer"] == b"lis-testresult" for m in dlq)
    assert all(m.key() is None for m in dlq), "an inbound key may be an MRN: dead letters carry none"
    sent = sorted((n.patient_id, n.tier, n.urgent) for n in pipeline.notes.sent)
    assert sent == [
        ("PAT-1", "standard", False),  # normal
        ("PAT-1", "standard", False),  # escaped
        ("PAT-1", "standard", False),  # correction
        ("PAT-1", "standard", False),  # the misfit value, kept as text
        ("PAT-1", "standard", True),  # abnormal, HH
        ("PAT-V", "svip2", False),  # multi-OBR, on the SVIP2 queue
    ]


def test_sigkilled_consumer_restarted_loses_nothing_and_doubles_nothing(pipeline, h):
    import os
    import signal
    import subprocess
    import sys

    n = int(os.environ.get("BOOKING_TEST_KILL_MESSAGES", "400"))
    with pipeline.sessions() as s:
        for i in range(20):
            h.seed_patient(s, f"P{i}", tier=("standard", "svip1", "svip2")[i % 3])
        s.commit()
    values = [
        h.hl7("abnormal", control_id=f"K{i}", mrn=f"P{i % 20}", order=f"O{i}").replace(
            b"ACC-1002", f"ACC-K{i}".encode()
        )
        for i in range(n)
    ]
    pipeline.produce(CONSUMERS["lis-testresult"].topic, values)
    env = {
        **os.environ,
        "BOOKING_DATABASE_URL": pipeline.url,
        "BOOKING_KAFKA_BOOTSTRAP_SERVERS": pipeline.bootstrap,
        "BOOKING_KAFKA_TOPIC_PREFIX": pipeline.prefix,
        "BOOKING_METRICS_PORT": "0",
        "BOOKING_MAX_BATCH": "20",
        "BOOKING_LOG_LEVEL": "WARNING",
        "BOOKING_LIS_DEFAULT_TIME_ZONE": "Asia/Ho_Chi_Minh",  # no clinics here to take it from
    }
    cmd = [sys.executable, "-m", "booking_core.cli", "consumer", "lis-testresult"]

    def stored():
        with pipeline.sessions() as s:
            return s.scalar(select(func.count()).select_from(LisMessage)) or 0

    proc = subprocess.Popen(cmd, env=env)
    try:
        h.wait_for(lambda: stored() >= n // 4, timeout=120, what="a quarter stored")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_at = stored()
        assert killed_at < n, "consumer finished before the kill; raise BOOKING_TEST_KILL_MESSAGES"
        proc = subprocess.Popen(cmd, env=env)
        h.wait_for(lambda: stored() == n, timeout=180, what="all stored after restart")
        proc.send_signal(signal.SIGTERM)  # graceful: finishes the batch, commits, leaves the group
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    with pipeline.sessions() as s:
        assert s.scalar(select(func.count()).select_from(TestResult)) == n
        assert s.scalar(select(func.count()).where(ProcessedMessage.consumer == "lis-testresult")) == n
        routed = s.scalar(select(func.count()).where(OutboxMessage.event_type == "lab_results.stored"))
        assert routed == n  # one routed event per message: nothing doubled downstream
        assert s.scalar(select(func.count()).select_from(DeadLetter)) == 0


def test_lis_consumer_process_starts_on_a_fresh_database_and_dead_letters_what_it_cannot_date(pipeline, h):
    """Issue 13 on kind: no clinics and no zone setting made `booking consumer lis-testresult` crash-loop."""
    import os
    import signal
    import subprocess
    import sys
    import urllib.request

    from booking_testing.procs import free_port

    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BOOKING_LIS_")},
        "BOOKING_ENVIRONMENT": "prod",
        "BOOKING_DATABASE_URL": pipeline.url,  # migrated, and no clinics
        "BOOKING_KAFKA_BOOTSTRAP_SERVERS": pipeline.bootstrap,
        "BOOKING_KAFKA_TOPIC_PREFIX": pipeline.prefix,
        "BOOKING_METRICS_PORT": str(port),
        "BOOKING_LOG_LEVEL": "WARNING",
    }

    def ready():
        assert proc.poll() is None, f"the consumer exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    with pipeline.sessions() as s:
        h.seed_patient(s, "PAT-1")
        s.commit()
    # Every timestamp local time, and no zone known for CENTRAL-LAB.
    naive = h.hl7("normal", control_id="Z1").replace(b"+0700", b"")
    assert b"+0700" not in naive
    proc = subprocess.Popen([sys.executable, "-m", "booking_core.cli", "consumer", "lis-testresult"], env=env)
    try:
        h.wait_for(ready, timeout=60, what="the consumer ready")
        pipeline.produce(CONSUMERS["lis-testresult"].topic, [naive])

        def dead_lettered():
            with pipeline.sessions() as s:
                return s.scalars(select(DeadLetter.reason)).all()

        h.wait_for(lambda: dead_lettered() == ["unknown_time_zone"], timeout=60, what="the dead letter")
        assert ready(), "still running after the refusal"
        (dlq,) = pipeline.dlq("lis-testresult")
        headers = {k: v.decode() for k, v in dlq.headers()}
        assert headers["x-dlq-reason"] == "unknown_time_zone"
        assert "BOOKING_LIS_DEFAULT_TIME_ZONE" in headers["x-dlq-detail"]
        assert dlq.value() == naive  # the bytes, for a replay once a zone is known
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    with pipeline.sessions() as s:
        assert s.scalar(select(func.count()).select_from(TestResult)) == 0
