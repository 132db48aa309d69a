"""Dramatiq actors. Importing this module declares them on the broker from `booking_workers.broker`,
which must be set up first (the entrypoints do; otherwise it is built from the environment), and
installs the job-running middleware on it (booking_workers.broker).

Actors stay thin: each body calls one service function and translates its outcome into Dramatiq terms
(a hold becomes a delayed re-enqueue, a transient failure a `dramatiq.Retry` with the policy's delay).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.common import q_name
from dramatiq.middleware import CurrentMessage
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from booking_core.db import notify_outbox
from booking_core.db.session import get_session_factory, make_engine, make_session_factory
from booking_core.domain.notifications import Channel
from booking_core.topology import DEFAULT_QUEUE, NOTIFICATION_QUEUES
from booking_workers import cron_actor  # declares record_cron_run on the same broker
from booking_workers.broker import (
    ENQUEUED_AT_OPTION,
    SEND_NOTIFICATION,
    SEND_NOTIFICATIONS,
    enqueue,
    get_broker,
    install,
    notice_span,
)
from booking_workers.notifications.email import PickupDirEmail, SmtpEmail
from booking_workers.notifications.http_providers import PushProvider, SmsProvider
from booking_workers.notifications.policy import RetryPolicy
from booking_workers.notifications.quiet_hours import hold_delay_ms
from booking_workers.notifications.service import Notifier, Outcome, Sender
from booking_workers.notifications.service import send_notification as notify
from booking_workers.settings import WorkerSettings, get_worker_settings

log = logging.getLogger(__name__)

broker = install(get_broker())

# A safety net only: the per-channel attempt bound lives in the database (RetryPolicy.max_attempts).
MAX_MESSAGE_RETRIES = 30


def notifier_sessions(settings: WorkerSettings) -> sessionmaker[Session]:
    """The notifier's sessions: on a server, an engine whose pool fits the worker's threads.

    Each worker thread keeps one connection from job to job (`Notifier.job_connection`) and may check out
    a second for a moment (the outbox row's completion, a claim held elsewhere). The process's shared
    engine holds 15 (5 + 10 overflow): at 16 threads the 16th waited the pool's 10 s timeout and failed
    its job, then the next, which was 25 emails/s instead of 1,000 (issue 15, fifth pass, round 2).
    """
    url = settings.database_url
    if make_url(url).get_backend_name() == "sqlite":  # `booking run`: one file, the shared engine
        return get_session_factory(url)
    threads = settings.worker_threads
    return make_session_factory(make_engine(url, pool_size=threads, max_overflow=threads))


def build_notifier(settings: WorkerSettings) -> Notifier:
    """The delivery service's dependencies for this process, from settings."""
    senders: dict[Channel, Sender] = {}
    if settings.mail_dir:
        senders[Channel.EMAIL] = PickupDirEmail(
            directory=Path(settings.mail_dir), sender=settings.smtp_sender
        )
    else:
        senders[Channel.EMAIL] = SmtpEmail(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.smtp_sender,
            timeout=settings.provider_timeout_seconds,
        )
    if settings.sms_provider_url:
        senders[Channel.SMS] = SmsProvider(
            url=settings.sms_provider_url, timeout=settings.provider_timeout_seconds
        )
    if settings.push_provider_url:
        senders[Channel.PUSH] = PushProvider(
            url=settings.push_provider_url, timeout=settings.provider_timeout_seconds
        )
    return Notifier(
        session_factory=notifier_sessions(settings),
        senders=senders,
        policy=RetryPolicy(
            max_attempts=settings.notification_max_attempts,
            min_backoff_ms=settings.notification_backoff_min_ms,
            max_backoff_ms=settings.notification_backoff_max_ms,
        ),
        lease=timedelta(seconds=settings.notification_lease_seconds),
        portal_url=settings.portal_url,
    )


_notifier: Notifier | None = None


def use_notifier(notifier: Notifier | None) -> None:
    """Replace the process's notifier (embedded mode and tests); None rebuilds it from settings."""
    global _notifier
    _notifier = notifier


def get_notifier() -> Notifier:
    """The process's notifier, built from settings on first use."""
    global _notifier
    if _notifier is None:
        _notifier = build_notifier(get_worker_settings())
    return _notifier


def _current_message() -> tuple[dramatiq.Message[Any] | None, datetime | None]:
    """The job's message (None when called directly) and when it was first enqueued."""
    message = CurrentMessage.get_current_message()
    enqueued_ms = message.options.get(ENQUEUED_AT_OPTION) if message else None
    return message, datetime.fromtimestamp(enqueued_ms / 1000, UTC) if enqueued_ms else None


@dramatiq.actor(
    actor_name=SEND_NOTIFICATION,
    queue_name=NOTIFICATION_QUEUES["standard"],
    max_retries=MAX_MESSAGE_RETRIES,
    time_limit=120_000,
    broker=broker,
)
def send_notification(
    patient_id: str,
    event_type: str,
    ref_id: str,
    urgent: bool = False,
    cause: str = "",
    intent_id: int | None = None,
) -> None:
    """Deliver one event to one patient (queued per tier; see booking_workers.broker.enqueue_notification).

    A job from the notification outbox (`intent_id`) completes its row when done; a hold or a transient
    failure postpones the row instead of re-enqueueing, so the row, not the broker, keeps the promise.
    """
    message, enqueued_at = _current_message()
    n = get_notifier()
    outcome = notify(
        n,
        patient_id=str(patient_id),
        event_type=event_type,
        ref_id=str(ref_id),
        urgent=urgent,
        message_id=message.message_id if message else None,
        enqueued_at=enqueued_at,
        cause=cause,
        intent_id=intent_id,
    )
    if intent_id is not None:
        if not outcome.completed:  # else completed with the last attempt's record
            _settle(n, intent_id, outcome)
        return
    if outcome.held_until is not None:
        # Quiet hours: the same message again at the patient's morning; channels already sent dedupe.
        queue = q_name(message.queue_name) if message else NOTIFICATION_QUEUES["standard"]
        enqueue(
            SEND_NOTIFICATION,
            queue_name=queue,
            kwargs={"patient_id": patient_id, "event_type": event_type, "ref_id": ref_id, "urgent": urgent},
            delay_ms=hold_delay_ms(n.clock(), outcome.held_until),
        )
        log.info("held until quiet hours end", extra={"event_type": event_type, "queue": queue})
        return
    if outcome.retry_in_ms is not None:
        raise dramatiq.Retry("transient delivery failure", delay=outcome.retry_in_ms)


@dramatiq.actor(
    actor_name=SEND_NOTIFICATIONS,
    queue_name=NOTIFICATION_QUEUES["standard"],
    max_retries=MAX_MESSAGE_RETRIES,
    time_limit=120_000,
    broker=broker,
)
def send_notifications(notices: list[dict[str, Any]]) -> None:
    """Several notices of the notification outbox in one job (booking_workers.broker.send_notices).

    Each is delivered and settled on its own, as `send_notification` does with one. One that fails
    unexpectedly does not hold back the others: the job ends by raising its error once all were tried,
    and Dramatiq's retry runs the group again, where the notices already done find their deliveries sent
    and their rows completed."""
    message, enqueued_at = _current_message()
    n = get_notifier()
    failed: Exception | None = None
    for kw in notices:
        intent_id = int(kw["intent_id"])
        try:
            with notice_span(kw.get("trace_context")):
                outcome = notify(
                    n,
                    patient_id=str(kw["patient_id"]),
                    event_type=str(kw["event_type"]),
                    ref_id=str(kw["ref_id"]),
                    urgent=bool(kw.get("urgent", False)),
                    message_id=message.message_id if message else None,
                    enqueued_at=enqueued_at,
                    cause=str(kw.get("cause", "")),
                    intent_id=intent_id,
                )
                if not outcome.completed:
                    _settle(n, intent_id, outcome)
        except Exception as exc:  # the database went away, a provider's client broke: the rest go on
            log.warning("notice of a group failed", extra={"reason": type(exc).__name__})
            failed = failed or exc
    if failed is not None:
        raise failed


def _settle(n: Notifier, intent_id: int, outcome: Outcome) -> None:
    """Complete the outbox row, or postpone it to quiet hours' end or the retry's time."""
    now = n.clock()
    with n.session_factory() as session:
        if outcome.held_until is not None:
            notify_outbox.postpone(session, intent_id, until=outcome.held_until)
        elif outcome.retry_in_ms is not None:
            notify_outbox.postpone(
                session, intent_id, until=now + timedelta(milliseconds=outcome.retry_in_ms)
            )
        else:
            notify_outbox.complete(session, intent_id, now=now)


@dramatiq.actor(actor_name="noop", queue_name=DEFAULT_QUEUE, broker=broker)
def noop() -> None:
    """Does nothing: the benchmark's baseline and a liveness probe for the default worker."""


def declare_on(target: dramatiq.Broker) -> None:
    """Declare these actors on another broker too (a broker built after this module was imported)."""
    install(target)
    for a in (send_notification, send_notifications, noop, cron_actor.record_cron_run):
        if a.actor_name not in target.actors:
            target.declare_actor(a)
