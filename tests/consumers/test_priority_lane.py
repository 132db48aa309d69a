"""lis-testresult's priority lane: an SVIP patient's result overtakes a standard backlog, once."""

from __future__ import annotations

import multiprocessing
import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from booking_consumers.handlers.lis_patients import DEFAULT_RULES, parse_rules
from booking_consumers.main import run_consumer
from booking_consumers.priority_lane import GROUP_SUFFIX, SCAN_BATCH, PriorityLaneTransport, pid_values
from booking_consumers.runtime import Record
from booking_core.db.models import OutboxMessage, ProcessedMessage
from booking_core.db.models_events import LisMessage
from booking_core.events.results import result_topic
from booking_core.kafka import make_producer
from booking_core.topology import CONSUMERS

BACKLOG = 3000


def test_the_quick_look_reads_pid3_as_the_parser_does(h) -> None:
    assert pid_values(h.hl7("normal", mrn="VIP-1"), DEFAULT_RULES) == ["VIP-1"]
    # Our identifier rules apply: an MRN of another authority is nobody, when the rules say so.
    assert pid_values(h.hl7("normal", mrn="VIP-1"), parse_rules(["MR@OTHER"])) == []
    assert pid_values(b"not hl7 at all", DEFAULT_RULES) == []
    assert pid_values(None, DEFAULT_RULES) == []


def _committed(pipeline, group: str, topic: str) -> int:
    """Offsets `group` committed on `topic`, summed over its partitions."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": pipeline.bootstrap})
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(2)])
    result = admin.list_consumer_group_offsets([req])[group].result(10)
    return sum(max(0, tp.offset) for tp in result.topic_partitions)


def _nice(thread_id: int | None) -> int:
    """The nice value of one of this process's threads (Linux keeps one per thread)."""
    stat = Path(f"/proc/self/task/{thread_id}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[16])  # field 19, counted after the command's ")"


def _count(pipeline, stmt) -> int:
    with pipeline.sessions() as s:
        return s.scalar(stmt) or 0


def test_an_svip_result_overtakes_a_standard_backlog_and_is_stored_routed_once(pipeline, h) -> None:
    with pipeline.sessions() as s:
        h.seed_patient(s, "PAT-1")
        h.seed_patient(s, "VIP-1", tier="svip1")
        h.seed_patient(s, "VIP-0", tier="svip1")
        s.commit()
    topic = pipeline.prefix + CONSUMERS["lis-testresult"].topic
    producer = make_producer(pipeline.settings)
    stop = threading.Event()
    t = threading.Thread(target=run_consumer, args=("lis-testresult", stop, pipeline.settings), daemon=True)
    t.start()
    try:
        # The lane runs in a process of its own: up once it has read a first SVIP result.
        first = h.hl7("normal", control_id="W", mrn="VIP-0", order="ORD-W").replace(b"ACC-1001", b"ACC-W")
        producer.produce(topic, value=first, key=b"one-partition")
        assert producer.flush(30) == 0
        lane_group = CONSUMERS["lis-testresult"].group_for(pipeline.prefix) + GROUP_SUFFIX
        h.wait_for(lambda: _committed(pipeline, lane_group, topic) >= 1, what="the priority lane")
        # The main loop yields the CPU to the lane: it runs niced, the lane's process does not.
        (lane,) = multiprocessing.active_children()
        assert _nice(t.native_id) == pipeline.settings.lis_bulk_nice > 0
        assert os.getpriority(os.PRIO_PROCESS, lane.pid) == 0
        # One partition's worth of order: the backlog first, then the SVIP result behind it.
        # Each its own report (OBR-3 filler number): the same one again would be a correction.
        values = [
            h.hl7("normal", control_id=f"B{i}", order=f"ORD-B{i}").replace(b"ACC-1001", f"ACC-B{i}".encode())
            for i in range(BACKLOG)
        ]
        values.append(
            h.hl7("normal", control_id="VIP", mrn="VIP-1", order="ORD-VIP").replace(b"ACC-1001", b"ACC-V")
        )
        for v in values:
            producer.produce(topic, value=v, key=b"one-partition")
            producer.poll(0)
        assert producer.flush(30) == 0
        vip = select(func.count()).select_from(LisMessage).where(LisMessage.control_id == "VIP")
        standard = select(func.count()).select_from(LisMessage).where(LisMessage.control_id.like("B%"))
        h.wait_for(lambda: _count(pipeline, vip) == 1, what="the SVIP result stored")
        ahead = _count(pipeline, standard)
        # Without the lane the SVIP result is stored after every standard one produced before it.
        assert ahead < BACKLOG, "the SVIP result waited for the whole backlog"
        h.wait_for(lambda: _count(pipeline, standard) == BACKLOG, timeout=300, what="the backlog stored")
        # Both groups read the SVIP result; it is stored, claimed and routed once.
        h.wait_for(
            lambda: _count(pipeline, select(func.count()).select_from(ProcessedMessage)) == BACKLOG + 2,
            what="every message claimed",
        )
        with pipeline.sessions() as s:
            topics = s.scalars(select(OutboxMessage.topic)).all()
        assert topics.count(result_topic("svip1")) == 2  # the first one and VIP
        assert topics.count(result_topic("standard")) == BACKLOG
        assert _count(pipeline, vip) == 1
    finally:
        stop.set()
        t.join(60)
    assert not t.is_alive()


