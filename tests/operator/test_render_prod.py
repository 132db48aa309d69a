"""The production example renders exactly the seed: workloads, names, replicas, autoscalers, ports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from booking_operator.render import autoscalers, components, render
from booking_operator.spec import parse_platform

ROOT = Path(__file__).resolve().parents[2]
PROD = ROOT / "manifests" / "examples" / "pat-booking-be-prod.yaml"
CR = "pat--booking--be"

SEED_CONSUMERS = {
    "appointment-update": 1,
    "booking": 1,
    "customer": 1,
    "lis-testresult": 2,
    "pat-booking-recommend-test": 1,
    "pat-test-result": None,  # KEDA 1-10
    "pat-test-result-svip1": 1,
    "pat-test-result-svip2": 1,
    "sync-test-master-data": 1,
}
SEED_WORKERS = ("batch-publisher", "default", "notifications")


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    return render(parse_platform(yaml.safe_load(PROD.read_text())))


def by_kind(ms: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in ms if m["kind"] == kind}


def test_fourteen_deployments_named_as_the_seed(manifests: list[dict[str, Any]]) -> None:
    deployments = by_kind(manifests, "Deployment")
    expected = {f"{CR}--app--prod", f"{CR}-otel-collector"}
    expected |= {f"{CR}--consumer-{c}--prod" for c in SEED_CONSUMERS}
    expected |= {f"{CR}--wrk--{w}--prod" for w in SEED_WORKERS}
    assert set(deployments) == expected
    assert len(deployments) == 14


def test_replicas_match_the_seed(manifests: list[dict[str, Any]]) -> None:
    deployments = by_kind(manifests, "Deployment")
    assert "replicas" not in deployments[f"{CR}--app--prod"]["spec"]  # HPA owns it
    for consumer, replicas in SEED_CONSUMERS.items():
        spec = deployments[f"{CR}--consumer-{consumer}--prod"]["spec"]
        assert spec.get("replicas") == replicas, consumer
    for worker in SEED_WORKERS:
        assert deployments[f"{CR}--wrk--{worker}--prod"]["spec"]["replicas"] == 1
    assert deployments[f"{CR}-otel-collector"]["spec"]["replicas"] == 1


def test_containers_run_the_booking_cli(manifests: list[dict[str, Any]]) -> None:
    deployments = by_kind(manifests, "Deployment")

    def argv(name: str) -> list[str]:
        c = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        return [*c["command"], *c["args"]]

    assert argv(f"{CR}--app--prod") == ["booking", "api"]
    assert argv(f"{CR}--consumer-lis-testresult--prod") == ["booking", "consumer", "lis-testresult"]
    assert argv(f"{CR}--wrk--notifications--prod") == ["booking", "worker", "notifications"]
    init = deployments[f"{CR}--app--prod"]["spec"]["template"]["spec"]["initContainers"][0]
    assert [*init["command"], *init["args"]] == ["booking", "migrate"]


def test_one_hpa_and_one_scaledobject_as_in_the_seed(manifests: list[dict[str, Any]]) -> None:
    hpas = by_kind(manifests, "HorizontalPodAutoscaler")
    assert list(hpas) == [f"{CR}--app--prod-hpa"]
    hpa = hpas[f"{CR}--app--prod-hpa"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 5)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 100
    assert hpa["scaleTargetRef"]["name"] == f"{CR}--app--prod"

    sos = by_kind(manifests, "ScaledObject")
    name = f"kafka-{CR}--consumer-pat-test-result--prod"
    assert list(sos) == [name]
    assert len(f"keda-hpa-{name}") == 63  # the seed's KEDA HPA name is exactly at the limit
    so = sos[name]["spec"]
    assert (so["minReplicaCount"], so["maxReplicaCount"]) == (1, 10)
    assert so["scaleTargetRef"]["name"] == f"{CR}--consumer-pat-test-result--prod"
    trigger = so["triggers"][0]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert meta["lagThreshold"] == "20"
    assert meta["topic"] == "pat-booking.test-result.v1"
    assert meta["consumerGroup"] == "pat-booking-be.pat-test-result"
    assert meta["bootstrapServersFromEnv"] == "BOOKING_KAFKA_BOOTSTRAP_SERVERS"
    assert all(isinstance(v, str) for v in meta.values())
    assert trigger["authenticationRef"]["name"] in by_kind(manifests, "TriggerAuthentication")


def test_services_and_ports(manifests: list[dict[str, Any]]) -> None:
    services = by_kind(manifests, "Service")
    api = services[f"{CR}--app--prod"]["spec"]
    assert api["type"] == "NodePort"
    assert api["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP", "nodePort": 30978}
    ]
    col = services[f"{CR}-otel-collector"]["spec"]
    assert col["type"] == "ClusterIP"
    assert [p["port"] for p in col["ports"]] == [4317, 4318]
    api_container = by_kind(manifests, "Deployment")[f"{CR}--app--prod"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert {p["name"]: p["containerPort"] for p in api_container["ports"]} == {"http": 8000}
    assert api_container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert api_container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_consumers_and_workers_probe_their_loops_not_the_metrics(manifests: list[dict[str, Any]]) -> None:
    deployments = by_kind(manifests, "Deployment")
    loops = [f"{CR}--consumer-{c}--prod" for c in SEED_CONSUMERS] + [
        f"{CR}--wrk--{w}--prod" for w in SEED_WORKERS
    ]
    for name in loops:
        c = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        assert c["startupProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}, name
        assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}, name
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}, name
        # a slow first poll (group join) is the startup probe's to wait out, not liveness's
        startup, live = c["startupProbe"], c["livenessProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 60
        assert live["periodSeconds"] * live["failureThreshold"] <= 60


def test_cronjob_every_minute_forbid(manifests: list[dict[str, Any]]) -> None:
    cronjobs = by_kind(manifests, "CronJob")
    assert list(cronjobs) == [f"{CR}--cron--prod"]
    spec = cronjobs[f"{CR}--cron--prod"]["spec"]
    assert spec["schedule"] == "* * * * *"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1
    container = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert [*container["command"], *container["args"]] == ["booking", "cron"]


def test_env_from_secrets_and_collector(manifests: list[dict[str, Any]]) -> None:
    d = by_kind(manifests, "Deployment")[f"{CR}--consumer-booking--prod"]
    env = {e["name"]: e for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
    for secret_backed in (
        "BOOKING_DATABASE_URL",
        "BOOKING_KAFKA_BOOTSTRAP_SERVERS",
        "BOOKING_KAFKA_SASL_USERNAME",
        "BOOKING_KAFKA_SASL_PASSWORD",
        "BOOKING_REDIS_URL",
    ):
        assert "secretKeyRef" in env[secret_backed]["valueFrom"], secret_backed
        assert "value" not in env[secret_backed]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == f"http://{CR}-otel-collector.{CR}.svc:4318"
    assert env["BOOKING_ENVIRONMENT"]["value"] == "prod"
    ports = d["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert ports == [{"name": "metrics", "containerPort": 9000, "protocol": "TCP"}]


def test_pdb_only_where_more_than_one_pod(manifests: list[dict[str, Any]]) -> None:
    assert list(by_kind(manifests, "PodDisruptionBudget")) == [f"{CR}--consumer-lis-testresult--prod"]


def test_restricted_pod_security_everywhere(manifests: list[dict[str, Any]]) -> None:
    pods = [m["spec"]["template"]["spec"] for m in manifests if m["kind"] == "Deployment"]
    pods += [
        m["spec"]["jobTemplate"]["spec"]["template"]["spec"] for m in manifests if m["kind"] == "CronJob"
    ]
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
            assert c["resources"]["requests"]["cpu"]


def test_collector_config_checksum_rolls_the_pods() -> None:
    obj = yaml.safe_load(PROD.read_text())
    before = render(parse_platform(obj))
    obj["spec"]["otelCollector"]["exporter"] = {"endpoint": "tempo.observability:4317"}
    after = render(parse_platform(obj))

    def collector(ms: list[dict[str, Any]]) -> tuple[str, str]:
        cm = by_kind(ms, "ConfigMap")[f"{CR}-otel-collector"]["data"]["config.yaml"]
        dep = by_kind(ms, "Deployment")[f"{CR}-otel-collector"]["spec"]["template"]["metadata"]["annotations"]
        return cm, dep["platform.pat-booking.io/config-checksum"]

    (cm1, sum1), (cm2, sum2) = collector(before), collector(after)
    assert "debug" in cm1 and "tempo.observability:4317" in cm2
    assert sum1 != sum2


def test_autoscaler_helpers_and_keda_fallback() -> None:
    platform = parse_platform(yaml.safe_load(PROD.read_text()))
    assert autoscalers(platform) == {"api": "hpa", "consumer-pat-test-result": "keda"}
    assert autoscalers(platform, keda_available=False) == {"api": "hpa", "consumer-pat-test-result": "hpa"}
    without = render(platform, keda_available=False)
    assert not by_kind(without, "ScaledObject") and not by_kind(without, "TriggerAuthentication")
    fallback = by_kind(without, "HorizontalPodAutoscaler")[f"{CR}--consumer-pat-test-result--prod-hpa"][
        "spec"
    ]
    assert (fallback["minReplicas"], fallback["maxReplicas"]) == (1, 10)
    consumer = by_kind(without, "Deployment")[f"{CR}--consumer-pat-test-result--prod"]
    assert "replicas" not in consumer["spec"]
    comps = {c.component: c for c in components(platform, keda_available=False)}
    assert len(comps) == 15 and comps["consumer-pat-test-result"].keda_fallback


def test_restart_at_annotates_named_components_only() -> None:
    obj = yaml.safe_load(PROD.read_text())
    obj["spec"]["restartAt"] = {"at": "2025-06-01T10:00:00Z", "components": ["api", "consumer-booking"]}
    ms = render(parse_platform(obj))
    key = "platform.pat-booking.io/restartedAt"
    restarted = {
        m["metadata"]["name"]
        for m in ms
        if m["kind"] == "Deployment" and key in m["spec"]["template"]["metadata"].get("annotations", {})
    }
    assert restarted == {f"{CR}--app--prod", f"{CR}--consumer-booking--prod"}
    obj["spec"]["restartAt"] = {"at": "2025-06-01T11:00:00Z"}
    ms = render(parse_platform(obj))
    deployments = [m for m in ms if m["kind"] == "Deployment"]
    assert all(
        d["spec"]["template"]["metadata"]["annotations"][key] == "2025-06-01T11:00:00Z" for d in deployments
    )


def test_minimal_example_takes_the_seed_defaults() -> None:
    minimal = yaml.safe_load((ROOT / "manifests" / "examples" / "minimal.yaml").read_text())
    assert parse_platform(minimal).namespace == "default"
    # The same spec under the seed's name and environment gives the seed's objects: the defaults are the seed.
    minimal["metadata"] = {"name": CR, "namespace": CR}
    minimal["spec"]["environment"] = "prod"
    minimal["spec"]["auth"] = {
        "issuer": "https://idp.example.org",
        "audience": "pat-booking-api",
    }  # required outside dev

    def shape(obj: dict[str, Any]) -> list[tuple[str, str, Any]]:
        return sorted(
            (m["kind"], m["metadata"]["name"], m.get("spec", {}).get("replicas"))
            for m in render(parse_platform(obj))
            if m["kind"] != "TriggerAuthentication"  # prod uses SASL, the minimal example does not
        )

    assert shape(minimal) == shape(yaml.safe_load(PROD.read_text()))


def test_keda_scale_down_window_reaches_the_hpa_keda_makes() -> None:
    """The window goes to KEDA's `advanced.horizontalPodAutoscalerConfig`; unset, nothing (KEDA's 300 s)."""
    raw = yaml.safe_load(PROD.read_text())
    keda = raw["spec"]["consumers"]["pat-test-result"]["autoscaling"]["keda"]

    def scaled_object(doc: dict[str, Any]) -> dict[str, Any]:
        (so,) = [m for m in render(parse_platform(doc)) if m["kind"] == "ScaledObject"]
        return so

    assert "advanced" not in scaled_object(raw)["spec"]
    keda["scaleDownStabilizationSeconds"] = 45
    behavior = scaled_object(raw)["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior == {"scaleDown": {"stabilizationWindowSeconds": 45}}


def test_the_batch_publisher_runs_both_outbox_loops_with_their_connections(
    manifests: list[dict[str, Any]],
) -> None:
    # It relays events to Kafka and is the one notice dispatcher (notification outbox -> Redis): without
    # the database, Kafka and Redis URLs, notices would stay owed and no producer would send them.
    d = by_kind(manifests, "Deployment")[f"{CR}--wrk--batch-publisher--prod"]
    container = d["spec"]["template"]["spec"]["containers"][0]
    assert [*container["command"], *container["args"]] == ["booking", "worker", "batch-publisher"]
    env = {e["name"]: e for e in container["env"]}
    for needed in ("BOOKING_DATABASE_URL", "BOOKING_KAFKA_BOOTSTRAP_SERVERS", "BOOKING_REDIS_URL"):
        assert "secretKeyRef" in env[needed]["valueFrom"], needed
    assert d["spec"]["replicas"] >= 1
