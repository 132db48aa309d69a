"""lis-testresult's priority lane: an SVIP patient's result overtakes a standard backlog, once."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from booking_consumers.handlers.lis_patients import DEFAULT_RULES, parse_rules
from booking_consumers.main import run_consumer
from booking_consumers.priority_lane import GROUP_SUFFIX, pid_values
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
