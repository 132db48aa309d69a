"""`booking worker NAME`: one Dramatiq worker (or the outbox relay loop) in this process.

The worker runs in-process through `dramatiq.Worker` rather than the `dramatiq` CLI: settings, logging,
telemetry and the broker are set up by our own entrypoint (the CLI would fork and re-import by module
path), SIGTERM drains gracefully, and tests and `booking run` start the very same code.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType

import dramatiq
from dramatiq.broker import Consumer
from dramatiq.common import dq_name, q_name

from booking_core.health import Liveness
from booking_core.health import serve as serve_health
from booking_core.logs import configure_logging
from booking_core.telemetry import configure_telemetry
from booking_core.topology import DEFAULT_QUEUE, NOTIFICATION_QUEUES
from booking_workers import affinity, health
from booking_workers.broker import setup_worker_broker
from booking_workers.settings import WorkerSettings, get_worker_settings

log = logging.getLogger(__name__)

QUEUES: dict[str, set[str]] = {
    "notifications": set(NOTIFICATION_QUEUES.values()),
    "default": {DEFAULT_QUEUE},
}


def poll_delay_queues(broker: dramatiq.Broker, poll_ms: int) -> None:
    """Make the worker on `broker` poll its idle delay queues every `poll_ms` at most, not at its idle poll.

    Dramatiq gives every consumer the worker's one timeout; the short one is for the tier queues (an
    SVIP notice must not wait for the next fetch), not for delay queues, whose messages wait seconds."""
    consume = broker.consume

    def consuming(queue_name: str, prefetch: int = 1, timeout: int = 30000) -> Consumer:
        if queue_name == dq_name(q_name(queue_name)):
            timeout = max(timeout, poll_ms)
        return consume(queue_name=queue_name, prefetch=prefetch, timeout=timeout)

    broker.consume = consuming  # type: ignore[method-assign]


def build_worker(broker: dramatiq.Broker, name: str, settings: WorkerSettings) -> dramatiq.Worker:
    """A Dramatiq worker consuming the queues of `name` (and their delay queues)."""
    poll_delay_queues(broker, settings.worker_delay_poll_ms)
    worker = dramatiq.Worker(
        broker,
        queues=QUEUES[name],
        worker_threads=settings.worker_threads,
        worker_timeout=settings.worker_idle_poll_ms,
    )
    # Dramatiq has no queue priorities: each tier queue gets its own consumer feeding one local work
    # queue, so a small prefetch bounds how many standard messages an SVIP one can wait behind.
    worker.queue_prefetch = settings.worker_threads
    return worker


def run_worker(
    name: str, stop: threading.Event, settings: WorkerSettings, liveness: Liveness | None = None
) -> None:
    """Run worker `name` until `stop` is set, then drain and return."""
    if name == "batch-publisher":
        # Loops, not a queue consumer: the event outbox to Kafka, the notification outbox to Dramatiq.
        from booking_workers import relay

        relay.main(settings, stop, liveness=liveness)
        return
    broker = setup_worker_broker(settings)
    import booking_workers.actors  # noqa: F401  declares the actors on the broker set up above

    if liveness is not None:
        health.watch(broker, liveness, settings.liveness_max_age_seconds)
    if name == "notifications":
        # Connect and compile before the first job: it would otherwise pay imports, the engine and the
        # statements' compilation (a tenth of the first thousand jobs' CPU, issue 15's profile), and
        # every thread its own connection and prepared statements.
        from booking_workers.actors import get_notifier

        get_notifier().warm(settings.worker_threads)
    worker = build_worker(broker, name, settings)
    worker.start()
    log.info("worker started", extra={"component": f"worker-{name}", "queue": ",".join(sorted(QUEUES[name]))})
    stop.wait()
    log.info("worker stopping", extra={"component": f"worker-{name}"})
    worker.stop(timeout=30_000)
    broker.close()


def cli(args: argparse.Namespace) -> int:
    """Entry point of `booking worker NAME`."""
    settings = get_worker_settings()
    if settings.worker_cpus:  # before any thread of ours starts; the ones running now are pinned too
        affinity.pin(affinity.parse_cpus(settings.worker_cpus))
    configure_logging(settings.log_level, settings.log_format)
    configure_telemetry(f"booking-worker-{args.name}")
    # /livez follows the relay loop or each queue's fetches and the messages in progress.
    if args.name == "batch-publisher":  # the relay, and the notice dispatcher where there is Redis
        expect = ["relay", "notices"] if settings.redis_url else ["relay"]
        if not settings.embedded:  # the SVIP result topics' own loop (booking_workers.relay)
            expect.append("relay-priority")
    else:
        expect = [f"queue {q}" for q in sorted(QUEUES[args.name])]
    liveness = Liveness(settings.liveness_max_age_seconds, expect=expect)
    if settings.metrics_port:
        serve_health(settings.metrics_port, liveness)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    run_worker(args.name, stop, settings, liveness)
    return 0
