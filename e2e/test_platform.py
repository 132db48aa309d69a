"""The production example on a real API server: converge, edits, autoscalers, drift, deletion, idleness."""

from __future__ import annotations

import time
from typing import Any

import pytest
from e2elib import (
    CONVERGE_S,
    EXPECT_READY,
    FIELD_MANAGER,
    Cluster,
    prod_platform,
    wait_for,
)
from kubernetes import client

pytestmark = pytest.mark.e2e

NAME = "pat--booking--be"
API = f"{NAME}--app--prod"
HPA = f"{API}-hpa"
PTR = f"{NAME}--consumer-pat-test-result--prod"
SO = f"kafka-{PTR}"
REPAIR_S = 10.0


def converged(cluster: Cluster, ns: str, *, scaledobjects: int = 1, ready: bool = True) -> dict[str, Any]:
    """Wait for every child and the status of the current generation (and Ready=True, 14/14 when
    `ready`: tests about writes need no pods, so only they skip it); returns the CR."""

    def done() -> dict[str, Any] | None:
        deps = cluster.deployments(ns)
        if len(deps) != 14:
            return None
        cr = cluster.platform(ns, NAME)
        st = cr.get("status", {})
        if st.get("observedGeneration") != cr["metadata"]["generation"]:
            return None
        if ready and EXPECT_READY:
            if st.get("components") != "14/14":
                return None
            cond = [c for c in st.get("conditions", []) if c["type"] == "Ready"]
            if not cond or cond[0]["status"] != "True":
                return None
        if len(cluster.children(ns, "scaledobjects", "keda.sh/v1alpha1")) != scaledobjects:
            return None
        return cr

    return wait_for(done, timeout=CONVERGE_S, what=f"{NAME} in {ns} to converge")


def test_production_example_converges(cluster: Cluster, namespace: str, keda: None) -> None:
    t0 = time.monotonic()
    cluster.apply_platform(prod_platform(namespace, seed_node_port=True))
    cr = converged(cluster, namespace)
    elapsed = time.monotonic() - t0

    deps = cluster.deployments(namespace)
    if EXPECT_READY:
        for name, d in deps.items():
            conds = {c["type"]: c["status"] for c in d.get("status", {}).get("conditions", [])}
            assert conds.get("Available") == "True", name
    assert deps[f"{NAME}--consumer-lis-testresult--prod"]["spec"]["replicas"] == 2
    cronjobs = cluster.children(namespace, "cronjobs", "batch/v1")
    assert [c["metadata"]["name"] for c in cronjobs] == [f"{NAME}--cron--prod"]
    assert cronjobs[0]["spec"]["schedule"] == "* * * * *"
    services = {s["metadata"]["name"]: s for s in cluster.children(namespace, "services", "v1")}
    assert services[API]["spec"]["type"] == "NodePort"
    assert services[API]["spec"]["ports"][0]["port"] == 80
    assert services[API]["spec"]["ports"][0]["nodePort"] == 30978
    assert f"{NAME}-otel-collector" in services
    hpas = {
        h["metadata"]["name"]: h
        for h in cluster.children(namespace, "horizontalpodautoscalers", "autoscaling/v2")
    }
    assert hpas[HPA]["spec"]["minReplicas"] == 1 and hpas[HPA]["spec"]["maxReplicas"] == 5
    so = cluster.children(namespace, "scaledobjects", "keda.sh/v1alpha1")[0]
    assert so["metadata"]["name"] == SO
    assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (1, 10)
    assert so["spec"]["triggers"][0]["metadata"]["lagThreshold"] == "20"

    # adopted, and never blocked from deletion
    uid = cr["metadata"]["uid"]
    for (kind, name), obj in cluster.all_children(namespace).items():
        refs = obj["metadata"].get("ownerReferences", [])
        assert any(r["uid"] == uid and r.get("controller") for r in refs), f"{kind}/{name} not adopted"
    assert not cr["metadata"].get("finalizers")
    conds = {c["type"]: c for c in cr["status"]["conditions"]}
    assert set(conds) >= {"Ready", "Progressing", "Degraded", "Paused", "AutoscalerAvailable"}
    assert conds["AutoscalerAvailable"]["status"] == "True"
    assert all(c["observedGeneration"] == cr["metadata"]["generation"] for c in conds.values())
    assert cr["status"]["autoscaling"] == "keda"
    print(f"converged in {elapsed:.1f}s")


