"""A job of several outbox notices (`send_notifications`): each delivered and settled on its own.

The dispatcher groups a claim's standard notices a few to a job (booking_workers.broker.send_notices).
Real PostgreSQL (the worker's libpq statements) and a real SMTP server (aiosmtpd); the failure of one
notice is injected around the real delivery service.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from booking_core.db.migrate import upgrade
from booking_core.db.models_notify import NotificationDelivery, NotificationIntent
from booking_core.db.session import make_engine, make_session_factory
from booking_core.domain.notifications import Channel
from booking_workers import actors
from booking_workers.notifications.email import SmtpEmail
from booking_workers.notifications.policy import RetryPolicy
from booking_workers.notifications.service import Notifier

PATIENTS = ("p-1", "p-2", "p-3")


@pytest.fixture
def sessions(postgres_url: str, smtp_sink: Any, helpers: Any) -> Iterator[Any]:
    upgrade(postgres_url)
    for p in PATIENTS:  # email only: one mail per notice at the sink
        helpers.seed(
            postgres_url,
            patient_id=p,
            email=f"{p}@example.org",
            time_zone="UTC",
            prefs={"email": True, "sms": False, "push": False, "in_app": False},
        )
    engine = make_engine(postgres_url)
    factory = make_session_factory(engine)
    actors.use_notifier(
        Notifier(
            session_factory=factory,
            senders={
                Channel.EMAIL: SmtpEmail(
                    host=smtp_sink.host, port=smtp_sink.port, sender="n@x.org", timeout=5
                )
            },
            policy=RetryPolicy(max_attempts=3, min_backoff_ms=10, max_backoff_ms=50),
            lease=timedelta(seconds=30),
        )
    )
    yield factory
    actors.use_notifier(None)
    engine.dispose()


def _group(factory: Any, helpers: Any) -> list[dict[str, Any]]:
    """One results notice per patient, written and dispatched as the outbox does, as one job's notices."""
    now = helpers.utcnow()
    notices = []
    with factory() as s:
        for p in PATIENTS:
            row = NotificationIntent(
                intent_key=f"ev-{p}:results_available",
                patient_id=p,
                kind="results_available",
                ref_id=f"res-{p}",
                cause=f"ev-{p}",
                not_before=now,
                dispatched_at=now,
                dispatches=1,
            )
            s.add(row)
            s.flush()
            notices.append(
                {
                    "patient_id": p,
                    "event_type": "results_available",
                    "ref_id": f"res-{p}",
                    "urgent": False,
                    "cause": f"ev-{p}",
                    "intent_id": row.id,
                    "trace_context": {},
                }
            )
        s.commit()
    return notices


def _open(factory: Any) -> set[str]:
    with factory() as s:
        return set(
            s.scalars(select(NotificationIntent.patient_id).where(NotificationIntent.completed_at.is_(None)))
        )


def test_each_notice_of_a_group_is_delivered_once_and_its_row_completed(
    sessions: Any, smtp_sink: Any, helpers: Any
) -> None:
    notices = _group(sessions, helpers)
    actors.send_notifications.fn(notices=notices)
    mails = smtp_sink.wait_for(3)
    assert sorted(m["To"] for m in mails) == sorted(f"{p}@example.org" for p in PATIENTS)
    assert _open(sessions) == set()
    # The same job again (a redelivered message) sends nothing more.
    actors.send_notifications.fn(notices=notices)
    assert len(smtp_sink.messages) == 3


def test_a_notice_to_retry_leaves_only_its_row_open(sessions: Any, smtp_sink: Any, helpers: Any) -> None:
    smtp_sink.replies[:] = ["250 OK", "451 4.3.0 try again later"]  # the second mail fails for now
    actors.send_notifications.fn(notices=_group(sessions, helpers))
    assert len(smtp_sink.wait_for(2)) == 2
    (left,) = _open(sessions)
    with sessions() as s:
        row = s.scalars(select(NotificationIntent).where(NotificationIntent.patient_id == left)).one()
        assert row.dispatched_at is None  # postponed: the outbox dispatches it again after the backoff


def test_a_failing_notice_does_not_hold_back_the_others_and_the_retry_sends_only_it(
    sessions: Any, smtp_sink: Any, helpers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = actors.notify
    broken = {"p-2"}

    def notify(n: Notifier, **kw: Any) -> Any:
        if kw["patient_id"] in broken:
            raise ConnectionError("the database went away")  # as psycopg's would, mid-job
        return real(n, **kw)

    monkeypatch.setattr(actors, "notify", notify)
    notices = _group(sessions, helpers)
    with pytest.raises(ConnectionError):  # after the others: Dramatiq retries the job
        actors.send_notifications.fn(notices=notices)
    assert sorted(m["To"] for m in smtp_sink.wait_for(2)) == ["p-1@example.org", "p-3@example.org"]
    assert _open(sessions) == {"p-2"}
    broken.clear()
    actors.send_notifications.fn(notices=notices)  # the retry
    assert sorted(m["To"] for m in smtp_sink.wait_for(3)) == [f"{p}@example.org" for p in PATIENTS]
    assert len(smtp_sink.messages) == 3 and _open(sessions) == set()
    with sessions() as s:
        assert {d.status for d in s.scalars(select(NotificationDelivery))} == {"sent"}
