"""A real Prometheus scrapes the API, consumers and workers while a booking and an HL7 result flow through.

Every process is the real `booking` command against real PostgreSQL, Kafka and Redis; Prometheus (Debian's
package) scrapes them every second and evaluates manifests/monitoring's rules, and the test reads the
recorded series back through its HTTP API, as the dashboard does.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select
from tests.monitoring.catalog import ROOT, rule_groups

from booking_api.settings import ApiSettings
from booking_api.tokens import mint_token
from booking_core.db import models as m
from booking_core.db.migrate import upgrade
from booking_core.db.session import make_engine, make_session_factory
from booking_core.topology import CONSUMERS
from booking_testing.otelcol import start_collector
from booking_testing.procs import InfraError, Server, free_port, start_server, tail
from booking_testing.prometheus import PrometheusServer, Target, start_prometheus
from booking_testing.wait import wait_for
from booking_workers import cron_report

pytestmark = pytest.mark.timeout(400)
BOOKING = [sys.executable, "-m", "booking_core.cli"]
NS = "it-monitoring"
HL7 = ROOT / "tests" / "consumers" / "fixtures" / "hl7" / "normal.hl7"


def _wait(cond: Callable[[], Any], timeout: float, what: str, procs: list[Server]) -> Any:
    """`wait_for` while every process stays up; the timeout names each process's log tail."""

    def alive_and() -> Any:
        for p in procs:
            p.check_alive()
        return cond()

    def logs() -> str:
        return "\n".join(f"--- {p.name}\n{tail(p.log, 15)}" for p in procs)

    return wait_for(alive_and, timeout=timeout, what=what, interval=0.5, details=logs)


