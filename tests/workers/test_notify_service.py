"""The delivery service against real PostgreSQL, a real SMTP server and local HTTP provider stand-ins."""

from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from booking_core.db import models as m
from booking_core.db.migrate import upgrade
from booking_core.db.models_notify import NotificationAttempt, NotificationDelivery
from booking_core.db.session import make_engine, make_session_factory
from booking_workers.notifications.service import Notifier, send_notification


@pytest.fixture
def db(postgres_url: str) -> Any:
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def notifier(db: Any, smtp_sink: Any, sms_provider: Any, push_provider: Any, helpers: Any) -> Notifier:
    return helpers.all_channels_notifier(db, smtp_sink, sms_provider, push_provider)


def attempts(db: Any) -> list[tuple[str, int, str, str | None]]:
    with db() as s:
        rows = s.execute(
            select(
                NotificationAttempt.channel,
                NotificationAttempt.attempt,
                NotificationAttempt.outcome,
                NotificationAttempt.error_class,
            ).order_by(NotificationAttempt.id)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_every_channel_once_even_for_duplicate_events(
    postgres_url: str,
    db: Any,
    notifier: Notifier,
    smtp_sink: Any,
    sms_provider: Any,
    push_provider: Any,
    helpers: Any,
) -> None:
    ids = helpers.seed(postgres_url, bookings=[timedelta(days=3)])
    booking = ids["bookings"][0]
    for _ in range(3):  # the event arrives three times (redelivery, duplicate publish)
        out = send_notification(notifier, patient_id="p-1", event_type="booking_confirmed", ref_id=booking)
        assert out.retry_in_ms is None and out.held_until is None
    [mail] = smtp_sink.wait_for(1)
    assert mail["To"] == "ann@example.org" and "Central Clinic" in mail.get_payload()
    assert len(sms_provider.accepted()) == 1 and len(push_provider.accepted()) == 1
    sms = sms_provider.accepted()[0]
    assert sms["to"] == "+31600000001" and "Central Clinic" not in sms["body"]
    with db() as s:
        inbox = s.scalars(select(m.Notification)).all()
        assert [(n.kind, n.patient_id) for n in inbox] == [("booking_confirmed", "p-1")]
        deliveries = s.scalars(select(NotificationDelivery)).all()
        assert sorted(d.channel for d in deliveries) == ["email", "in_app", "push", "sms"]
        assert {d.status for d in deliveries} == {"sent"}
    assert sorted(a[0] for a in attempts(db)) == ["email", "in_app", "push", "sms"]
    from prometheus_client import REGISTRY

    assert (
        REGISTRY.get_sample_value("booking_notifications_total", {"channel": "sms", "outcome": "sent"}) or 0
    ) >= 1
    assert (
        REGISTRY.get_sample_value("booking_notifications_total", {"channel": "sms", "outcome": "duplicate"})
        or 0
    ) >= 2


def test_transient_answers_retry_permanent_ones_do_not(
    postgres_url: str,
    db: Any,
    notifier: Notifier,
    smtp_sink: Any,
    sms_provider: Any,
    push_provider: Any,
    helpers: Any,
) -> None:
    helpers.seed(postgres_url)
    sms_provider.statuses = [429, 500]  # then 200
    push_provider.statuses = [400]
    smtp_sink.replies = ["451 4.3.0 mailbox busy"]

    kw = {"patient_id": "p-1", "event_type": "results_available", "ref_id": "r-1"}
    first = send_notification(notifier, **kw)
    assert first.retry_in_ms is not None  # email and SMS are due again
    second = send_notification(notifier, **kw)
    assert second.retry_in_ms is not None  # SMS answered 500 this time
    third = send_notification(notifier, **kw)
    assert third.retry_in_ms is None
    assert send_notification(notifier, **kw).results == {
        "email": "done",
        "sms": "done",
        "push": "done",
        "in_app": "done",
    }

    assert sms_provider.answers == [429, 500, 200]
    assert push_provider.answers == [400]  # permanent: asked once, never again
    assert len(smtp_sink.wait_for(1)) == 1
    # Minimum necessary: the text message is only a pointer to the portal.
    assert sms_provider.accepted()[0]["body"].startswith("Your results are ready: sign in to the portal.")
    got = attempts(db)
    assert [a for a in got if a[0] == "sms"] == [
        ("sms", 1, "transient_failure", "http_429"),
        ("sms", 2, "transient_failure", "http_500"),
        ("sms", 3, "sent", None),
    ]
    assert [a for a in got if a[0] == "push"] == [("push", 1, "permanent_failure", "http_400")]
    assert [a for a in got if a[0] == "email"] == [
        ("email", 1, "transient_failure", "smtp_4xx"),
        ("email", 2, "sent", None),
    ]


def test_retries_are_bounded(
    postgres_url: str, db: Any, notifier: Notifier, sms_provider: Any, helpers: Any
) -> None:
    helpers.seed(postgres_url, email=None, push_token=None)
    sms_provider.statuses = [503] * 10
    kw = {"patient_id": "p-1", "event_type": "booking_cancelled", "ref_id": "b-x"}
    outs = [send_notification(notifier, **kw) for _ in range(5)]
    assert [o.retry_in_ms is not None for o in outs] == [True, True, False, False, False]
    assert sms_provider.answers == [503, 503, 503]  # max_attempts=3
    with db() as s:
        d = s.scalars(select(NotificationDelivery).where(NotificationDelivery.channel == "sms")).one()
        assert (d.status, d.attempts, d.last_error_class) == ("failed", 3, "http_503")


def test_quiet_hours_hold_noisy_channels_but_not_urgent_ones(
    postgres_url: str, db: Any, notifier: Notifier, smtp_sink: Any, sms_provider: Any, helpers: Any
) -> None:
    # 23:30 in Amsterdam; quiet from 22:00 to 07:00 local time.
    notifier.clock = lambda: datetime(2026, 6, 1, 21, 30, tzinfo=UTC)
    ids = helpers.seed(
        postgres_url,
        bookings=[timedelta(hours=30), timedelta(hours=1)],
        prefs={"quiet_hours_start": time(22), "quiet_hours_end": time(7)},
    )
    reminder = send_notification(
        notifier, patient_id="p-1", event_type="reminder_24h", ref_id=ids["bookings"][0]
    )
    assert reminder.held_until == datetime(2026, 6, 2, 5, 0, tzinfo=UTC)  # 07:00 CEST
    assert reminder.results == {"in_app": "done"}  # the silent inbox is written at once
    assert sms_provider.requests == [] and smtp_sink.messages == []

    urgent = send_notification(
        notifier, patient_id="p-1", event_type="booking_cancelled", ref_id=ids["bookings"][1], urgent=True
    )
    assert urgent.held_until is None
    assert len(smtp_sink.wait_for(1)) == 1 and len(sms_provider.accepted()) == 1

    # Morning: the held reminder goes out, the inbox entry is not written twice.
    notifier.clock = lambda: datetime(2026, 6, 2, 5, 0, 1, tzinfo=UTC)
    morning = send_notification(
        notifier, patient_id="p-1", event_type="reminder_24h", ref_id=ids["bookings"][0]
    )
    assert morning.held_until is None
    assert len(smtp_sink.wait_for(2)) == 2
    with db() as s:
        assert s.query(m.Notification).filter_by(kind="reminder_24h").count() == 1


def test_preferences_and_obsolete_reminders(
    postgres_url: str,
    db: Any,
    notifier: Notifier,
    smtp_sink: Any,
    sms_provider: Any,
    push_provider: Any,
    helpers: Any,
) -> None:
    ids = helpers.seed(postgres_url, bookings=[timedelta(hours=5)], prefs={"sms": False, "push": False})
    send_notification(notifier, patient_id="p-1", event_type="booking_confirmed", ref_id=ids["bookings"][0])
    assert len(smtp_sink.wait_for(1)) == 1
    assert sms_provider.requests == [] and push_provider.requests == []
    with db() as s:
        s.get(m.Booking, ids["bookings"][0]).status = "cancelled"  # type: ignore[union-attr]
        s.commit()
    out = send_notification(notifier, patient_id="p-1", event_type="reminder_24h", ref_id=ids["bookings"][0])
    assert out.results == {"all": "obsolete"}
    # Unknown patients and events are dropped, not retried forever.
    assert (
        send_notification(notifier, patient_id="nobody", event_type="booking_confirmed", ref_id="x").results
        == {}
    )
    assert send_notification(notifier, patient_id="p-1", event_type="no_such_event", ref_id="x").results == {}


def test_the_jobs_statements_are_client_spans_under_the_job_without_their_values(
    postgres_url: str, db: Any, smtp_sink: Any, helpers: Any
) -> None:
    # The worker runs its statements on psycopg directly (pgraw), past SQLAlchemy's span hooks: with
    # tracing on they must still show under the job's span, as docs/observability.md says.
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    from booking_core.domain.notifications import Channel
    from booking_core.observability import tracing
    from booking_workers.notifications.email import SmtpEmail

    ids = helpers.seed(postgres_url, bookings=[timedelta(days=3)])
    sender = SmtpEmail(host=smtp_sink.host, port=smtp_sink.port, sender="no-reply@x.org", timeout=5)
    notifier = Notifier(session_factory=db, senders={Channel.EMAIL: sender})
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.instrument_clients(provider)
    try:
        with provider.get_tracer("t").start_as_current_span("job") as job:
            send_notification(
                notifier, patient_id="p-1", event_type="booking_confirmed", ref_id=ids["bookings"][0]
            )
    finally:
        tracing.uninstrument_clients()
    smtp_sink.wait_for(1)
    sql = [
        s
        for s in exporter.get_finished_spans()
        if s.kind is SpanKind.CLIENT and (s.attributes or {}).get("db.system") == "postgresql"
    ]
    # The load (SELECT), the email's claim (INSERT ... RETURNING) and its record (WITH released ...).
    verbs = [str((s.attributes or {})["db.statement"]).split()[0] for s in sql]
    assert {"SELECT", "INSERT", "WITH"} <= set(verbs)
    assert all(s.parent is not None and s.parent.span_id == job.get_span_context().span_id for s in sql)
    # Each names the server it ran on (the link reads its peer once, not per statement).
    url = make_url(postgres_url)
    for s in sql:
        a = s.attributes or {}
        assert (a["db.name"], a["net.peer.name"], int(str(a["net.peer.port"]))) == (
            url.database,
            url.host,
            url.port,
        )
    seen = str([dict(s.attributes or {}) for s in sql])
    assert "p-1" not in seen and "ann@example.org" not in seen and ids["bookings"][0] not in seen


def _drop_other_connections(url: str) -> int:
    """Terminate every other session on the test's database (the server restarting, a proxy timing out)."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as c:
        row = c.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.parametrize("idled", [True, False])
def test_a_connection_the_server_dropped_between_jobs_costs_at_most_one_attempt(
    postgres_url: str, db: Any, smtp_sink: Any, helpers: Any, monkeypatch: pytest.MonkeyPatch, idled: bool
) -> None:
    # The worker thread keeps its connection from job to job. One that idled is pinged first (the next
    # job goes through); one dropped just after use fails that job, which Dramatiq retries, and is not
    # used again.
    from booking_core.domain.notifications import Channel
    from booking_workers.notifications import service
    from booking_workers.notifications.email import SmtpEmail

    monkeypatch.setattr(service, "PING_AFTER_IDLE_SECONDS", 0.0 if idled else 3600.0)
    ids = helpers.seed(postgres_url, bookings=[timedelta(days=3), timedelta(days=4), timedelta(days=5)])
    sender = SmtpEmail(host=smtp_sink.host, port=smtp_sink.port, sender="no-reply@x.org", timeout=5)
    notifier = Notifier(session_factory=db, senders={Channel.EMAIL: sender})
    first, second, third = ids["bookings"]
    send_notification(notifier, patient_id="p-1", event_type="booking_confirmed", ref_id=first)
    assert _drop_other_connections(postgres_url) >= 1
    if idled:
        send_notification(notifier, patient_id="p-1", event_type="booking_confirmed", ref_id=second)
    else:
        with pytest.raises(Exception, match=r"terminat|closed|server"):
            send_notification(notifier, patient_id="p-1", event_type="booking_confirmed", ref_id=second)
        send_notification(notifier, patient_id="p-1", event_type="booking_confirmed", ref_id=second)
    send_notification(notifier, patient_id="p-1", event_type="booking_confirmed", ref_id=third)
    assert len(smtp_sink.wait_for(3)) == 3
