"""The workers and the cron inside `booking run`: no Redis, no separate processes.

`start(stop)` blocks (run it in a background thread): it runs the notification and default actors on
Dramatiq's in-memory broker in a worker of this process, the notice dispatcher (woken by each commit
that owes a notice, booking_workers.dispatch) and the cron tasks every minute, until `stop` is set.
Emails are written to `.booking/mail/` as .eml files unless an SMTP server is configured.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import timedelta

import dramatiq

from booking_core.db import notify_outbox
from booking_core.db.session import get_engine, get_session_factory
from booking_core.settings import EMBEDDED_DIR
from booking_workers.broker import get_broker, send_notice, send_notices, setup_broker
from booking_workers.dispatch import run_dispatcher
from booking_workers.settings import CronSettings, WorkerSettings

log = logging.getLogger(__name__)

CRON_INTERVAL_SECONDS = 60.0


def embedded_worker_settings(settings: WorkerSettings | None = None) -> WorkerSettings:
    """Worker settings for `booking run`: mail to a folder unless BOOKING_SMTP_HOST or a mail dir is set."""
    s = settings or WorkerSettings()
    if s.mail_dir is None and "BOOKING_SMTP_HOST" not in os.environ:
        s = s.model_copy(update={"mail_dir": str(EMBEDDED_DIR / "mail")})
    return s


def start(
    stop: threading.Event,
    *,
    settings: WorkerSettings | None = None,
    cron_settings: CronSettings | None = None,
    cron_interval: float = CRON_INTERVAL_SECONDS,
) -> None:
    """Run the in-process workers and the per-minute cron until `stop` is set (blocking)."""
    ws = embedded_worker_settings(settings)
    cs = cron_settings or CronSettings()
    # Reuse a broker the caller already installed (the API enqueues on the same in-memory broker).
    broker = get_broker() if ws.redis_url is None else setup_broker(ws)
    from booking_workers import actors, cron
    from booking_workers.main import QUEUES

    actors.declare_on(broker)
    actors.use_notifier(actors.build_notifier(ws))
    worker = dramatiq.Worker(
        broker, queues=QUEUES["notifications"] | QUEUES["default"], worker_threads=min(ws.worker_threads, 2)
    )
    sessions = get_session_factory(ws.database_url)
    with sessions() as session:
        # The in-memory broker starts empty: whatever was dispatched before a crash is lost, send it again.
        again = notify_outbox.reset_dispatched(session)
    if again:
        log.info("notices dispatched again after a restart", extra={"count": again})
    worker.start()
    dispatcher = threading.Thread(
        target=run_dispatcher,
        args=(stop, sessions, send_notice),
        kwargs={
            "engine": get_engine(ws.database_url),
            "poll_seconds": ws.notice_poll_seconds,
            "lease": timedelta(seconds=ws.notice_redispatch_seconds),
            "send_group": send_notices,
            "group_size": ws.notice_group_size,
        },
        name="notice-dispatcher",
        daemon=True,
    )
    dispatcher.start()
    log.info("embedded workers started", extra={"component": "workers"})
    try:
        while not stop.is_set():
            try:
                cron.run_once(cs)
            except Exception as exc:  # a failed pass is retried next minute; never kill `booking run`
                log.error(
                    "embedded cron pass failed",
                    extra={"component": "cron", "reason": type(exc).__name__},
                )
            stop.wait(cron_interval)
    finally:
        dispatcher.join(timeout=10)
        worker.stop(timeout=10_000)
        log.info("embedded workers stopped", extra={"component": "workers"})
