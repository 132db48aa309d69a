"""Adopt, compare and server-side apply the rendered children; delete the ones no longer rendered.

Comparison (drift.py) decides whether to send anything at all: a child is applied only when one of the
fields we render differs from or is missing in the live object (or the desired-hash annotation changed,
which catches fields we stopped rendering). Fields other managers own (replicas under an HPA, defaults,
status) are never looked at, so a steady state sends zero mutating requests.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from booking_operator import metrics, names
from booking_operator.client import Kind, Kube, KubeError
from booking_operator.drift import needs_apply

log = logging.getLogger(__name__)

MANAGED_BY_LABEL = names.LABEL_MANAGED_BY
MANAGED_BY = names.MANAGED_BY
PART_OF_LABEL = names.LABEL_PART_OF
HASH_ANNOTATION = f"{names.GROUP}/desired-hash"

DEPLOYMENT = Kind("apps/v1", "Deployment", "deployments")
SERVICE = Kind("v1", "Service", "services")
CRONJOB = Kind("batch/v1", "CronJob", "cronjobs")
HPA = Kind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers")
SCALEDOBJECT = Kind("keda.sh/v1alpha1", "ScaledObject", "scaledobjects")
TRIGGERAUTH = Kind("keda.sh/v1alpha1", "TriggerAuthentication", "triggerauthentications")
CONFIGMAP = Kind("v1", "ConfigMap", "configmaps")
PDB = Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets")
SERVICEACCOUNT = Kind("v1", "ServiceAccount", "serviceaccounts")
# Order of deletion is irrelevant; order of apply follows it, dependencies first (the ServiceAccount
# and ConfigMap before the pods that mount them, the target before its autoscaler).
CHILD_KINDS: tuple[Kind, ...] = (
    SERVICEACCOUNT,
    CONFIGMAP,
    SERVICE,
    DEPLOYMENT,
    CRONJOB,
    PDB,
    HPA,
    TRIGGERAUTH,
    SCALEDOBJECT,
)
KINDS_BY_KIND: dict[str, Kind] = {k.kind: k for k in CHILD_KINDS}
# Applied one stage after the other, the kinds of a stage concurrently: what pods mount and run as, and
# the KEDA credentials (which depend on nothing), come before the workloads, the workloads before what
# scales or guards them (a ScaledObject then finds both its target and its credentials). Three stages are
# three round trips on the way to a platform's last child.
APPLY_STAGES: tuple[frozenset[str], ...] = (
    frozenset({SERVICEACCOUNT.kind, CONFIGMAP.kind, SERVICE.kind, TRIGGERAUTH.kind}),
    frozenset({DEPLOYMENT.kind, CRONJOB.kind}),
    frozenset({PDB.kind, HPA.kind, SCALEDOBJECT.kind}),
)
# Applies in flight at once over every platform: a stage's objects are independent, so all of them
# are sent together (the API server works on them in parallel, and etcd commits them in shared batches);
# the bound keeps many platforms from queueing hundreds of requests inside the API server.
APPLIES_AT_ONCE = 32

ChildKey = tuple[str, str]  # (kind, name); one platform's children share its namespace


@dataclass(frozen=True)
class Owner:
    """The BookingPlatform that owns the children."""

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str


def kind_of(manifest: Mapping[str, Any]) -> Kind:
    """The Kind of a rendered manifest; unknown kinds are a programming error in the renderer."""
    k = str(manifest.get("kind", ""))
    if k not in KINDS_BY_KIND:
        raise ValueError(f"the operator does not manage kind {k!r}")
    return KINDS_BY_KIND[k]


def key_of(manifest: Mapping[str, Any], kind: str | None = None) -> ChildKey:
    """(kind, name) of a manifest or of a live object (LIST items carry no kind, so pass it)."""
    return (kind or str(manifest["kind"]), str(manifest["metadata"]["name"]))


def desired_hash(manifest: Mapping[str, Any]) -> str:
    """A short stable digest of a manifest (annotation excluded). Copies only the path to the annotation
    (deep copies of fifty platforms' children were the largest CPU cost of rendering them)."""
    m = dict(manifest)
    annotations = (m.get("metadata") or {}).get("annotations") or {}
    if HASH_ANNOTATION in annotations:
        rest = {k: v for k, v in annotations.items() if k != HASH_ANNOTATION}
        m["metadata"] = {**m["metadata"], "annotations": rest}
    raw = json.dumps(m, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def adopt(manifest: Mapping[str, Any], owner: Owner) -> dict[str, Any]:
    """A copy of manifest in the owner's namespace, controlled by it, stamped with its digest."""
    # deepcopy, not a JSON round trip: that is faster, but its fresh strings cost every platform's
    # desired set ~0.25 MiB more (deepcopy shares them with the render).
    m = copy.deepcopy(dict(manifest))
    meta = m.setdefault("metadata", {})
    meta["namespace"] = owner.namespace
    meta["ownerReferences"] = [
        {
            "apiVersion": owner.api_version,
            "kind": owner.kind,
            "name": owner.name,
            "uid": owner.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    labels = meta.setdefault("labels", {})
    labels.setdefault(MANAGED_BY_LABEL, MANAGED_BY)
    labels.setdefault(PART_OF_LABEL, owner.name)
    annotations = meta.setdefault("annotations", {})
    annotations[HASH_ANNOTATION] = desired_hash(m)
    return m


def owned_by(obj: Mapping[str, Any], owner_uid: str) -> bool:
    """True when owner_uid is the controller of obj."""
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(r.get("uid") == owner_uid and r.get("controller") for r in refs)


@dataclass
class Plan:
    """What one reconcile will send."""

    apply: list[tuple[dict[str, Any], list[str]]] = field(default_factory=list)  # (manifest, why)
    delete: list[tuple[Kind, str]] = field(default_factory=list)
    unchanged: int = 0

    @property
    def writes(self) -> int:
        """Mutating requests the plan needs."""
        return len(self.apply) + len(self.delete)


def plan(
    desired: Iterable[Mapping[str, Any]],
    live: Mapping[ChildKey, Mapping[str, Any]],
    owner_uid: str,
    manager: str,
) -> Plan:
    """Pure: which desired children to apply, which live children to delete, how many are current."""
    p = Plan()
    wanted: set[ChildKey] = set()
    for d in desired:
        k = key_of(d)
        wanted.add(k)
        why = needs_apply(d, live.get(k), manager)
        if why:
            p.apply.append((dict(d), why))
        else:
            p.unchanged += 1
    for (kind, name), obj in sorted(live.items()):
        if (kind, name) not in wanted and owned_by(obj, owner_uid):
            p.delete.append((KINDS_BY_KIND[kind], name))
    return p


# --------------------------------------------------------------------------------------------- writes


class Applier:
    """Reads and writes children through the Kube client, as one dedicated field manager."""

    def __init__(self, kube: Kube, field_manager: str) -> None:
        self.kube = kube
        self.field_manager = field_manager
        self._gate = asyncio.Semaphore(APPLIES_AT_ONCE)

    async def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        """One object, or None."""
        try:
            return await self.kube.request("GET", kind.path(namespace, name))
        except KubeError as exc:
            if exc.not_found:
                return None
            raise

    async def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply, forcing conflicts: the CR is the source of truth for what we render."""
        kind = kind_of(manifest)
        meta = manifest["metadata"]
        out = await self.kube.request(
            "PATCH",
            kind.path(meta["namespace"], meta["name"]),
            query={"fieldManager": self.field_manager, "force": "true"},
            body=dict(manifest),
            content_type="application/apply-patch+yaml",
        )
        metrics.WRITES.labels(kind=kind.kind, verb="apply").inc()
        return out

    async def delete(self, kind: Kind, namespace: str, name: str) -> None:
        """Delete one child (background propagation); already gone is fine."""
        try:
            await self.kube.request(
                "DELETE",
                kind.path(namespace, name),
                body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
                content_type="application/json",
            )
        except KubeError as exc:
            if not exc.not_found:
                raise
        metrics.WRITES.labels(kind=kind.kind, verb="delete").inc()

    async def execute(self, p: Plan, namespace: str) -> list[dict[str, Any]]:
        """Deletes first (an HPA must be gone before KEDA accepts a ScaledObject on the same target), then
        applies stage by stage (APPLY_STAGES), a stage's objects at once; returns the applied objects
        as the API server answered. The first error is raised once its stage has finished."""
        for kind, name in p.delete:
            log.info("deleting %s %s", kind.kind, name, extra={"namespace": namespace, "kind": kind.kind})
            await self.delete(kind, namespace, name)

        async def one(manifest: dict[str, Any], why: list[str]) -> dict[str, Any]:
            async with self._gate:
                kind, name = manifest["kind"], manifest["metadata"]["name"]
                log.info(
                    "applying %s %s (%s)",
                    kind,
                    name,
                    ", ".join(why[:5]),
                    extra={"namespace": namespace, "kind": kind},
                )
                return await self.apply(manifest)

        applied: list[dict[str, Any]] = []
        for stage in APPLY_STAGES:
            batch = [one(m, why) for m, why in p.apply if m["kind"] in stage]
            results = await asyncio.gather(*batch, return_exceptions=True)
            applied.extend(r for r in results if isinstance(r, dict))
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                raise errors[0]
        return applied
