"""The apply-diff logic: what counts as drift, what is left to other managers, what gets deleted."""

from __future__ import annotations

import copy
import json
from typing import Any

from booking_operator.apply import HASH_ANNOTATION, Owner, adopt, desired_hash, plan
from booking_operator.drift import diff
from booking_operator.drift import needs_apply as needs_apply_as

MANAGER = "booking-operator"


def needs_apply(desired: dict[str, Any], live: dict[str, Any] | None) -> list[str]:
    return needs_apply_as(desired, live, MANAGER)


def fields_v1(value: Any) -> dict[str, Any]:
    """The fieldsV1 tree an Apply of value records: maps by field ("." marks the map itself), keyed
    lists by key, atomic lists and scalars whole."""
    if isinstance(value, dict) and value:
        return {".": {}} | {f"f:{k}": fields_v1(v) for k, v in value.items() if v is not None}
    if isinstance(value, list) and value and all(isinstance(i, dict) and "name" in i for i in value):
        return {".": {}} | {
            "k:" + json.dumps({"name": i["name"]}, separators=(",", ":")): fields_v1(i) for i in value
        }
    return {}


OWNER = Owner("platform.pat-booking.io/v1alpha1", "BookingPlatform", "pb", "ns", "uid-1")


def deployment(replicas: int | None = 1, image: str = "img:1") -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "x"}},
        "template": {
            "metadata": {"labels": {"app": "x"}},
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "image": image,
                        "env": [{"name": "A", "value": "1"}],
                        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
                        "securityContext": {"allowPrivilegeEscalation": False},
                    }
                ],
                "nodeSelector": {},
            },
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "labels": {"app.kubernetes.io/managed-by": "booking-operator"}},
        "spec": spec,
    }


def live_from(desired: dict[str, Any]) -> dict[str, Any]:
    """What the API server returns: defaults added, empties dropped, canonical quantities, no kind."""
    live = copy.deepcopy(desired)
    live.pop("kind")
    ours = {k: v for k, v in desired.items() if k not in ("apiVersion", "kind")}
    managed = [{"manager": MANAGER, "operation": "Apply", "fieldsV1": fields_v1(ours)}]
    live["metadata"].update(
        {"uid": "child", "resourceVersion": "7", "generation": 1, "managedFields": managed}
    )
    tmpl = live["spec"]["template"]["spec"]
    tmpl.pop("nodeSelector")
    tmpl["restartPolicy"] = "Always"
    c = tmpl["containers"][0]
    c["terminationMessagePath"] = "/dev/termination-log"
    c["imagePullPolicy"] = "IfNotPresent"
    c["securityContext"].pop("allowPrivilegeEscalation")  # omitempty false... as some fields are
    c["securityContext"]["allowPrivilegeEscalation"] = False
    c["resources"]["requests"]["cpu"] = "0.5"
    live["spec"].setdefault("replicas", 1)
    live["spec"]["strategy"] = {"type": "RollingUpdate"}
    live["status"] = {"readyReplicas": 1}
    return live


def test_live_with_defaults_and_canonical_quantities_is_not_drift() -> None:
    want = adopt(deployment(), OWNER)
    assert needs_apply(want, live_from(want)) == []


def test_edited_image_is_drift_at_its_path() -> None:
    want = adopt(deployment(), OWNER)
    live = live_from(want)
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:1"
    assert needs_apply(want, live) == [".spec.template.spec.containers[name=main].image"]


def test_missing_child_and_removed_env_are_drift() -> None:
    want = adopt(deployment(), OWNER)
    assert needs_apply(want, None) == ["<missing>"]
    live = live_from(want)
    live["spec"]["template"]["spec"]["containers"][0]["env"] = []
    assert needs_apply(want, live) == [".spec.template.spec.containers[name=main].env"]


def test_replicas_set_by_an_autoscaler_are_not_ours() -> None:
    want = adopt(deployment(replicas=None), OWNER)  # autoscaled: rendered without replicas
    live = live_from(want)
    live["spec"]["replicas"] = 7  # the HPA's doing
    assert needs_apply(want, live) == []


def test_fixed_replicas_are_ours() -> None:
    want = adopt(deployment(replicas=2), OWNER)
    live = live_from(want)
    live["spec"]["replicas"] = 5
    assert needs_apply(want, live) == [".spec.replicas"]


