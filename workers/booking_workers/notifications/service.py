"""`send_notification`: one event to one patient over every channel they allow, each channel once.

Quiet hours hold the noisy channels (email, SMS, push) of a non-urgent message until the patient's
morning; the in-app inbox is silent, so it is written at once. Each channel is claimed, sent and
recorded on its own (see `store`), so a retry after a partial failure only repeats what failed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from booking_core.db.models import Booking, Clinic, NotificationPreference, Patient
from booking_core.domain.notifications import Channel, Preferences
from booking_workers import metrics, observe
from booking_workers.notifications import store
from booking_workers.notifications.errors import DeliveryError
from booking_workers.notifications.policy import RetryPolicy
from booking_workers.notifications.quiet_hours import quiet_until, zone
from booking_workers.notifications.templates import EmailContext, EventType, Rendered, render

log = logging.getLogger(__name__)

NOISY = (Channel.EMAIL, Channel.SMS, Channel.PUSH)
REMINDERS = (EventType.REMINDER_24H, EventType.REMINDER_2H)


class Sender(Protocol):
    """A channel adapter: delivers one rendered message or raises a DeliveryError."""

    def send(self, *, to: str | None, rendered: Rendered, notification_id: str) -> None:
        """Deliver or raise."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Notifier:
    """Everything `send_notification` needs, built once per worker process."""

    session_factory: sessionmaker[Session]
    senders: dict[Channel, Sender]
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    lease: timedelta = timedelta(seconds=120)
    portal_url: str = "https://portal.example.org"
    clock: Callable[[], datetime] = _utcnow
    # Reads outside the claims: each statement autocommits, so no BEGIN before it and no ROLLBACK after
    # (two of a notification's round trips to the database, issue 15's profile).
    reads: sessionmaker[Session] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        bind = self.session_factory.kw["bind"]
        self.reads = sessionmaker(
            bind=bind.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False, autoflush=False
        )


@dataclass
class Outcome:
    """What happened to a message: held, finished, or some channels to retry after a delay."""

    held_until: datetime | None = None
    retry_in_ms: int | None = None
    results: dict[str, str] = field(default_factory=dict)  # channel -> outcome


def _prefs(p: NotificationPreference | None) -> Preferences:
    if p is None:  # nobody chose yet: the domain's defaults, as the API shows them
        return Preferences()
    return Preferences(
        email=p.email,
        sms=p.sms,
        push=p.push,
        in_app=p.in_app,
        quiet_hours_start=p.quiet_hours_start,
        quiet_hours_end=p.quiet_hours_end,
        urgent_override=p.urgent_override,
    )


def _address(patient: Patient, channel: Channel) -> str | None:
    return {
        Channel.EMAIL: patient.email,
        Channel.SMS: patient.phone,
        Channel.PUSH: patient.push_token,
        Channel.IN_APP: patient.id,
    }[channel]


def send_notification(
    n: Notifier,
    *,
    patient_id: str,
    event_type: str,
    ref_id: str,
    urgent: bool = False,
    message_id: str | None = None,
    enqueued_at: datetime | None = None,
    cause: str = "",
) -> Outcome:
    """Deliver one event to one patient on each allowed channel, at most once per channel."""
    try:
        event = EventType(event_type)
    except ValueError:
        log.warning("unknown notification event", extra={"event_type": event_type, "message_id": message_id})
        return Outcome()
    now = n.clock()
    with n.reads() as session:
        # The patient and their choices in one round trip.
        found = session.execute(
            select(Patient, NotificationPreference)
            .outerjoin(NotificationPreference, NotificationPreference.patient_id == Patient.id)
            .where(Patient.id == patient_id)
        ).first()
        patient = found[0] if found is not None else None
        if found is None or patient is None or not patient.active:
            log.warning("notification for an unknown or inactive patient", extra={"message_id": message_id})
            return Outcome()
        prefs = _prefs(found[1])
        tz = zone(patient.time_zone)
        ctx = EmailContext(
            appointment_local=None, clinic_name=None, booking_ref=None, portal_url=n.portal_url
        )
        if event is not EventType.RESULTS_AVAILABLE:
            booking = session.get(Booking, ref_id)
            if booking is not None:
                if event in REMINDERS and booking.status != "booked":
                    log.info("reminder obsolete", extra={"booking_id": booking.id, "status": booking.status})
                    return Outcome(results={"all": "obsolete"})
                clinic = session.get(Clinic, booking.clinic_id)
                ctx = EmailContext(
                    appointment_local=booking.starts_at.astimezone(tz),
                    clinic_name=clinic.name if clinic else None,
                    booking_ref=booking.id[:8].upper(),
                    portal_url=n.portal_url,
                )
        addresses = {c: _address(patient, c) for c in Channel}
        held_until = None
        if not (urgent and prefs.urgent_override):
            held_until = quiet_until(now, patient.time_zone, prefs.quiet_hours_start, prefs.quiet_hours_end)

    out = Outcome(held_until=held_until)
    delays: list[int] = []
    for channel in Channel:
        if channel not in prefs.channels or not addresses[channel]:
            continue
        if channel in NOISY and held_until is not None:
            continue
        if channel is not Channel.IN_APP and channel not in n.senders:
            continue  # provider not configured in this deployment
        key = store.DeliveryKey(patient.id, event.value, ref_id, channel.value, cause)
        delay = _deliver(n, key, channel, event, ctx, addresses[channel], message_id, enqueued_at)
        out.results[channel.value] = "retry" if delay is not None else "done"
        if delay is not None:
            delays.append(delay)
    if delays:
        out.retry_in_ms = max(delays)
    if held_until is not None:
        metrics.NOTIFICATIONS_HELD.inc()
    return out


