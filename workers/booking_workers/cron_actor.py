"""`record_cron_run`: the default worker exports each cron run (see booking_workers.cron_report)."""

from __future__ import annotations

from typing import Any

import dramatiq

from booking_core.topology import DEFAULT_QUEUE
from booking_workers import metrics
from booking_workers.broker import get_broker
from booking_workers.cron_report import RECORD_CRON_RUN, STATUSES, TASKS

_last_success: dict[str, float] = {}


def record(runs: list[dict[str, Any]], finished_at: float) -> None:
    """Count each task's run by status and move its last-success time forward (never back)."""
    for run in runs:
        task, status = str(run.get("task")), str(run.get("status"))
        if task not in TASKS or status not in STATUSES:
            continue  # a label value from a message must come from the closed set
        metrics.CRON_RUNS.labels(task, status).inc()
        if status == "ok" and finished_at > _last_success.get(task, 0.0):
            # Jobs may arrive out of order (two worker threads, a redelivery): keep the newest.
            _last_success[task] = finished_at
            metrics.CRON_LAST_SUCCESS.labels(task).set(finished_at)


@dramatiq.actor(actor_name=RECORD_CRON_RUN, queue_name=DEFAULT_QUEUE, max_retries=0, broker=get_broker())
def record_cron_run(runs: list[dict[str, Any]], finished_at: float) -> None:
    """Export one `booking cron` run in this long-lived process."""
    record(runs, finished_at)
