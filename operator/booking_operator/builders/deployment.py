"""Deployments: the API, nine consumers, three workers (all `booking ...`) and the OTel collector."""

from __future__ import annotations

from typing import Any

from booking_operator import names
from booking_operator.builders.auth import auth_ca_volume, auth_env
from booking_operator.builders.common import (
    API_PORT,
    COLLECTOR_METRICS_PORT,
    METRICS_PORT,
    OTLP_GRPC_PORT,
    OTLP_HTTP_PORT,
    Manifest,
    Workload,
    booking_env,
    container_security,
    merge_env,
    metadata,
    pod_template,
    quantities,
    selector,
    tmp_mount,
    user_env,
)
from booking_operator.builders.configmap import CONFIG_KEY, config_checksum
from booking_operator.builders.settings_env import LIS_CONSUMER, edge_env, lis_env
from booking_operator.spec import Platform

CONFIG_VOLUME = "config"
CONFIG_DIR = "/etc/otelcol"


def workloads(platform: Platform) -> list[Workload]:
    """Every Deployment-backed component, in render order: api, consumers, workers, collector."""
    cr, spec = platform.name, platform.spec
    env = spec.environment
    out = [Workload(names.API_COMPONENT, names.api_name(cr, env), spec.api, ("api",), "api")]
    for name, consumer in spec.consumers.items():
        out.append(
            Workload(
                names.consumer_component(name),
                names.consumer_name(cr, env, name),
                consumer,
                ("consumer", name),
                "consumer",
                consumer=name,
            )
        )
    for name, worker in spec.workers.items():
        out.append(
            Workload(
                names.worker_component(name),
                names.worker_name(cr, env, name),
                worker,
                ("worker", name),
                "worker",
            )
        )
    out.append(
        Workload(
            names.COLLECTOR_COMPONENT, names.collector_name(cr), spec.otel_collector, (), "otel-collector"
        )
    )
    return out


def _http_probe(path: str, port: str, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period, "failureThreshold": failures}


def booking_container(platform: Platform, workload: Workload) -> dict[str, Any]:
    """A container running `booking <args>` with the platform's env, probes and restricted security."""
    image = platform.spec.image
    ports = [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}]
    env = booking_env(platform, workload.settings)
    mounts = [tmp_mount()]
    if workload.component == names.API_COMPONENT:
        mounts += auth_ca_volume(platform)[1]
        # The API serves /metrics on its own HTTP port (aggregated across uvicorn workers).
        ports = [{"name": "http", "containerPort": API_PORT, "protocol": "TCP"}]
        # Listen on every interface: the settings default (127.0.0.1) suits `booking run`, not a pod.
        env = merge_env(
            [{"name": "BOOKING_HOST", "value": "0.0.0.0"}, {"name": "BOOKING_PORT", "value": str(API_PORT)}],
            auth_env(platform),  # before the user's env, which may tune other BOOKING_AUTH_* settings
            edge_env(platform),
            env,
        )
        startup, live, ready = (
            _http_probe("/healthz", "http", 2, 30),
            _http_probe("/healthz", "http", 10, 3),
            _http_probe("/readyz", "http", 5, 3),
        )
    else:
        if workload.consumer == LIS_CONSUMER:
            env = merge_env(lis_env(platform), env)
        # Consumers and workers answer /livez from their loop's last progress (a poll, a relay pass, a
        # queue fetch; booking_core.health), not from a metrics thread that outlives a wedged loop.
        # Startup allows two minutes for the first poll (connections, group join); liveness restarts a
        # pod whose loop stalled; readiness drops it from the PodDisruptionBudget's count meanwhile.
        startup, live, ready = (
            _http_probe("/livez", "metrics", 2, 60),
            _http_probe("/livez", "metrics", 10, 3),
            _http_probe("/readyz", "metrics", 10, 3),
        )
    return {
        "name": workload.container,
        "image": image.reference,
        "imagePullPolicy": image.pull_policy,
        "command": ["booking"],
        "args": list(workload.args),
        "env": env,
        "ports": ports,
        "resources": quantities(workload.settings.resources),
        "securityContext": container_security(),
        "volumeMounts": mounts,
        "startupProbe": startup,
        "livenessProbe": live,
        "readinessProbe": ready,
    }


def migrate_container(platform: Platform, workload: Workload) -> dict[str, Any]:
    """`booking migrate` before the API starts, so a new image never serves against an old schema."""
    image = platform.spec.image
    return {
        "name": "migrate",
        "image": image.reference,
        "imagePullPolicy": image.pull_policy,
        "command": ["booking"],
        "args": ["migrate"],
        "env": booking_env(platform, workload.settings),
        "resources": quantities(workload.settings.resources),
        "securityContext": container_security(),
        "volumeMounts": [tmp_mount()],
    }


def _collector_pod(platform: Platform, workload: Workload) -> dict[str, Any]:
    col = platform.spec.otel_collector
    tcp = {"tcpSocket": {"port": "otlp-http"}}
    container = {
        "name": workload.container,
        "image": col.image,
        "imagePullPolicy": "IfNotPresent",
        "args": [f"--config={CONFIG_DIR}/{CONFIG_KEY}"],
        "ports": [
            {"name": "otlp-grpc", "containerPort": OTLP_GRPC_PORT, "protocol": "TCP"},
            {"name": "otlp-http", "containerPort": OTLP_HTTP_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": COLLECTOR_METRICS_PORT, "protocol": "TCP"},
        ],
        "resources": quantities(col.resources),
        "securityContext": container_security(),
        "volumeMounts": [tmp_mount(), {"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True}],
        "livenessProbe": {**tcp, "periodSeconds": 20, "failureThreshold": 3},
        "readinessProbe": {**tcp, "periodSeconds": 10, "failureThreshold": 3},
    }
    env = user_env(col)
    if env:
        container["env"] = env
    return pod_template(
        platform,
        workload.component,
        col,
        [container],
        volumes=[{"name": CONFIG_VOLUME, "configMap": {"name": names.collector_name(platform.name)}}],
        annotations={names.ANNOTATION_CONFIG_CHECKSUM: config_checksum(platform)},
    )


def build_deployment(platform: Platform, workload: Workload, *, autoscaled: bool) -> Manifest:
    """The component's Deployment; without spec.replicas when an HPA or KEDA owns the count."""
    if workload.component == names.COLLECTOR_COMPONENT:
        template = _collector_pod(platform, workload)
    else:
        inits = []
        if workload.component == names.API_COMPONENT and platform.spec.api.run_migrations:
            inits.append(migrate_container(platform, workload))
        template = pod_template(
            platform,
            workload.component,
            workload.settings,
            [booking_container(platform, workload)],
            init_containers=inits,
            volumes=auth_ca_volume(platform)[0] if workload.component == names.API_COMPONENT else None,
            annotations={
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(
                    API_PORT if workload.component == names.API_COMPONENT else METRICS_PORT
                ),
                "prometheus.io/path": "/metrics",
            },
        )
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector(platform, workload.component)},
        # Surge first: most components run one pod; never remove it before its successor is ready.
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "revisionHistoryLimit": 5,
        "template": template,
    }
    if not autoscaled:
        spec = {"replicas": workload.settings.replicas, **spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(platform, workload.name, workload.component),
        "spec": spec,
    }
