"""The dispatcher hands SVIP and urgent notices over before a standard backlog (issue 15, SVIP1 latency)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from booking_core.db.notify_outbox import Notice, add_notice, dispatch_due
from booking_core.domain.lifecycle import NoticeIntent
from booking_core.domain.notifications import NotificationKind

NOW = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)


def _owe(sessions: sessionmaker[Session], n: int, *, tier: str, urgent: bool = False, tag: str) -> None:
    with sessions() as session:
        for i in range(n):
            kind = NotificationKind.RESULTS_AVAILABLE
            intent = NoticeIntent(kind, f"{tag}{i}", f"r-{tag}{i}", urgent=urgent)
            add_notice(session, intent, cause=f"ev-{tag}{i}", now=NOW, tier=tier)
        session.commit()


def test_svip_and_urgent_notices_go_before_an_older_standard_backlog(sessions: sessionmaker[Session]) -> None:
    _owe(sessions, 30, tier="standard", tag="s")
    _owe(sessions, 2, tier="svip1", tag="v")
    _owe(sessions, 1, tier="standard", urgent=True, tag="u")
    _owe(sessions, 1, tier="svip2", tag="w")
    sent: list[Notice] = []
    assert dispatch_due(sessions, sent.append, now=NOW, limit=10) == 34
    first = [n.patient_id for n in sent[:4]]
    assert first == ["v0", "v1", "u0", "w0"]  # every priority notice in the first claim, oldest first
    assert [n.patient_id for n in sent[4:]] == [f"s{i}" for i in range(30)]
    assert len({n.intent_id for n in sent}) == 34  # each once
