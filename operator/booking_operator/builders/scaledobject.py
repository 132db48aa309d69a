"""KEDA ScaledObjects on Kafka consumer lag, and the TriggerAuthentication for SASL clusters."""

from __future__ import annotations

from typing import Any

from booking_core.topology import CONSUMERS
from booking_operator import names
from booking_operator.builders.common import Manifest, Workload, metadata
from booking_operator.spec import KedaSpec, Platform

KEDA_API_VERSION = "keda.sh/v1alpha1"
_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}


def build_trigger_authentication(platform: Platform) -> Manifest | None:
    """SASL credentials for KEDA's Kafka scaler from the Secrets the pods use; None without SASL."""
    sasl = platform.spec.connections.kafka.sasl
    if sasl is None:
        return None
    name = names.trigger_auth_name(platform.name, platform.spec.environment)
    return {
        "apiVersion": KEDA_API_VERSION,
        "kind": "TriggerAuthentication",
        "metadata": metadata(platform, name, "keda"),
        "spec": {
            "secretTargetRef": [
                {"parameter": "username", **sasl.username_secret_ref.model_dump()},
                {"parameter": "password", **sasl.password_secret_ref.model_dump()},
            ]
        },
    }


def build_scaledobject(platform: Platform, workload: Workload, keda: KedaSpec) -> Manifest:
    """`kafka-<deployment>`: scale the consumer on its group's lag on its topic."""
    assert workload.consumer is not None, "only consumers have a Kafka lag to scale on"
    kafka = platform.spec.connections.kafka
    topology = CONSUMERS[workload.consumer]
    trigger_meta = {
        # KEDA resolves it from the target container's env, i.e. the same Secret: never a plain value here.
        "bootstrapServersFromEnv": "BOOKING_KAFKA_BOOTSTRAP_SERVERS",
        # The consumer derives both from the same table and the same prefix (booking_env pins it).
        "topic": topology.topic_for(kafka.topic_prefix),
        "consumerGroup": topology.group_for(kafka.topic_prefix),
        "lagThreshold": str(keda.lag_threshold),
        "activationLagThreshold": str(keda.activation_lag_threshold),
        # Matches the consumers' auto.offset.reset: a new group's backlog counts as lag and is worked off.
        "offsetResetPolicy": "earliest",
    }
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        trigger_meta["tls"] = "enable"
    trigger: dict[str, Any] = {"type": "kafka", "metadata": trigger_meta}
    if kafka.sasl is not None:
        trigger_meta["sasl"] = _SASL[kafka.sasl.mechanism]
        trigger["authenticationRef"] = {
            "name": names.trigger_auth_name(platform.name, platform.spec.environment)
        }
    so_name = names.scaledobject_name(platform.name, platform.spec.environment, workload.consumer)
    spec: dict[str, Any] = {
        "scaleTargetRef": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": workload.name,
            "envSourceContainerName": workload.container,
        },
        "minReplicaCount": keda.min_replicas,
        "maxReplicaCount": keda.max_replicas,
        "pollingInterval": keda.polling_interval,
        "cooldownPeriod": keda.cooldown_period,
        "triggers": [trigger],
    }
    if keda.scale_down_stabilization_seconds is not None:
        scale_down = {"stabilizationWindowSeconds": keda.scale_down_stabilization_seconds}
        spec["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": scale_down}}}
    return {
        "apiVersion": KEDA_API_VERSION,
        "kind": "ScaledObject",
        "metadata": metadata(platform, so_name, workload.component),
        "spec": spec,
    }
