"""The dispatcher hands SVIP and urgent notices over before a standard backlog (issue 15, SVIP1 latency)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from booking_core.db.notify_outbox import PRIORITY_LOOK_EVERY, Notice, add_notice, dispatch_due
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


def test_a_priority_notice_due_while_a_standard_claim_is_sent_goes_within_a_few_sends(
    sessions: sessionmaker[Session],
) -> None:
    _owe(sessions, 120, tier="standard", tag="s")
    sent: list[Notice] = []

    def send(n: Notice) -> None:
        sent.append(n)
        if len(sent) == 5:  # an SVIP patient's result and an urgent notice commit meanwhile
            _owe(sessions, 1, tier="svip1", tag="v")
            _owe(sessions, 1, tier="standard", urgent=True, tag="u")

    # One claim of all 120 standard notices: the two came due after it.
    assert dispatch_due(sessions, send, now=NOW, limit=200) == 122
    order = [n.patient_id for n in sent]
    # Handed over at the next look, after PRIORITY_LOOK_EVERY sends, not after the claim's 120.
    assert order[PRIORITY_LOOK_EVERY : PRIORITY_LOOK_EVERY + 2] == ["v0", "u0"]
    assert [p for p in order if p.startswith("s")] == [f"s{i}" for i in range(120)]
    assert len({n.intent_id for n in sent}) == 122


def test_a_failed_priority_send_gives_back_it_and_the_rest_of_the_standard_claim(
    sessions: sessionmaker[Session],
) -> None:
    _owe(sessions, 40, tier="standard", tag="s")
    sent: list[Notice] = []

    def send(n: Notice) -> None:
        if n.tier != "standard":
            raise ConnectionError("broker down")
        sent.append(n)
        if len(sent) == 5:
            _owe(sessions, 1, tier="svip1", tag="v")

    assert dispatch_due(sessions, send, now=NOW, limit=200) == PRIORITY_LOOK_EVERY
    # Everything not handed over is due again at once: the SVIP one first, then the standard rest.
    again: list[Notice] = []
    assert dispatch_due(sessions, again.append, now=NOW, limit=200) == 40 - PRIORITY_LOOK_EVERY + 1
    assert again[0].patient_id == "v0"
    assert [n.patient_id for n in again[1:]] == [f"s{i}" for i in range(PRIORITY_LOOK_EVERY, 40)]


def test_standard_notices_go_in_groups_and_priority_ones_alone(sessions: sessionmaker[Session]) -> None:
    _owe(sessions, 30, tier="standard", tag="s")
    _owe(sessions, 2, tier="svip1", tag="v")
    _owe(sessions, 1, tier="standard", urgent=True, tag="u")
    jobs: list[list[Notice]] = []
    sent = dispatch_due(sessions, lambda n: jobs.append([n]), now=NOW, send_group=jobs.append, group_size=4)
    assert sent == 33
    assert [[n.patient_id for n in job] for job in jobs[:3]] == [["v0"], ["v1"], ["u0"]]
    groups = [[n.patient_id for n in job] for job in jobs[3:]]
    assert [p for g in groups for p in g] == [f"s{i}" for i in range(30)]  # claim order kept
    assert all(1 <= len(g) <= 4 for g in groups) and sum(len(g) == 4 for g in groups) >= 6


def test_a_failed_group_send_gives_back_the_group_and_the_rest(sessions: sessionmaker[Session]) -> None:
    _owe(sessions, 10, tier="standard", tag="s")
    groups: list[list[Notice]] = []

    def send_group(notices: list[Notice]) -> None:
        if len(groups) == 1:
            raise ConnectionError("broker down")
        groups.append(notices)

    assert (
        dispatch_due(sessions, lambda n: groups.append([n]), now=NOW, send_group=send_group, group_size=4)
        == 4
    )
    again: list[Notice] = []
    assert dispatch_due(sessions, again.append, now=NOW) == 6
    assert [n.patient_id for n in again] == [f"s{i}" for i in range(4, 10)]