def test_sre_edits_are_reflected_and_hpa_replicas_survive(
    cluster: Cluster, namespace: str, keda: None
) -> None:
    body = prod_platform(namespace)
    cluster.apply_platform(body)
    converged(cluster, namespace, ready=False)

    # The HPA controller scales the API; it writes replicas through the scale subresource as its own manager.
    cluster.apps.patch_namespaced_deployment_scale(
        API, namespace, {"spec": {"replicas": 3}}, field_manager="horizontal-pod-autoscaler-sim"
    )

    consumers = body["spec"]["consumers"]
    consumers["booking"] = {"replicas": 3}
    consumers["pat-test-result"] = {
        "autoscaling": {"keda": {"minReplicas": 2, "maxReplicas": 20, "lagThreshold": 50}}
    }
    consumers["customer"] = {
        "autoscaling": {"keda": {"minReplicas": 1, "maxReplicas": 4, "lagThreshold": 10}}
    }
    cluster.apply_platform(body)

    def reflected() -> bool:
        deps = cluster.deployments(namespace)
        sos = {
            s["metadata"]["name"]: s for s in cluster.children(namespace, "scaledobjects", "keda.sh/v1alpha1")
        }
        ptr, cust = sos.get(SO), sos.get(f"kafka-{NAME}--consumer-customer--prod")
        return bool(
            deps[f"{NAME}--consumer-booking--prod"]["spec"]["replicas"] == 3
            and ptr
            and (ptr["spec"]["minReplicaCount"], ptr["spec"]["maxReplicaCount"]) == (2, 20)
            and ptr["spec"]["triggers"][0]["metadata"]["lagThreshold"] == "50"
            and cust
            and cust["spec"]["maxReplicaCount"] == 4
        )

    wait_for(reflected, timeout=30, what="the SRE's edits in the children")
    converged(cluster, namespace, scaledobjects=2, ready=False)

    # The switched consumer's replicas now belong to KEDA: our field manager no longer owns them.
    cust = cluster.apps.read_namespaced_deployment(f"{NAME}--consumer-customer--prod", namespace)
    ours = [m for m in cust.metadata.managed_fields if m.manager == FIELD_MANAGER and m.operation == "Apply"]
    assert ours and "f:replicas" not in ours[0].fields_v1.get("f:spec", {})
    # ... and the API keeps the count its autoscaler chose across those reconciles.
    assert cluster.apps.read_namespaced_deployment(API, namespace).spec.replicas == 3


def test_drift_is_repaired_within_seconds(cluster: Cluster, namespace: str, keda: None) -> None:
    cluster.apply_platform(prod_platform(namespace))
    converged(cluster, namespace, ready=False)
    victim = f"{NAME}--wrk--notifications--prod"
    before = cluster.apps.read_namespaced_deployment(victim, namespace)
    image = before.spec.template.spec.containers[0].image

    cluster.apps.delete_namespaced_deployment(victim, namespace)
    t0 = time.monotonic()

    def recreated() -> bool:
        d = cluster.apps.read_namespaced_deployment(victim, namespace)
        return d.metadata.uid != before.metadata.uid and d.metadata.deletion_timestamp is None

    wait_for(recreated, timeout=REPAIR_S, what=f"{victim} to be recreated")
    print(f"deleted Deployment recreated in {time.monotonic() - t0:.2f}s")

    cluster.apps.patch_namespaced_deployment(
        victim,
        namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": before.spec.template.spec.containers[0].name,
                                                         "image": "registry.example/evil:1"}]}}}},
        field_manager="kubectl-edit",
    )  # fmt: skip
    t0 = time.monotonic()
    wait_for(
        lambda: (
            cluster.apps.read_namespaced_deployment(victim, namespace).spec.template.spec.containers[0].image
            == image
        ),
        timeout=REPAIR_S,
        what="the edited image to be restored",
    )
    print(f"edited image restored in {time.monotonic() - t0:.2f}s")

    # KEDA's kinds are watched too (by the operator's own watch, since their CRD may come and go).
    cluster.custom.patch_namespaced_custom_object(
        "keda.sh", "v1alpha1", namespace, "scaledobjects", SO, {"spec": {"maxReplicaCount": 99}},
        _content_type="application/merge-patch+json",
    )  # fmt: skip
    t0 = time.monotonic()
    wait_for(
        lambda: (
            cluster.custom.get_namespaced_custom_object(
                "keda.sh", "v1alpha1", namespace, "scaledobjects", SO
            )["spec"]["maxReplicaCount"]
            == 10
        ),
        timeout=REPAIR_S,
        what="the edited ScaledObject to be restored",
    )
    print(f"edited ScaledObject restored in {time.monotonic() - t0:.2f}s")


