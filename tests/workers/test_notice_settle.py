"""A notice's outbox row is completed once every channel is done, and only then.

The worker completes the row in the statement that records the notice's last attempt (one round trip on
PostgreSQL, no transaction of its own); a retry, a hold or a failure of an earlier channel leaves it
open and postponed, so the outbox dispatches it again. Real SMTP (aiosmtpd), real SMS/push stand-ins,
on PostgreSQL (the worker's libpq statements) and on SQLite (`booking run`'s Session path).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from booking_core.db import models as m
from booking_core.db.migrate import upgrade
from booking_core.db.models_notify import NotificationAttempt, NotificationIntent
from booking_core.db.session import make_engine, make_session_factory
from booking_workers import actors


@pytest.fixture(params=["postgresql", "sqlite"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    url = (
        request.getfixturevalue("postgres_url")
        if request.param == "postgresql"
        else f"sqlite:///{tmp_path}/settle.db"
    )
    upgrade(url)
    engine = make_engine(url)
    yield url, make_session_factory(engine)
    actors.use_notifier(None)
    engine.dispose()


def _notice(sessions: Any, booking: str, cause: str, dispatched: Any) -> int:
    """An outbox row as the dispatcher leaves it: dispatched, not completed."""
    with sessions() as s:
        row = NotificationIntent(
            intent_key=f"{cause}:booking_confirmed",
            patient_id="p-1",
            kind="booking_confirmed",
            ref_id=booking,
            cause=cause,
            not_before=dispatched,
            dispatched_at=dispatched,
            dispatches=1,
        )
        s.add(row)
        s.commit()
        return row.id


def _run(intent_id: int, booking: str, cause: str) -> None:
    """The actor's body, as the worker runs a dispatched notice's job."""
    actors.send_notification.fn(
        patient_id="p-1", event_type="booking_confirmed", ref_id=booking, cause=cause, intent_id=intent_id
    )


def _row(sessions: Any, intent_id: int) -> NotificationIntent:
    with sessions() as s:
        row = s.get(NotificationIntent, intent_id)
        assert row is not None
        return row


def _setup(sessions: Any, smtp_sink: Any, sms: Any, push: Any, helpers: Any) -> tuple[Any, str]:
    url, factory = sessions
    booking: str = helpers.seed(url, bookings=[timedelta(days=3)], time_zone="UTC")["bookings"][0]
    actors.use_notifier(helpers.all_channels_notifier(factory, smtp_sink, sms, push))
    return factory, booking


def test_a_notice_sent_on_every_channel_is_completed_with_its_last_attempt(
    sessions: Any, smtp_sink: Any, sms_provider: Any, push_provider: Any, helpers: Any
) -> None:
    factory, booking = _setup(sessions, smtp_sink, sms_provider, push_provider, helpers)
    dispatched = helpers.utcnow()
    intent = _notice(factory, booking, "ev-1", dispatched)
    _run(intent, booking, "ev-1")
    row = _row(factory, intent)
    assert row.completed_at is not None
    with factory() as s:
        attempts = s.scalars(select(NotificationAttempt).order_by(NotificationAttempt.id)).all()
    assert [a.outcome for a in attempts] == ["sent"] * 4  # email, SMS, push, in-app
    # Completed by the last attempt's own record, at its finish.
    assert row.completed_at == attempts[-1].finished_at
    assert smtp_sink.wait_for(1) and len(sms_provider.accepted()) == 1 and len(push_provider.accepted()) == 1


def test_an_earlier_channel_to_retry_leaves_the_notice_open_and_postponed(
    sessions: Any, smtp_sink: Any, sms_provider: Any, push_provider: Any, helpers: Any
) -> None:
    factory, booking = _setup(sessions, smtp_sink, sms_provider, push_provider, helpers)
    smtp_sink.replies.append("451 4.3.0 try again later")  # the email, first of the four, fails for now
    dispatched = helpers.utcnow()
    intent = _notice(factory, booking, "ev-2", dispatched)
    _run(intent, booking, "ev-2")
    row = _row(factory, intent)
    # The three others were sent, the in-app one last: the notice is still owed its email.
    assert len(sms_provider.accepted()) == 1 and len(push_provider.accepted()) == 1
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(m.Notification)) == 1
    assert row.completed_at is None
    assert row.dispatched_at is None and row.not_before > dispatched  # dispatched again after the backoff
    # The retry sends only the email and completes the notice.
    _run(intent, booking, "ev-2")
    assert _row(factory, intent).completed_at is not None
    assert len(smtp_sink.wait_for(1)) == 1 and len(sms_provider.accepted()) == 1


def test_a_last_channel_to_retry_leaves_the_notice_open(
    sessions: Any, smtp_sink: Any, sms_provider: Any, push_provider: Any, helpers: Any
) -> None:
    url, factory = sessions
    booking = helpers.seed(
        url,
        bookings=[timedelta(days=3)],
        time_zone="UTC",
        prefs={"email": True, "sms": False, "push": False, "in_app": False},
    )["bookings"][0]
    actors.use_notifier(helpers.all_channels_notifier(factory, smtp_sink, sms_provider, push_provider))
    smtp_sink.replies.append("451 4.3.0 try again later")
    intent = _notice(factory, booking, "ev-3", helpers.utcnow())
    _run(intent, booking, "ev-3")
    assert _row(factory, intent).completed_at is None
    _run(intent, booking, "ev-3")
    assert _row(factory, intent).completed_at is not None
    assert len(smtp_sink.wait_for(1)) == 1
