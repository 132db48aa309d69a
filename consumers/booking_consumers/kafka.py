"""The Kafka transport of the poll loop: the only confluent_kafka consumer in the repository.

Offsets are stored by the loop only after the database transaction that applied the records committed
(`enable.auto.offset.store=false`) and committed synchronously per poll batch and on revocation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from booking_consumers.errors import TransientError
from booking_consumers.runtime import Record

log = logging.getLogger(__name__)


def consumer_config(base: Mapping[str, Any], group: str) -> dict[str, Any]:
    """Consumer settings: offsets stored by the loop only after commit, and committed per batch."""
    conf = dict(base)
    conf.update(
        {
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            "isolation.level": "read_committed",
            # A long database outage retries one batch for a while; do not get evicted for it.
            "max.poll.interval.ms": 900_000,
            "session.timeout.ms": 30_000,
        }
    )
    return conf


class KafkaTransport:
    """Transport over confluent-kafka: store offsets after commit, commit them per batch."""

    def __init__(
        self,
        config: Mapping[str, Any],
        topics: Sequence[str],
        dlq_producer: Any,
        dlq_topic: Callable[[str], str] = lambda topic: f"{topic}.dlq",
    ) -> None:
        from confluent_kafka import Consumer as KafkaConsumer

        self._consumer = KafkaConsumer(dict(config))
        self._producer = dlq_producer
        self._dlq_topic = dlq_topic
        self._stored: dict[tuple[str, int], int] = {}
        self._consumer.subscribe(list(topics), on_revoke=self._on_revoke)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        # Commit what is done before the partitions move to another replica, so it does not redo them.
        self.commit()

    def _fetch(self, max_records: int, timeout: float) -> list[Any]:
        """What is fetched already (up to `max_records`), else the first message to arrive within
        `timeout` and whatever came with it. `consume(n, timeout)` alone waits for n messages or the
        whole timeout: a lone SVIP result waited up to a second at every consumer it passed (issue 15).
        Under a backlog the fetched buffer is full and batches stay full."""
        msgs: list[Any] = self._consumer.consume(num_messages=max_records, timeout=0)
        if msgs:
            return msgs
        first = self._consumer.poll(timeout)
        if first is None:
            return []
        if max_records > 1:
            return [first, *self._consumer.consume(num_messages=max_records - 1, timeout=0)]
        return [first]

    def poll(self, max_records: int, timeout: float) -> Sequence[Record]:
        """A batch of records; broker errors are logged and skipped over (librdkafka retries them)."""
        return [self.record(msg) for msg in self.poll_raw(max_records, timeout)]

    def poll_raw(self, max_records: int, timeout: float) -> list[Any]:
        """`poll`'s messages as confluent-kafka gives them, errors left out: the priority lane reads
        only the payload of most records it passes over, and builds a Record for those it keeps."""
        from confluent_kafka import KafkaError, KafkaException

        out: list[Any] = []
        for msg in self._fetch(max_records, timeout):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal():
                    raise KafkaException(err)
                log.warning("kafka consume error", extra={"component": "consumer", "reason": err.name()})
                continue
            out.append(msg)
        return out

    @staticmethod
    def record(msg: Any) -> Record:
        """The Record of one confluent-kafka message."""
        raw_headers: Any = msg.headers() or ()
        pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
        headers = {}
        for k, v in pairs:
            if v is not None:
                headers[k] = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
        ts_type, ts = msg.timestamp()
        return Record(
            topic=msg.topic() or "",
            partition=msg.partition() or 0,
            offset=msg.offset() or 0,
            key=msg.key(),
            value=msg.value(),
            headers=headers,
            timestamp_ms=ts if ts_type else None,
        )

    def done(self, record: Record) -> None:
        """Remember the next offset to commit for the record's partition."""
        self._stored[(record.topic, record.partition)] = record.offset + 1

    def commit(self) -> None:
        """store_offsets for everything done, then a synchronous commit."""
        from confluent_kafka import KafkaError, KafkaException, TopicPartition

        if not self._stored:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._stored.items()]
        self._stored.clear()
        try:
            self._consumer.store_offsets(offsets=offsets)
            self._consumer.commit(asynchronous=False)
        except KafkaException as exc:
            code = exc.args[0].code() if exc.args else None
            # Nothing to commit, or partitions already revoked: their records come back to someone.
            if code in (KafkaError._NO_OFFSET, KafkaError._STATE, KafkaError.UNKNOWN_MEMBER_ID):
                log.info("commit skipped", extra={"component": "consumer", "reason": str(code)})
                return
            raise

    def dead_letter(self, record: Record, headers: Mapping[str, str]) -> None:
        """Produce the original bytes to `<topic>.dlq` with the reason headers, and wait for the ack.

        No key: an inbound key may be a patient identifier (the customer id, an LIS's MRN), and we never
        produce one; the x-dlq-* headers say where the record came from.
        """
        all_headers = [(k, v.encode()) for k, v in record.headers.items()]
        all_headers += [(k, v.encode()) for k, v in headers.items()]
        errors: list[Any] = []
        self._producer.produce(
            self._dlq_topic(record.topic),
            value=record.value,
            key=None,
            headers=all_headers,
            on_delivery=lambda err, _msg: errors.append(err) if err is not None else None,
        )
        remaining = self._producer.flush(30)
        if remaining or errors:
            raise TransientError("dead-letter publish failed")

    def lag(self) -> Mapping[int, int]:
        """High watermark minus position for each assigned partition that has been fetched from.

        The high watermark is the one the last fetch response carried (`cached=True`), not a ListOffsets
        request: that was a blocking broker round trip per partition (timeout 2 s) on the poll loop every
        15 s, on the SVIP consumers' loops too, and slowest when the broker is busiest (issue 15)."""
        out: dict[int, int] = {}
        assignment = self._consumer.assignment()
        if not assignment:
            return out
        for tp in self._consumer.position(assignment):
            low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if high < 0:
                continue  # nothing fetched from it yet
            position = tp.offset if tp.offset >= 0 else low
            out[tp.partition] = max(0, high - position)
        return out

    def close(self) -> None:
        """Leave the consumer group (a clean rebalance) and flush the DLQ producer."""
        try:
            self._producer.flush(10)
        finally:
            self._consumer.close()


