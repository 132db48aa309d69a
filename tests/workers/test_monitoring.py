"""Result delivery's last stage and the cron's reports: what the workers export for Prometheus."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import dramatiq
import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from booking_core.db import models as m
from booking_core.db.migrate import upgrade
from booking_core.db.models_events import LisMessage
from booking_core.db.session import make_engine, make_session_factory
from booking_core.topology import DEFAULT_QUEUE
from booking_workers import cron_actor, cron_report
from booking_workers.broker import build_broker, setup_broker
from booking_workers.cron import build_tasks
from booking_workers.notifications.service import Notifier, send_notification


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def sessions(tmp_path: Any) -> Any:
    url = f"sqlite:///{tmp_path}/w.db"
    upgrade(url)
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()


def test_results_notified_observed_per_channel_from_the_lis_receipt(sessions: Any, helpers: Any) -> None:
    with sessions() as s:
        s.add(m.Patient(id="p-v", tier="svip2", time_zone="UTC", given_name="V"))
        s.add(
            LisMessage(
                id="lis-1",
                source_facility="LAB",
                control_id="C1",
                patient_id="p-v",
                tier="svip2",
                received_at=helpers.utcnow() - timedelta(seconds=30),
            )
        )
        s.commit()
    # No providers configured: only the in-app inbox delivers, which quiet hours never hold.
    n = Notifier(session_factory=sessions, senders={})
    count0 = sample("booking_result_notified_seconds_count", tier="svip2", channel="in_app")
    sum0 = sample("booking_result_notified_seconds_sum", tier="svip2", channel="in_app")
    send_notification(n, patient_id="p-v", event_type="results_available", ref_id="lis-1")
    send_notification(n, patient_id="p-v", event_type="results_available", ref_id="lis-1")  # deduped
    send_notification(n, patient_id="p-v", event_type="booking_confirmed", ref_id="b-1")  # not a result
    assert sample("booking_result_notified_seconds_count", tier="svip2", channel="in_app") == count0 + 1
    assert 30 <= sample("booking_result_notified_seconds_sum", tier="svip2", channel="in_app") - sum0 < 120


@dataclass(frozen=True)
class Result:
    task: str
    status: str
    duration_ms: int = 12


def test_report_tasks_match_the_cron_tasks() -> None:
    assert tuple(build_tasks(None, None, None)) == cron_report.TASKS  # type: ignore[arg-type]


def _pushed(url: str) -> dict[tuple[str, str], float]:
    out = {}
    for fam in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=5).text):
        for smp in fam.samples:
            if smp.name.startswith("booking_cron_task_") and smp.labels.get("job") == cron_report.PUSH_JOB:
                out[(smp.name, smp.labels["task"])] = smp.value
    return out


def test_push_keeps_a_failed_tasks_last_success(pushgateway: Any) -> None:
    url = pushgateway.url
    pushed = cron_report.push(
        url, [Result("expire_holds", "ok"), Result("mark_noshows", "failed")], finished_at=100
    )
    assert pushed == 2
    cron_report.push(
        url, [Result("expire_holds", "failed"), Result("cleanup_outbox", "skipped")], finished_at=160
    )
    got = _pushed(url)
    assert got[("booking_cron_task_last_success_timestamp_seconds", "expire_holds")] == 100
    assert got[("booking_cron_task_last_run_timestamp_seconds", "expire_holds")] == 160
    assert got[("booking_cron_task_last_run_ok", "expire_holds")] == 0
    assert got[("booking_cron_task_last_run_ok", "mark_noshows")] == 0
    assert ("booking_cron_task_last_success_timestamp_seconds", "mark_noshows") not in got
    assert not any(task == "cleanup_outbox" for _, task in got)  # a skipped task pushes nothing


def test_push_to_an_unreachable_gateway_is_logged_not_raised() -> None:
    assert (
        cron_report.push("http://127.0.0.1:9", [Result("expire_holds", "ok")], finished_at=1, timeout=1) == 0
    )


def test_the_run_reaches_the_default_worker_which_exports_it() -> None:
    broker = setup_broker(broker=build_broker(None))
    try:
        cron_report.report(
            None, [Result("cleanup_outbox", "ok"), Result("reminders_2h", "failed")], finished_at=5000
        )
        (message,) = [dramatiq.Message.decode(raw) for raw in broker.queues[DEFAULT_QUEUE].queue]
        assert message.actor_name == cron_report.RECORD_CRON_RUN
        ok0 = sample("booking_cron_task_runs_total", task="cleanup_outbox", status="ok")
        failed0 = sample("booking_cron_task_runs_total", task="reminders_2h", status="failed")
        cron_actor.record(**message.kwargs)
        # an older run arriving late, and a task name that is not ours
        cron_actor.record(
            [{"task": "cleanup_outbox", "status": "ok"}, {"task": "x" * 99, "status": "ok"}], 10
        )
    finally:
        setup_broker(broker=build_broker(None))
    assert sample("booking_cron_task_runs_total", task="cleanup_outbox", status="ok") == ok0 + 2
    assert sample("booking_cron_task_runs_total", task="reminders_2h", status="failed") == failed0 + 1
    assert sample("booking_cron_task_last_success_timestamp_seconds", task="cleanup_outbox") == 5000
    assert (
        REGISTRY.get_sample_value("booking_cron_task_runs_total", {"task": "x" * 99, "status": "ok"}) is None
    )
