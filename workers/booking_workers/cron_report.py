"""Where a cron run's outcome goes, so Prometheus sees it although the CronJob's pod lives seconds.

Two ways, both best effort (a lost report never fails the run): each task's last run is pushed to a
Pushgateway when BOOKING_PUSHGATEWAY_URL is set (one group per task, so a failed task keeps its last
success time), and the run is always sent as a `record_cron_run` job to the default worker, a
long-lived process that exports runs per task and status and each task's last success time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

from booking_core.topology import DEFAULT_QUEUE
from booking_workers.broker import enqueue

log = logging.getLogger(__name__)

RECORD_CRON_RUN = "record_cron_run"
PUSH_JOB = "booking-cron"
# The run's tasks (booking_workers.cron.build_tasks); a report naming anything else is ignored.
TASKS = (
    "reminders_2h",
    "reminders_24h",
    "expire_holds",
    "mark_noshows",
    "cleanup_outbox",
    "cleanup_processed_messages",
    "cleanup_idempotency_keys",
    "cleanup_access_denied_log",
)
STATUSES = ("ok", "failed", "skipped")


class TaskOutcome(Protocol):
    """What the report needs of a task's result (booking_workers.cron.TaskResult)."""

    @property
    def task(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def duration_ms(self) -> int: ...


def runs_payload(results: Sequence[TaskOutcome]) -> list[dict[str, Any]]:
    """The job's JSON-ready body: task, status and duration of each task."""
    return [{"task": r.task, "status": r.status, "duration_ms": r.duration_ms} for r in results]


def push(url: str, results: Sequence[TaskOutcome], *, finished_at: float, timeout: float = 5.0) -> int:
    """Push each task's last run to the Pushgateway at `url`; returns how many pushes succeeded."""
    pushed = 0
    for r in results:
        if r.status == "skipped":
            continue  # another run did this task: its push tells the truth
        registry = CollectorRegistry()
        Gauge(
            "booking_cron_task_last_run_timestamp_seconds",
            "Unix time of the task's last run",
            registry=registry,
        ).set(finished_at)
        Gauge(
            "booking_cron_task_last_run_ok", "1 when the task's last run succeeded, else 0", registry=registry
        ).set(1 if r.status == "ok" else 0)
        Gauge(
            "booking_cron_task_last_run_duration_seconds",
            "Duration of the task's last run",
            registry=registry,
        ).set(r.duration_ms / 1000)
        if r.status == "ok":
            # Left out on failure: pushadd replaces only the names it sends, so the last success stays.
            Gauge(
                "booking_cron_task_last_success_timestamp_seconds",
                "Unix time of the task's last successful run",
                registry=registry,
            ).set(finished_at)
        try:
            pushadd_to_gateway(
                url, job=PUSH_JOB, registry=registry, grouping_key={"task": r.task}, timeout=timeout
            )
            pushed += 1
        except OSError as exc:
            log.error("pushgateway push failed", extra={"task": r.task, "reason": type(exc).__name__})
    return pushed


def report(
    pushgateway_url: str | None, results: Sequence[TaskOutcome], *, finished_at: float | None = None
) -> None:
    """Push the run (when a Pushgateway is configured) and send it to the default worker."""
    at = finished_at if finished_at is not None else time.time()
    if pushgateway_url:
        push(pushgateway_url, results, finished_at=at)
    try:
        enqueue(
            RECORD_CRON_RUN,
            queue_name=DEFAULT_QUEUE,
            kwargs={"runs": runs_payload(results), "finished_at": at},
        )
    except Exception as exc:  # Redis down: the run itself succeeded, its report is lost
        log.error("cron run report not sent", extra={"reason": type(exc).__name__})
