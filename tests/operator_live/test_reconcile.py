"""The reconciler against an in-memory API server: writes only what differs, repairs drift, switches
autoscalers, honours the pause annotation. The real API server is exercised by e2e/."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from booking_operator.apply import Applier
from booking_operator.client import KubeError
from booking_operator.events import EventRecorder
from booking_operator.keda import KedaDetector
from booking_operator.reconcile import FULL_RELIST_EVERY, PAUSED_ANNOTATION, Reconciler

EXAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "examples" / "pat-booking-be-prod.yaml"
NS = "pat--booking--be"
NAME = "pat--booking--be"


class FakeApi:
    """Just enough of the REST API: collections by path, SSA as replace-plus-defaults, status, events."""

    def __init__(self, keda: bool = True) -> None:
        self.objects: dict[str, dict[str, Any]] = {}  # object path -> object
        self.rv = 100
        self.keda = keda
        self.calls: list[tuple[str, str]] = []
        self.events: list[dict[str, Any]] = []

    def request(
        self, method: str, path: str, *, query: Any = None, body: Any = None, **_: Any
    ) -> dict[str, Any]:
        self.calls.append((method, path))
        if path == "/apis/keda.sh/v1alpha1":
            if not self.keda:
                raise KubeError(404, "Not Found")
            return {"resources": [{"name": "scaledobjects"}]}
        if "/keda.sh/" in path and not self.keda:
            raise KubeError(404, "Not Found")
        if method == "POST" and path.endswith("/events"):
            self.events.append(body)
            return body  # type: ignore[no-any-return]
        if method == "GET":
            if path in self.objects:
                return copy.deepcopy(self.objects[path])
            prefix = path + "/"
            items = [
                copy.deepcopy(o)
                for p, o in self.objects.items()
                if p.startswith(prefix) and "/" not in p[len(prefix) :]
            ]
            if items or not path.rsplit("/", 1)[-1].startswith(NAME):
                return {"items": items}
            raise KubeError(404, "Not Found")
        if method == "PATCH" and path.endswith("/status"):
            if path.removesuffix("/status") not in self.objects:
                raise KubeError(404, "Not Found")
            obj = self.objects[path.removesuffix("/status")]
            obj["status"] = copy.deepcopy(body["status"])
            return obj
        if method == "PATCH":
            self.rv += 1
            old = self.objects.get(path, {})
            new = copy.deepcopy(body)
            new["metadata"] |= {
                "resourceVersion": str(self.rv),
                "uid": old.get("metadata", {}).get("uid", f"u{self.rv}"),
            }
            if new["kind"] == "Deployment":
                new["spec"].setdefault("replicas", old.get("spec", {}).get("replicas", 1))
                new["spec"]["template"]["spec"]["restartPolicy"] = "Always"  # a server default
                new["status"] = old.get("status", {})
            self.objects[path] = new
            return copy.deepcopy(new)
        if method == "DELETE":
            self.objects.pop(path, None)
            return {}
        raise AssertionError(f"unexpected {method} {path}")

    def writes(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p in self.calls if m in ("PATCH", "DELETE") and not p.endswith("/status")]


def platform_body(**meta: Any) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"] |= {"uid": "cr-uid", "generation": 1, "resourceVersion": "1"} | meta
    return body


def make(api: FakeApi, body: dict[str, Any]) -> Reconciler:
    rec = Reconciler(
        kube=api,  # type: ignore[arg-type]
        applier=Applier(api, "booking-operator"),  # type: ignore[arg-type]
        keda=KedaDetector(api, recheck_seconds=0),  # type: ignore[arg-type]
        events=EventRecorder(api),  # type: ignore[arg-type]
    )
    api.objects[f"/apis/platform.pat-booking.io/v1alpha1/namespaces/{NS}/bookingplatforms/{NAME}"] = body
    rec.store.upsert(body)
    return rec


def dep_path(name: str) -> str:
    return f"/apis/apps/v1/namespaces/{NS}/deployments/{name}"


def test_first_pass_creates_everything_second_pass_writes_nothing() -> None:
    api = FakeApi()
    rec = make(api, platform_body())
    first = rec.reconcile((NS, NAME), "create")
    assert first.writes >= 20 and first.unchanged == 0
    assert sum(1 for p in api.objects if "/deployments/" in p) == 14
    for path, obj in api.objects.items():
        if "bookingplatforms" not in path:
            assert obj["metadata"]["ownerReferences"][0]["uid"] == "cr-uid"
    assert [e["reason"] for e in api.events] == ["Created"]
    api.calls.clear()
    second = rec.reconcile((NS, NAME), "resync")
    assert second.writes == 0 and not api.writes()
    assert not second.status_written  # nothing changed, nothing written


def test_drift_from_a_watch_event_is_repaired_and_stale_events_are_ignored() -> None:
    api = FakeApi()
    rec = make(api, platform_body())
    rec.reconcile((NS, NAME), "create")
    name = f"{NAME}--wrk--default--prod"
    edited = copy.deepcopy(api.objects[dep_path(name)])
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:1"
    edited["metadata"]["resourceVersion"] = "999"
    api.objects[dep_path(name)] = copy.deepcopy(edited)
    api.rv = 1000
    api.calls.clear()
    assert rec.repair_child("Deployment", "MODIFIED", edited) is True
    assert api.objects[dep_path(name)]["spec"]["template"]["spec"]["containers"][0]["image"] != "evil:1"
    assert len(api.writes()) == 1
    # the same (now stale) event again, as a watch may deliver it late: no second write
    assert rec.repair_child("Deployment", "MODIFIED", edited) is False
    assert len(api.writes()) == 1
    assert any(e["reason"] == "DriftRepaired" for e in api.events)


def test_deleted_child_is_recreated_only_while_its_owner_lives() -> None:
    api = FakeApi()
    rec = make(api, platform_body())
    rec.reconcile((NS, NAME), "create")
    name = f"{NAME}--consumer-booking--prod"
    gone = api.objects.pop(dep_path(name))
    assert rec.repair_child("Deployment", "DELETED", gone) is True
    assert dep_path(name) in api.objects
    # the owner is deleted: the garbage collector's deletions must not be undone
    api.objects.pop(f"/apis/platform.pat-booking.io/v1alpha1/namespaces/{NS}/bookingplatforms/{NAME}")
    gone = api.objects.pop(dep_path(name))
    assert rec.repair_child("Deployment", "DELETED", gone) is False
    assert dep_path(name) not in api.objects


def test_a_resync_reads_the_watch_fed_cache_and_relists_now_and_then() -> None:
    api = FakeApi()
    rec = make(api, platform_body())
    rec.reconcile((NS, NAME), "create")
    api.calls.clear()
    for _ in range(3):
        assert rec.reconcile((NS, NAME), "resync").writes == 0
    assert not [c for c in api.calls if "/namespaces/" in c[1]], "an idle resync sends no request"
    # a deletion no watch reported (a gap while reconnecting): the periodic relist still finds it
    name = f"{NAME}--wrk--default--prod"
    api.objects.pop(dep_path(name))
    writes = [rec.reconcile((NS, NAME), "resync").writes for _ in range(FULL_RELIST_EVERY)]
    assert sum(writes) == 1 and dep_path(name) in api.objects
    # a CR edit always lists
    api.calls.clear()
    rec.reconcile((NS, NAME), "update")
    assert [c for c in api.calls if c[0] == "GET" and c[1].endswith("/deployments")]


def test_autoscaled_replicas_are_left_alone() -> None:
    api = FakeApi()
    rec = make(api, platform_body())
    rec.reconcile((NS, NAME), "create")
    api.objects[dep_path(f"{NAME}--app--prod")]["spec"]["replicas"] = 4  # the HPA scaled it
    api.calls.clear()
    assert rec.reconcile((NS, NAME), "resync").writes == 0
    assert api.objects[dep_path(f"{NAME}--app--prod")]["spec"]["replicas"] == 4


def test_without_keda_a_cpu_hpa_and_a_warning_then_the_switch() -> None:
    api = FakeApi(keda=False)
    rec = make(api, platform_body())
    rec.reconcile((NS, NAME), "create")
    hpas = sorted(p.rsplit("/", 1)[-1] for p in api.objects if "/horizontalpodautoscalers/" in p)
    assert hpas == [f"{NAME}--app--prod-hpa", f"{NAME}--consumer-pat-test-result--prod-hpa"]
    status = api.objects[f"/apis/platform.pat-booking.io/v1alpha1/namespaces/{NS}/bookingplatforms/{NAME}"][
        "status"
    ]
    auto = next(c for c in status["conditions"] if c["type"] == "AutoscalerAvailable")
    assert (auto["status"], auto["reason"], status["autoscaling"]) == (
        "False",
        "KedaNotInstalled",
        "hpa-fallback",
    )
    assert any(e["reason"] == "AutoscalerFallback" and e["type"] == "Warning" for e in api.events)

    api.keda = True
    rec.keda.available(force=True)
    rec.reconcile((NS, NAME), "keda")
    hpas = sorted(p.rsplit("/", 1)[-1] for p in api.objects if "/horizontalpodautoscalers/" in p)
    assert hpas == [f"{NAME}--app--prod-hpa"]
    assert any(
        p.endswith(f"/scaledobjects/kafka-{NAME}--consumer-pat-test-result--prod") for p in api.objects
    )
    # the HPA was deleted before the ScaledObject was created (KEDA's webhook refuses both on one target)
    order = [(m, p.rsplit("/", 2)[-2]) for m, p in api.writes()]
    assert order.index(("DELETE", "horizontalpodautoscalers")) < order.index(("PATCH", "scaledobjects"))
    assert any(e["reason"] == "AutoscalerSwitched" for e in api.events)


def test_paused_platform_gets_no_writes() -> None:
    api = FakeApi()
    rec = make(api, platform_body(annotations={PAUSED_ANNOTATION: "true"}))
    out = rec.reconcile((NS, NAME), "create")
    assert out.writes == 0 and not api.writes()
    status = api.objects[f"/apis/platform.pat-booking.io/v1alpha1/namespaces/{NS}/bookingplatforms/{NAME}"][
        "status"
    ]
    paused = next(c for c in status["conditions"] if c["type"] == "Paused")
    assert paused["status"] == "True"


def test_invalid_spec_is_a_permanent_error_reported_in_status() -> None:
    api = FakeApi()
    body = platform_body()
    body["spec"]["consumers"]["nope"] = {"replicas": 1}
    rec = make(api, body)
    from booking_operator.reconcile import ReconcileError

    with pytest.raises(ReconcileError) as info:
        rec.reconcile((NS, NAME), "create")
    assert info.value.permanent
    status = api.objects[f"/apis/platform.pat-booking.io/v1alpha1/namespaces/{NS}/bookingplatforms/{NAME}"][
        "status"
    ]
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "InvalidSpec"
    assert "spec.consumers.nope" in json.dumps(status)


def test_events_for_a_busy_platform_are_queued_not_blocking() -> None:
    api = FakeApi()
    rec = make(api, platform_body())
    rec.reconcile((NS, NAME), "create")
    st = rec.store.get((NS, NAME))
    assert st is not None
    name = f"{NAME}--wrk--default--prod"
    edited = copy.deepcopy(api.objects[dep_path(name)])
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:1"
    edited["metadata"]["resourceVersion"] = "999"
    api.objects[dep_path(name)] = copy.deepcopy(edited)
    api.rv = 1000
    import threading

    held, release = threading.Event(), threading.Event()

    def busy() -> None:
        with st.lock:
            held.set()
            release.wait(5)

    t = threading.Thread(target=busy)
    t.start()
    held.wait(5)
    assert rec.repair_child("Deployment", "MODIFIED", edited) is False  # returned at once, queued
    assert len(st.pending) == 1
    release.set()
    t.join()
    assert rec._drain(st) == 1  # what every lock holder does when it lets go
    assert not st.pending
    assert api.objects[dep_path(name)]["spec"]["template"]["spec"]["containers"][0]["image"] != "evil:1"
