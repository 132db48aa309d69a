"""Events benchmark (`make bench`, events part), against real Kafka and PostgreSQL in one run.

1. Throughput: N HL7 ORU^R01 messages (3 OBX each) on the LIS topic. Baselines in the same run: a raw
   confluent-kafka consumer reading the same N messages from the same broker, and the HL7 parser alone
   over the same N payloads (parse-only). Measured: `lis-testresult` (the real poll loop and handler,
   configured from settings as `booking consumer` does) parsing, deduplicating, storing them in
   PostgreSQL and routing each by tier through the outbox. Reported as messages/s and ratios.
2. Latency: M LIS messages, paced, through lis-testresult -> outbox -> relay -> Kafka -> pat-test-result
   -> notification outbox -> the batch-publisher's notice dispatcher (woken by NOTIFY) -> enqueued on the
   Redis broker; p50/p99 from produce to enqueue.
3. SVIP1 under a standard backlog, as deployed: `booking consumer` lis-testresult, pat-test-result and
   pat-test-result-svip1, the relay and the notifications worker as their own processes, an SMTP sink
   here. B standard results arrive on the LIS topic (the one topic every result comes in on), then M
   SVIP1 results at 20/s; p50/p99 from each SVIP1 result's produce to its email at the sink, and how
   much of the standard backlog was still unstored when the last SVIP1 email arrived. (Until issue 15's
   second pass the backlog was put on the standard *patient-result* topic, behind the tier routing, and
   the clock stopped at the enqueue: it measured neither the LIS topic's queue nor the delivery.)
   BENCH_EVENTS_LANE=off runs it without lis-testresult's priority lane (the "before" figure).

BENCH_EVENTS_PARTS=throughput runs part 1 only, BENCH_EVENTS_PARTS=svip part 3 only.
Sizes: BENCH_EVENTS_N (default 10000), BENCH_EVENTS_M (200), BENCH_EVENTS_BACKLOG (50000).
Uses BOOKING_TEST_DATABASE_URL / BOOKING_TEST_KAFKA_BOOTSTRAP / BOOKING_TEST_REDIS_URL from `make bench`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiosmtpd.controller import Controller
from confluent_kafka import Consumer as RawConsumer
from confluent_kafka.admin import AdminClient, NewTopic
from sqlalchemy import func, select, text

from booking_consumers.handlers.registry import definition
from booking_consumers.hl7_oru import ParseOptions, parse_payload
from booking_consumers.main import build_transport
from booking_consumers.runtime import Consumer
from booking_consumers.settings import ConsumerSettings
from booking_core.db.migrate import upgrade
from booking_core.db.models import NotificationPreference, Patient
from booking_core.db.models_events import LisMessage
from booking_core.db.notify_outbox import Notice
from booking_core.db.session import make_engine, make_session_factory
from booking_core.kafka import make_producer
from booking_core.topology import CONSUMERS
from booking_testing.postgres import create_database
from booking_testing.procs import free_port
from booking_testing.wait import wait_for
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

    def committed(self, group: str) -> int:
        """Offsets committed by `group` on the LIS topic, summed over partitions."""
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        topic = self.prefix + CONSUMERS["lis-testresult"].topic
        req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(2)])
        result = admin.list_consumer_group_offsets([req])[group].result(10)
        return sum(max(0, tp.offset) for tp in result.topic_partitions)

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

    def svip_under_backlog(self, m: int, backlog: int, redis_url: str, lane: bool) -> dict[str, Any]:
        """Part 3, as deployed: the pipeline's real processes, results delivered by email to a sink.

        `backlog` standard results arrive on the LIS topic (a lab's batch, the one topic every result
        comes in on), then `m` SVIP1 results follow at 20/s, each for its own patient. Measured per
        SVIP1 result: from its produce to its email accepted by the SMTP sink, while the standard
        results behind which it arrived are still being stored, routed and notified.
        """
        self.stop_all()  # parts 1 and 2 ran in threads; from here on the deployed processes run
        with self.sessions() as s:
            for i in range(PATIENTS):
                s.get_one(Patient, f"P{i}").email = f"p{i}@example.org"
            for i in range(m + 1):
                s.add(Patient(id=f"V{i}", tier="svip1", email=f"v{i}@example.org", time_zone="UTC"))
            s.flush()
            for i in range(m + 1):  # email only: the figure is the email's arrival
                s.add(NotificationPreference(patient_id=f"V{i}", sms=False, push=False, in_app=False))
            s.commit()
        sink = Sink()
        smtp_port = free_port()
        controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
        controller.start()
        env = {
            **os.environ,
            "BOOKING_DATABASE_URL": self.url,
            "BOOKING_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "BOOKING_KAFKA_TOPIC_PREFIX": self.prefix,
            "BOOKING_REDIS_URL": redis_url,
            "BOOKING_BROKER_NAMESPACE": self.prefix + "deployed",
            "BOOKING_SMTP_HOST": "127.0.0.1",
            "BOOKING_SMTP_PORT": str(smtp_port),
            "BOOKING_LIS_DEFAULT_TIME_ZONE": "Asia/Ho_Chi_Minh",
            "BOOKING_LIS_PRIORITY_LANE": "true" if lane else "false",
            "BOOKING_MAX_BATCH": "500",
            "BOOKING_METRICS_PORT": "0",
            "BOOKING_LOG_LEVEL": "WARNING",
        }
        booking = str(Path(sys.executable).parent / "booking")
        parts = [
            ("consumer", "lis-testresult"),
            ("consumer", "pat-test-result"),
            ("consumer", "pat-test-result-svip1"),
            ("worker", "batch-publisher"),
            ("worker", "notifications"),
        ]
        procs = [subprocess.Popen([booking, kind, name], env=env) for kind, name in parts]
        topic = CONSUMERS["lis-testresult"].topic
        try:
            # Up and connected end to end: one SVIP1 result delivered before the measurement starts, sent
            # by the producer that sends the measured ones. A new idempotent producer gets its id from
            # the broker before its first message leaves (hundreds of ms while the broker takes a
            # 50,000-record batch): that wait was in the first results' latency, and a lab's
            # connection is long-lived.
            p = make_producer(self.settings)
            p.produce(
                self.prefix + topic, value=HL7.format(cid="W0", mrn=f"V{m}").encode(), key=f"V{m}".encode()
            )
            assert p.flush(30) == 0
            wait_for(lambda: f"v{m}@example.org" in sink.arrived, timeout=180, what="the warm-up email")
            if lane:  # and the lane's group has read it too (it starts in a process of its own)
                group = CONSUMERS["lis-testresult"].group_for(self.prefix) + ".priority"
                wait_for(lambda: self.committed(group) >= 1, timeout=180, what="the priority lane")
            # Standard patients only (every tenth P is SVIP1): the backlog is all standard.
            mrns = [f"P{i}" for i in range(PATIENTS) if i % 10]
            values = [HL7.format(cid=f"K{i}", mrn=mrns[i % len(mrns)]).encode() for i in range(backlog)]
            self.produce(topic, values, [mrns[i % len(mrns)] for i in range(backlog)])
            sent: dict[str, float] = {}
            sent_wall: dict[str, float] = {}
            for i in range(m):
                sent[f"v{i}@example.org"] = time.perf_counter()
                sent_wall[f"V{i}"] = time.time()
                v = HL7.format(cid=f"S{i}", mrn=f"V{i}").encode()
                p.produce(self.prefix + topic, value=v, key=f"V{i}".encode())
                p.poll(0)
                time.sleep(1 / 20)
            p.flush(30)
            wait_for(lambda: all(a in sink.arrived for a in sent), timeout=600, what="the SVIP1 emails")
            with self.sessions() as s:
                stored = s.scalar(
                    select(func.count()).select_from(LisMessage).where(LisMessage.control_id.like("K%"))
                )
            stages, by_patient = self.svip_stages(sent_wall)
            svip_emails = sum(1 for a in sink.arrived if a.startswith("v"))
            standard_emails = sink.emails - svip_emails
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            controller.stop()
        lat = [(sink.arrived[a] - t) * 1000 for a, t in sent.items()]
        # The p99 is the slowest few: each one's stages (ms), to say where they waited.
        slowest = sorted(sent, key=lambda a: sink.arrived[a] - sent[a], reverse=True)[:3]
        return {
            "standard_backlog": backlog,
            "svip1_messages": m,
            "priority_lane": lane,
            "measured": "produce on the LIS topic -> email accepted by the SMTP sink (deployed processes)",
            "svip1_p50_ms": round(pct(lat, 50), 1),
            "svip1_p99_ms": round(pct(lat, 99), 1),
            "svip1_max_ms": round(max(lat), 1),
            "completed": len(lat),
            # The backlog really was there while the SVIP1 results went through:
            "standard_results_still_unstored_at_end": backlog - (stored or 0),
            "standard_emails_delivered_by_then": standard_emails,
            "svip1_stage_p50_ms": stages,
            "svip1_slowest": [
                {
                    "sent": list(sent).index(a),
                    "ms": round((sink.arrived[a] - sent[a]) * 1000),
                    "stages_ms": by_patient.get(a.partition("@")[0].upper(), {}),
                }
                for a in slowest
            ],
            # In send order, every tenth: the first ones arrive while the lane still reads the backlog.
            "svip1_ms_every_tenth": [round(v) for v in lat[::10]],
            "load_average_1m": round(os.getloadavg()[0], 1),
        }

    def svip_stages(
        self, sent_wall: dict[str, float]
    ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        """Median ms of each SVIP1 stage from the rows' own times: produce -> stored by lis-testresult
        -> routed (relayed to the tier's topic) -> notice written by pat-test-result-svip1 ->
        dispatched to the broker -> delivery claimed by the worker -> sent; and each result's own
        stages, by patient."""
        with self.sessions() as s:
            rows = s.execute(
                text(
                    "SELECT m.patient_id, m.received_at, o.published_at, i.created_at, i.dispatched_at,"
                    " d.created_at, d.sent_at"
                    " FROM lis_messages m JOIN outbox o ON o.key = m.id"
                    " JOIN notification_intents i ON i.patient_id = m.patient_id"
                    " JOIN notification_deliveries d ON d.patient_id = m.patient_id"
                    " WHERE m.control_id LIKE 'S%'"
                )
            ).all()
        if not rows:
            return {}, {}
        parts: dict[str, list[float]] = {
            "stored": [],
            "routed": [],
            "noticed": [],
            "dispatched": [],
            "claimed": [],
            "sent": [],
        }
        each: dict[str, dict[str, float]] = {}
        for pid, *times in rows:
            t0 = sent_wall.get(pid)
            if t0 is None or None in times:
                continue
            marks = [t0, *(t.timestamp() for t in times)]
            each[pid] = {}
            for name, a, b in zip(parts, marks, marks[1:], strict=False):
                parts[name].append((b - a) * 1000)
                each[pid][name] = round((b - a) * 1000, 1)
        return {name: round(pct(v, 50), 1) for name, v in parts.items() if v}, each


class Sink:
    """An SMTP sink noting when each recipient's first email arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.emails = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd)
        now = time.perf_counter()
        self.emails += 1
        for rcpt in envelope.rcpt_tos:
            self.arrived.setdefault(rcpt, now)
        return "250 OK"


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
    parts = os.environ.get("BENCH_EVENTS_PARTS", "all")
    results: dict[str, Any] = {"benchmark": "events", "broker": bench.broker_kind, "cpus": os.cpu_count()}
    if parts != "svip":
        results["throughput"] = bench.throughput(n)
        print(json.dumps(results["throughput"]), flush=True)
    if parts == "throughput":
        # Only the LIS throughput part (BENCH=events BENCH_EVENTS_PARTS=throughput bench/run.sh).
        bench.stop_all()
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        return 0
    if parts != "svip":
        results["lis_to_notification_latency"] = bench.pipeline_latency(m)
        print(json.dumps(results["lis_to_notification_latency"]), flush=True)
    redis_url = os.environ.get("BOOKING_TEST_REDIS_URL")
    if redis_url:  # part 3 runs the deployed processes: a real broker between them
        lane = os.environ.get("BENCH_EVENTS_LANE", "on") != "off"
        results["svip1_latency_under_standard_backlog"] = bench.svip_under_backlog(
            m, backlog, redis_url, lane
        )
    bench.stop_all()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
