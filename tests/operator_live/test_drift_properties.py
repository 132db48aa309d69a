"""Property: any edit of a field the operator renders is drift, on every rendered kind; edits of fields
only others set never are.

The live object is modelled as the API server returns it after our server-side apply: our field
manager's ownership record (managedFields), empty maps dropped, server defaults and other managers'
fields added. An edit by anyone else (kubectl edit, a merge patch) removes or changes a field and
takes it out of our ownership record, as the API server does for an Update.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from booking_operator import names
from booking_operator.apply import Owner, adopt
from booking_operator.drift import _list_key, needs_apply, slim_managed_fields
from booking_operator.render import render
from booking_operator.spec import parse_platform

EXAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "examples" / "pat-booking-be-prod.yaml"
MANAGER = "booking-operator"
OWNER = Owner(names.API_VERSION, names.KIND, "pat--booking--be", "pat--booking--be", "cr-uid")
Path_ = tuple[str | int, ...]


def _rendered(keda: bool) -> list[dict[str, Any]]:
    body = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"] |= {"uid": "cr-uid", "generation": 1}
    return [adopt(m, OWNER) for m in render(parse_platform(body), keda_available=keda)]


def _with_empty_maps() -> dict[str, Any]:
    """A Deployment with the empty maps the server does not serialise (no render has one today)."""
    d = copy.deepcopy(next(m for m in _rendered(keda=True) if m["kind"] == "Deployment"))
    pod = d["spec"]["template"]["spec"]
    pod["volumes"].append({"name": "scratch", "emptyDir": {}})
    pod["nodeSelector"] = {}
    d["metadata"]["name"] += "-empties"
    return d


CHILDREN = [
    *_rendered(keda=True),
    *(m for m in _rendered(keda=False) if m["kind"] == "HorizontalPodAutoscaler"),
    _with_empty_maps(),
]


def test_every_kind_is_covered() -> None:
    kinds = {m["kind"] for m in CHILDREN}
    assert kinds >= {
        "Deployment",
        "Service",
        "CronJob",
        "HorizontalPodAutoscaler",
        "ScaledObject",
        "ConfigMap",
        "PodDisruptionBudget",
        "ServiceAccount",
    }


def fields_v1(value: Any) -> dict[str, Any]:
    """The fieldsV1 tree an Apply of value records."""
    if isinstance(value, dict) and value:
        return {".": {}} | {f"f:{k}": fields_v1(v) for k, v in value.items() if v is not None}
    if isinstance(value, list) and value and (key := _list_key(value)) is not None:
        return {f"k:{json.dumps({key: i[key]}, separators=(',', ':'))}": fields_v1(i) for i in value}
    return {}


def _drop_empty_maps(value: Any) -> Any:
    """The API server does not serialise empty omitempty maps (nodeSelector: {}, resources: {})."""
    if isinstance(value, dict):
        return {k: _drop_empty_maps(v) for k, v in value.items() if v != {}}
    if isinstance(value, list):
        return [_drop_empty_maps(v) for v in value]
    return value


def as_served(desired: dict[str, Any]) -> dict[str, Any]:
    """desired after our apply, read back: ownership record, server-side fields, no kind."""
    live = _drop_empty_maps(copy.deepcopy(desired))
    live.pop("kind")
    ours = {k: v for k, v in desired.items() if k not in ("apiVersion", "kind")}
    live["metadata"] |= {
        "uid": "child-uid",
        "resourceVersion": "42",
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "managedFields": [
            {"manager": MANAGER, "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": fields_v1(ours)},
            {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status"},
        ],
    }
    live["status"] = {"observedGeneration": 1}
    return live


def paths(value: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every field and list item under value (not value itself)."""
    out: list[Path_] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if not prefix and k in ("apiVersion", "kind", "status"):
                continue
            if prefix == ("metadata",) and k in ("name", "namespace"):
                continue  # identity, not a field one can edit
            if not prefix and k == "metadata":
                out.extend(paths(v, (k,)))
                continue
            if v is None:
                continue
            out.append((*prefix, k))
            out.extend(paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.append((*prefix, i))
            out.extend(paths(v, (*prefix, i)))
    return out


def _get(value: Any, path: Path_) -> Any:
    for seg in path:
        value = value[seg]
    return value


def disown(record: dict[str, Any], desired: dict[str, Any], path: Path_) -> None:
    """What an Update that removes or changes the field at path does to our ownership record."""
    node, here = record, desired
    for depth, seg in enumerate(path):
        if isinstance(here, list):
            key = _list_key(here)
            name = f"k:{json.dumps({key: here[seg][key]}, separators=(',', ':'))}" if key else None
        else:
            name = f"f:{seg}"
        if name is None or name not in node:
            return  # inside an atomic list or map: its whole was taken one level up
        child = here[seg]
        atomic_list = isinstance(child, list) and _list_key(child) is None
        if depth == len(path) - 1 or atomic_list:
            del node[name]  # changing part of an atomic list takes all of it
            return
        node, here = node[name], child


def changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value + "-x"
    assert isinstance(value, list)
    return value[:-1] if value else ["x"]


@st.composite
def our_edit(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], str]:
    desired = draw(st.sampled_from(CHILDREN))
    live = as_served(desired)
    record = live["metadata"]["managedFields"][0]["fieldsV1"]
    path = draw(st.sampled_from(paths(desired)))
    value = _get(desired, path)
    parent_live = _get(live, path[:-1])
    action = draw(st.sampled_from(["remove", "change"]))
    if isinstance(value, dict):
        action = "remove"  # a map changes through its fields (drawn on their own); others may add some
    if action == "remove":
        if isinstance(parent_live, list):
            del parent_live[path[-1]]
        else:
            parent_live.pop(path[-1], None)
    else:
        parent_live[path[-1]] = changed(value)
    disown(record, desired, path)
    return desired, live, f"{action} {'.'.join(map(str, path))}"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(our_edit())
