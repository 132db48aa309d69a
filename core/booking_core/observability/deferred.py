"""Observations that count only if the transaction they describe commits.

A consumer decides inside a batch transaction that may roll back and run again (a transient failure);
observing at once would count a retried decision twice. `after_commit(session, fn)` keeps `fn` in the
session's info until the outermost COMMIT and drops it on ROLLBACK.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

_KEY = "booking_core.observability.pending"


def after_commit(session: Session, fn: Callable[[], None]) -> None:
    """Run `fn` after the session's transaction commits (never if it rolls back)."""
    session.info.setdefault(_KEY, []).append(fn)


@event.listens_for(Session, "after_commit")
def _run(session: Session) -> None:
    for fn in session.info.pop(_KEY, []):
        fn()


@event.listens_for(Session, "after_rollback")
def _drop(session: Session) -> None:
    session.info.pop(_KEY, None)


def pending(session: Session) -> list[Any]:
    """The observations waiting for this session's commit (tests)."""
    return list(session.info.get(_KEY, []))
