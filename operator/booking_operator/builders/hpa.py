"""CPU HorizontalPodAutoscalers (autoscaling/v2): the API's, and the fallback when KEDA is absent."""

from __future__ import annotations

from booking_operator.builders.common import Manifest, Workload, metadata
from booking_operator.spec import HpaSpec, KedaSpec, Platform


def fallback_hpa(keda: KedaSpec) -> HpaSpec:
    """The CPU HPA used for a KEDA-configured component while KEDA is not installed."""
    # An HPA cannot scale to zero, so a KEDA minimum of 0 becomes 1.
    return HpaSpec(min_replicas=max(1, keda.min_replicas), max_replicas=keda.max_replicas)


def build_hpa(platform: Platform, workload: Workload, hpa: HpaSpec, name: str) -> Manifest:
    """An HPA on the workload's Deployment, scaling on average CPU utilisation of its requests."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(platform, name, workload.component),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": workload.name},
            "minReplicas": hpa.min_replicas,
            "maxReplicas": hpa.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": hpa.target_cpu_utilization_percentage,
                        },
                    },
                }
            ],
        },
    }
