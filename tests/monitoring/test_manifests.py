"""manifests/monitoring selects what the operator renders: every component is scraped, on a real port."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.monitoring.catalog import MONITORING, ROOT

from booking_operator.render import render
from booking_operator.spec import parse_platform

PROD = ROOT / "manifests" / "examples" / "pat-booking-be-prod.yaml"
OPERATOR = ROOT / "manifests" / "operator"


def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((MONITORING / name).read_text())
    return doc


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        value, op, values = labels.get(expr["key"]), expr["operator"], expr.get("values", [])
        ok = {
            "In": value in values,
            "NotIn": value not in values,
            "Exists": value is not None,
            "DoesNotExist": value is None,
        }[op]
        if not ok:
            return False
    return True


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return render(parse_platform(yaml.safe_load(PROD.read_text())))


def _pods(rendered: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Pod templates by component."""
    out = {}
    for m in rendered:
        if m["kind"] == "Deployment":
            tpl = m["spec"]["template"]
            out[tpl["metadata"]["labels"]["app.kubernetes.io/component"]] = tpl
    return out


def _port_names(pod: dict[str, Any]) -> set[str]:
    return {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}


def test_kustomization_lists_every_monitoring_manifest() -> None:
    kust = _load("kustomization.yaml")
    files = {p.name for p in MONITORING.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kust["resources"]) == files
    kinds = {_load(f)["kind"] for f in files}
    assert kinds == {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def test_every_rendered_component_is_scraped_exactly_once_on_a_named_port(rendered) -> None:
    pods = _pods(rendered)
    assert len(pods) == 14  # api, 9 consumers, 3 workers, collector
    services = [m for m in rendered if m["kind"] == "Service"]
    scraped: dict[str, list[str]] = {c: [] for c in pods}
    for name in ("podmonitor-apps.yaml", "podmonitor-collector.yaml"):
        pm = _load(name)
        (endpoint,) = pm["spec"]["podMetricsEndpoints"]
        for component, pod in pods.items():
            if _matches(pm["spec"]["selector"], pod["metadata"]["labels"]):
                assert endpoint["port"] in _port_names(pod), (name, component)
                scraped[component].append(name)
    sm = _load("servicemonitor-api.yaml")
    (endpoint,) = sm["spec"]["endpoints"]
    for svc in services:
        if _matches(sm["spec"]["selector"], svc["metadata"]["labels"]):
            assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}
            selected = [
                c
                for c, pod in pods.items()
                if _matches({"matchLabels": svc["spec"]["selector"]}, pod["metadata"]["labels"])
            ]
            for component in selected:
                scraped[component].append("servicemonitor-api.yaml")
    assert {c: len(v) for c, v in scraped.items()} == {c: 1 for c in pods}, scraped


def test_the_api_serves_metrics_on_the_port_its_service_exposes(rendered) -> None:
    (svc,) = [
        m
        for m in rendered
        if m["kind"] == "Service" and m["metadata"]["labels"]["app.kubernetes.io/component"] == "api"
    ]
    pod = _pods(rendered)["api"]
    assert svc["spec"]["ports"][0]["targetPort"] in _port_names(pod)


def test_the_collector_config_enables_its_metrics_on_the_scraped_port(rendered) -> None:
    (cm,) = [m for m in rendered if m["kind"] == "ConfigMap"]
    config = yaml.safe_load(cm["data"]["config.yaml"])
    (reader,) = config["service"]["telemetry"]["metrics"]["readers"]
    port = reader["pull"]["exporter"]["prometheus"]["port"]
    pod = _pods(rendered)["otel-collector"]
    ports = {p["name"]: p["containerPort"] for c in pod["spec"]["containers"] for p in c["ports"]}
    assert ports["metrics"] == port


def test_the_operator_servicemonitor_selects_the_operator_metrics_service() -> None:
    sm = _load("servicemonitor-operator.yaml")
    svc = yaml.safe_load((OPERATOR / "service.yaml").read_text())
    assert svc["metadata"]["namespace"] in sm["spec"]["namespaceSelector"]["matchNames"]
    assert _matches(sm["spec"]["selector"], svc["metadata"]["labels"])
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}
    # BookingOperatorDown looks for this Service's scrape by name.
    assert svc["metadata"]["name"] == "booking-operator-metrics"


def test_monitors_are_valid_against_the_prometheus_operator_shape() -> None:
    for path in sorted(Path(MONITORING).glob("*monitor-*.yaml")):
        doc = yaml.safe_load(path.read_text())
        assert doc["apiVersion"] == "monitoring.coreos.com/v1", path.name
        key = "podMetricsEndpoints" if doc["kind"] == "PodMonitor" else "endpoints"
        for ep in doc["spec"][key]:
            assert ep["path"] == "/metrics" and ep["interval"].endswith("s"), path.name
            assert set(ep) <= {"port", "path", "interval", "relabelings", "honorLabels"}, path.name


def test_kustomize_builds_the_monitoring_bundle() -> None:
    """`kubectl kustomize manifests/monitoring` renders every object in the platform's namespace."""
    import os
    import subprocess

    from booking_testing.kube import bin_dir
    from booking_testing.procs import InfraError

    try:
        kubectl = bin_dir() / "kubectl"
    except InfraError as exc:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))
    res = subprocess.run([str(kubectl), "kustomize", str(MONITORING)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    docs = list(yaml.safe_load_all(res.stdout))
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == [
        "ConfigMap",
        "PodMonitor",
        "PodMonitor",
        "PrometheusRule",
        "ServiceMonitor",
        "ServiceMonitor",
    ]
    assert {d["metadata"]["namespace"] for d in docs} == {"pat--booking--be"}
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert cm["metadata"]["name"] == "pat-booking-be-dashboard"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert "pat-booking-be.json" in cm["data"]
