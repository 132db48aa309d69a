"""Notices per causing event: each reschedule is announced, a reminder follows the current time.

Real pieces end to end on SQLite: the booking unit of work writes the notices with the change, the
notification outbox dispatches them to the `send_notification` actor, which delivers over a real SMTP
server (aiosmtpd) and the in-app inbox and completes the outbox row.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from booking_core.db import lifecycle
from booking_core.db import models as m
from booking_core.db.migrate import upgrade
from booking_core.db.models_notify import NotificationIntent
from booking_core.db.notify_outbox import Notice, dispatch_due
from booking_core.db.session import make_engine, make_session_factory
from booking_core.domain.notifications import Channel
from booking_workers import actors, cron_tasks
from booking_workers.notifications.email import SmtpEmail
from booking_workers.notifications.service import Notifier
from booking_workers.notifications.templates import _when


@pytest.fixture
def env(tmp_path: Path, smtp_sink: Any, helpers: Any) -> Any:
    url = f"sqlite:///{tmp_path}/n.db"
    upgrade(url)
    ids = helpers.seed(url, bookings=[timedelta(hours=30)], time_zone="UTC")
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    notifier = Notifier(
        session_factory=sessions,
        senders={
            Channel.EMAIL: SmtpEmail(host=smtp_sink.host, port=smtp_sink.port, sender="n@x.org", timeout=5)
        },
    )
    actors.use_notifier(notifier)
    with sessions() as s:
        first = s.get(m.Booking, ids["bookings"][0])
        assert first is not None
        slots = []
        for hours in (20, 22):
            start = first.starts_at - timedelta(hours=30) + timedelta(hours=hours)
            slot = m.Slot(
                clinic_id=first.clinic_id,
                service_id=first.service_id,
                starts_at=start,
                ends_at=start + timedelta(minutes=15),
                capacity=1,
            )
            s.add(slot)
            s.flush()
            slots.append(slot.id)
        s.commit()
    yield sessions, ids["bookings"][0], slots
    actors.use_notifier(None)
    engine.dispose()


def deliver(n: Notice) -> None:
    """The actor's body, as a worker runs it for a dispatched notice."""
    actors.send_notification.fn(
        patient_id=n.patient_id,
        event_type=n.event_type,
        ref_id=n.ref_id,
        urgent=n.urgent,
        cause=n.cause,
        intent_id=n.intent_id,
    )


def inbox(sessions: Any, kind: str) -> list[m.Notification]:
    with sessions() as s:
        return list(s.scalars(select(m.Notification).where(m.Notification.kind == kind)))


def test_each_reschedule_is_announced_and_the_reminder_names_the_new_time(env: Any, smtp_sink: Any) -> None:
    sessions, booking_id, (slot20, slot22) = env
    for slot_id in (slot22, slot20):
        with sessions() as s:
            lifecycle.reschedule_booking(
                s, booking_id=booking_id, new_slot_id=slot_id, actor="patient", now=helpers_now()
            )
            s.commit()
        assert dispatch_due(sessions, deliver) == 1
    # Two reschedules, two notices on each channel (the old dedupe per booking sent one).
    assert len(inbox(sessions, "booking_rescheduled")) == 2
    assert [msg["Subject"] for msg in smtp_sink.wait_for(2)].count(
        "Your appointment has been rescheduled"
    ) == 2

    # The 24 h reminder of the new time (20 h away): sent once, naming 20 h from now, not the old 30 h.
    with sessions() as s:
        booking = s.get(m.Booking, booking_id)
        assert booking is not None
        new_time = booking.starts_at
    assert cron_tasks.send_reminders(sessions, kind="24h", now=helpers_now()) == 1
    assert dispatch_due(sessions, deliver) == 1
    (reminder,) = inbox(sessions, "reminder_24h")
    assert _when(new_time) in reminder.body
    # Every notice was completed by the worker; nothing is left to dispatch.
    with sessions() as s:
        assert s.scalar(select(func.count()).where(NotificationIntent.completed_at.is_(None))) == 0
    assert dispatch_due(sessions, deliver) == 0


def test_a_reminder_is_re_armed_by_a_reschedule(env: Any) -> None:
    sessions, booking_id, (slot20, slot22) = env
    with sessions() as s:
        lifecycle.reschedule_booking(
            s, booking_id=booking_id, new_slot_id=slot22, actor="patient", now=helpers_now()
        )
        s.commit()
    assert cron_tasks.send_reminders(sessions, kind="24h", now=helpers_now()) == 1
    with sessions() as s:
        lifecycle.reschedule_booking(
            s, booking_id=booking_id, new_slot_id=slot20, actor="patient", now=helpers_now()
        )
        s.commit()
    # The move cleared the marker: the new time gets its own reminder (a second notice, another cause).
    assert cron_tasks.send_reminders(sessions, kind="24h", now=helpers_now()) == 1
    assert dispatch_due(sessions, deliver) == 4  # two reschedules, two reminders
    reminders = inbox(sessions, "reminder_24h")
    assert len(reminders) == 2


def helpers_now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
