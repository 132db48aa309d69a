"""`booking consumer NAME`: one consumer process on Kafka (or on the embedded transport without Kafka)."""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import signal
import threading
from typing import Any

from booking_consumers import observe
from booking_consumers.handlers.lis_patients import parse_rules
from booking_consumers.handlers.registry import definition
from booking_consumers.kafka import KafkaTransport, consumer_config, start_at
from booking_consumers.priority_lane import GROUP_SUFFIX, PriorityLaneTransport
from booking_consumers.runtime import Consumer, Transport
from booking_consumers.settings import ConsumerSettings, get_consumer_settings
from booking_core import health
from booking_core.db.session import get_session_factory
from booking_core.health import Liveness
from booking_core.kafka import client_config, make_producer
from booking_core.logs import configure_logging
from booking_core.telemetry import configure_telemetry
from booking_core.topology import CONSUMERS

log = logging.getLogger(__name__)


def group_id(settings: ConsumerSettings, name: str) -> str:
    """The consumer group, from the topology and the Kafka prefix alone: the operator renders KEDA's
    trigger from the same two, so the group KEDA measures is the group read here."""
    return CONSUMERS[name].group_for(settings.kafka_topic_prefix)


def build_transport(settings: ConsumerSettings, name: str) -> Transport:
    """Kafka when bootstrap servers are configured, else the outbox read as a log."""
    spec = CONSUMERS[name]
    if settings.embedded:
        from booking_consumers.embedded import OutboxTransport, topic_readers

        return OutboxTransport(
            get_session_factory(settings.database_url),
            group_id(settings, name),
            [spec.topic],
            readers=topic_readers(settings.kafka_topic_prefix),
        )
    return KafkaTransport(
        consumer_config(client_config(settings), group_id(settings, name)),
        [spec.topic_for(settings.kafka_topic_prefix)],
        make_producer(settings),
    )


def run_consumer(
    name: str,
    stop: threading.Event,
    settings: ConsumerSettings | None = None,
    liveness: Liveness | None = None,
) -> None:
    """Run consumer `name` until `stop` is set."""
    settings = settings or get_consumer_settings()
    observe.consumer_started(name)
    lane = None
    if name == PRIORITY_LANE_OF and settings.lis_priority_lane and not settings.embedded:
        # Its own process: as a thread it shared the GIL with the main loop's HL7 parsing and read the
        # backlog at a fraction of its pace (issue 15's bench: SVIP1 p99 4.8 s as a thread).
        ctx = multiprocessing.get_context("spawn")
        lane_stop = ctx.Event()
        lane = ctx.Process(target=lane_process, args=(lane_stop, settings, os.getpid()), name="priority-lane")
        lane.start()
        threading.Thread(target=_relay_stop, args=(stop, lane_stop), daemon=True).start()
        # The main loop yields the CPU to the lane it shares a container with: under a lab's batch it
        # parses and stores flat out, and an SVIP result waited for CPU behind it (issue 15's bench: p50
        # 306 -> 212 ms). On Linux a nice value is per thread: this thread's, and the Kafka client's
        # threads it starts from here on; the lane, started above, keeps its own.
        os.nice(settings.lis_bulk_nice)
    try:
        Consumer(
            definition(name, settings),
            build_transport(settings, name),
            get_session_factory(settings.database_url),
            stop=stop,
            max_batch=settings.max_batch,
            poll_timeout=settings.poll_timeout_seconds,
            backoff_max=settings.retry_backoff_max_seconds,
            liveness=liveness,
        ).run()
    finally:
        stop.set()  # the lane stops with the main loop, whichever way that ended
        if lane is not None:
            lane.join(60)
            if lane.is_alive():
                lane.kill()


def _relay_stop(stop: threading.Event, lane_stop: Any) -> None:
    stop.wait()
    lane_stop.set()


def lane_process(lane_stop: Any, settings: ConsumerSettings, parent: int) -> None:
    """The priority lane's process: runs until the parent sets `lane_stop` or is gone."""
    configure_logging(settings.log_level, settings.log_format)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: lane_stop.set())
    stop = threading.Event()

    def watch() -> None:
        # The parent stops us; if it died without doing so (SIGKILL), stop too rather than linger.
        while not lane_stop.wait(1.0):
            if os.getppid() != parent:
                break
        stop.set()

    threading.Thread(target=watch, daemon=True).start()
    run_priority_lane(stop, settings)


PRIORITY_LANE_OF = "lis-testresult"


def run_priority_lane(stop: threading.Event, settings: ConsumerSettings) -> None:
    """lis-testresult's SVIP lane (booking_consumers.priority_lane) until `stop` is set."""
    sessions = get_session_factory(settings.database_url)
    spec = CONSUMERS[PRIORITY_LANE_OF]
    config = consumer_config(client_config(settings), group_id(settings, PRIORITY_LANE_OF) + GROUP_SUFFIX)
    # The lane passes over nearly everything it reads, so it reads in large fetches: at librdkafka's
    # 1 MiB per partition a 50,000-result backlog (~22 MB) took ~20 fetch round trips to a busy broker
    # before the first SVIP result behind it (issue 15). Memory stays bounded by queued.max.messages.kbytes.
    config.update({"max.partition.fetch.bytes": 16 * 1024 * 1024, "fetch.max.bytes": 64 * 1024 * 1024})
    topic = spec.topic_for(settings.kafka_topic_prefix)
    # Not from the topic's start: what the main group applied already holds no SVIP result to hurry.
    start_at(config, topic, config["group.id"], group_id(settings, PRIORITY_LANE_OF))
    inner = KafkaTransport(config, [topic], make_producer(settings))
    Consumer(
        definition(PRIORITY_LANE_OF, settings),
        PriorityLaneTransport(inner, sessions, parse_rules(settings.lis_patient_identifiers)),
        sessions,
        stop=stop,
        max_batch=settings.max_batch,
        poll_timeout=settings.poll_timeout_seconds,
        backoff_max=settings.retry_backoff_max_seconds,
    ).run()


def cli(args: argparse.Namespace) -> int:
    """Entry point of `booking consumer NAME`; SIGTERM finishes the batch, commits and leaves the group."""
    name: str = args.name
    settings = get_consumer_settings()
    configure_logging(settings.log_level, settings.log_format)
    configure_telemetry(f"pat-booking-be-consumer-{name}")
    # /livez follows the poll loop (the pod's probes), /metrics on the same port.
    liveness = Liveness(settings.liveness_max_age_seconds, expect=["poll"])
    if settings.metrics_port:
        health.serve(settings.metrics_port, liveness)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info(
        "starting consumer", extra={"component": "consumer", "group": name, "topic": CONSUMERS[name].topic}
    )
    run_consumer(name, stop, settings, liveness)
    return 0
