"""`booking cron`: one run of the per-minute tasks, then exit 0 (all ok) or 1 (a task failed).

Each task runs on its own: one failing does not stop the others. On PostgreSQL a task first takes a
session advisory lock (try, never wait), so an overlapping run skips what another run is doing; the row
claims inside each task keep it correct even without the lock. Each task logs a JSON summary line;
the run's outcome is pushed to a Pushgateway when configured and sent to the default worker, which
exports it (a CronJob has nothing to scrape; see booking_workers.cron_report).
"""

from __future__ import annotations

import argparse
import logging
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY, write_to_textfile
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from booking_core.db.session import get_engine, make_session_factory
from booking_core.logs import configure_logging
from booking_core.telemetry import configure_telemetry
from booking_workers import cron_report, cron_tasks, metrics
from booking_workers.broker import setup_broker
from booking_workers.settings import CronSettings, get_cron_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskResult:
    """What one task did: ok, failed or skipped (another run holds its lock), and how many rows."""

    task: str
    status: str
    count: int
    duration_ms: int


def build_tasks(
    settings: CronSettings,
    sessions: sessionmaker[Session],
    now: datetime,
) -> dict[str, Callable[[], int]]:
    """The run's tasks in order, bound to their settings."""
    hours = timedelta(hours=1)
    return {
        "reminders_2h": lambda: cron_tasks.send_reminders(sessions, kind="2h", now=now),
        "reminders_24h": lambda: cron_tasks.send_reminders(sessions, kind="24h", now=now),
        "expire_holds": lambda: cron_tasks.expire_holds(sessions, now=now),
        "mark_noshows": lambda: cron_tasks.mark_noshows(
            sessions, now=now, grace=timedelta(minutes=settings.noshow_grace_minutes)
        ),
        "cleanup_outbox": lambda: cron_tasks.cleanup_outbox(
            sessions, now=now, retention=settings.outbox_retention_hours * hours
        ),
        "cleanup_processed_messages": lambda: cron_tasks.cleanup_processed_messages(
            sessions, now=now, retention=settings.processed_message_retention_hours * hours
        ),
        "cleanup_idempotency_keys": lambda: cron_tasks.cleanup_idempotency_keys(
            sessions, now=now, retention=settings.idempotency_retention_hours * hours
        ),
        "cleanup_access_denied_log": lambda: cron_tasks.cleanup_access_denied_log(
            sessions, now=now, retention=timedelta(days=settings.access_denied_retention_days)
        ),
    }


def _lock_key(task: str) -> int:
    return zlib.crc32(f"pat-booking-be:cron:{task}".encode())


@contextmanager
def task_lock(engine: Engine, task: str) -> Iterator[bool]:
    """A PostgreSQL session advisory lock for `task` (try only); always granted on other databases."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    with engine.connect() as conn:
        got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _lock_key(task)}).scalar())
        conn.commit()
        try:
            yield got
        finally:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _lock_key(task)})
                conn.commit()


def run_once(
    settings: CronSettings,
    *,
    now: datetime | None = None,
    engine: Engine | None = None,
    use_locks: bool = True,
) -> list[TaskResult]:
    """Run every task once; returns one result per task."""
    now = now or datetime.now(UTC)
    engine = engine or get_engine(settings.database_url)
    sessions = make_session_factory(engine)
    results = []
    for name, task in build_tasks(settings, sessions, now).items():
        t0 = time.perf_counter()
        status, count = "ok", 0
        try:
            with task_lock(engine, name) if use_locks else _granted() as got:
                if got:
                    count = task()
                else:
                    status = "skipped"  # another run is doing this task right now
        except Exception as exc:  # one task failing (database down, a bad row) does not stop the others
            status = "failed"
            metrics.CRON_FAILURES.labels(name).inc()
            log.error("cron task failed", extra={"task": name, "reason": type(exc).__name__})
        elapsed = time.perf_counter() - t0
        metrics.CRON_DURATION.labels(name).observe(elapsed)
        metrics.CRON_RUNS.labels(name, status).inc()
        if status == "ok":
            metrics.CRON_ITEMS.labels(name).inc(count)
            metrics.CRON_LAST_SUCCESS.labels(name).set(time.time())
        result = TaskResult(task=name, status=status, count=count, duration_ms=int(elapsed * 1000))
        log.info(
            "cron task",
            extra={"task": name, "status": status, "count": count, "duration_ms": result.duration_ms},
        )
        results.append(result)
    return results


@contextmanager
def _granted() -> Iterator[bool]:
    yield True


def cli(args: argparse.Namespace) -> int:
    """Entry point of `booking cron`: one run, exit 1 when any task failed."""
    settings = get_cron_settings()
    configure_logging(settings.log_level, settings.log_format)
    configure_telemetry("booking-cron")
    setup_broker(settings)
    results = run_once(settings)
    failed = [r.task for r in results if r.status == "failed"]
    log.info(
        "cron run finished",
        extra={
            "status": "failed" if failed else "ok",
            "count": sum(r.count for r in results),
            "reason": ",".join(failed) or None,
        },
    )
    if settings.metrics_textfile:
        write_to_textfile(settings.metrics_textfile, REGISTRY)
    cron_report.report(settings.pushgateway_url, results)
    return 1 if failed else 0
