"""What every child shares: metadata, labels, restricted pod security, env and the pod template."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from booking_operator import names
from booking_operator.spec import EnvVar, Platform, PodSettings, Resources, SecretKeyRef, WorkloadSpec

Manifest = dict[str, Any]
Autoscaler = Literal["hpa", "keda"]

API_PORT = 8000
METRICS_PORT = 9000
OTLP_GRPC_PORT = 4317
OTLP_HTTP_PORT = 4318
COLLECTOR_METRICS_PORT = 8888
# A fixed non-root uid, so runAsNonRoot holds even for an image whose USER is a name, not a number.
RUN_AS_UID = 10001
TMP_VOLUME = "tmp"


@dataclass(frozen=True)
class Workload:
    """One Deployment-backed component: its id, Deployment name, settings and `booking` arguments."""

    component: str
    name: str
    settings: WorkloadSpec
    args: tuple[str, ...]
    container: str
    consumer: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def labels(platform: Platform, component: str) -> dict[str, str]:
    """The labels every child carries; the reconciler watches children by them."""
    return {
        names.LABEL_NAME: names.APP_NAME,
        names.LABEL_INSTANCE: platform.name,
        names.LABEL_PART_OF: platform.name,
        names.LABEL_COMPONENT: component,
        names.LABEL_MANAGED_BY: names.MANAGED_BY,
    }


def selector(platform: Platform, component: str) -> dict[str, str]:
    """Pod selector labels; a Deployment's selector is immutable, so nothing here may ever change."""
    return {
        names.LABEL_NAME: names.APP_NAME,
        names.LABEL_INSTANCE: platform.name,
        names.LABEL_COMPONENT: component,
    }


def metadata(platform: Platform, name: str, component: str) -> dict[str, Any]:
    """Object metadata in the CR's namespace; ownerReferences are the reconciler's to add."""
    return {"name": name, "namespace": platform.namespace, "labels": labels(platform, component)}


def quantities(resources: Resources) -> dict[str, dict[str, str]]:
    """A core/v1 ResourceRequirements dict, dropping unset values."""
    out: dict[str, dict[str, str]] = {}
    for section in ("requests", "limits"):
        values = getattr(resources, section).model_dump(by_alias=True, exclude_none=True)
        if values:
            out[section] = {k: str(v) for k, v in values.items()}
    return out


def container_security() -> dict[str, Any]:
    """The restricted Pod Security Standard, per container."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security() -> dict[str, Any]:
    """The restricted Pod Security Standard, per pod."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_UID,
        "runAsGroup": RUN_AS_UID,
        "fsGroup": RUN_AS_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _secret_env(name: str, ref: SecretKeyRef) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def _user_env(env: list[EnvVar]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for e in env:
        if e.secret_key_ref is not None:
            out.append(_secret_env(e.name, e.secret_key_ref))
        else:
            out.append({"name": e.name, "value": e.value})
    return out


def merge_env(*groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Later groups override earlier ones by name; server-side apply rejects duplicate names."""
    merged: dict[str, dict[str, Any]] = {}
    for group in groups:
        for e in group:
            merged.pop(e["name"], None)
            merged[e["name"]] = e
    return list(merged.values())


TOPIC_PREFIX_ENV = "BOOKING_KAFKA_TOPIC_PREFIX"


def booking_env(platform: Platform, settings: PodSettings) -> list[dict[str, Any]]:
    """Environment of a `booking` container: connections from Secrets, telemetry, then the user's env."""
    spec = platform.spec
    kafka = spec.connections.kafka
    env: list[dict[str, Any]] = [
        {"name": "BOOKING_ENVIRONMENT", "value": spec.environment},
        _secret_env("BOOKING_DATABASE_URL", spec.connections.database.url_secret_ref),
        _secret_env("BOOKING_KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap_servers_secret_ref),
        {"name": "BOOKING_KAFKA_SECURITY_PROTOCOL", "value": kafka.security_protocol},
    ]
    if kafka.sasl is not None:
        env += [
            {"name": "BOOKING_KAFKA_SASL_MECHANISM", "value": kafka.sasl.mechanism},
            _secret_env("BOOKING_KAFKA_SASL_USERNAME", kafka.sasl.username_secret_ref),
            _secret_env("BOOKING_KAFKA_SASL_PASSWORD", kafka.sasl.password_secret_ref),
        ]
    env += [
        _secret_env("BOOKING_REDIS_URL", spec.connections.redis.url_secret_ref),
        {"name": "BOOKING_METRICS_PORT", "value": str(METRICS_PORT)},
        {
            "name": "OTEL_EXPORTER_OTLP_ENDPOINT",
            "value": names.collector_endpoint(platform.name, platform.namespace),
        },
    ]
    user = _user_env(settings.env)
    # The prefix names topics and consumer groups, and KEDA's trigger is rendered from the CR's value:
    # a component's env may not change it, or KEDA would measure a group nobody reads as.
    pinned = []
    if kafka.topic_prefix or any(e["name"] == TOPIC_PREFIX_ENV for e in user):
        pinned.append({"name": TOPIC_PREFIX_ENV, "value": kafka.topic_prefix})
    return merge_env(env, user, pinned)


def user_env(settings: PodSettings) -> list[dict[str, Any]]:
    """Only the user's env (for the collector, which needs no connections)."""
    return _user_env(settings.env)


def restarted_at(platform: Platform, component: str) -> str | None:
    """The restart token for this component, if `spec.restartAt` names it (or names none, meaning all)."""
    restart = platform.spec.restart_at
    if restart is None:
        return None
    if restart.components and component not in restart.components:
        return None
    return restart.at


def pod_template(
    platform: Platform,
    component: str,
    settings: PodSettings,
    containers: list[dict[str, Any]],
    *,
    init_containers: list[dict[str, Any]] | None = None,
    volumes: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A pod template with restricted security, a writable /tmp and the component's placement."""
    spec = platform.spec
    notes = dict(annotations or {})
    token = restarted_at(platform, component)
    if token is not None:
        notes[names.ANNOTATION_RESTARTED_AT] = token
    pod: dict[str, Any] = {
        "serviceAccountName": spec.service_account_name
        or names.service_account_name(platform.name, spec.environment),
        # The booking processes never call the Kubernetes API.
        "automountServiceAccountToken": False,
        # Service links would inject a variable per Service in the namespace; nothing reads them.
        "enableServiceLinks": False,
        "securityContext": pod_security(),
        "containers": containers,
        # The root filesystem is read-only; Python, uvicorn and the collector still want a scratch dir.
        "volumes": [{"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "64Mi"}}, *(volumes or [])],
    }
    if init_containers:
        pod["initContainers"] = init_containers
    if spec.image.pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in spec.image.pull_secrets]
    if settings.node_selector:
        pod["nodeSelector"] = dict(sorted(settings.node_selector.items()))
    if settings.tolerations:
        pod["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in settings.tolerations]
    if settings.affinity:
        pod["affinity"] = settings.affinity
    meta: dict[str, Any] = {"labels": labels(platform, component)}
    if notes:
        meta["annotations"] = dict(sorted(notes.items()))
    return {"metadata": meta, "spec": pod}


def tmp_mount() -> dict[str, str]:
    """The /tmp mount every container gets."""
    return {"name": TMP_VOLUME, "mountPath": "/tmp"}  # noqa: S108 - an emptyDir, not the host's /tmp