def test_steady_state_sends_no_writes(cluster: Cluster, namespace: str, keda: None) -> None:
    cluster.apply_platform(prod_platform(namespace))
    converged(cluster, namespace)
    if EXPECT_READY:
        # Let the rollout finish: after that, nothing of ours changes any more.
        wait_for(
            lambda: (cluster.condition(namespace, NAME, "Progressing") or {}).get("status") == "False",
            timeout=30,
            what="Progressing=False",
        )

    def snapshot() -> dict[tuple[str, str], tuple[str, int, dict[tuple[str, str], str]]]:
        out = {}
        for key, obj in cluster.all_children(namespace).items():
            meta = obj["metadata"]
            fields = {
                (m["manager"], m.get("subresource", "")): m.get("time", "")
                for m in meta.get("managedFields", [])
            }
            out[key] = (meta["resourceVersion"], int(meta.get("generation", 0)), fields)
        return out

    before = snapshot()
    writes0 = cluster.metric("booking_operator_child_writes_total")
    resyncs0 = cluster.metric("booking_operator_resync_passes_total")
    platforms = max(1.0, cluster.metric("booking_operator_platforms"))
    wait_for(
        lambda: cluster.metric("booking_operator_resync_passes_total") >= resyncs0 + 2 * platforms,
        timeout=180,
        what="two resync passes",
        interval=1.0,
    )
    after = snapshot()
    assert cluster.metric("booking_operator_child_writes_total") == writes0
    assert set(after) == set(before)
    unchanged = 0
    for key, (rv, gen, fields) in before.items():
        if after[key][0] == rv:
            unchanged += 1
            continue
        # Not ours: a controller may update a child's status (a CronJob's lastScheduleTime, an HPA's
        # conditions, a Deployment's readiness when a node blinks). The spec and our fields must not move.
        moved = {mf for mf, t in after[key][2].items() if fields.get(mf) != t}
        assert after[key][1] == gen, f"{key}: generation changed"
        assert all(sub == "status" and mgr != FIELD_MANAGER for mgr, sub in moved), f"{key}: {moved}"
    print(f"{unchanged}/{len(before)} children kept their resourceVersion; the rest changed status only")
    for kind in ("Service", "ConfigMap", "ServiceAccount"):  # nothing else ever writes these
        assert all(after[k][0] == before[k][0] for k in before if k[0] == kind), kind


def test_deleting_the_platform_removes_every_child(cluster: Cluster, namespace: str, keda: None) -> None:
    cluster.apply_platform(prod_platform(namespace))
    converged(cluster, namespace, ready=False)
    assert len(cluster.all_children(namespace)) >= 20
    cluster.custom.delete_namespaced_custom_object("platform.pat-booking.io", "v1alpha1", namespace,
                                                   "bookingplatforms", NAME)  # fmt: skip

    def cr_gone() -> bool:
        try:
            cluster.platform(namespace, NAME)
        except client.ApiException as exc:
            return exc.status == 404
        return False

    wait_for(cr_gone, timeout=10, what="the BookingPlatform to be deleted (no finalizer may block it)")
    wait_for(
        lambda: not cluster.all_children(namespace), timeout=90, what="garbage collection of every child"
    )


