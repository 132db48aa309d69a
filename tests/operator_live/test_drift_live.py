"""Drift on a real kube-apiserver: every rendered kind reads back as no drift after our apply, and edits
by another manager (removing `allowPrivilegeEscalation: false`, a `false`, a `0`) are drift until the
next apply restores them. This pins drift.py's model of managedFields to what the API server does.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from booking_operator.apply import CHILD_KINDS, Applier, Owner, adopt, kind_of
from booking_operator.cache import slim
from booking_operator.client import Kube
from booking_operator.drift import needs_apply
from booking_operator.render import render
from booking_operator.spec import parse_platform
from booking_testing.wait import wait_for

from .conftest import operator_kube

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "manifests" / "examples" / "pat-booking-be-prod.yaml"
KEDA_SCHEMAS = ROOT / "third_party" / "keda"
MANAGER = "booking-operator"
NAME = "pat--booking--be"


# The operator's client is asynchronous; these tests drive it from one loop of their own.
LOOP = asyncio.new_event_loop()
T = TypeVar("T")


def sync(coro: Coroutine[Any, Any, T]) -> T:
    return LOOP.run_until_complete(coro)


@pytest.fixture(scope="module")
def api(disposable_kubeconfig: str) -> k8s.ApiClient:
    """The official client, for setting up and for edits by other managers."""
    return k8s_config.new_client_from_config(config_file=disposable_kubeconfig)  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def kube(disposable_kubeconfig: str, api: k8s.ApiClient) -> Kube:
    """A client for a cluster we may install KEDA's CRDs on (ScaledObjects are one rendered kind)."""
    kube = operator_kube(disposable_kubeconfig)
    ext = k8s.ApiextensionsV1Api(api)
    for f in sorted(KEDA_SCHEMAS.glob("keda.sh_*.yaml")):
        try:
            ext.create_custom_resource_definition(yaml.safe_load(f.read_text()))
        except k8s.ApiException as exc:
            if exc.status != 409:
                raise

    def served() -> bool:
        found = sync(kube.request("GET", "/apis/keda.sh/v1alpha1"))
        return any(r["name"] == "scaledobjects" for r in found.get("resources", []))

    wait_for(served, timeout=60, what="keda.sh/v1alpha1 scaledobjects to be served", interval=0.3,
             ignore=(Exception,))  # fmt: skip
    return kube


@pytest.fixture
def children(kube: Kube, api: k8s.ApiClient) -> Iterator[tuple[Applier, list[dict[str, Any]]]]:
    """Every rendered child of the production example, applied in a fresh namespace."""
    ns = f"drift-{uuid.uuid4().hex[:8]}"
    core = k8s.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": ns}})
    # A real owner in the namespace: the garbage collector deletes children whose owner does not exist.
    owner_cm = core.create_namespaced_config_map(ns, {"metadata": {"name": "owner"}})
    owner = Owner("v1", "ConfigMap", "owner", ns, owner_cm.metadata.uid)
    body = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"] |= {"namespace": ns, "uid": owner.uid, "generation": 1}
    body["spec"]["api"]["service"]["nodePort"] = 30000 + uuid.uuid4().int % 2700
    desired = [adopt(m, owner) for m in render(parse_platform(body), keda_available=True)]
    applier = Applier(kube, MANAGER)
    for m in sorted(desired, key=lambda m: [k.kind for k in CHILD_KINDS].index(m["kind"])):
        sync(applier.apply(m))
    yield applier, desired
    core.delete_namespace(ns)


def _live(applier: Applier, m: dict[str, Any]) -> dict[str, Any]:
    got = sync(applier.get(kind_of(m), m["metadata"]["namespace"], m["metadata"]["name"]))
    assert got is not None
    return got