def _create_topics(bootstrap: str, prefix: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    topics = [prefix + s.topic for s in CONSUMERS.values()] + [
        prefix + s.dlq_topic for s in CONSUMERS.values()
    ]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics(
        [NewTopic(t, num_partitions=1, replication_factor=1) for t in topics]
    ).values():
        f.result(30)


def _seed(sessions: Any) -> str:
    with sessions() as s:
        s.add(
            m.Patient(id="PAT-MON", tier="standard", time_zone="UTC", email="mon@example.org", given_name="M")
        )
        clinic, service = m.Clinic(code="CM", name="Clinic"), m.Service(code="SM", name="Blood draw")
        s.add_all([clinic, service])
        s.flush()
        starts = datetime.now(UTC) + timedelta(days=2)
        slot = m.Slot(
            clinic_id=clinic.id,
            service_id=service.id,
            starts_at=starts,
            ends_at=starts + timedelta(minutes=15),
            capacity=3,
        )
        s.add(slot)
        s.commit()
        return slot.id


@pytest.fixture
def platform(
    postgres_url: str,
    kafka_bootstrap: str,
    redis_url: str,
    pushgateway: Any,
    prometheus_binary: str,
    tmp_path: Path,
) -> Iterator[dict[str, Any]]:
    """The processes, their Prometheus, and what the test needs to drive them."""
    upgrade(postgres_url)
    prefix = f"m{uuid.uuid4().hex[:8]}."
    _create_topics(kafka_bootstrap, prefix)
    engine = make_engine(postgres_url)
    sessions = make_session_factory(engine)
    slot_id = _seed(sessions)
    try:
        collector = start_collector(tmp_path / "otelcol")
    except InfraError as exc:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOOKING_", "OTEL_"))}
    env.update(
        BOOKING_DATABASE_URL=postgres_url,
        BOOKING_KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        BOOKING_KAFKA_TOPIC_PREFIX=prefix,
        BOOKING_CONSUMER_GROUP_PREFIX=prefix + "grp",
        BOOKING_POLL_TIMEOUT_SECONDS="0.2",
        BOOKING_REDIS_URL=redis_url,
        BOOKING_BROKER_NAMESPACE=prefix,
        BOOKING_MAIL_DIR=str(tmp_path / "mail"),
        BOOKING_PUSHGATEWAY_URL=pushgateway.url,
        BOOKING_LOG_FORMAT="json",
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
    )
    api_port = free_port()
    components = {
        "api": ["api"],
        "worker-batch-publisher": ["worker", "batch-publisher"],
        "consumer-booking": ["consumer", "booking"],
        "consumer-lis-testresult": ["consumer", "lis-testresult"],
        "consumer-pat-test-result": ["consumer", "pat-test-result"],
        "worker-notifications": ["worker", "notifications"],
        "worker-default": ["worker", "default"],
    }
    procs: list[Server] = []
    targets = []
    try:
        for component, args in components.items():
            port = api_port if component == "api" else free_port()
            extra = {"BOOKING_PORT": str(port)} if component == "api" else {"BOOKING_METRICS_PORT": str(port)}
            procs.append(
                start_server(component, [*BOOKING, *args], workdir=tmp_path / "procs", env={**env, **extra})
            )
            # The labels the Prometheus Operator's monitors give these series in a cluster.
            targets.append(Target(component, port, {"namespace": NS, "component": component}))
        targets.append(Target("pushgateway", pushgateway.port, {"namespace": NS}, honor_labels=True))
        targets.append(Target("otel-collector", collector.telemetry_port, {"namespace": NS}))
        rules = tmp_path / "rules.yaml"
        rules.write_text(yaml.safe_dump({"groups": rule_groups()}, sort_keys=False))
        prom = start_prometheus(tmp_path / "prometheus", targets, [rules])
        try:
            yield {
                "prom": prom,
                "procs": procs,
                "env": env,
                "sessions": sessions,
                "slot_id": slot_id,
                "api": f"http://127.0.0.1:{api_port}",
                "prefix": prefix,
                "bootstrap": kafka_bootstrap,
                "mail": tmp_path / "mail",
                "collector": collector,
            }
        finally:
            prom.stop()
    finally:
        for p in procs:
            p.stop()
        collector.stop()
        engine.dispose()


QUERIES = {
    "confirmation latency observations": (
        'sum by (outcome) (booking_confirmation_latency_seconds_count{outcome="booked"})'
    ),
    "confirmation p95 (recorded)": "namespace:booking_confirmation_latency_seconds:p95_5m",
    "booking success ratio (recorded)": "namespace:booking_success:ratio_rate30m",
    "result visible p95 by tier (recorded)": (
        'namespace_tier:booking_result_visible_seconds:p95_15m{tier="standard"}'
    ),
    "result notified p95 by tier (recorded)": (
        'namespace_tier:booking_result_notified_seconds:p95_15m{tier="standard"}'
    ),
    "result notified observations by channel": (
        'sum by (channel) (booking_result_notified_seconds_count{tier="standard"}) > 0'
    ),
    "API p99 (recorded)": "namespace:booking_api_request_duration_seconds:p99_5m",
    "notification delivered ratio by channel (recorded)": (
        "namespace_channel:booking_notifications_delivered:ratio_rate15m"
    ),
    "cron seconds since last success by task (recorded)": (
        "namespace_task:booking_cron_task_since_last_success_seconds"
    ),
    "cron runs by status": 'sum by (status) (booking_cron_task_runs_total{component="worker-default"})',
    "consumer throughput (recorded)": "namespace_consumer:booking_consumer_messages_processed:rate5m > 0",
    "collector spans accepted/s (recorded)": "namespace:otelcol_receiver_accepted_spans:rate5m > 0",
    "collector spans exported/s (recorded)": "namespace:otelcol_exporter_sent_spans:rate5m > 0",
}


def _value(prom: PrometheusServer, expr: str) -> float | None:
    vals = prom.values(expr)
    return vals[0][1] if vals else None


def test_prometheus_and_the_collector_see_a_booking_and_a_result_flow_through(platform) -> None:
    prom, procs = platform["prom"], platform["procs"]
    up = f'count(up{{namespace="{NS}"}} == 1)'
    _wait(lambda: _value(prom, up) == len(procs) + 2, 120, "every target scraped and up", procs)
    token = mint_token(
        settings=ApiSettings(),
        subject="PAT-MON",
        role="patient",
        now=datetime.now(UTC),
        ttl=timedelta(hours=1),
    )
    auth = {"Authorization": f"Bearer {token}"}
    # Patients read their bookings before and after: the route's series exists before it increases.
    assert httpx.get(f"{platform['api']}/api/v1/bookings", headers=auth, timeout=30).status_code == 200
    # The zero series exist before anything happens, so the first event is an increase to rate().
    _wait(
        lambda: (
            _value(prom, 'count(booking_confirmation_latency_seconds_count{component="consumer-booking"})')
            == 2
            and _value(prom, 'booking_api_bookings_total{action="create", outcome="created"}') == 0
        ),
        30,
        "the zero series scraped",
        procs,
    )

    # A patient books through the API ...
    token = mint_token(
        settings=ApiSettings(),
        subject="PAT-MON",
        role="patient",
        now=datetime.now(UTC),
        ttl=timedelta(hours=1),
    )
    r = httpx.post(
        f"{platform['api']}/api/v1/bookings",
        json={"slot_id": platform["slot_id"]},
        headers={**auth, "Idempotency-Key": str(uuid.uuid4())},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    booking_id = r.json()["id"]
    # ... and the LIS sends a result for them.
    from confluent_kafka import Producer

    hl7 = "\r".join(
        line
        for line in HL7.read_text()
        .replace("$control_id", "MON-1")
        .replace("$mrn", "PAT-MON")
        .replace("$order", "ORD-MON")
        .splitlines()
        if line
    )
    producer = Producer({"bootstrap.servers": platform["bootstrap"]})
    producer.produce(platform["prefix"] + CONSUMERS["lis-testresult"].topic, value=hl7.encode(), key=b"lis")
    assert producer.flush(30) == 0
    # One cron run: it pushes to the Pushgateway and reports to the default worker.
    cron = subprocess.run(
        [*BOOKING, "cron"], env=platform["env"], capture_output=True, text=True, timeout=120
    )
    assert cron.returncode == 0, cron.stderr[-2000:]

    sessions = platform["sessions"]

    def flowed() -> bool:
        with sessions() as s:
            booked = s.get(m.Booking, booking_id).status == "booked"
            visible = s.scalars(select(m.TestResult.visible_to_patient)).all() == [True]
        mails = list(platform["mail"].glob("*.eml")) if platform["mail"].exists() else []
        return booked and visible and len(mails) >= 2  # booking confirmed + results available

    _wait(flowed, 120, "booked, results visible and both emails sent", procs)
    assert httpx.get(f"{platform['api']}/api/v1/bookings", headers=auth, timeout=30).status_code == 200

    queries = QUERIES
    missing: list[str] = []

    def all_have_data() -> dict[str, list[tuple[dict[str, str], float]]] | None:
        got = {name: prom.values(q) for name, q in queries.items()}
        missing[:] = [name for name, vals in got.items() if not vals]
        return None if missing else got

    try:
        got = _wait(all_have_data, 90, "every query to return data", procs)
    except AssertionError as exc:
        raise AssertionError(f"no data for {missing}") from exc
    report = {
        name: [({k: v for k, v in lbl.items() if k != "__name__"}, v) for lbl, v in vals]
        for name, vals in got.items()
    }
    print("\nPrometheus query results:\n" + json.dumps(report, indent=1))

    assert _value(prom, queries["confirmation latency observations"]) == 1
    assert 0 < _value(prom, queries["confirmation p95 (recorded)"]) < 30
    assert _value(prom, queries["booking success ratio (recorded)"]) == 1
    assert 0 < _value(prom, queries["result visible p95 by tier (recorded)"]) < 60
    assert {lbl["channel"] for lbl, _ in got["result notified observations by channel"]} == {
        "email",
        "in_app",
    }
    assert {lbl["channel"]: v for lbl, v in got["notification delivered ratio by channel (recorded)"]} == {
        "email": 1,
        "in_app": 1,
    }
    tasks = {lbl["task"]: v for lbl, v in got["cron seconds since last success by task (recorded)"]}
    assert len(tasks) == len(cron_report.TASKS) and all(0 <= v < 120 for v in tasks.values()), tasks
    assert {lbl["consumer"] for lbl, _ in got["consumer throughput (recorded)"]} >= {
        "booking",
        "lis-testresult",
        "pat-test-result",
    }
    assert prom.values('ALERTS{alertstate="firing"}') == []
    _assert_trace_chain(platform, booking_id)


def _assert_trace_chain(platform: dict[str, Any], booking_id: str) -> None:
    """API -> DB -> outbox -> Kafka -> consumer -> DB -> Dramatiq -> DB (delivery) in one trace."""
    procs, collector = platform["procs"], platform["collector"]

    def chain() -> list[Any] | None:
        spans = collector.spans()
        roots = [s for s in spans if s.name == "POST /api/v1/bookings" and s.kind.endswith("Server")]
        if not roots:
            return None
        trace = [s for s in spans if s.trace_id == roots[0].trace_id]
        return trace if any(s.name == "dramatiq send_notification" for s in trace) else None

    trace = _wait(chain, 120, "the booking's trace to reach the notifications worker", procs)
    by_id = {s.span_id: s for s in trace}

    def parent(span: Any) -> Any:
        return by_id.get(span.parent_id)

    (root,) = [s for s in trace if s.name == "POST /api/v1/bookings"]
    assert root.service == "booking-api"
    api_sql = [
        s for s in trace if s.service == "booking-api" and s.attributes.get("db.system") == "postgresql"
    ]
    assert api_sql and all(s.kind.endswith("Client") for s in api_sql)
    consumed = [s for s in trace if s.name.endswith(CONSUMERS["booking"].topic + " process")]
    # The outbox row carried the request's context through the relay and Kafka's headers ...
    (consume,) = [s for s in consumed if parent(s) is root]
    assert consume.service == "pat-booking-be-consumer-booking"
    # The booking.confirmed event it raised is passed over on its own topic without a span (the
    # consumer does not act on the events it raises), so the request is processed exactly once here.
    assert consumed == [consume]
    consumer_sql = [s for s in trace if parent(s) is consume and s.attributes.get("db.system")]
    assert consumer_sql and all(s.service == consume.service for s in consumer_sql)
    (job,) = [s for s in trace if s.name == "dramatiq send_notification"]
    assert job.service == "booking-worker-notifications" and parent(job) is consume
    worker_sql = [s for s in trace if s.service == job.service and s.attributes.get("db.system")]
    assert worker_sql and all(parent(s) is job for s in worker_sql)  # claims and delivery records

    chain_text = "\n".join(f"{s.service:34} {s.kind:18} {s.name[:60]}" for s in trace)
    print(f"\ntrace {root.trace_id}: {len(trace)} spans\n{chain_text}")
    # Statements with placeholders, never parameters; no patient or booking id anywhere.
    out = collector.output()
    assert "PAT-MON" not in out and booking_id not in out
    # psycopg's named placeholders or asyncpg's numbered ones (booking create and the search run there).
    # (A connect span has none, and the debug exporter's lines split a statement that spans lines.)
    statements = [s.attributes["db.statement"] for s in api_sql if s.attributes.get("db.statement")]
    assert all(re.search(r"%\(\w+\)s|\$\d", st) for st in statements), statements
