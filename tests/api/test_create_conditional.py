"""The conditional create (PostgreSQL, no transaction: read, decide, one conditional write) under the
interleavings a lock used to rule out, stepped deterministically: two requests read, then write in turn.

The plans are driven step by step on autocommit connections (booking_core.db.steps), as the API's event
loop drives them on asyncpg.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.exc import IntegrityError

from booking_api.schemas import BookingCreate
from booking_api.services import bookings
from booking_core.db.migrate import upgrade
from booking_core.db.models import Booking, IdempotencyKey, OutboxMessage, Slot
from booking_core.db.session import make_engine, make_session_factory
from booking_core.db.steps import Step
from booking_core.domain.errors import AlreadyBookedError, SlotUnavailableError

from .conftest import World, seed_world

TTL = timedelta(minutes=15)


@pytest.fixture
def db(postgres_url: str) -> Iterator[tuple[Engine, World]]:
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    with make_session_factory(engine)() as s:
        world = seed_world(s, datetime.now(UTC))
    yield engine.execution_options(isolation_level="AUTOCOMMIT"), world
    engine.dispose()


def _answer(conn: Connection, step: Step) -> Any:
    result = conn.execute(step.stmt, step.params)
    return result.first() if step.want == "row" else result.scalar()


class Stepped:
    """A conditional create stopped before its write, to be finished later."""

    def __init__(self, conn: Connection, patient: str, slot: str, key: str) -> None:
        self.conn = conn
        self.plan = bookings.conditional_create_plan(
            patient_id=patient,
            data=BookingCreate(slot_id=slot),
            idempotency_key=key,
            now=datetime.now(UTC),
            hold_ttl=TTL,
        )
        read = next(self.plan)
        self.write = self.plan.send(_answer(conn, read))  # the decision is made: the write is next

    def finish(self) -> bookings.CreateResult:
        step = self.write
        try:
            while True:
                try:
                    answer = _answer(self.conn, step)
                except IntegrityError as exc:
                    step = self.plan.throw(exc)
                else:
                    step = self.plan.send(answer)
        except StopIteration as done:
            return done.value[0]  # type: ignore[no-any-return]


def _count(conn: Connection, model: Any) -> int:
    return int(conn.scalar(select(func.count()).select_from(model)) or 0)


def _booked(conn: Connection, slot: str) -> int:
    return int(conn.scalar(select(Slot.booked).where(Slot.id == slot)) or 0)


def test_a_retry_racing_the_first_request_replays_its_answer(db: tuple[Engine, World]) -> None:
    engine, world = db
    with engine.connect() as a_conn, engine.connect() as b_conn:
        a = Stepped(a_conn, "patient-a", world.slot5, "same-key")
        b = Stepped(b_conn, "patient-a", world.slot5, "same-key")  # read before the first one wrote
        first = a.finish()
        again = b.finish()  # its key row meets the first one's: nothing of its own is written
        assert not first.replayed and first.status_code == 201
        assert again.replayed and again.status_code == 201 and again.body == first.body
        assert _booked(a_conn, world.slot5) == 1
        assert _count(a_conn, Booking) == 1 and _count(a_conn, OutboxMessage) == 1
        assert _count(a_conn, IdempotencyKey) == 1


def test_the_last_place_taken_between_read_and_write_is_409_and_writes_nothing(
    db: tuple[Engine, World],
) -> None:
    engine, world = db  # slot1 has one place
    with engine.connect() as a_conn, engine.connect() as b_conn:
        a = Stepped(a_conn, "patient-a", world.slot1, "a-key")
        b = Stepped(b_conn, "patient-b", world.slot1, "b-key")  # both saw the place free
        assert a.finish().status_code == 201
        with pytest.raises(SlotUnavailableError):
            b.finish()
        assert _booked(a_conn, world.slot1) == 1
        assert _count(a_conn, Booking) == 1
        keys = set(a_conn.scalars(select(IdempotencyKey.key)))
        assert keys == {"a-key"}  # the refused request's key is free for a retry


def test_a_slot_closed_or_moved_between_read_and_write_is_409(db: tuple[Engine, World]) -> None:
    engine, world = db
    with engine.connect() as conn:
        closed = Stepped(conn, "patient-a", world.slot5, "k1")
        conn.execute(update(Slot).where(Slot.id == world.slot5).values(status="closed"))
        with pytest.raises(SlotUnavailableError):
            closed.finish()
        moved = Stepped(conn, "patient-a", world.slot2, "k2")
        starts = conn.scalar(select(Slot.starts_at).where(Slot.id == world.slot2))
        assert starts is not None
        later = {"starts_at": starts + timedelta(hours=1), "ends_at": starts + timedelta(hours=2)}
        conn.execute(update(Slot).where(Slot.id == world.slot2).values(**later))
        with pytest.raises(SlotUnavailableError):
            moved.finish()
        assert _count(conn, Booking) == 0 and _count(conn, IdempotencyKey) == 0
        assert _booked(conn, world.slot5) == 0 and _booked(conn, world.slot2) == 0


def test_the_same_patient_twice_on_a_slot_with_two_keys_is_409_and_frees_nothing(
    db: tuple[Engine, World],
) -> None:
    engine, world = db
    with engine.connect() as a_conn, engine.connect() as b_conn:
        a = Stepped(a_conn, "patient-a", world.slot5, "first")
        b = Stepped(b_conn, "patient-a", world.slot5, "second")
        assert a.finish().status_code == 201
        with pytest.raises(AlreadyBookedError):
            b.finish()  # the booking's unique index; the place it took is rolled back with the rest
        assert _booked(a_conn, world.slot5) == 1
        assert _count(a_conn, Booking) == 1
        assert set(a_conn.scalars(select(IdempotencyKey.key))) == {"first"}


def test_the_in_transaction_create_on_postgresql_claims_and_locks_in_one_statement(
    db: tuple[Engine, World],
) -> None:
    """`create_booking` on a Session (PostgreSQL without asyncpg): the key claim and the slot's locked read
    share a statement; a replay locks nothing and answers the first answer, a full slot is 409."""
    engine, world = db
    in_transaction = make_engine(engine.url.render_as_string(hide_password=False))
    sessions = make_session_factory(in_transaction)

    def create(patient: str, slot: str, key: str) -> bookings.CreateResult:
        with sessions() as s:
            return bookings.create_booking(
                session=s,
                patient_id=patient,
                data=BookingCreate(slot_id=slot),
                idempotency_key=key,
                now=datetime.now(UTC),
                hold_ttl=TTL,
            )

    first = create("patient-a", world.slot1, "k")
    assert first.status_code == 201 and not first.replayed
    again = create("patient-a", world.slot1, "k")
    assert again.replayed and again.body == first.body
    with pytest.raises(SlotUnavailableError):
        create("patient-b", world.slot1, "k")
    with engine.connect() as conn:
        assert _booked(conn, world.slot1) == 1
        assert _count(conn, Booking) == 1
        assert _count(conn, IdempotencyKey) == 1
    in_transaction.dispose()


def test_statement_parameters_for_asyncpg_are_what_sqlalchemy_would_bind() -> None:
    """dbwork reads each positional parameter directly (not through construct_params): the create's
    statements get the same values, literals of the statement and bind processing (UTC, JSON) included."""
    from booking_api.dbwork import DbWork

    work = DbWork(None)  # type: ignore[arg-type]  # compiling only: no sessions, no connections
    now = datetime.now(UTC)
    plan = bookings.conditional_create_plan(
        patient_id="p", data=BookingCreate(slot_id="s"), idempotency_key="k", now=now, hold_ttl=TTL
    )
    read = next(plan)
    slot = ("s", "c", "sv", "blood-draw", now + timedelta(days=1), now + timedelta(days=1, minutes=15), 5, 0)
    write = plan.send((True, None, None, None, *slot, "open", True))
    for step in (read, write):
        compiled = work.plan(step.stmt)
        values = compiled.compiled.construct_params(step.params)
        expected = [
            v if fn is None or v is None else fn(v)
            for v, fn in zip((values[n] for n in compiled.names), compiled.processors, strict=True)
        ]
        assert compiled.args(step.params) == expected
    assert len(expected) > 40 and 1 in expected and "open" in expected  # the write's own literals
