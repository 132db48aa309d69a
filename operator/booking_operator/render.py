"""`render(platform) -> list[manifest]`: every child of a BookingPlatform, pure and in a stable order.

Shared by the operator (which adds ownerReferences and applies), `booking render` and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from booking_operator import names
from booking_operator.builders.common import Autoscaler, Manifest, Workload
from booking_operator.builders.configmap import build_collector_configmap
from booking_operator.builders.cronjob import build_cronjob
from booking_operator.builders.deployment import build_deployment, workloads
from booking_operator.builders.hpa import build_hpa, fallback_hpa
from booking_operator.builders.pdb import build_pdb
from booking_operator.builders.scaledobject import build_scaledobject, build_trigger_authentication
from booking_operator.builders.service import build_api_service, build_collector_service
from booking_operator.builders.serviceaccount import build_service_account
from booking_operator.spec import HpaSpec, KedaSpec, Platform, parse_platform

__all__ = ["Component", "Manifest", "autoscalers", "components", "render", "render_object"]

# Dependencies first, so a plain `kubectl apply -f` of the output also works in one pass.
KIND_ORDER = (
    "ServiceAccount",
    "ConfigMap",
    "Service",
    "Deployment",
    "CronJob",
    "HorizontalPodAutoscaler",
    "TriggerAuthentication",
    "ScaledObject",
    "PodDisruptionBudget",
)


@dataclass(frozen=True)
class Component:
    """One workload as the status reports it: id, kind/name, autoscaler and the replica bounds wanted."""

    component: str
    kind: str
    name: str
    autoscaler: Autoscaler | None
    autoscaler_name: str | None
    min_replicas: int
    max_replicas: int
    keda_fallback: bool = False


def _autoscaling(
    w: Workload, keda_available: bool
) -> tuple[Autoscaler | None, HpaSpec | KedaSpec | None, bool]:
    """(mode, settings, is_fallback) for one workload."""
    scaling = getattr(w.settings, "autoscaling", None)
    keda: KedaSpec | None = getattr(scaling, "keda", None)
    if keda is not None:
        if keda_available:
            return "keda", keda, False
        return "hpa", fallback_hpa(keda), True
    hpa: HpaSpec | None = getattr(scaling, "hpa", None)
    if hpa is not None:
        return "hpa", hpa, False
    return None, None, False


def components(platform: Platform, *, keda_available: bool = True) -> list[Component]:
    """Every workload (14 Deployments and the CronJob) with its autoscaler, in render order."""
    out: list[Component] = []
    env = platform.spec.environment
    for w in workloads(platform):
        mode, settings, fallback = _autoscaling(w, keda_available)
        if mode == "keda" and w.consumer is not None:
            as_name: str | None = names.scaledobject_name(platform.name, env, w.consumer)
        elif mode == "hpa":
            # The API's HPA keeps the seed's name; any other Deployment's HPA follows the same pattern.
            as_name = names.hpa_name_for(w.name)
        else:
            as_name = None
        lo = settings.min_replicas if settings is not None else w.settings.replicas
        hi = settings.max_replicas if settings is not None else w.settings.replicas
        out.append(Component(w.component, "Deployment", w.name, mode, as_name, lo, hi, fallback))
    out.append(
        Component(names.CRON_COMPONENT, "CronJob", names.cron_name(platform.name, env), None, None, 0, 1)
    )
    return out


def autoscalers(platform: Platform, *, keda_available: bool = True) -> dict[str, Autoscaler]:
    """Component id -> "hpa" or "keda", for the autoscaled components only."""
    return {
        c.component: c.autoscaler for c in components(platform, keda_available=keda_available) if c.autoscaler
    }


def render(platform: Platform, *, keda_available: bool = True) -> list[Manifest]:
    """Every child manifest; with keda_available=False, KEDA-configured consumers get a CPU HPA instead."""
    out: list[Manifest] = []
    sa = build_service_account(platform)
    if sa is not None:
        out.append(sa)
    out += [
        build_collector_configmap(platform),
        build_api_service(platform),
        build_collector_service(platform),
    ]
    deployments: list[Manifest] = []
    scalers: list[Manifest] = []
    pdbs: list[Manifest] = []
    uses_keda = False
    for w in workloads(platform):
        mode, settings, _ = _autoscaling(w, keda_available)
        # KEDA or the HPA owns replicas when enabled; a fixed spec.replicas would fight it on every apply.
        deployments.append(build_deployment(platform, w, autoscaled=mode is not None))
        if isinstance(settings, KedaSpec):
            uses_keda = True
            scalers.append(build_scaledobject(platform, w, settings))
        elif isinstance(settings, HpaSpec):
            scalers.append(build_hpa(platform, w, settings, names.hpa_name_for(w.name)))
        min_pods = settings.min_replicas if settings is not None else w.settings.replicas
        pdb = build_pdb(platform, w, min_pods)
        if pdb is not None:
            pdbs.append(pdb)
    out += deployments
    out.append(build_cronjob(platform))
    out += scalers
    auth = build_trigger_authentication(platform) if uses_keda else None
    if auth is not None:
        out.append(auth)
    out += pdbs
    order = {kind: i for i, kind in enumerate(KIND_ORDER)}
    # sorted() is stable: within a kind, the component order above is kept.
    return sorted(out, key=lambda m: order[m["kind"]])


def render_object(obj: dict[str, Any], *, keda_available: bool = True) -> list[Manifest]:
    """Parse a BookingPlatform object and render it (raises InvalidPlatformError)."""
    return render(parse_platform(obj), keda_available=keda_available)
