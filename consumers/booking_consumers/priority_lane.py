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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
    """The identifier values the record's PID segments name as our patients (rule order), cheaply."""
    return PidReader(rules).values(payload)


# Segments remembered per reader; a lab's batch names a few thousand patients at most.
_SEGMENTS_CACHED = 65_536


class PidReader:
    """Reads PID-3 off raw HL7 bytes with our identifier rules, each distinct PID segment once.

    Works on the bytes: only a PID segment is ever decoded (Latin-1 keeps every ASCII byte as it is
    whatever MSH-18 says; an identifier it cannot read simply matches nobody, and the record is the
    main group's like any standard one). The cache is the reader's own, keyed by the segment's bytes:
    an lru_cache keyed with the rules hashed four frozen dataclasses per record, and decoding the
    whole payload and splitting around it were most of the lane's 15 us per skipped record (issue 15).
    """

    def __init__(self, rules: Sequence[IdentifierRule]) -> None:
        self.rules = tuple(rules)
        self._seen: dict[tuple[bytes, bytes], tuple[str, ...]] = {}

    def values(self, payload: bytes | None) -> list[str]:
        """The identifier values of the payload's PID segments, in order, each once."""
        if not payload:
            return []
        start = payload.find(b"MSH")
        if start < 0 or len(payload) < start + 8:
            return []
        chars = payload[start + 3 : start + 8]
        marker = b"PID" + chars[:1]
        out: list[str] = []
        at = payload.find(marker)
        while at >= 0:
            if at == 0 or payload[at - 1] in b"\r\n":  # a segment's start, not "PID|" inside a field
                end = payload.find(b"\r", at)
                if end < 0:
                    end = len(payload)
                lf = payload.find(b"\n", at, end)
                if lf >= 0:
                    end = lf
                segment = payload[at:end]
                found = self._seen.get((chars, segment))
                if found is None:
                    found = self._read(segment, chars)
                for v in found:
                    if v not in out:
                        out.append(v)
                at = payload.find(marker, end)
            else:
                at = payload.find(marker, at + 4)
        return out

    def _read(self, segment: bytes, chars: bytes) -> tuple[str, ...]:
        c = chars.decode("latin-1")
        enc = Encoding(field=c[0], component=c[1], repetition=c[2], escape=c[3], subcomponent=c[4])
        ids = patient_ids(Segment("PID", segment.decode("latin-1").split(enc.field)), enc)
        found = tuple(candidate_values(ids, self.rules))
        if len(self._seen) >= _SEGMENTS_CACHED:
            self._seen.clear()
        self._seen[(chars, segment)] = found  # with the encoding characters it was read with
        return found


def _itself(record: Record) -> Record:
    return record


def _record_partition(record: Record) -> tuple[str, int]:
    return record.topic, record.partition


def _message_partition(msg: Any) -> tuple[str, int]:
    return msg.topic(), msg.partition()


@dataclass(frozen=True)
class _Batch:
    """One poll's messages (Records, or a transport's raw messages) and their payloads."""

    payloads: list[bytes | None]
    items: list[Any]
    build: Callable[[Any], Record]
    partition: Callable[[Any], tuple[str, int]]

    def last_of_each_partition(self) -> list[Any]:
        """Each partition's last message (a transport delivers a partition's in offset order)."""
        last: dict[tuple[str, int], Any] = {}
        for m in self.items:
            last[self.partition(m)] = m
        return list(last.values())


class PriorityLaneTransport:
    """A transport that yields only the records naming an SVIP patient; the rest are passed over."""

    def __init__(
        self,
        inner: Transport,
        sessions: sessionmaker[Session],
        rules: Sequence[IdentifierRule],
    ) -> None:
        self.inner, self.sessions, self.rules = inner, sessions, rules
        self.reader = PidReader(rules)
        self._held: list[Record] = []  # passed over in the last poll: done once that poll's are
        self._stored: dict[tuple[str, int], int] = {}
        self._next_commit = 0.0

    def _priority(self, payloads: Sequence[bytes | None]) -> set[int]:
        """Indexes of the payloads naming a patient in an SVIP tier (one query for the batch)."""
        values = self.reader.values
        named = [values(v) for v in payloads]
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
            return set(range(len(payloads)))
        return {i for i, ids in enumerate(named) if any(v in vip for v in ids)}

    def _advance(self, record: Record) -> None:
        # Offsets only move forward: a record passed over before an earlier SVIP one was applied must
        # not move its partition back.
        tp = (record.topic, record.partition)
        if record.offset + 1 > self._stored.get(tp, -1):
            self._stored[tp] = record.offset + 1
            self.inner.done(record)

    def _advance_past(self, batch: Sequence[Record]) -> None:
        # Records passed over: only each partition's last one moves it (a transport delivers a
        # partition's records in offset order), not every record (issue 15: per-record cost of a scan).
        last: dict[tuple[str, int], Record] = {}
        for record in batch:
            last[(record.topic, record.partition)] = record
        for record in last.values():
            self._advance(record)

    def _scan(self, max_records: int, timeout: float) -> _Batch:
        """The next batch. On Kafka a Record is built only for a message the lane keeps, or for each
        partition's last one of a batch it passes over: building one per message (headers, timestamp,
        seven fields) was a third of the lane's CPU per record passed over (issue 15)."""
        poll_raw = getattr(self.inner, "poll_raw", None)
        if poll_raw is None:
            records = list(self.inner.poll(max_records, timeout))
            return _Batch([r.value for r in records], records, _itself, _record_partition)
        msgs: list[Any] = poll_raw(max_records, timeout)
        build: Callable[[Any], Record] = self.inner.record  # type: ignore[attr-defined]
        return _Batch([m.value() for m in msgs], msgs, build, _message_partition)

    def poll(self, max_records: int, timeout: float) -> Sequence[Record]:
        """The next SVIP records, scanning past others for at most `timeout` seconds."""
        self._advance_past(self._held)  # the previous poll's SVIP records are applied by now
        self._held = []
        deadline = time.monotonic() + timeout
        while True:
            batch = self._scan(max(max_records, SCAN_BATCH), max(0.0, deadline - time.monotonic()))
            if not batch.payloads:
                return []
            keep = self._priority(batch.payloads)
            if keep:
                records = [batch.build(m) for m in batch.items]
                self._held = [r for i, r in enumerate(records) if i not in keep]
                return [r for i, r in enumerate(records) if i in keep]
            self._advance_past([batch.build(m) for m in batch.last_of_each_partition()])
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
