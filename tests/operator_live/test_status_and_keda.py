"""Status computation and the KEDA fallback decision, with no cluster."""

from __future__ import annotations

import asyncio
from typing import Any

from booking_operator.client import KubeError
from booking_operator.keda import KedaDetector, decide
from booking_operator.status import (
    Observation,
    compute_status,
    condition,
    deployment_state,
    status_changed,
)


def dep(name: str, replicas: int | None = 1) -> dict[str, Any]:
    spec = {} if replicas is None else {"replicas": replicas}
    return {"metadata": {"name": name, "labels": {"app.kubernetes.io/component": name}}, "spec": spec}


def live(replicas: int, ready: int, generation: int = 2, observed: int = 2) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "updatedReplicas": ready,
            "availableReplicas": ready,
            "readyReplicas": ready,
        },
    }


def test_deployment_readiness() -> None:
    assert deployment_state(dep("a"), live(1, 1)).available
    assert not deployment_state(dep("a"), live(2, 1)).available
    assert not deployment_state(dep("a"), live(1, 1, generation=3, observed=2)).available  # rollout not seen
    assert not deployment_state(dep("a"), None).available
    # autoscaled: desired comes from the live object (the HPA set it)
    s = deployment_state(dep("a", replicas=None), live(4, 4), autoscaler="hpa")
    assert (s.desired, s.ready, s.available, s.autoscaler) == (4, 4, True, "hpa")


def obs(ready: int, total: int = 14, **kw: Any) -> Observation:
    comps = [deployment_state(dep(f"c{i}"), live(1, 1 if i < ready else 0)) for i in range(total)]
    return Observation(
        generation=2, components=comps, autoscaler=decide(keda_available=True, wants_keda=True), **kw
    )


def test_all_ready_status_reads_like_the_printer_columns() -> None:
    st = compute_status(None, obs(14), now="2026-01-01T00:00:00Z")
    assert st["components"] == "14/14"
    assert st["autoscaling"] == "keda"
    assert st["observedGeneration"] == 2
    types = {c["type"]: c["status"] for c in st["conditions"]}
    assert types == {
        "Ready": "True",
        "Progressing": "False",
        "Degraded": "False",
        "Paused": "False",
        "AutoscalerAvailable": "True",
    }
    assert all(c["observedGeneration"] == 2 and c["reason"] and c["message"] for c in st["conditions"])
    assert len(st["workloads"]) == 14 and st["workloads"][0]["desiredReplicas"] == 1


def test_recomputing_an_unchanged_world_changes_nothing() -> None:
    first = compute_status(None, obs(14), now="2026-01-01T00:00:00Z")
    again = compute_status(first, obs(14), now="2026-01-01T00:05:00Z")
    assert again == first
    assert not status_changed(first, again)


def test_transition_time_moves_only_when_status_changes() -> None:
    first = compute_status(None, obs(14), now="2026-01-01T00:00:00Z")
    later = compute_status(first, obs(13), now="2026-01-01T00:05:00Z")
    ready = condition(later, "Ready")
    assert (
        ready is not None
        and ready["status"] == "False"
        and ready["lastTransitionTime"] == "2026-01-01T00:05:00Z"
    )
    degraded = condition(later, "Degraded")
    assert degraded is not None and degraded["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert later["components"] == "13/14"
    assert status_changed(first, later)


def test_errors_paused_and_stuck_rollouts() -> None:
    st = compute_status(None, obs(14, error=("ApplyFailed", "boom")))
    assert condition(st, "Ready")["status"] == "False"  # type: ignore[index]
    assert condition(st, "Degraded")["reason"] == "ApplyFailed"  # type: ignore[index]
    st = compute_status(None, obs(14, paused=True))
    assert condition(st, "Paused")["status"] == "True"  # type: ignore[index]
    assert condition(st, "Progressing")["reason"] == "Paused"  # type: ignore[index]
    st = compute_status(None, obs(13, stuck=["c13"]))
    assert condition(st, "Degraded")["reason"] == "ProgressDeadlineExceeded"  # type: ignore[index]


def test_keda_fallback_decision() -> None:
    d = decide(keda_available=False, wants_keda=True)
    assert not d.keda_available and d.mode == "hpa-fallback"
    assert d.condition[:2] == ("False", "KedaNotInstalled")
    assert decide(keda_available=True, wants_keda=True).condition[:2] == ("True", "KedaAvailable")
    assert decide(keda_available=False, wants_keda=False).condition[:2] == ("True", "KedaNotRequired")
    st = compute_status(None, Observation(generation=1, autoscaler=d))
    assert st["autoscaling"] == "hpa-fallback" and st["kedaAvailable"] is False


class FakeKube:
    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.calls = 0

    async def request(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        self.calls += 1
        a = self.answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return dict(a)


def test_detector_caches_and_rechecks() -> None:
    now = [0.0]
    kube = FakeKube(
        [
            KubeError(404, "Not Found"),
            {"resources": [{"name": "scaledobjects"}, {"name": "scaledobjects/status"}]},
            KubeError(503, "Unavailable"),
        ]
    )
    det = KedaDetector(kube, recheck_seconds=30, clock=lambda: now[0])  # type: ignore[arg-type]
    available = lambda force=False: asyncio.run(det.available(force=force))  # noqa: E731
    assert det.known is None
    assert available() is False
    assert available() is False and kube.calls == 1  # cached
    now[0] = 31
    assert available() is True and kube.calls == 2  # the CRD appeared
    assert available(force=True) is True  # a flaky discovery keeps the last answer