def _json_patch(kube: Kube, m: dict[str, Any], ops: list[dict[str, Any]]) -> None:
    """An edit as `kubectl edit` or `kubectl patch --type=json` sends it: an Update by another manager."""
    kind = kind_of(m)
    sync(
        kube.request(
            "PATCH",
            kind.path(m["metadata"]["namespace"], m["metadata"]["name"]),
            query={"fieldManager": "kubectl-edit"},
            body=ops,
            content_type="application/json-patch+json",
        )
    )


@pytest.mark.timeout(240)
def test_every_kind_reads_back_as_no_drift(children: tuple[Applier, list[dict[str, Any]]]) -> None:
    applier, desired = children
    kinds = {m["kind"] for m in desired}
    assert kinds >= {"Deployment", "Service", "CronJob", "HorizontalPodAutoscaler", "ScaledObject",
                     "ConfigMap", "PodDisruptionBudget", "ServiceAccount"}  # fmt: skip
    for m in desired:
        live = _live(applier, m)
        assert needs_apply(m, live, MANAGER) == [], f"{m['kind']}/{m['metadata']['name']}"
        # as the operator's cache keeps it: compact, only the ownership paths drift reads
        cached = json.loads(slim(live, m["kind"], MANAGER, m))
        assert needs_apply(m, cached, MANAGER) == [], m["kind"]


@pytest.mark.timeout(240)
def test_removed_false_and_zero_are_drift_until_applied(
    children: tuple[Applier, list[dict[str, Any]]],
) -> None:
    applier, desired = children
    by_kind = {(m["kind"], m["metadata"]["name"]): m for m in desired}
    dep = by_kind[("Deployment", f"{NAME}--wrk--notifications--prod")]
    sa = next(m for (k, _), m in by_kind.items() if k == "ServiceAccount")
    cron = next(m for (k, _), m in by_kind.items() if k == "CronJob")
    edits = [
        (dep, "/spec/template/spec/containers/0/securityContext/allowPrivilegeEscalation",
         ".spec.template.spec.containers[name=worker].securityContext.allowPrivilegeEscalation"),
        (dep, "/spec/template/spec/automountServiceAccountToken",
         ".spec.template.spec.automountServiceAccountToken"),
        (sa, "/automountServiceAccountToken", ".automountServiceAccountToken"),
        (cron, "/spec/jobTemplate/spec/backoffLimit", ".spec.jobTemplate.spec.backoffLimit"),
    ]  # fmt: skip
    container = dep["spec"]["template"]["spec"]["containers"][0]["name"]
    for m, pointer, path in edits:
        path = path.replace("[name=worker]", f"[name={container}]")
        _json_patch(applier.kube, m, [{"op": "remove", "path": pointer}])
        assert path in needs_apply(m, _live(applier, m), MANAGER), f"{m['kind']}: removing {pointer}"
        sync(applier.apply(m))
        assert needs_apply(m, _live(applier, m), MANAGER) == [], f"{m['kind']}: {pointer} not restored"


@pytest.mark.timeout(240)
def test_what_others_own_is_not_drift(
    children: tuple[Applier, list[dict[str, Any]]], api: k8s.ApiClient
) -> None:
    applier, desired = children
    autoscaled = next(
        m for m in desired if m["kind"] == "Deployment" and "replicas" not in m["spec"]
    )  # under an HPA or KEDA
    ns, name = autoscaled["metadata"]["namespace"], autoscaled["metadata"]["name"]
    apps = k8s.AppsV1Api(api)
    apps.patch_namespaced_deployment_scale(name, ns, {"spec": {"replicas": 4}}, field_manager="hpa-sim")
    # `kubectl rollout restart`: its own annotation on the pod template
    restarted = {"kubectl.kubernetes.io/restartedAt": "2026-11-30T00:00:00Z"}
    patch = {"spec": {"template": {"metadata": {"annotations": restarted}}}}
    apps.patch_namespaced_deployment(name, ns, patch, field_manager="kubectl-rollout")
    assert needs_apply(autoscaled, _live(applier, autoscaled), MANAGER) == []