def test_items_other_managers_add_to_keyed_lists_are_theirs() -> None:
    want = adopt(deployment(), OWNER)
    live = live_from(want)
    live["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "mesh:1"})
    live["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "INJECTED", "value": "x"})
    assert needs_apply(want, live) == []


def test_lists_with_repeated_merge_keys_compare_by_position() -> None:
    refs = [
        {"parameter": "username", "name": "s", "key": "u"},
        {"parameter": "password", "name": "s", "key": "p"},
    ]
    assert diff({"spec": {"r": refs}}, {"spec": {"r": copy.deepcopy(refs)}}) == []
    swapped = [refs[1], refs[0]]
    assert diff({"spec": {"r": refs}}, {"spec": {"r": swapped}}) != []


def test_changed_desired_state_changes_the_hash_annotation() -> None:
    a = adopt(deployment(image="img:1"), OWNER)
    b = adopt(deployment(image="img:2"), OWNER)
    assert a["metadata"]["annotations"][HASH_ANNOTATION] != b["metadata"]["annotations"][HASH_ANNOTATION]
    assert desired_hash(a) == a["metadata"]["annotations"][HASH_ANNOTATION]
    # a field we stopped rendering is invisible to the subset check, but the hash catches it
    live = live_from(a)
    dropped = copy.deepcopy(deployment(image="img:1"))
    del dropped["spec"]["template"]["spec"]["containers"][0]["env"]
    assert needs_apply(adopt(dropped, OWNER), live) == [f".metadata.annotations.{HASH_ANNOTATION}"]


def test_adopt_sets_a_controller_reference_and_the_namespace() -> None:
    m = adopt(deployment(), OWNER)
    assert m["metadata"]["namespace"] == "ns"
    assert m["metadata"]["ownerReferences"] == [
        {
            "apiVersion": OWNER.api_version,
            "kind": "BookingPlatform",
            "name": "pb",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def _hpa(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {},
    }


def test_plan_applies_only_what_differs_and_deletes_what_is_no_longer_rendered() -> None:
    dep = adopt(deployment(), OWNER)
    so = adopt(
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": "kafka-d"},
            "spec": {},
        },
        OWNER,
    )
    fallback = adopt(_hpa("d-hpa"), OWNER)
    keda_hpa = {
        "metadata": {"name": "keda-hpa-kafka-d", "ownerReferences": [{"uid": "so", "controller": True}]}
    }
    live = {
        ("Deployment", "d"): live_from(dep),
        ("HorizontalPodAutoscaler", "d-hpa"): fallback,
        ("HorizontalPodAutoscaler", "keda-hpa-kafka-d"): keda_hpa,
    }
    p = plan([dep, so], live, "uid-1", MANAGER)
    assert [m["kind"] for m, _ in p.apply] == ["ScaledObject"]
    assert [(k.kind, n) for k, n in p.delete] == [("HorizontalPodAutoscaler", "d-hpa")]  # not KEDA's own HPA
    assert p.unchanged == 1
    assert p.writes == 2


def test_plan_of_a_steady_state_is_empty() -> None:
    dep = adopt(deployment(), OWNER)
    p = plan([dep], {("Deployment", "d"): live_from(dep)}, "uid-1", MANAGER)
    assert p.writes == 0 and p.unchanged == 1


# ---------------------------------------------------------------- explicit false / 0 / "" are values


def _container(live: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = live["spec"]["template"]["spec"]["containers"][0]
    return c


def _disown(live: dict[str, Any], *path: str) -> None:
    """What an Update that removes or changes a field does to our ownership of it."""
    node = live["metadata"]["managedFields"][0]["fieldsV1"]
    for seg in path[:-1]:
        node = node[seg]
    del node[path[-1]]


CONTAINER_FIELDS = ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"main"}')


def test_removed_allow_privilege_escalation_false_is_drift() -> None:
    want = adopt(deployment(), OWNER)
    live = live_from(want)
    del _container(live)["securityContext"]["allowPrivilegeEscalation"]  # kubectl edit
    _disown(live, *CONTAINER_FIELDS, "f:securityContext", "f:allowPrivilegeEscalation")
    assert needs_apply(want, live) == [
        ".spec.template.spec.containers[name=main].securityContext.allowPrivilegeEscalation"
    ]


def test_false_and_zero_removed_without_an_ownership_record_are_drift() -> None:
    want = adopt(deployment(replicas=0), OWNER)
    want["spec"]["template"]["spec"]["automountServiceAccountToken"] = False
    live = live_from(want)
    del live["metadata"]["managedFields"]
    assert needs_apply(want, live) == []
    del live["spec"]["template"]["spec"]["automountServiceAccountToken"]
    del live["spec"]["replicas"]
    assert sorted(needs_apply(want, live)) == [
        ".spec.replicas",
        ".spec.template.spec.automountServiceAccountToken",
    ]


def test_false_is_not_zero_nor_a_string() -> None:
    assert diff({"a": False}, {"a": 0}) == [".a"]
    assert diff({"a": True}, {"a": "true"}) == [".a"]
    assert diff({"a": 0}, {"a": "0"}) == []  # int-or-string fields come back as either


def test_an_empty_map_the_server_dropped_is_not_drift_but_one_replaced_is() -> None:
    want = adopt(deployment(), OWNER)
    want["spec"]["template"]["spec"]["volumes"] = [{"name": "tmp", "emptyDir": {}}]
    live = live_from(want)
    assert needs_apply(want, live) == []
    # someone swaps the emptyDir for a hostPath: the emptyDir we own is gone
    live["spec"]["template"]["spec"]["volumes"] = [{"name": "tmp", "hostPath": {"path": "/"}}]
    _disown(live, "f:spec", "f:template", "f:spec", "f:volumes", 'k:{"name":"tmp"}', "f:emptyDir")
    assert needs_apply(want, live) == [".spec.template.spec.volumes[name=tmp].emptyDir"]


def test_fields_only_others_set_are_not_drift() -> None:
    want = adopt(deployment(replicas=None), OWNER)
    live = live_from(want)
    template = live["spec"]["template"]
    template["metadata"]["annotations"] = {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}
    template["spec"]["schedulerName"] = "default-scheduler"
    template["spec"]["nodeName"] = "node-1"
    live["spec"]["replicas"] = 9
    live["metadata"]["managedFields"].append(
        {"manager": "kubectl-rollout", "operation": "Update", "fieldsV1": {"f:spec": {}}}
    )
    assert needs_apply(want, live) == []