def _deliver(
    n: Notifier,
    key: store.DeliveryKey,
    channel: Channel,
    event: EventType,
    ctx: EmailContext,
    to: str | None,
    message_id: str | None,
    enqueued_at: datetime | None,
) -> int | None:
    """One channel: claim, send, record. Returns a retry delay in ms when the failure was transient."""
    with n.session_factory() as session:
        c = store.claim(session, key, now=n.clock(), lease=n.lease)
    nid = key.notification_id
    if c is None:
        with n.session_factory() as session:
            until = store.in_flight_until(session, key, now=n.clock())
        if until is not None:
            # Another attempt holds it (or died holding it: a crash mid-send). Come back when its lease
            # lapses: then it is sent, or ours to take over. Treating it as done would lose it.
            log.info(
                "in flight elsewhere, retrying later", extra={"message_id": nid, "channel": channel.value}
            )
            return max(1, int((until - n.clock()).total_seconds() * 1000) + 1)
        metrics.NOTIFICATIONS.labels(channel.value, "duplicate").inc()
        log.info("already delivered or in flight", extra={"message_id": nid, "channel": channel.value})
        return None
    rendered = render(event, channel, ctx)
    started = n.clock()
    t0 = time.perf_counter()
    error: DeliveryError | None = None
    try:
        if channel is Channel.IN_APP:
            with n.session_factory() as session:
                store.write_inbox(session, key=key, title=rendered.subject, body=rendered.body, now=started)
        else:
            n.senders[channel].send(to=to, rendered=rendered, notification_id=nid)
    except DeliveryError as exc:
        error = exc
    finished = started + timedelta(seconds=time.perf_counter() - t0)
    retry_in: int | None = None
    if error is None:
        outcome, status, label = "sent", "sent", "sent"
        observe.result_notified(n.reads, key, finished)
        if enqueued_at is not None:
            metrics.NOTIFICATION_LATENCY.labels(channel.value).observe(
                max(0.0, (finished - enqueued_at).total_seconds())
            )
    elif not error.transient:
        outcome, status, label = "permanent_failure", "failed", "permanent_failure"
    elif n.policy.exhausted(c.attempt):
        outcome, status, label = "transient_failure", "failed", "gave_up"
    else:
        outcome, status, label = "transient_failure", "retrying", "transient_failure"
        retry_in = n.policy.backoff_ms(c.attempt, error.retry_after)
        metrics.NOTIFICATION_RETRIES.labels(channel.value).inc()
    error_class = error.error_class if error is not None else None
    with n.session_factory() as session:
        store.record(
            session,
            c,
            outcome=outcome,
            status=status,
            error_class=error_class,
            started_at=started,
            finished_at=finished,
            message_id=message_id,
        )
    metrics.NOTIFICATIONS.labels(channel.value, label).inc()
    log.info(
        "notification attempt",
        extra={
            "message_id": nid,
            "channel": channel.value,
            "event_type": event.value,
            "attempt": c.attempt,
            "outcome": label,
            "reason": error_class,
        },
    )
    return retry_in
