from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.stub import StubBroker

from booking_core.logs import RedactDramatiqArgs, configure_logging
from booking_workers import broker as b


@pytest.fixture
def stub() -> Any:
    previous = b._broker
    yield b.setup_broker(broker=b.build_broker(None))
    if previous is not None:
        b.setup_broker(broker=previous)


def test_no_redis_url_means_the_in_memory_broker(stub: Any) -> None:
    assert isinstance(stub, StubBroker)
    assert {
        "notifications",
        "notifications-svip1",
        "notifications-svip2",
        "default",
        "batch-publisher",
    } <= set(stub.get_declared_queues())


@pytest.mark.parametrize(
    ("tier", "queue"),
    [
        ("standard", "notifications"),
        ("svip1", "notifications-svip1"),
        ("SVIP2", "notifications-svip2"),
        ("unknown", "notifications"),
    ],
)
def test_enqueue_notification_picks_the_tier_queue(stub: Any, tier: str, queue: str) -> None:
    msg = b.enqueue_notification(patient_id="p-1", event_type="results_available", ref_id="r-9", tier=tier)
    assert msg.queue_name == queue and msg.actor_name == "send_notification"
    assert msg.kwargs == {
        "patient_id": "p-1",
        "event_type": "results_available",
        "ref_id": "r-9",
        "urgent": False,
    }
    assert "trace_context" in msg.options and "enqueued_at_ms" in msg.options
    assert stub.queues[queue].qsize() == 1


def test_trace_context_travels_in_options(stub: Any) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("producer") as span:
        msg = b.enqueue_notification(patient_id="p", event_type="booking_confirmed", ref_id="b", tier="svip1")
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert trace_id in msg.options["trace_context"]["traceparent"]


def test_redis_broker_uses_the_namespace(redis_url: str) -> None:
    rb = b.build_broker(redis_url, b.BrokerSettings(namespace="t-ns-broker"))
    msg: dramatiq.Message[Any] = dramatiq.Message(
        queue_name="notifications-svip2", actor_name="send_notification", args=(), kwargs={}, options={}
    )
    rb.enqueue(msg)
    r = redis.Redis.from_url(redis_url)
    assert r.llen("t-ns-broker:notifications-svip2") == 1
    rb.flush_all()
    rb.close()


def test_dramatiq_log_lines_keep_only_the_message_id() -> None:
    import logging

    msg: dramatiq.Message[Any] = dramatiq.Message(
        queue_name="notifications",
        actor_name="send_notification",
        args=(),
        kwargs={"patient_id": "p-secret"},
        options={},
    )
    record = logging.LogRecord(
        "dramatiq.worker.WorkerThread",
        logging.ERROR,
        __file__,
        1,
        "Failed to process message %s with unhandled exception.",
        (msg,),
        None,
    )
    assert RedactDramatiqArgs().filter(record)
    assert "p-secret" not in record.getMessage() and msg.message_id in record.getMessage()


@pytest.fixture
def root_logging() -> Any:
    """Put the root logger back as it was after a test that configures logging."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("broker_first", [True, False], ids=["broker-then-logging", "logging-then-broker"])
def test_a_failed_job_logs_no_arguments_whatever_the_setup_order(
    broker_first: bool, root_logging: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    previous = b._broker
    stub = b.build_broker(None)
    if broker_first:
        b.setup_broker(broker=stub)
        configure_logging("DEBUG")
    else:
        configure_logging("DEBUG")
        b.setup_broker(broker=stub)

    @dramatiq.actor(actor_name="fails_with_phi", queue_name="default", max_retries=0, broker=stub)
    def fails_with_phi(patient_id: str, email: str) -> None:
        raise RuntimeError("delivery failed")

    worker = dramatiq.Worker(stub, worker_timeout=50)
    worker.start()
    try:
        msg = fails_with_phi.send(patient_id="p-secret", email="ann@example.org")
        stub.join("default", fail_fast=False)
    finally:
        worker.stop()
        if previous is not None:
            b.setup_broker(broker=previous)
    err = capsys.readouterr().err
    # Dramatiq's lines were written (the failure, and at debug the actor's arguments), with no PHI in them.
    assert "Failed to process message" in err and msg.message_id in err and "Received args" in err
    assert "p-secret" not in err and "ann@example.org" not in err