def test_pause_stops_writes(cluster: Cluster, namespace: str, keda: None) -> None:
    body = prod_platform(namespace)
    cluster.apply_platform(body)
    converged(cluster, namespace, ready=False)
    body["metadata"]["annotations"] = {"platform.pat-booking.io/paused": "true"}
    cluster.apply_platform(body)
    wait_for(
        lambda: (cluster.condition(namespace, NAME, "Paused") or {}).get("status") == "True",
        timeout=15,
        what="Paused=True",
    )
    victim = f"{NAME}--wrk--default--prod"
    cluster.apps.patch_namespaced_deployment_scale(victim, namespace, {"spec": {"replicas": 4}})
    resyncs0 = cluster.metric("booking_operator_resync_passes_total")
    wait_for(
        lambda: cluster.metric("booking_operator_resync_passes_total") > resyncs0,
        timeout=120,
        what="a resync pass while paused",
        interval=1.0,
    )
    assert cluster.apps.read_namespaced_deployment(victim, namespace).spec.replicas == 4

    body["metadata"]["annotations"] = {"platform.pat-booking.io/paused": "false"}
    cluster.apply_platform(body)
    wait_for(
        lambda: cluster.apps.read_namespaced_deployment(victim, namespace).spec.replicas == 1,
        timeout=15,
        what="the paused edit to be reverted after unpausing",
    )


FOLLOW_S = 10.0


def _container(d: Any) -> Any:
    return d.spec.template.spec.containers[0]


def test_removed_allow_privilege_escalation_false_is_restored(
    cluster: Cluster, namespace: str, keda: None
) -> None:
    cluster.apply_platform(prod_platform(namespace))
    converged(cluster, namespace, ready=False)
    victim = f"{NAME}--consumer-booking--prod"
    before = _container(cluster.apps.read_namespaced_deployment(victim, namespace))
    assert before.security_context.allow_privilege_escalation is False

    # `kubectl edit` deleting the line: an Update by another manager, the field simply gone.
    removals = [
        {"op": "remove", "path": "/spec/template/spec/containers/0/securityContext/allowPrivilegeEscalation"},
        {"op": "remove", "path": "/spec/template/spec/automountServiceAccountToken"},
    ]
    edited = cluster.apps.patch_namespaced_deployment(
        victim, namespace, removals, field_manager="kubectl-edit", _content_type="application/json-patch+json"
    )
    t0 = time.monotonic()
    # (the answer to the edit itself: a read afterwards may already see the repair)
    assert _container(edited).security_context.allow_privilege_escalation is None

    def restored() -> bool:
        d = cluster.apps.read_namespaced_deployment(victim, namespace)
        return bool(
            d.metadata.generation > edited.metadata.generation
            and _container(d).security_context.allow_privilege_escalation is False
            and d.spec.template.spec.automount_service_account_token is False
        )

    wait_for(restored, timeout=REPAIR_S, what="allowPrivilegeEscalation: false to be restored")
    print(f"allowPrivilegeEscalation: false restored in {time.monotonic() - t0:.2f}s")