def test_any_edit_of_a_field_we_render_is_drift(edit: tuple[dict[str, Any], dict[str, Any], str]) -> None:
    desired, live, what = edit
    assert needs_apply(desired, live, MANAGER), f"{desired['kind']}: {what} went unnoticed"
    # the operator's cache keeps only the ownership paths drift reads: the verdict is the same
    cached = slim_managed_fields(live, MANAGER, desired)
    assert needs_apply(desired, cached, MANAGER) == needs_apply(desired, live, MANAGER)


@pytest.mark.parametrize("desired", CHILDREN, ids=lambda m: f"{m['kind']}/{m['metadata']['name']}")
def test_as_served_is_no_drift(desired: dict[str, Any]) -> None:
    assert needs_apply(desired, as_served(desired), MANAGER) == []
    cached = slim_managed_fields(as_served(desired), MANAGER, desired)
    assert needs_apply(desired, cached, MANAGER) == []
    full = len(str(as_served(desired)["metadata"]["managedFields"]))
    assert len(str(cached["metadata"]["managedFields"])) < full / 3  # the point of slimming


FOREIGN = [
    ("metadata", "annotations", "deployment.kubernetes.io/revision"),
    ("metadata", "labels", "team"),
    ("spec", "template", "metadata", "annotations", "kubectl.kubernetes.io/restartedAt"),
    ("spec", "replicas"),
    ("spec", "template", "spec", "schedulerName"),
    ("spec", "template", "spec", "terminationGracePeriodSeconds"),
    ("spec", "revisionHistoryLimit"),
    ("spec", "progressDeadlineSeconds"),
    ("spec", "clusterIP"),
    ("spec", "sessionAffinity"),
    ("spec", "successfulJobsHistoryLimit"),
    ("metadata", "finalizers"),
]


@st.composite
def foreign_edit(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    desired = draw(st.sampled_from(CHILDREN))
    live = as_served(desired)
    for path in draw(st.lists(st.sampled_from(FOREIGN), min_size=1, max_size=4)):
        try:
            if _get(desired, path) is not None:
                continue  # we render it: not foreign on this kind
        except (KeyError, TypeError, IndexError):
            pass
        node = live
        for seg in path[:-1]:
            node = node.setdefault(seg, {})
        node[path[-1]] = draw(st.one_of(st.integers(0, 9), st.text(max_size=5), st.booleans()))
    # webhooks inject containers and env: items of keyed lists others add are theirs
    containers = [p for p in paths(desired) if p[-1] == "containers"]
    if containers and draw(st.booleans()):
        _get(live, containers[0]).append({"name": "sidecar", "image": "mesh:1"})
    return desired, live


@settings(max_examples=200, deadline=None)
@given(foreign_edit())
def test_fields_only_others_set_are_never_drift(edit: tuple[dict[str, Any], dict[str, Any]]) -> None:
    desired, live = edit
    assert needs_apply(desired, live, MANAGER) == []
    assert needs_apply(desired, slim_managed_fields(live, MANAGER, desired), MANAGER) == []
