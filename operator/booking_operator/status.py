"""The BookingPlatform status, computed purely from what one reconcile observed.

Conditions keep their lastTransitionTime while their status stays the same, so recomputing an
unchanged world gives an identical dict and the caller skips the write.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from booking_operator.keda import AutoscalerDecision

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
PAUSED = "Paused"
AUTOSCALER_AVAILABLE = "AutoscalerAvailable"
CONDITION_TYPES = (READY, PROGRESSING, DEGRADED, PAUSED, AUTOSCALER_AVAILABLE)
COMPONENT_LABEL = "app.kubernetes.io/component"


def now_rfc3339() -> str:
    """Kubernetes' metav1.Time format (seconds, Z)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ComponentState:
    """One Deployment-backed component: how many pods it should have and how many are ready."""

    component: str
    name: str
    desired: int
    ready: int
    available: bool
    autoscaler: str = ""

    def as_status(self) -> dict[str, Any]:
        """The status.workloads entry (the CRD's status schema)."""
        return {
            "component": self.component,
            "kind": "Deployment",
            "name": self.name,
            "autoscaler": self.autoscaler,
            "desiredReplicas": self.desired,
            "readyReplicas": self.ready,
        }


def deployment_state(
    desired: Mapping[str, Any], live: Mapping[str, Any] | None, autoscaler: str = ""
) -> ComponentState:
    """Readiness of one Deployment: rolled out to its current generation and every replica available.

    Desired replicas come from the live object when we do not render them (an HPA or KEDA owns them).
    """
    meta = desired.get("metadata", {})
    component = str(meta.get("labels", {}).get(COMPONENT_LABEL, meta.get("name", "")))
    name = str(meta.get("name", ""))
    if live is None:
        want = desired.get("spec", {}).get("replicas", 1)
        return ComponentState(component, name, int(want if want is not None else 1), 0, False, autoscaler)
    spec, st = live.get("spec", {}), live.get("status", {})
    replicas = int(spec.get("replicas", 1))
    ready = int(st.get("readyReplicas", 0))
    rolled_out = int(st.get("observedGeneration", 0)) >= int(live.get("metadata", {}).get("generation", 0))
    available = (
        rolled_out
        and int(st.get("updatedReplicas", 0)) >= replicas
        and int(st.get("availableReplicas", 0)) >= replicas
        and ready >= replicas
        and int(st.get("replicas", 0)) <= replicas  # old pods of a rollout are gone
    )
    return ComponentState(component, name, replicas, ready, available, autoscaler)


def deadline_exceeded(live: Mapping[str, Any] | None) -> bool:
    """True when a Deployment gave up rolling out (progressDeadlineSeconds passed)."""
    if live is None:
        return False
    for c in live.get("status", {}).get("conditions", []) or []:
        if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
            return True
    return False


@dataclass
class Observation:
    """What the reconciler saw and did in one pass, everything status is made of."""

    generation: int
    components: list[ComponentState] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # "Kind/name" still absent
    stuck: list[str] = field(default_factory=list)  # Deployments past their progress deadline
    writes: int = 0
    paused: bool = False
    autoscaler: AutoscalerDecision | None = None
    error: tuple[str, str] | None = None  # (reason, message)


def _condition(
    old: Mapping[str, Mapping[str, Any]],
    ctype: str,
    status: str,
    reason: str,
    message: str,
    generation: int,
    now: str,
) -> dict[str, Any]:
    prev = old.get(ctype)
    ltt = prev.get("lastTransitionTime") if prev and prev.get("status") == status else None
    return {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": ltt or now,
    }