def start_at(config: Mapping[str, Any], topic: str, group: str, behind: str) -> int:
    """Move `group`'s committed offsets on `topic` up to `behind`'s where they are missing or lower;
    returns how many partitions moved. Call before `group` subscribes.

    The priority lane (a second group on the LIS topic) need not read what the main group has applied
    already: a lane whose group is new, or was off for a while, started at the topic's earliest record
    (`auto.offset.reset`) and scanned all of it before the first SVIP result behind it (issue 15: in a
    full `make bench` the 10,000 records of the earlier parts, ahead of the 50,000 of the backlog). Best
    effort: if the group has members already (another replica), they hold its position and the commit
    is refused; the lane then starts where the group stands, as before.
    """
    from confluent_kafka import Consumer as KafkaConsumer
    from confluent_kafka import KafkaException, TopicPartition

    theirs = KafkaConsumer({**config, "group.id": behind})
    ours = KafkaConsumer({**config, "group.id": group})
    try:
        meta = theirs.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            return 0
        parts = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
        at = {tp.partition: tp.offset for tp in theirs.committed(parts, timeout=10)}
        own = {tp.partition: tp.offset for tp in ours.committed(parts, timeout=10)}
        moves = [TopicPartition(topic, p, o) for p, o in at.items() if o >= 0 and own.get(p, -1) < o]
        if moves:
            ours.commit(offsets=moves, asynchronous=False)
        return len(moves)
    except KafkaException as exc:
        reason = str(exc)[:200]
        log.info("priority lane: kept its own start", extra={"component": "consumer", "reason": reason})
        return 0
    finally:
        theirs.close()
        ours.close()
