"""The one notice dispatcher (booking_workers.dispatch): woken by the producer's commit, not by its poll.

Each dispatcher here polls once a minute, so a notice handed over within seconds was handed over
because the commit woke it: on PostgreSQL by the NOTIFY sent in the producing transaction (delivered on
COMMIT only, to the dispatcher's LISTEN connection; the in-process wake-up is not used there), on SQLite
by the commit itself (`booking run`, one process).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from booking_core.db.migrate import upgrade
from booking_core.db.notify_outbox import Notice, add_notice
from booking_core.db.session import make_engine, make_session_factory
from booking_core.domain.lifecycle import NoticeIntent
from booking_core.domain.notifications import NotificationKind
from booking_testing.wait import wait_for
from booking_workers.dispatch import run_dispatcher

MINUTE = 60.0


def _owe(sessions: sessionmaker[Session], cause: str, *, commit: bool = True) -> None:
    """A producer's transaction that owes one confirmation (committed, or rolled back)."""
    with sessions() as s:
        notice = NoticeIntent(kind=NotificationKind.BOOKING_CONFIRMED, patient_id="p-1", booking_id=cause)
        add_notice(s, notice, cause=cause, now=datetime.now(UTC), tier="standard")
        if commit:
            s.commit()
        else:
            s.rollback()


class Sent:
    def __init__(self) -> None:
        self.notices: list[Notice] = []

    def __call__(self, n: Notice) -> None:
        self.notices.append(n)

    def refs(self) -> list[str]:
        return [n.ref_id for n in self.notices]


@pytest.fixture(params=["sqlite", "postgresql"])
def sessions(request: Any, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = (
        f"sqlite:///{tmp_path}/d.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    )
    upgrade(url)
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()


def test_a_commit_wakes_the_dispatcher_and_a_rollback_sends_nothing(sessions: sessionmaker[Session]) -> None:
    sent, stop = Sent(), threading.Event()
    engine = sessions.kw["bind"]
    t = threading.Thread(
        target=run_dispatcher, args=(stop, sessions, sent), kwargs={"engine": engine, "poll_seconds": MINUTE}
    )
    t.start()
    try:
        _owe(sessions, "b-1")
        wait_for(lambda: sent.refs() == ["b-1"], timeout=10, what="the notice, well before the poll")
        _owe(sessions, "b-2", commit=False)
        _owe(sessions, "b-3")
        wait_for(lambda: sent.refs() == ["b-1", "b-3"], timeout=10, what="the second committed notice")
    finally:
        stop.set()
        t.join(MINUTE + 5)
    assert not t.is_alive()
    assert sent.refs() == ["b-1", "b-3"]  # the rolled-back change owed nothing; nothing twice
