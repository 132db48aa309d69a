"""Events benchmark (`make bench`, events part), against real Kafka and PostgreSQL in one run.

1. Throughput: N HL7 ORU^R01 messages (3 OBX each) on the LIS topic. Baselines in the same run: a raw
   confluent-kafka consumer reading the same N messages from the same broker, and the HL7 parser alone
   over the same N payloads (parse-only). Measured: `lis-testresult` (the real poll loop and handler,
   configured from settings as `booking consumer` does) parsing, deduplicating, storing them in
   PostgreSQL and routing each by tier through the outbox. Reported as messages/s and ratios.
2. Latency: M LIS messages, paced, through lis-testresult -> outbox -> relay -> Kafka -> pat-test-result
   -> notification outbox -> the batch-publisher's notice dispatcher (woken by NOTIFY) -> enqueued on the
   Redis broker; p50/p99 from produce to enqueue.
3. SVIP1 under a standard backlog: B standard result events are put on the standard patient-result topic,
   then M SVIP1 LIS messages are sent while the standard consumer works through the backlog; p50/p99 of
   the SVIP1 messages, and how much of the standard backlog was still waiting at the end.

BENCH_EVENTS_PARTS=throughput runs part 1 only.
Sizes: BENCH_EVENTS_N (default 10000), BENCH_EVENTS_M (200), BENCH_EVENTS_BACKLOG (50000).
Uses BOOKING_TEST_DATABASE_URL / BOOKING_TEST_KAFKA_BOOTSTRAP / BOOKING_TEST_REDIS_URL from `make bench`.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from confluent_kafka import Consumer as RawConsumer
from confluent_kafka.admin import AdminClient, NewTopic
from sqlalchemy import func, select

from booking_consumers.handlers.registry import definition
from booking_consumers.hl7_oru import ParseOptions, parse_payload
from booking_consumers.main import build_transport
from booking_consumers.runtime import Consumer
from booking_consumers.settings import ConsumerSettings
from booking_core.db.migrate import upgrade
from booking_core.db.models import Patient, TestResult
from booking_core.db.models_events import LisMessage
from booking_core.db.notify_outbox import Notice
from booking_core.db.session import make_engine, make_session_factory
from booking_core.events import make_event
from booking_core.events.results import LabResultsStored, result_topic
from booking_core.kafka import make_producer
from booking_core.topology import CONSUMERS
from booking_testing.postgres import create_database
from booking_workers.broker import BrokerSettings, build_broker, send_notice, setup_broker
from booking_workers.dispatch import run_dispatcher
from booking_workers.relay import run_relay

HL7 = (
    "MSH|^~\\&|LIS|CENTRAL-LAB|PATBOOK|HOSP|20250301090000+0700||ORU^R01^ORU_R01|{cid}|P|2.5.1\r"
    "PID|1||{mrn}^^^HOSP^MR||Doe^Jane||19800101|F\r"
    "OBR|1|ORD-{cid}|ACC-{cid}|LIPID^Lipid panel^L|||20250301070000+0700"
    "|||||||||||||||20250301085500+0700||CH|F\r"
    "OBX|1|NM|2093-3^Cholesterol total^LN||7.9|mmol/L|<5.2|H|||F\r"
    "OBX|2|NM|2571-8^Triglycerides^LN||1.2|mmol/L|<1.7|N|||F\r"
    "OBX|3|NM|2085-9^HDL cholesterol^LN||1.4|mmol/L|>1.0|N|||F\r"
)
PATIENTS = 200


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


class Bench:
    def __init__(self, pg_admin: str, bootstrap: str, redis_url: str | None) -> None:
        name = f"bench_events_{uuid.uuid4().hex[:8]}"
        create_database(pg_admin, name)
        self.url = pg_admin.rsplit("/", 1)[0] + f"/{name}"
        upgrade(self.url)
        self.sessions = make_session_factory(make_engine(self.url, pool_size=10))
        self.bootstrap = bootstrap
        self.prefix = f"bench{uuid.uuid4().hex[:6]}."
        self.settings = ConsumerSettings(
            database_url=self.url,
            kafka_bootstrap_servers=bootstrap,
            kafka_topic_prefix=self.prefix,
            max_batch=500,
            lis_default_time_zone="Asia/Ho_Chi_Minh",
        )
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.notified: dict[str, float] = {}
        self.phase1 = 0
        self.broker_kind = "redis" if redis_url else "stub"
        setup_broker(broker=build_broker(redis_url, BrokerSettings(namespace=self.prefix + "ns")))
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topics = [self.prefix + s.topic for s in CONSUMERS.values()] + [
            self.prefix + s.dlq_topic for s in CONSUMERS.values()
        ]
        for f in admin.create_topics(
            [NewTopic(t, num_partitions=2, replication_factor=1) for t in topics]
        ).values():
            f.result(30)
        with self.sessions() as s:
            for i in range(PATIENTS):
                tier = "svip1" if i % 10 == 0 else "standard"
                s.add(Patient(id=f"P{i}", tier=tier, date_of_birth=date(1980, 1, 1), sex="female"))
            s.commit()

    def notifier(self, n: Notice) -> None:
        send_notice(n)
        self.notified[n.ref_id] = time.perf_counter()

    def produce(self, topic: str, values: list[bytes], keys: list[str]) -> None:
        p = make_producer(self.settings)
        for v, k in zip(values, keys, strict=True):
            while True:
                try:
                    p.produce(self.prefix + topic, value=v, key=k.encode())
                    break
                except BufferError:
                    p.poll(0.1)
        assert p.flush(60) == 0

    def start_consumer(self, name: str) -> None:
        c = Consumer(
            definition(name, self.settings),
            build_transport(self.settings, name),
            self.sessions,
            stop=self.stop,
            max_batch=500,
            poll_timeout=0.1,
        )
        t = threading.Thread(target=c.run, daemon=True)
        t.start()
        self.threads.append(t)

    def start_relay(self) -> None:
        """The batch-publisher's two loops: events to Kafka, notices to the broker (timed as they go)."""
        producer = make_producer(self.settings)
        relay = threading.Thread(
            target=run_relay,
            args=(self.stop, self.sessions, producer),
            kwargs={"idle_seconds": 0.01, "topic_name": lambda t: self.prefix + t},
            daemon=True,
        )
        dispatcher = threading.Thread(
            target=run_dispatcher,
            args=(self.stop, self.sessions, self.notifier),
            kwargs={"engine": self.sessions.kw["bind"]},
            daemon=True,
        )
        for t in (relay, dispatcher):
            t.start()
            self.threads.append(t)

    def stop_all(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)
        self.threads.clear()
        self.stop = threading.Event()

    def stored(self) -> int:
        with self.sessions() as s:
            return s.scalar(select(func.count()).select_from(LisMessage)) or 0

    # -- 1 -----------------------------------------------------------------------------------------
    def throughput(self, n: int) -> dict[str, Any]:
        self.phase1 = n
        cids = [f"T{i}" for i in range(n)]
        values = [HL7.format(cid=c, mrn=f"P{i % PATIENTS}").encode() for i, c in enumerate(cids)]
        self.produce(CONSUMERS["lis-testresult"].topic, values, [f"P{i % PATIENTS}" for i in range(n)])

        raw = RawConsumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": self.prefix + "raw",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        raw.subscribe([self.prefix + CONSUMERS["lis-testresult"].topic])
        got = 0
        first = None
        while got < n:
            batch = raw.consume(500, 1.0)
            if batch and first is None:
                first = time.perf_counter()
            got += sum(1 for m in batch if m.error() is None)
        raw_seconds = time.perf_counter() - (first or time.perf_counter())
        raw.close()

        options = ParseOptions(default_zone=ZoneInfo("Asia/Ho_Chi_Minh"))
        parse_start, parse_cpu = time.perf_counter(), time.process_time()
        for v in values:
            parse_payload(v, options)
        parse_seconds = time.perf_counter() - parse_start
        parse_cpu_seconds = time.process_time() - parse_cpu

        start, start_cpu = time.perf_counter(), time.process_time()
        self.start_consumer("lis-testresult")
        while self.stored() < n:
            time.sleep(0.05)
        stored_seconds = time.perf_counter() - start
        # This process's CPU: the consumer thread and librdkafka's (PostgreSQL's own is not counted).
        stored_cpu_seconds = time.process_time() - start_cpu
        self.stop_all()
        raw_rate = n / raw_seconds if raw_seconds > 0 else float("inf")
        parse_rate = n / parse_seconds
        stored_rate = n / stored_seconds
        return {
            "messages": n,
            "obx_per_message": 3,
            "raw_consume_msgs_per_s": round(raw_rate, 1),
            "parse_only_msgs_per_s": round(parse_rate, 1),
            "parse_only_cpu_msgs_per_s": round(n / parse_cpu_seconds, 1),
            "lis_testresult_stored_msgs_per_s": round(stored_rate, 1),
            "lis_testresult_stored_cpu_msgs_per_s": round(n / stored_cpu_seconds, 1),
            "load_average_1m": round(os.getloadavg()[0], 1),
            "ratio_stored_vs_raw": round(stored_rate / raw_rate, 4),
            "ratio_stored_vs_parse_only": round(stored_rate / parse_rate, 4),
            "note": "stored = parsed, deduplicated, written to PostgreSQL, routed by tier via the outbox",
        }

    # -- 2 and 3 -------------------------------------------------------------------------------------
    def latency(self, m: int, tag: str, mrns: list[str], rate: float = 20.0) -> list[float]:
        sent: dict[str, float] = {}
        p = make_producer(self.settings)
        for i in range(m):
            cid = f"{tag}{i}"
            mrn = mrns[i % len(mrns)]
            sent[cid] = time.perf_counter()
            p.produce(
                self.prefix + CONSUMERS["lis-testresult"].topic,
                value=HL7.format(cid=cid, mrn=mrn).encode(),
                key=mrn.encode(),
            )
            p.poll(0)
            time.sleep(1 / rate)
        p.flush(30)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with self.sessions() as s:
                ids = dict(
                    s.execute(
                        select(LisMessage.id, LisMessage.control_id).where(
                            LisMessage.control_id.like(f"{tag}%")
                        )
                    ).all()
                )
            if len(ids) == m and all(i in self.notified for i in ids):
                break
            time.sleep(0.2)
        return [(self.notified[i] - sent[c]) * 1000 for i, c in ids.items() if i in self.notified]

    def pipeline_latency(self, m: int) -> dict[str, Any]:
        for name in ("lis-testresult", "pat-test-result", "pat-test-result-svip1", "pat-test-result-svip2"):
            self.start_consumer(name)
        self.start_relay()
        # The throughput phase left its results routed but unreleased: let that drain first, so this
        # phase measures an idle pipeline (phase 3 measures one under a backlog).
        deadline = time.monotonic() + 600
        while len(self.notified) < self.phase1 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        lat = self.latency(m, "L", [f"P{i}" for i in range(PATIENTS) if i % 10])
        return {
            "messages": m,
            "rate_per_s": 20,
            "pipeline": "LIS -> lis-testresult -> outbox -> relay -> pat-test-result -> notice dispatcher"
            " -> Redis enqueue",
            "p50_ms": round(pct(lat, 50), 1),
            "p99_ms": round(pct(lat, 99), 1),
            "completed": len(lat),
        }

    def svip_under_backlog(self, m: int, backlog: int) -> dict[str, Any]:
        with self.sessions() as s:
            rows = s.execute(
                select(TestResult.id, TestResult.patient_id).where(TestResult.patient_id != "P0")
            ).all()
            standard = [(rid, pid) for rid, pid in rows if int(pid[1:]) % 10]
        now = datetime.now(UTC)
        values, keys = [], []
        for i in range(backlog):
            rid, pid = standard[i % len(standard)]
            ev = LabResultsStored(
                lab_message_id=f"backlog-{i}", patient_id=pid, tier="standard", result_ids=(rid,)
            )
            values.append(make_event(ev, occurred_at=now).to_json())
            keys.append(f"backlog-{i}")
        self.produce(result_topic("standard"), values, keys)
        lat = self.latency(m, "S", [f"P{i}" for i in range(0, PATIENTS, 10)])
        remaining = sum(1 for i in range(backlog) if f"backlog-{i}" not in self.notified)
        return {
            "standard_backlog": backlog,
            "svip1_messages": m,
            "svip1_p50_ms": round(pct(lat, 50), 1),
            "svip1_p99_ms": round(pct(lat, 99), 1),
            "completed": len(lat),
            "standard_backlog_still_waiting_at_end": remaining,
        }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results/events.json")
    args = ap.parse_args()
    pg = os.environ.get("BOOKING_TEST_DATABASE_URL")
    kafka = os.environ.get("BOOKING_TEST_KAFKA_BOOTSTRAP")
    if not pg or not kafka:
        raise SystemExit(
            "needs BOOKING_TEST_DATABASE_URL and BOOKING_TEST_KAFKA_BOOTSTRAP (run through `make bench`)"
        )
    n = int(os.environ.get("BENCH_EVENTS_N", "10000"))
    m = int(os.environ.get("BENCH_EVENTS_M", "200"))
    backlog = int(os.environ.get("BENCH_EVENTS_BACKLOG", "50000"))
    bench = Bench(pg, kafka, os.environ.get("BOOKING_TEST_REDIS_URL"))
    results: dict[str, Any] = {
        "benchmark": "events",
        "broker": bench.broker_kind,
        "cpus": os.cpu_count(),
        "throughput": bench.throughput(n),
    }
    print(json.dumps(results["throughput"]), flush=True)
    if os.environ.get("BENCH_EVENTS_PARTS", "all") == "throughput":
        # Only the LIS throughput part (BENCH=events BENCH_EVENTS_PARTS=throughput bench/run.sh).
        bench.stop_all()
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        return 0
    results["lis_to_notification_latency"] = bench.pipeline_latency(m)
    print(json.dumps(results["lis_to_notification_latency"]), flush=True)
    results["svip1_latency_under_standard_backlog"] = bench.svip_under_backlog(m, backlog)
    bench.stop_all()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