def test_every_sre_field_is_followed_within_seconds(cluster: Cluster, namespace: str, keda: None) -> None:
    """Each SRE-facing field of the spec, edited once; the child follows within FOLLOW_S."""
    body = prod_platform(namespace)
    cluster.apply_platform(body)
    converged(cluster, namespace, ready=False)
    spec = body["spec"]
    ptr_keda = spec["consumers"]["pat-test-result"]["autoscaling"]["keda"]
    api_hpa = spec["api"]["autoscaling"]["hpa"]
    booking, default = f"{NAME}--consumer-booking--prod", f"{NAME}--wrk--default--prod"

    def hpa() -> dict[str, Any]:
        return next(
            h["spec"]
            for h in cluster.children(namespace, "horizontalpodautoscalers", "autoscaling/v2")
            if h["metadata"]["name"] == HPA
        )

    def so() -> dict[str, Any]:
        return next(s["spec"] for s in cluster.children(namespace, "scaledobjects", "keda.sh/v1alpha1"))

    def dep(name: str) -> Any:
        return cluster.apps.read_namespaced_deployment(name, namespace)

    def env_of(name: str) -> dict[str, str]:
        return {e.name: e.value for e in _container(dep(name)).env or [] if e.value is not None}

    edits: list[tuple[str, Any, Any]] = [
        ("api HPA minReplicas", lambda: api_hpa.update(minReplicas=2), lambda: hpa()["minReplicas"] == 2),
        ("api HPA maxReplicas", lambda: api_hpa.update(maxReplicas=7), lambda: hpa()["maxReplicas"] == 7),
        (
            "api HPA target",
            lambda: api_hpa.update(targetCPUUtilizationPercentage=70),
            lambda: hpa()["metrics"][0]["resource"]["target"]["averageUtilization"] == 70,
        ),
        ("KEDA minReplicas", lambda: ptr_keda.update(minReplicas=2), lambda: so()["minReplicaCount"] == 2),
        ("KEDA maxReplicas", lambda: ptr_keda.update(maxReplicas=12), lambda: so()["maxReplicaCount"] == 12),
        (
            "KEDA lagThreshold",
            lambda: ptr_keda.update(lagThreshold=35),
            lambda: so()["triggers"][0]["metadata"]["lagThreshold"] == "35",
        ),
        (
            "replicas",
            lambda: spec["consumers"]["booking"].update(replicas=3),
            lambda: dep(booking).spec.replicas == 3,
        ),
        (
            "resources",
            lambda: spec["workers"]["default"].update(
                resources={"requests": {"cpu": "250m", "memory": "300Mi"}, "limits": {"memory": "600Mi"}}
            ),
            lambda: _container(dep(default)).resources.requests == {"cpu": "250m", "memory": "300Mi"},
        ),
        (
            "env",
            lambda: spec["consumers"]["booking"].update(
                env=[{"name": "BOOKING_LOG_LEVEL", "value": "DEBUG"}]
            ),
            lambda: env_of(booking).get("BOOKING_LOG_LEVEL") == "DEBUG",
        ),
        (
            "restartAt",
            lambda: spec.update(restartAt={"at": "2026-11-30T12:00:00Z", "components": ["worker-default"]}),
            lambda: (
                (dep(default).spec.template.metadata.annotations or {}).get(
                    "platform.pat-booking.io/restartedAt"
                )
                == "2026-11-30T12:00:00Z"
            ),
        ),
    ]
    took: dict[str, float] = {}
    for what, edit, followed in edits:
        edit()
        cluster.apply_platform(body)
        t0 = time.monotonic()
        wait_for(followed, timeout=FOLLOW_S, what=f"the child to follow the edited {what}")
        took[what] = time.monotonic() - t0

    # pause: the Paused condition follows, an edit meanwhile waits, and lands once unpaused.
    body["metadata"]["annotations"] = {"platform.pat-booking.io/paused": "true"}
    cluster.apply_platform(body)
    t0 = time.monotonic()
    wait_for(
        lambda: (cluster.condition(namespace, NAME, "Paused") or {}).get("status") == "True",
        timeout=FOLLOW_S,
        what="Paused=True",
    )
    took["pause"] = time.monotonic() - t0
    spec["consumers"]["booking"]["replicas"] = 2
    cluster.apply_platform(body)
    wait_for(
        lambda: (
            cluster.platform(namespace, NAME)["status"].get("observedGeneration")
            == cluster.platform(namespace, NAME)["metadata"]["generation"]
        ),
        timeout=FOLLOW_S,
        what="the paused edit to be observed",
    )
    assert dep(booking).spec.replicas == 3, "a paused platform must not write its children"
    body["metadata"]["annotations"] = {"platform.pat-booking.io/paused": "false"}
    cluster.apply_platform(body)
    t0 = time.monotonic()
    wait_for(lambda: dep(booking).spec.replicas == 2, timeout=FOLLOW_S, what="the edit after unpausing")
    took["unpause"] = time.monotonic() - t0
    print("followed in: " + ", ".join(f"{k} {v:.2f}s" for k, v in took.items()))
