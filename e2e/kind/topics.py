"""Create every topic the platform reads (and its dead-letter topic) on the kind e2e's Kafka, idempotently.

Run by a Job on the platform image: the topic names come from booking_core.topology, written once.
PARTITIONS bounds how far KEDA may scale a consumer (one partition per replica).
"""

from __future__ import annotations

import os
import sys
import time

from confluent_kafka.admin import AdminClient, NewTopic

from booking_core.topology import CONSUMERS


def main() -> int:
    """Create the topics; exit 0 once all exist."""
    admin = AdminClient({"bootstrap.servers": os.environ["BOOKING_KAFKA_BOOTSTRAP_SERVERS"]})
    partitions = int(os.environ.get("PARTITIONS", "10"))
    names = sorted({t for c in CONSUMERS.values() for t in (c.topic, c.dlq_topic)})
    deadline = time.monotonic() + 180
    while True:
        existing = set(admin.list_topics(timeout=10).topics)
        missing = [n for n in names if n not in existing]
        if not missing:
            print(f"{len(names)} topics present", flush=True)
            return 0
        for name, fut in admin.create_topics([NewTopic(n, partitions, 1) for n in missing]).items():
            try:
                fut.result()
                print(f"created {name} ({partitions} partitions)", flush=True)
            except Exception as exc:  # already exists, or the broker is still starting: checked again above
                print(f"{name}: {exc}", flush=True)
        if time.monotonic() > deadline:
            return 1
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
