"""lis-testresult's priority lane: an SVIP patient's result does not wait behind a standard backlog.

The LIS publishes every result on one topic, read in order per partition. Routing by tier happens
after lis-testresult has stored a result, so with 50,000 standard results ahead of it (a lab's batch)
an SVIP1 result waited for all of them in lis-testresult itself: minutes at its storing rate, before
its own topic and notification queue could help (issue 15).

The lane is a second consumer group on the same topic, in a process of its own beside the main loop
(booking_consumers.main; as a thread it shared the GIL with the main loop's parsing). It reads at the
broker's pace, looks at each record's PID-3 only (no full parse: ~100x cheaper), asks the database once per
poll which of the named patients are in an SVIP tier, and applies those records with lis-testresult's
own definition; the others it passes over. The main group still applies every record: the processed
message claim (MSH-4 + MSH-10, the same consumer name) turns whichever comes second into a duplicate,
so each result is stored, routed and notified once. Whatever the lane skips or loses stays the main
group's, as before: the lane makes SVIP results earlier and changes nothing else.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from booking_consumers.handlers.lis_patients import IdentifierRule, candidate_values
from booking_consumers.hl7_oru import patient_ids
from booking_consumers.hl7_wire import Encoding, Segment
from booking_consumers.runtime import Record, Transport
from booking_core.db.models import Patient

log = logging.getLogger(__name__)

GROUP_SUFFIX = ".priority"
# Records read per poll while scanning: the lane keeps few of them, so it reads in large steps.
SCAN_BATCH = 2000
# While only passing over records, offsets are committed at most this often.
COMMIT_EVERY_SECONDS = 1.0


def pid_values(payload: bytes | None, rules: Sequence[IdentifierRule]) -> list[str]:
    """The identifier values the record's PID segments name as our patients (rule order), cheaply.

    Latin-1 keeps every ASCII byte as it is whatever MSH-18 says; an identifier it cannot read simply
    matches nobody, and the record is the main group's like any standard one.
    """
    if not payload:
        return []
    text = payload.decode("latin-1")
    start = text.find("MSH")
    if start < 0 or len(text) < start + 8:
        return []
    chars = text[start + 3 : start + 8]
    out: list[str] = []
    at = 0
    while (at := text.find("PID" + chars[0], at)) >= 0:
        if at == 0 or text[at - 1] in "\r\n":  # a segment's start, not "PID|" inside a field
            end = _segment_end(text, at)
            for v in _segment_values(text[at:end], chars, tuple(rules)):
                if v not in out:
                    out.append(v)
            at = end
        else:
            at += 4
    return out


def _segment_end(text: str, at: int) -> int:
    ends = [i for i in (text.find("\r", at), text.find("\n", at)) if i >= 0]
    return min(ends) if ends else len(text)


@lru_cache(maxsize=65_536)
def _segment_values(segment: str, chars: str, rules: tuple[IdentifierRule, ...]) -> tuple[str, ...]:
    # The same patient's PID segment comes again and again in a lab's batch: read it once.
    enc = Encoding(
        field=chars[0], component=chars[1], repetition=chars[2], escape=chars[3], subcomponent=chars[4]
    )
    ids = patient_ids(Segment("PID", segment.split(enc.field)), enc)
    return tuple(candidate_values(ids, rules))


class PriorityLaneTransport:
    """A transport that yields only the records naming an SVIP patient; the rest are passed over."""

    def __init__(
        self,
        inner: Transport,
        sessions: sessionmaker[Session],
        rules: Sequence[IdentifierRule],
    ) -> None:
        self.inner, self.sessions, self.rules = inner, sessions, rules
        self._held: list[Record] = []  # passed over in the last poll: done once that poll's are
        self._stored: dict[tuple[str, int], int] = {}
        self._next_commit = 0.0

    def _priority(self, batch: Sequence[Record]) -> set[int]:
        """Indexes of the records naming a patient in an SVIP tier (one query for the batch)."""
        named = [pid_values(r.value, self.rules) for r in batch]
        wanted = sorted({v for ids in named for v in ids})
        if not wanted:
            return set()
        try:
            with self.sessions() as session:
                vip = set(
                    session.scalars(
                        select(Patient.id).where(Patient.id.in_(wanted), Patient.tier != "standard")
                    )
                )
        except SQLAlchemyError:
            # Cannot tell: apply them all here (the claims dedupe against the main group); the handler's
            # own database errors are then the loop's to retry.
            log.warning("priority lane: tier lookup failed", extra={"component": "consumer"})
            return set(range(len(batch)))
        return {i for i, ids in enumerate(named) if any(v in vip for v in ids)}

    def _advance(self, record: Record) -> None:
        # Offsets only move forward: a record passed over before an earlier SVIP one was applied must
        # not move its partition back.
        tp = (record.topic, record.partition)
        if record.offset + 1 > self._stored.get(tp, -1):
            self._stored[tp] = record.offset + 1
            self.inner.done(record)

    def poll(self, max_records: int, timeout: float) -> Sequence[Record]:
        """The next SVIP records, scanning past others for at most `timeout` seconds."""
        for record in self._held:  # the previous poll's SVIP records are applied by now
            self._advance(record)
        self._held = []
        deadline = time.monotonic() + timeout
        while True:
            batch = self.inner.poll(max(max_records, SCAN_BATCH), max(0.0, deadline - time.monotonic()))
            if not batch:
                return []
            keep = self._priority(batch)
            if keep:
                self._held = [r for i, r in enumerate(batch) if i not in keep]
                return [r for i, r in enumerate(batch) if i in keep]
            for record in batch:
                self._advance(record)
            if time.monotonic() >= self._next_commit:
                self.inner.commit()
                self._next_commit = time.monotonic() + COMMIT_EVERY_SECONDS
            if time.monotonic() >= deadline:
                return []

    def done(self, record: Record) -> None:
        """An SVIP record's effects are committed."""
        self._advance(record)

    def commit(self) -> None:
        """Commit the stored offsets."""
        self.inner.commit()

    def dead_letter(self, record: Record, headers: Mapping[str, str]) -> None:
        """As the main group would (the dead-letter row dedupes per source position)."""
        self.inner.dead_letter(record, headers)

    def lag(self) -> Mapping[int, int]:
        """Nothing: the consumer's lag gauge (and its alerts) are the main group's."""
        return {}

    def close(self) -> None:
        """Close the underlying transport."""
        self.inner.close()
