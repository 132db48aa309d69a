"""The poll loop on a fake transport and SQLite: idempotency, DLQ, retries, stop."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from booking_consumers.errors import InvalidMessageError
from booking_consumers.runtime import Consumer, ConsumerDef, Record
from booking_core.db.models import ProcessedMessage
from booking_core.db.models_events import DeadLetter
from booking_core.db.models_notify import NotificationIntent
from booking_core.db.notify_outbox import dispatch_due
from booking_core.domain.notifications import NotificationKind


def _def(calls, *, fail_times=0, exc=None):
    state = {"n": 0}

    def decode(record):
        if record.value == b"bad":
            raise InvalidMessageError("not_json", "value")
        if record.value == b"boom":
            raise RuntimeError("decoder bug")
        return record.value.decode()

    def handle(session, event, effects):
        state["n"] += 1
        if state["n"] <= fail_times:
            raise exc or OperationalError("SELECT 1", {}, Exception("db down"))
        if event == "refuse":
            raise InvalidMessageError("unknown_patient", "PID-3")
        calls.append(event)
        effects.notify(patient_id="p1", kind=NotificationKind.RESULTS_AVAILABLE, ref_id=event)

    return ConsumerDef(name="test", decode=decode, handle=handle, message_key=lambda e, r: e)


def rec(offset, value):
    return Record(
        topic="topic-a",
        partition=0,
        offset=offset,
        key=b"k",
        value=value,
        headers={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"},
    )


def test_batch_processed_once_duplicates_skipped_offsets_after_commit(sqlite_sessions, h):
    calls = []
    transport = h.FakeTransport(batches=[[rec(0, b"a"), rec(1, b"b"), rec(2, b"a")]])
    notes = h.Notifications()
    consumer = Consumer(_def(calls), transport, sqlite_sessions)
    assert consumer.run_batch() == 3
    assert calls == ["a", "b"]
    assert [n.ref_id for n in notes.drain(sqlite_sessions)] == ["a", "b"]
    assert transport.done_offsets == [0, 1, 2] and transport.commits == 1
    with sqlite_sessions() as s:
        assert s.scalar(select(func.count()).select_from(ProcessedMessage)) == 2


def test_undecodable_and_refused_go_to_dlq_with_reason(sqlite_sessions, h):
    calls = []
    outcomes, transport, notes = h.run_records(
        _def(calls), sqlite_sessions, [b"bad", b"boom", b"refuse", b"ok"]
    )
    assert outcomes == ["dead_lettered", "dead_lettered", "dead_lettered", "processed"]
    reasons = [hdrs["x-dlq-reason"] for _, hdrs in transport.dlq]
    assert reasons == ["not_json", "undecodable", "unknown_patient"]
    assert transport.dlq[2][1]["x-dlq-detail"] == "PID-3"
    assert transport.dlq[0][1]["x-dlq-source-offset"] == "0"
    assert [n.ref_id for n in notes.sent] == ["ok"]  # the refused message enqueued nothing
    with sqlite_sessions() as s:
        rows = s.scalars(select(DeadLetter).order_by(DeadLetter.source_offset)).all()
        assert [(r.reason, r.source_offset) for r in rows] == [
            ("not_json", 0),
            ("undecodable", 1),
            ("unknown_patient", 2),
        ]
        # A refused message is not marked processed: a fixed replay from the DLQ is applied.
        assert s.scalar(select(func.count()).select_from(ProcessedMessage)) == 1


def test_transient_errors_retry_the_same_message(sqlite_sessions, h):
    calls = []
    outcomes, transport, _notes = h.run_records(_def(calls, fail_times=3), sqlite_sessions, [b"a", b"b"])
    assert outcomes == ["processed", "processed"] and calls == ["a", "b"]
    assert not transport.dlq


def test_unexpected_errors_are_dead_lettered_after_bounded_attempts(sqlite_sessions, h):
    calls = []
    outcomes, transport, _ = h.run_records(
        _def(calls, fail_times=5, exc=KeyError("x")), sqlite_sessions, [b"a", b"b"]
    )
    assert outcomes == ["dead_lettered", "processed"]
    assert (
        transport.dlq[0][1]["x-dlq-reason"] == "handler_error"
        and transport.dlq[0][1]["x-dlq-detail"] == "KeyError"
    )


def test_stop_during_retry_leaves_the_message_unstored(sqlite_sessions, h):
    calls = []
    stop = threading.Event()
    transport = h.FakeTransport(batches=[[rec(0, b"a"), rec(1, b"b")]])
    consumer = Consumer(
        _def(calls, fail_times=10**6),
        transport,
        sqlite_sessions,
        stop=stop,
        backoff_max=0.05,
    )
    threading.Timer(0.3, stop.set).start()
    consumer.run()
    assert transport.done_offsets == [] and calls == [] and transport.closed


def test_the_consumer_only_writes_the_notice_and_a_broker_outage_only_delays_it(sqlite_sessions, h):
    calls = []
    attempts = {"n": 0}
    sent = []

    def flaky(n):
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise OperationalError("enqueue", {}, Exception("redis down"))
        sent.append(n)

    transport = h.FakeTransport(batches=[[rec(0, b"a")]])
    consumer = Consumer(_def(calls), transport, sqlite_sessions, backoff_max=0.01)
    consumer.run_batch()
    # The change committed once with its notice, and nothing was handed to a broker by the consumer.
    assert calls == ["a"] and attempts["n"] == 0 and transport.done_offsets == [0]
    with sqlite_sessions() as s:
        assert s.scalar(select(func.count()).select_from(ProcessedMessage)) == 1
        (intent,) = s.scalars(select(NotificationIntent)).all()
        assert intent.dispatched_at is None
    # The dispatcher: the broker is down once (the notice stays due), then it goes out, once.
    assert dispatch_due(sqlite_sessions, flaky) == 0
    assert dispatch_due(sqlite_sessions, flaky) == 1
    assert [(n.ref_id, n.event_type) for n in sent] == [("a", "results_available")]
    assert dispatch_due(sqlite_sessions, flaky) == 0  # dispatched once


@pytest.mark.parametrize("value", [b"", None])
def test_empty_message_is_refused_by_envelope_decoder(sqlite_sessions, h, value):
    from booking_consumers.handlers.registry import definition

    outcomes, transport, _ = h.run_records(
        definition("customer"), sqlite_sessions, [Record("t", 0, 0, None, value)]
    )
    assert outcomes == ["dead_lettered"] and transport.dlq[0][1]["x-dlq-reason"] == "empty_message"


def _count_commits(sessions):
    from sqlalchemy import event

    engine = sessions.kw["bind"]
    seen = {"commits": 0}

    def on_commit(_conn):
        seen["commits"] += 1

    event.listen(engine, "commit", on_commit)
    return seen


def test_poison_in_the_middle_of_a_batch_dead_letters_alone_the_rest_commits_once(sqlite_sessions, h):
    calls = []
    batch = [rec(0, b"a"), rec(1, b"b"), rec(2, b"refuse"), rec(3, b"bad"), rec(4, b"c"), rec(5, b"a")]
    transport = h.FakeTransport(batches=[batch])
    notes = h.Notifications()
    seen = _count_commits(sqlite_sessions)
    assert Consumer(_def(calls), transport, sqlite_sessions).run_batch() == 6
    # One transaction for the batch (savepoints inside); the notices are the dispatcher's to send.
    assert seen["commits"] == 1
    assert calls == ["a", "b", "c"]
    assert [n.ref_id for n in notes.drain(sqlite_sessions)] == ["a", "b", "c"]
    assert [(hdrs["x-dlq-reason"], r.offset) for r, hdrs in transport.dlq] == [
        ("unknown_patient", 2),
        ("not_json", 3),
    ]
    assert transport.done_offsets == [0, 1, 2, 3, 4, 5] and transport.commits == 1
    with sqlite_sessions() as s:
        keys = sorted(s.scalars(select(ProcessedMessage.message_key)))
        assert keys == ["a", "b", "c"]  # the refused record's claim went with its savepoint
        assert sorted(s.scalars(select(DeadLetter.source_offset))) == [2, 3]


def test_transient_failure_mid_batch_retries_the_whole_batch_atomically(sqlite_sessions, h):
    # The third handler call fails once: the first two records' released savepoints must roll back
    # with the batch (on SQLite too), or the retry would skip them as duplicates and lose their notes.
    calls, state = [], {"n": 0}

    def handle(session, event, effects):
        state["n"] += 1
        if state["n"] == 3:
            raise OperationalError("INSERT", {}, Exception("db down"))
        calls.append(event)
        effects.notify(patient_id="p1", kind=NotificationKind.RESULTS_AVAILABLE, ref_id=event)

    definition = ConsumerDef(
        name="test", decode=lambda r: r.value.decode(), handle=handle, message_key=lambda e, r: e
    )
    transport = h.FakeTransport(batches=[[rec(0, b"a"), rec(1, b"b"), rec(2, b"c")]])
    notes = h.Notifications()
    Consumer(definition, transport, sqlite_sessions, backoff_max=0.01).run_batch()
    assert calls == ["a", "b", "a", "b", "c"]
    assert [n.ref_id for n in notes.drain(sqlite_sessions)] == ["a", "b", "c"]
    assert transport.done_offsets == [0, 1, 2]
    with sqlite_sessions() as s:
        assert s.scalar(select(func.count()).select_from(ProcessedMessage)) == 3


def test_unexpected_error_in_a_batch_dead_letters_only_that_record(sqlite_sessions, h):
    calls = []

    def handle(session, event, effects):
        if event == "bug":
            raise KeyError("x")
        calls.append(event)

    definition = ConsumerDef(
        name="test", decode=lambda r: r.value.decode(), handle=handle, message_key=lambda e, r: e
    )
    transport = h.FakeTransport(batches=[[rec(0, b"a"), rec(1, b"bug"), rec(2, b"b")]])
    Consumer(definition, transport, sqlite_sessions, backoff_max=0.01).run_batch()
    assert calls[-2:] == ["a", "b"] and calls.count("b") == 1  # the committed attempt
    assert [(hdrs["x-dlq-reason"], hdrs["x-dlq-detail"]) for _, hdrs in transport.dlq] == [
        ("handler_error", "KeyError")
    ]
    assert transport.done_offsets == [0, 1, 2]


def test_large_poll_batch_commits_in_transactions_of_max_savepoints(sqlite_sessions, h, monkeypatch):
    from booking_consumers import runtime

    monkeypatch.setattr(runtime, "MAX_SAVEPOINTS", 2)
    calls = []
    transport = h.FakeTransport(batches=[[rec(i, f"m{i}".encode()) for i in range(5)]])
    seen = _count_commits(sqlite_sessions)
    assert Consumer(_def(calls), transport, sqlite_sessions).run_batch() == 5
    # Three transactions of at most two records (no dispatch: that is the dispatcher's).
    assert seen["commits"] == 3 and transport.commits == 1
    assert calls == [f"m{i}" for i in range(5)] and transport.done_offsets == list(range(5))
