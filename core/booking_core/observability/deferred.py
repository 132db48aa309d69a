"""Observations that count only if the transaction they describe commits.

A consumer decides inside a batch transaction that may roll back and run again (a transient failure),
each record in a SAVEPOINT of its own that is rolled back when the record is refused; observing at once
would count a retried decision twice and a refused one at all. `after_commit(session, fn)` keeps `fn`
with the innermost transaction open now: dropped if that savepoint or any enclosing transaction rolls
back, run when the outermost transaction commits (SQLAlchemy also signals a savepoint's release as a
commit: those are skipped).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

_KEY = "booking_core.observability.pending"
Pending = list[tuple[SessionTransaction | None, Callable[[], None]]]


def after_commit(session: Session, fn: Callable[[], None]) -> None:
    """Run `fn` after the session's outermost transaction commits (never if its part rolls back)."""
    where = session.get_nested_transaction() or session.get_transaction()
    pending: Pending = session.info.setdefault(_KEY, [])
    pending.append((where, fn))


def _within(trans: SessionTransaction | None, ended: SessionTransaction) -> bool:
    while trans is not None:
        if trans is ended:
            return True
        trans = trans.parent
    return False


@event.listens_for(Session, "after_commit")
def _run(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint was released: its observations wait for the outermost commit
    for _, fn in session.info.pop(_KEY, []):
        fn()


@event.listens_for(Session, "after_soft_rollback")
def _drop(session: Session, previous_transaction: SessionTransaction) -> None:
    pending: Pending | None = session.info.get(_KEY)
    if pending:
        pending[:] = [(t, fn) for t, fn in pending if not _within(t, previous_transaction)]
