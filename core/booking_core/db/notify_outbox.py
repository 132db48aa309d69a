"""The notification outbox: notices written with the change that causes them, dispatched after commit.

A change (the booking unit of work, a result release, a reminder claim) calls `add_notice` in its own
transaction, so a rolled-back change owes nothing and a committed one cannot lose its notice. That is
all a producer does: the one dispatcher (booking_workers.dispatch) calls `dispatch_due`, which hands due
notices to a sender (the Dramatiq broker) and marks them dispatched; the worker marks them completed
(or postponed: quiet hours, a transient failure). A notice dispatched but not completed within the
lease (its job died with an in-memory broker, say) is dispatched again; `booking run` resets every
dispatched notice when it starts, since its in-memory broker starts empty.

The dispatcher is woken as soon as a transaction that staged a notice commits: on PostgreSQL by a
`NOTIFY booking_notices` sent in that transaction just before its COMMIT (PostgreSQL delivers it only
if the transaction commits, to every LISTENing session), and in the committing process (`booking run`,
tests) through `local_wakeup`. A short poll is the fallback for a lost wake-up.

Each notice carries its cause (the id of the event that caused it, or the reminder's appointment time),
and deliveries dedupe on (patient, kind, ref, cause, channel): each reschedule is its own notice, and a
second dispatch of one notice never sends twice.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Table, Update, and_, event, literal_column, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from booking_core.db.models import Patient, utcnow
from booking_core.db.models_notify import NotificationIntent
from booking_core.db.session import begin_write, first_then_rest, insert_ignore
from booking_core.domain.lifecycle import NoticeIntent
from booking_core.domain.notifications import NotificationKind
from booking_core.domain.patients import Tier
from booking_core.telemetry import inject_headers

log = logging.getLogger(__name__)

DEFAULT_LEASE = timedelta(minutes=10)
# The PostgreSQL channel a committing producer wakes the dispatcher on.
NOTIFY_CHANNEL = "booking_notices"
# session.info flag: this session's transaction staged a notice, so its commit wakes the dispatcher.
_STAGED = "booking_notices_staged"
# Dispatchers of this process waiting for a commit that staged notices (see local_wakeup).
_waiters: set[threading.Event] = set()
_waiters_lock = threading.Lock()


@dataclass(frozen=True)
class Notice:
    """A due notice handed to a sender: everything `send_notification` needs."""

    intent_id: int
    patient_id: str
    kind: NotificationKind
    ref_id: str
    cause: str
    tier: str
    urgent: bool
    # W3C trace headers of the change that owed the notice: its span has ended by dispatch time.
    trace_context: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def event_type(self) -> str:
        """The kind as the worker's `event_type` argument spells it."""
        return self.kind.value


Sender = Callable[[Notice], None]
# Hands several standard notices over as one job (the broker's per-message cost paid once for them).
GroupSender = Callable[[list[Notice]], None]


def add_notice(
    session: Session,
    notice: NoticeIntent,
    *,
    cause: str,
    now: datetime,
    tier: str | None = None,
) -> None:
    """Stage a notice in the caller's transaction; the same (cause, kind) twice is written once."""
    if tier is None:
        patient = session.get(Patient, notice.patient_id)
        tier = patient.tier if patient is not None else "standard"
    values = {
        "intent_key": f"{cause}:{notice.kind.value}"[:255],
        "patient_id": notice.patient_id,
        "kind": notice.kind.value,
        "ref_id": notice.booking_id,
        "cause": cause[:128],
        "tier": tier,
        "urgent": notice.urgent,
        "created_at": now,
        "not_before": now,
        "dispatches": 0,
        "trace_context": json.dumps(headers) if (headers := inject_headers()) else None,
    }
    session.execute(insert_ignore(session, NotificationIntent).values(**values))
    session.info[_STAGED] = True


@contextmanager
def local_wakeup() -> Iterator[threading.Event]:
    """An event set whenever a transaction of this process that staged a notice commits."""
    wake = threading.Event()
    with _waiters_lock:
        _waiters.add(wake)
    try:
        yield wake
    finally:
        with _waiters_lock:
            _waiters.discard(wake)


# Session events, for every session: a savepoint's release fires them too, so only the outermost
# transaction's commit counts. A flag left by a rolled-back savepoint costs one spurious wake-up.
@event.listens_for(Session, "before_commit")
def _notify_on_commit(session: Session) -> None:
    if session.info.get(_STAGED) and not session.in_nested_transaction():
        conn = session.connection()
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"NOTIFY {NOTIFY_CHANNEL}")


