"""Helpers for the relay tests: topics, a reader, outbox rows."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic


class KafkaHelpers:
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def prefix(self) -> str:
        return f"t{uuid.uuid4().hex[:8]}-"

    def create(self, *topics: str, partitions: int = 3) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics(
            [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics]
        )
        for f in futures.values():
            f.result(30)

    def read(self, topic: str, count: int, timeout: float = 30.0) -> list:
        c = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"reader-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
            }
        )
        c.subscribe([topic])
        out = []
        deadline = time.monotonic() + timeout
        try:
            while len(out) < count and time.monotonic() < deadline:
                msg = c.poll(0.5)
                if msg is not None and msg.error() is None:
                    out.append(msg)
            # Anything beyond `count` would be a duplicate: give it a moment to show up.
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                msg = c.poll(0.2)
                if msg is not None and msg.error() is None:
                    out.append(msg)
        finally:
            c.close()
        return out


@pytest.fixture
def kafka(kafka_bootstrap: str) -> KafkaHelpers:
    return KafkaHelpers(kafka_bootstrap)