def _names(items: Sequence[str], limit: int = 5) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def compute_status(old: Mapping[str, Any] | None, obs: Observation, now: str | None = None) -> dict[str, Any]:
    """The whole status subresource for obs, reusing transition times from old."""
    now = now or now_rfc3339()
    old = old or {}
    old_conds = {c.get("type", ""): c for c in old.get("conditions", []) or [] if isinstance(c, Mapping)}
    g = obs.generation
    total = len(obs.components)
    ready_n = sum(1 for c in obs.components if c.available)
    not_ready = [c.component for c in obs.components if not c.available]
    all_ready = obs.error is None and not obs.missing and total > 0 and ready_n == total

    conds: list[dict[str, Any]] = []
    if obs.error is not None:
        conds.append(_condition(old_conds, READY, "False", obs.error[0], obs.error[1], g, now))
    elif all_ready:
        conds.append(
            _condition(old_conds, READY, "True", "AllComponentsReady", f"{ready_n}/{total} ready", g, now)
        )
    else:
        parts = []
        if obs.missing:
            parts.append(f"missing: {_names(obs.missing)}")
        if not_ready:
            parts.append(f"not ready: {_names(not_ready)}")
        msg = f"{ready_n}/{total} ready; " + "; ".join(parts) if parts else "no components"
        conds.append(_condition(old_conds, READY, "False", "ComponentsNotReady", msg, g, now))

    if obs.error is not None:
        conds.append(_condition(old_conds, PROGRESSING, "False", "ReconcileFailed", obs.error[1], g, now))
    elif obs.paused:
        conds.append(
            _condition(old_conds, PROGRESSING, "False", "Paused", "reconciliation is paused", g, now)
        )
    elif obs.writes or obs.missing or not all_ready:
        # The message names no write counts: a status that changes on every pass would be a write each time.
        msg = f"{ready_n}/{total} ready"
        conds.append(_condition(old_conds, PROGRESSING, "True", "RollingOut", msg, g, now))
    else:
        conds.append(
            _condition(old_conds, PROGRESSING, "False", "Stable", "every child is up to date", g, now)
        )

    if obs.error is not None:
        conds.append(_condition(old_conds, DEGRADED, "True", obs.error[0], obs.error[1], g, now))
    elif obs.stuck:
        msg = f"progress deadline exceeded: {_names(obs.stuck)}"
        conds.append(_condition(old_conds, DEGRADED, "True", "ProgressDeadlineExceeded", msg, g, now))
    else:
        conds.append(_condition(old_conds, DEGRADED, "False", "AsExpected", "no errors", g, now))

    if obs.paused:
        msg = "paused: the operator makes no changes to children"
        conds.append(_condition(old_conds, PAUSED, "True", "PausedByUser", msg, g, now))
    else:
        conds.append(_condition(old_conds, PAUSED, "False", "Reconciling", "not paused", g, now))

    if obs.autoscaler is None:
        conds.append(
            _condition(old_conds, AUTOSCALER_AVAILABLE, "Unknown", "NotChecked", "not checked yet", g, now)
        )
        mode = old.get("autoscaling", "unknown")
    else:
        st, reason, msg = obs.autoscaler.condition
        conds.append(_condition(old_conds, AUTOSCALER_AVAILABLE, st, reason, msg, g, now))
        mode = obs.autoscaler.mode

    return {
        "observedGeneration": g,
        "components": f"{ready_n}/{total}",
        "autoscaling": mode,
        "kedaAvailable": obs.autoscaler.keda_available if obs.autoscaler is not None else False,
        "workloads": [c.as_status() for c in obs.components],
        "conditions": conds,
    }


def condition(status: Mapping[str, Any] | None, ctype: str) -> Mapping[str, Any] | None:
    """The condition of type ctype in a status dict, if any."""
    for c in (status or {}).get("conditions", []) or []:
        if isinstance(c, Mapping) and c.get("type") == ctype:
            return c
    return None


def status_changed(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether new differs from what the CR already carries (only our keys are compared)."""
    old = old or {}
    return any(old.get(k) != v for k, v in new.items())


def transitions(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> Iterable[tuple[str, str, str]]:
    """(type, old status, new status) for every condition whose status changed."""
    for c in new.get("conditions", []):
        prev = condition(old, c["type"])
        before = str(prev.get("status")) if prev else "None"
        if before != c["status"]:
            yield c["type"], before, c["status"]


def strip(status: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy (what the reconciler remembers as last written)."""
    return copy.deepcopy(dict(status))
