"""The Kafka transport's lag gauge: high watermark minus position, without a broker round trip."""

from __future__ import annotations

from booking_consumers.kafka import KafkaTransport, consumer_config
from booking_core.kafka import client_config, make_producer
from booking_core.topology import CONSUMERS


def test_lag_is_what_is_left_to_read_of_each_fetched_partition(pipeline, h) -> None:
    topic = pipeline.prefix + CONSUMERS["lis-testresult"].topic
    producer = make_producer(pipeline.settings)
    for i in range(5):
        producer.produce(topic, value=f"m{i}".encode(), key=b"one-partition")
    assert producer.flush(30) == 0
    base = client_config(pipeline.settings)
    transport = KafkaTransport(consumer_config(base, pipeline.prefix + "lag-test"), [topic], producer)
    try:
        got: list = []
        h.wait_for(lambda: got.extend(transport.poll(2 - len(got), 0.5)) or len(got) == 2, what="two records")
        (partition,) = {r.partition for r in got}
        lag = transport.lag()
        assert lag[partition] == 3
        assert sum(lag.values()) == 3
    finally:
        transport.close()