@event.listens_for(Session, "after_commit")
def _wake_on_commit(session: Session) -> None:
    if session.in_nested_transaction() or not session.info.pop(_STAGED, False):
        return
    with _waiters_lock:
        for wake in _waiters:
            wake.set()


@event.listens_for(Session, "after_rollback")
def _forget_on_rollback(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info.pop(_STAGED, None)


def _rowcount(result: Any) -> int:
    return cast(CursorResult[Any], result).rowcount


def _due(now: datetime, lease: timedelta) -> Any:
    return and_(
        NotificationIntent.completed_at.is_(None),
        NotificationIntent.not_before <= now,
        or_(NotificationIntent.dispatched_at.is_(None), NotificationIntent.dispatched_at < now - lease),
    )


# SVIP tiers' and urgent notices: handed over before standard ones (models_notify.PRIORITY_OPEN indexes
# the open ones in this very form).
# The tier is inlined, not a bound parameter: PostgreSQL proves a partial index applies only against
# constants, and a prepared statement's generic plan would not see the parameter's value.
PRIORITY = or_(
    NotificationIntent.tier != literal_column(f"'{Tier.STANDARD.value}'"), NotificationIntent.urgent.is_(True)
)
# While a claim of standard notices is sent, the dispatcher looks for new priority ones this often (in
# sends): a notice committed meanwhile waits for this many sends, not for the rest of the claim.
PRIORITY_LOOK_EVERY = 20


def _claim_rows(
    session: Session, at: datetime, lease: timedelta, limit: int, *, priority_only: bool = False
) -> list[NotificationIntent]:
    """Up to `limit` due rows, SVIP tiers and urgent notices first, each group oldest first.

    A lab's batch can leave tens of thousands of standard notices due; an SVIP patient's result or an
    urgent notice must not queue behind them (issue 15).
    """
    stmt = select(NotificationIntent).where(_due(at, lease)).order_by(NotificationIntent.id)
    stmt = stmt.with_for_update(skip_locked=True)
    if priority_only:
        return list(session.scalars(stmt.where(PRIORITY).limit(limit)))
    return first_then_rest(session, stmt, PRIORITY, limit)


def _claim(
    sessions: sessionmaker[Session], at: datetime, lease: timedelta, limit: int, *, priority_only: bool
) -> list[Notice]:
    """Claim (mark dispatched) up to `limit` due notices in one short transaction."""
    with sessions() as session:
        begin_write(session)
        rows = _claim_rows(session, at, lease, limit, priority_only=priority_only)
        if not rows:
            session.rollback()
            return []
        notices = [
            Notice(
                r.id,
                r.patient_id,
                NotificationKind(r.kind),
                r.ref_id,
                r.cause,
                r.tier,
                r.urgent,
                json.loads(r.trace_context) if r.trace_context else {},
            )
            for r in rows
        ]
        session.execute(
            update(NotificationIntent)
            .where(NotificationIntent.id.in_([n.intent_id for n in notices]))
            .values(dispatched_at=at, dispatches=NotificationIntent.dispatches + 1)
            .execution_options(synchronize_session=False)
        )
        session.commit()
    return notices


def _is_priority(notice: Notice) -> bool:
    return notice.tier != Tier.STANDARD.value or notice.urgent


def dispatch_due(
    sessions: sessionmaker[Session],
    send: Sender,
    *,
    now: datetime | None = None,
    lease: timedelta = DEFAULT_LEASE,
    limit: int = 200,
    send_group: GroupSender | None = None,
    group_size: int = 1,
) -> int:
    """Hand every due notice to `send` once, SVIP and urgent ones first; returns how many were handed over.

    Up to `limit` due rows are claimed (marked dispatched) in one short transaction, SKIP LOCKED on
    PostgreSQL so concurrent dispatchers share the work, then sent outside it: no lock is held while a
    sender talks to the broker (or, in tests, delivers). A send that fails gives back its notice and the
    rest of the claim; a crash after the claim leaves them to the lease (or to `reset_dispatched`).

    With `send_group`, standard notices go `group_size` at a time, in claim order, as one job each; SVIP
    and urgent ones always go alone, so none waits for a group's other notices.
    """
    sending = _Sending(sessions, send, send_group if group_size > 1 else None, group_size, now, lease, limit)
    done = 0
    while True:
        at = now or utcnow()
        notices = _claim(sessions, at, lease, limit, priority_only=False)
        if not notices:
            return done
        sent, ok = sending.claimed(notices, at)
        done += sent
        if not ok or len(notices) < limit:
            return done


@dataclass
class _Sending:
    """One dispatch pass's way of handing claimed notices over."""

    sessions: sessionmaker[Session]
    send: Sender
    send_group: GroupSender | None
    group_size: int
    now: datetime | None
    lease: timedelta
    limit: int
    since_look: int = 0

    def claimed(self, notices: list[Notice], at: datetime) -> tuple[int, bool]:
        """Send notices claimed at `at` in order, priority ones claimed meanwhile among them: how many
        were sent, and whether every send succeeded.

        Every PRIORITY_LOOK_EVERY standard notices, SVIP and urgent notices that came due since the claim
        are claimed and sent first (a look through their own index): one committed while a claim of
        hundreds of standard notices is sent waits for a few sends, not for all of them. A failed send
        gives back its notices and the rest of the claim, and ends the pass."""
        done = k = 0
        while k < len(notices):
            if self.since_look >= PRIORITY_LOOK_EVERY and not _is_priority(notices[k]):
                self.since_look = 0
                at_first = self.now or utcnow()
                sent, ok = self.claimed(
                    _claim(self.sessions, at_first, self.lease, self.limit, priority_only=True), at_first
                )
                done += sent
                if not ok:  # the broker is down: the standard ones go back too
                    _give_back(self.sessions, [n.intent_id for n in notices[k:]], at)
                    return done, False
            batch = self._next(notices, k)
            try:
                if len(batch) > 1 and self.send_group is not None:
                    self.send_group(batch)
                else:
                    self.send(batch[0])
            except Exception as exc:  # the broker is down: these notices and the rest stay due
                log.warning("notice dispatch failed", extra={"reason": type(exc).__name__})
                _give_back(self.sessions, [n.intent_id for n in notices[k:]], at)
                return done, False
            done += len(batch)
            k += len(batch)
            if not _is_priority(batch[0]):
                self.since_look += len(batch)
        return done, True

    def _next(self, notices: list[Notice], k: int) -> list[Notice]:
        """The notice at `k` alone, or with the standard ones after it up to a group (never past the
        next look)."""
        if self.send_group is None or _is_priority(notices[k]):
            return [notices[k]]
        room = min(self.group_size, max(1, PRIORITY_LOOK_EVERY - self.since_look))
        batch = [notices[k]]
        for n in notices[k + 1 :]:
            if len(batch) >= room or _is_priority(n):
                break
            batch.append(n)
        return batch


def _give_back(sessions: sessionmaker[Session], ids: list[int], at: datetime) -> None:
    with sessions() as session:
        session.execute(
            update(NotificationIntent)
            .where(NotificationIntent.id.in_(ids), NotificationIntent.dispatched_at == at)
            .values(dispatched_at=None)
            .execution_options(synchronize_session=False)
        )
        session.commit()


def completion(intent_id: Any, now: Any) -> Update:
    """The UPDATE that marks a notice completed, for `complete` and for a worker that runs it inside the
    statement recording the notice's last attempt (one round trip, not a transaction of its own).
    `intent_id` and `now` are values or bind parameters; a NULL id completes nothing."""
    return (
        update(cast(Table, NotificationIntent.__table__))  # Core: no ORM session to synchronise
        .where(NotificationIntent.id == intent_id, NotificationIntent.completed_at.is_(None))
        .values(completed_at=now)
    )


def complete(session: Session, intent_id: int, *, now: datetime) -> None:
    """Every channel of the notice is done (sent, failed for good, or not wanted)."""
    session.execute(completion(intent_id, now))
    session.commit()


def postpone(session: Session, intent_id: int, *, until: datetime) -> None:
    """Dispatch the notice again at `until` (quiet hours end, or a transient failure's backoff)."""
    session.execute(
        update(NotificationIntent)
        .where(NotificationIntent.id == intent_id, NotificationIntent.completed_at.is_(None))
        .values(not_before=until, dispatched_at=None)
        .execution_options(synchronize_session=False)
    )
    session.commit()


def reset_dispatched(session: Session) -> int:
    """Make every dispatched, unfinished notice due again (a process whose in-memory broker died)."""
    n = _rowcount(
        session.execute(
            update(NotificationIntent)
            .where(NotificationIntent.completed_at.is_(None), NotificationIntent.dispatched_at.is_not(None))
            .values(dispatched_at=None)
            .execution_options(synchronize_session=False)
        )
    )
    session.commit()
    return n