class _Records:
    """A transport over a list of Records, two partitions (what the lane needs of one)."""

    def __init__(self, records: list[Record]) -> None:
        self.records, self.at, self.done_at = records, 0, {}

    def poll(self, max_records: int, timeout: float) -> list[Record]:
        out = self.records[self.at : self.at + max_records]
        self.at += len(out)
        return out

    def done(self, record: Record) -> None:
        self.done_at[(record.topic, record.partition)] = record.offset + 1

    def commit(self) -> None:
        pass


class _Message:
    """What the lane reads of a confluent-kafka message."""

    def __init__(self, r: Record) -> None:
        self.r = r

    def value(self) -> bytes | None:
        return self.r.value

    def topic(self) -> str:
        return self.r.topic

    def partition(self) -> int:
        return self.r.partition


class _Raw(_Records):
    """The same with Kafka's raw path: Records are built only for what the lane asks for."""

    built = 0

    def poll_raw(self, max_records: int, timeout: float) -> list[_Message]:
        return [_Message(r) for r in self.poll(max_records, timeout)]

    def record(self, msg: _Message) -> Record:
        self.built += 1
        return msg.r


@pytest.mark.parametrize("transport", [_Records, _Raw])
def test_the_lane_returns_svip_records_and_moves_past_the_rest(sqlite_sessions, h, transport) -> None:
    with sqlite_sessions() as s:
        h.seed_patient(s, "PAT-1")
        h.seed_patient(s, "VIP-1", tier="svip1")
        s.commit()

    def rec(i: int, mrn: str) -> Record:
        return Record(topic="lis", partition=i % 2, offset=i // 2, key=None, value=h.hl7("normal", mrn=mrn))

    n = 2 * SCAN_BATCH
    records = [rec(i, "PAT-1") for i in range(n)] + [rec(n, "VIP-1"), rec(n + 1, "PAT-1")]
    inner = transport(records)
    lane = PriorityLaneTransport(inner, sqlite_sessions, DEFAULT_RULES)
    got = lane.poll(10, timeout=5)
    # The SVIP result, past two whole batches of standard ones: each partition stands after its last.
    assert [(r.partition, r.offset) for r in got] == [(0, n // 2)]
    assert inner.done_at == {("lis", 0): n // 2, ("lis", 1): n // 2}
    lane.done(got[0])
    assert lane.poll(10, timeout=0.01) == []
    # The standard record that came with it was held until the SVIP one was done, then passed over.
    assert inner.done_at == {("lis", 0): n // 2 + 1, ("lis", 1): n // 2 + 1}
    if isinstance(inner, _Raw):  # a Record per partition per batch passed over, and the kept batch's
        assert inner.built <= 2 * 2 + 2


def test_a_new_lane_starts_where_the_main_group_stands_not_at_the_topics_start(pipeline) -> None:
    from confluent_kafka import Consumer as RawConsumer
    from confluent_kafka import TopicPartition

    from booking_consumers.kafka import consumer_config, start_at
    from booking_core.kafka import client_config

    topic = pipeline.prefix + CONSUMERS["lis-testresult"].topic
    main = CONSUMERS["lis-testresult"].group_for(pipeline.prefix)
    lane = main + GROUP_SUFFIX
    base = client_config(pipeline.settings)
    # The main group has applied 7 and 3 records of the two partitions; the lane's group is new.
    applied = RawConsumer(consumer_config(base, main))
    applied.commit(offsets=[TopicPartition(topic, 0, 7), TopicPartition(topic, 1, 3)], asynchronous=False)
    applied.close()
    assert start_at(consumer_config(base, lane), topic, lane, main) == 2
    assert _committed(pipeline, lane, topic) == 10
    # A lane ahead of the main group keeps its own position.
    assert start_at(consumer_config(base, lane), topic, lane, main) == 0
    assert _committed(pipeline, lane, topic) == 10
