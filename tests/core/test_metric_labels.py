"""Metric labels are bounded codes: never a patient id, a raw path, an email or any other free value."""

from __future__ import annotations

import importlib

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.metrics import MetricWrapperBase

MODULES = (
    "booking_api.metrics",
    "booking_consumers.metrics",
    "booking_workers.metrics",
    "booking_operator.metrics",
    "booking_core.observability.metrics",
)

# Each label and where its values come from; all are fixed sets or small numbers.
ALLOWED_LABELS = {
    "method": "HTTP method, unknown tokens folded into OTHER",
    "route": "route template (/api/v1/bookings/{booking_id}) or 'unmatched', never the raw path",
    "status": "HTTP status code",
    "action": "create / cancel / reschedule",
    "outcome": "a result code",
    "consumer": "one of the nine consumer names",
    "reason": "a dead-letter or error code",
    "partition": "a partition number",
    "channel": "email / sms / push / inbox",
    "task": "a cron task name",
    "tier": "standard / svip1 / svip2, anything else folded into other",
    "trigger": "what started a reconcile",
    "kind": "a Kubernetes kind",
    "verb": "an API verb",
    "resource": "a Kubernetes resource name",
}


def _metrics() -> list[MetricWrapperBase]:
    found: list[MetricWrapperBase] = []
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        found += [v for v in vars(module).values() if isinstance(v, MetricWrapperBase)]
    assert found, "no metrics found"
    return found


@pytest.mark.parametrize("metric", _metrics(), ids=lambda m: m._name)
def test_every_label_is_a_bounded_code(metric: MetricWrapperBase) -> None:
    assert set(metric._labelnames) <= set(ALLOWED_LABELS), metric._labelnames


def _latency_labels() -> set[tuple[str, str, str]]:
    from booking_api.metrics import REQUEST_LATENCY

    return {
        (s.labels["method"], s.labels["route"], s.labels["status"])
        for m in REQUEST_LATENCY.collect()
        for s in m.samples
        if s.name.endswith("_count")
    }


def test_api_latency_labels_carry_the_route_template_and_a_bounded_method() -> None:
    from booking_api.metrics import ObservabilityMiddleware

    app = FastAPI()

    @app.get("/patients/{patient_id}/things")
    def things(patient_id: str) -> dict[str, str]:
        return {}

    app.add_middleware(ObservabilityMiddleware)
    with TestClient(app) as client:
        assert client.get("/patients/PAT-SECRET-1/things").status_code == 200
        assert client.get("/no/such/PAT-SECRET-2").status_code == 404
        client.request("BREW-PAT-SECRET-3", "/patients/x/things")
    labels = _latency_labels()
    assert ("GET", "/patients/{patient_id}/things", "200") in labels
    assert ("GET", "unmatched", "404") in labels
    assert any(m == "OTHER" for m, _, _ in labels)
    assert "PAT-SECRET" not in repr(labels)
