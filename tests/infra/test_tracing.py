"""Spans leave `booking api` over OTLP and reach a real OpenTelemetry Collector, without patient data."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from booking_testing.otelcol import Collector, start_collector
from booking_testing.procs import InfraError, free_port
from booking_testing.wait import wait_for


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    try:
        col = start_collector(tmp_path / "otelcol")
    except InfraError as exc:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))
    yield col
    col.stop()


def test_api_spans_reach_the_collector_without_phi(collector: Collector, tmp_path: Path) -> None:
    from booking_api.demo import seed_demo
    from booking_api.embedded import dev_token
    from booking_api.settings import ApiSettings
    from booking_core.db.migrate import upgrade
    from booking_core.db.session import make_engine, make_session_factory

    url = f"sqlite:///{tmp_path}/booking.db"
    upgrade(url)
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        patient_id = seed_demo(session)
        session.commit()
    engine.dispose()

    port = free_port()
    env = {
        **os.environ,
        "BOOKING_DATABASE_URL": url,
        "BOOKING_PORT": str(port),
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    booking = Path(sys.executable).with_name("booking")
    proc = subprocess.Popen([str(booking), "api"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(
            lambda: httpx.get(f"{base}/healthz").status_code == 200,
            timeout=60,
            what="booking api",
            ignore=(httpx.TransportError,),
        )
        token = dev_token(ApiSettings(), patient_id)
        resp = httpx.get(f"{base}/api/v1/bookings/{patient_id}", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 404  # the id is the patient's, not a booking's: a miss, not an error
        wait_for(
            lambda: "GET /api/v1/bookings/{booking_id}" in collector.output(),
            timeout=30,
            what="the request's server span in the collector output",
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    out = collector.output()
    assert "service.name: Str(booking-api)" in out
    # the route template names the span; the raw path (which held an id) and the token never appear
    assert patient_id not in out
    assert token not in out
