"""The outbox row is written in the caller's transaction, keyed by aggregate id, with the full envelope."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from booking_core.db.models import OutboxMessage
from booking_core.events import BOOKING_TOPIC, BookingConfirmed, parse_event
from booking_core.outbox import add_event

NOW = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)


def _event() -> BookingConfirmed:
    return BookingConfirmed(booking_id="b-1", patient_id="p-1", slot_id="s-1", starts_at=NOW)


def test_add_event_commits_with_the_transaction(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        add_event(session, _event(), occurred_at=NOW)
        session.commit()
    with sessions() as session:
        row = session.scalars(select(OutboxMessage)).one()
    assert row.topic == BOOKING_TOPIC
    assert row.key == "b-1"
    assert row.published_at is None and row.attempts == 0
    assert row.headers["event-type"] == "booking.confirmed"
    env = parse_event(row.payload)
    assert env.event_id == row.event_id
    assert env.payload_model() == _event()


def test_rolled_back_transaction_leaves_no_event(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        add_event(session, _event(), occurred_at=NOW)
        session.flush()
        session.rollback()
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
