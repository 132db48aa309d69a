"""The reconciler and the coordinator against an in-memory API server: writes only what differs, reads
children from the cache (an idle resync sends nothing), repairs drift, coalesces a burst of child events
into one pass, switches autoscalers, honours the pause annotation. The real API server is exercised by
e2e/."""

from __future__ import annotations

import asyncio
import copy
import json
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from booking_operator.apply import Applier
from booking_operator.cache import ChildCache
from booking_operator.client import KubeError
from booking_operator.coordinator import Coordinator
from booking_operator.events import EventRecorder
from booking_operator.keda import KedaDetector
from booking_operator.reconcile import PAUSED_ANNOTATION, ReconcileError, Reconciler

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

    async def request(
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


CR_PATH = f"/apis/platform.pat-booking.io/v1alpha1/namespaces/{NS}/bookingplatforms/{NAME}"
KEY = (NS, NAME)


def make(api: FakeApi, body: dict[str, Any]) -> Reconciler:
    rec = Reconciler(
        kube=api,  # type: ignore[arg-type]
        applier=Applier(api, "booking-operator"),  # type: ignore[arg-type]
        keda=KedaDetector(api, recheck_seconds=math.inf),  # type: ignore[arg-type]
        events=EventRecorder(api),  # type: ignore[arg-type]
        cache=ChildCache("booking-operator"),
    )
    api.objects[CR_PATH] = body
    rec.store.upsert(body)
    return rec


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


def watch_event(rec: Reconciler, obj: dict[str, Any], kind: str = "Deployment") -> bool:
    """What the informer does with a MODIFIED event: store it (unless stale); True when stored."""
    return rec.cache.put(obj, kind)


def dep_path(name: str) -> str:
    return f"/apis/apps/v1/namespaces/{NS}/deployments/{name}"


async def _created(api: FakeApi, body: dict[str, Any] | None = None) -> Reconciler:
    rec = make(api, body or platform_body())
    await rec.reconcile(KEY, "create")
    return rec


def _count_passes(rec: Reconciler) -> list[str]:
    """The trigger of every reconcile pass `rec` makes from now on, in order."""
    passes: list[str] = []
    real = rec.reconcile

    async def counted(key: tuple[str, str], trigger: str, **kw: Any) -> Any:
        passes.append(trigger)
        return await real(key, trigger, **kw)

    rec.reconcile = counted  # type: ignore[method-assign]
    return passes


def test_first_pass_creates_everything_an_idle_resync_sends_nothing() -> None:
    async def scenario() -> None:
        api = FakeApi()
        rec = make(api, platform_body())
        first = await rec.reconcile(KEY, "create")
        assert first.writes >= 20 and first.unchanged == 0 and first.counted_as == "reconcile"
        assert sum(1 for p in api.objects if "/deployments/" in p) == 14
        for path, obj in api.objects.items():
            if "bookingplatforms" not in path:
                assert obj["metadata"]["ownerReferences"][0]["uid"] == "cr-uid"
        assert [e["reason"] for e in api.events] == ["Created"]
        api.calls.clear()
        for _ in range(3):
            second = await rec.reconcile(KEY, "resync")
            assert second.writes == 0 and not second.status_written and second.counted_as == "check"
        assert api.calls == [], "an idle resync reads the cache: not one request"

    run(scenario)


def test_drift_seen_on_the_watch_is_repaired_and_stale_events_are_ignored() -> None:
    async def scenario() -> None:
        api = FakeApi()
        rec = await _created(api)
        name = f"{NAME}--wrk--default--prod"
        edited = copy.deepcopy(api.objects[dep_path(name)])
        edited["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:1"
        edited["metadata"]["resourceVersion"] = "999"
        api.objects[dep_path(name)] = copy.deepcopy(edited)
        api.rv = 1000
        assert watch_event(rec, edited)
        api.calls.clear()
        out = await rec.reconcile(KEY, "drift")
        assert out.writes == 1 and out.counted_as == "reconcile"
        assert api.objects[dep_path(name)]["spec"]["template"]["spec"]["containers"][0]["image"] != "evil:1"
        assert len(api.writes()) == 1
        # the same (now stale) event again, as a watch may deliver it late: the cache keeps our newer copy
        assert not watch_event(rec, edited)
        assert (await rec.reconcile(KEY, "drift")).writes == 0
        assert len(api.writes()) == 1
        assert any(e["reason"] == "DriftRepaired" for e in api.events)

    run(scenario)


def test_deleted_child_is_recreated_only_while_its_owner_lives() -> None:
    async def scenario() -> None:
        api = FakeApi()
        rec = await _created(api)
        name = f"{NAME}--consumer-booking--prod"
        gone = api.objects.pop(dep_path(name))
        assert rec.cache.remove(gone, "Deployment")
        assert (await rec.reconcile(KEY, "drift")).writes == 1
        assert dep_path(name) in api.objects
        # the owner is deleted: the garbage collector's deletions must not be undone
        api.objects.pop(CR_PATH)
        gone = api.objects.pop(dep_path(name))
        assert rec.cache.remove(gone, "Deployment")
        assert (await rec.reconcile(KEY, "drift")).writes == 0
        assert dep_path(name) not in api.objects

    run(scenario)


def test_a_burst_of_child_events_is_one_pass_and_a_platform_reconcile_covers_pending_ones() -> None:
    async def scenario() -> None:
        api = FakeApi()
        rec = make(api, platform_body())
        coord = Coordinator(rec, debounce=0.05)
        passes = _count_passes(rec)
        await coord.reconcile_now(KEY, "create")
        children = [o for p, o in api.objects.items() if "bookingplatforms" not in p]
        # the watch echoes of every child we applied: each still what the platform wants, so no pass
        for obj in children:
            coord.on_child(KEY, (obj["kind"], obj["metadata"]["name"]), "ADDED")
            coord.on_child(KEY, (obj["kind"], obj["metadata"]["name"]), "MODIFIED")
        await asyncio.sleep(0.3)
        assert passes == ["create"]
        # three children edited at once, among more echoes: one pass for the burst, which repairs them
        deployments = [o for o in children if o["kind"] == "Deployment"][:3]
        for i, dep in enumerate(deployments):
            edited = copy.deepcopy(dep)
            edited["spec"]["template"]["spec"]["containers"][0]["image"] = f"evil:{i}"
            edited["metadata"]["resourceVersion"] = str(900 + i)
            api.objects[dep_path(dep["metadata"]["name"])] = copy.deepcopy(edited)
            assert watch_event(rec, edited) == "spec"
            coord.on_child(KEY, ("Deployment", dep["metadata"]["name"]), "MODIFIED")
        api.rv = 1000
        for obj in children:
            coord.on_child(KEY, (obj["kind"], obj["metadata"]["name"]), "MODIFIED")
        await asyncio.sleep(0.3)
        assert passes == ["create", "drift"]
        assert all(
            api.objects[dep_path(d["metadata"]["name"])]["spec"]["template"]["spec"]["containers"][0]["image"]
            == d["spec"]["template"]["spec"]["containers"][0]["image"]
            for d in deployments
        )
        # events pending when the platform itself asks for a reconcile are covered by it
        coord.on_child(KEY, ("Deployment", f"{NAME}--app--prod"), "DELETED")
        await coord.reconcile_now(KEY, "update")
        await asyncio.sleep(0.3)
        assert passes == ["create", "drift", "update"]
        await coord.stop()

    run(scenario)


def test_a_relist_drops_what_a_watch_gap_hid() -> None:
    async def scenario() -> None:
        api = FakeApi()
        rec = await _created(api)
        listed = [o for p, o in api.objects.items() if "/deployments/" in p]
        hidden = listed.pop()
        gone = rec.cache.replace("Deployment", listed)
        assert gone == [(KEY, ("Deployment", hidden["metadata"]["name"]))]
        assert (await rec.reconcile(KEY, "resync")).writes == 1  # recreated

    run(scenario)


def test_autoscaled_replicas_are_left_alone() -> None:
    async def scenario() -> None:
        api = FakeApi()
        rec = await _created(api)
        scaled = api.objects[dep_path(f"{NAME}--app--prod")]
        scaled["spec"]["replicas"] = 4  # the HPA scaled it
        scaled["metadata"]["resourceVersion"] = "5000"
        assert watch_event(rec, copy.deepcopy(scaled))
        api.calls.clear()
        assert (await rec.reconcile(KEY, "resync")).writes == 0
        assert api.objects[dep_path(f"{NAME}--app--prod")]["spec"]["replicas"] == 4

    run(scenario)


def test_without_keda_a_cpu_hpa_and_a_warning_then_the_switch() -> None:
    async def scenario() -> None:
        api = FakeApi(keda=False)
        rec = await _created(api)
        hpas = sorted(p.rsplit("/", 1)[-1] for p in api.objects if "/horizontalpodautoscalers/" in p)
        assert hpas == [f"{NAME}--app--prod-hpa", f"{NAME}--consumer-pat-test-result--prod-hpa"]
        status = api.objects[CR_PATH]["status"]
        auto = next(c for c in status["conditions"] if c["type"] == "AutoscalerAvailable")
        assert (auto["status"], auto["reason"], status["autoscaling"]) == (
            "False",
            "KedaNotInstalled",
            "hpa-fallback",
        )
        assert any(e["reason"] == "AutoscalerFallback" and e["type"] == "Warning" for e in api.events)

        api.keda = True
        await rec.keda.available(force=True)
        await rec.reconcile(KEY, "keda")
        hpas = sorted(p.rsplit("/", 1)[-1] for p in api.objects if "/horizontalpodautoscalers/" in p)
        assert hpas == [f"{NAME}--app--prod-hpa"]
        assert any(
            p.endswith(f"/scaledobjects/kafka-{NAME}--consumer-pat-test-result--prod") for p in api.objects
        )
        # the HPA was deleted before the ScaledObject was created (KEDA's webhook refuses both on one target)
        order = [(m, p.rsplit("/", 2)[-2]) for m, p in api.writes()]
        assert order.index(("DELETE", "horizontalpodautoscalers")) < order.index(("PATCH", "scaledobjects"))
        assert any(e["reason"] == "AutoscalerSwitched" for e in api.events)

    run(scenario)


def test_paused_platform_gets_no_writes() -> None:
    async def scenario() -> None:
        api = FakeApi()
        rec = make(api, platform_body(annotations={PAUSED_ANNOTATION: "true"}))
        out = await rec.reconcile(KEY, "create")
        assert out.writes == 0 and not api.writes()
        paused = next(c for c in api.objects[CR_PATH]["status"]["conditions"] if c["type"] == "Paused")
        assert paused["status"] == "True"

    run(scenario)


def test_invalid_spec_is_a_permanent_error_reported_in_status() -> None:
    async def scenario() -> None:
        api = FakeApi()
        body = platform_body()
        body["spec"]["consumers"]["nope"] = {"replicas": 1}
        rec = make(api, body)
        with pytest.raises(ReconcileError) as info:
            await rec.reconcile(KEY, "create")
        assert info.value.permanent
        status = api.objects[CR_PATH]["status"]
        degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
        assert degraded["status"] == "True" and degraded["reason"] == "InvalidSpec"
        assert "spec.consumers.nope" in json.dumps(status)

    run(scenario)


def test_apply_stages_put_every_kind_once_and_dependencies_first() -> None:
    from booking_operator.apply import APPLY_STAGES, CHILD_KINDS

    stage = {kind: i for i, kinds in enumerate(APPLY_STAGES) for kind in kinds}
    assert sorted(stage) == sorted(k.kind for k in CHILD_KINDS)
    assert sum(len(s) for s in APPLY_STAGES) == len(CHILD_KINDS)
    assert stage["ServiceAccount"] < stage["Deployment"] and stage["ConfigMap"] < stage["Deployment"]
    assert stage["Deployment"] < stage["HorizontalPodAutoscaler"]
    assert stage["Deployment"] < stage["ScaledObject"] and stage["Deployment"] < stage["PodDisruptionBudget"]
    assert stage["TriggerAuthentication"] < stage["ScaledObject"]


def test_a_burst_of_new_platforms_sends_every_child_before_any_status_or_event() -> None:
    """Children come first: a platform's status and Events wait while other new platforms wait to be
    applied, so in a burst the reports do not compete with the applies."""

    async def scenario() -> None:
        api = FakeApi()
        rec = make(api, platform_body())
        keys = [KEY]
        for i in range(5):
            body = platform_body(namespace=f"{NS}-{i}", uid=f"cr-uid-{i}")
            api.objects[CR_PATH.replace(f"/namespaces/{NS}/", f"/namespaces/{NS}-{i}/")] = body
            rec.store.upsert(body)
            keys.append((f"{NS}-{i}", NAME))
        coord = Coordinator(rec, concurrency=2)
        await asyncio.gather(*(coord.reconcile_now(k, "create") for k in keys))
        kinds = [
            "report" if p.endswith(("/status", "/events")) else "child" for m, p in api.calls if m != "GET"
        ]
        assert kinds.count("child") == 6 * len(rec.store.get(KEY).desired or {})  # type: ignore[union-attr]
        assert kinds.count("report") >= 12  # every platform's status and its Created event
        assert "child" not in kinds[kinds.index("report") :], kinds
        await coord.stop()

    run(scenario)


def test_only_a_change_of_uid_generation_or_pause_starts_a_platform_reconcile() -> None:
    async def scenario() -> None:
        api = FakeApi()
        body = platform_body()
        rec = make(api, body)
        coord = Coordinator(rec)
        coord.wait_for_listings([])
        passes = _count_passes(rec)

        async def event(first_listing: bool = False, **meta: Any) -> None:
            new = copy.deepcopy(body)
            new["metadata"] |= meta
            rec.store.upsert(new)
            task = coord.platform_event(KEY, first_listing)
            if task is not None:
                await task

        await event(first_listing=True)
        await event(resourceVersion="2", labels={"touched": "yes"})  # a label: the render reads none
        await event(resourceVersion="3")  # our own status write
        assert passes == ["resume"]
        await event(resourceVersion="4", generation=2)
        await event(resourceVersion="5", generation=2, annotations={PAUSED_ANNOTATION: "true"})
        await event(resourceVersion="6", generation=2, annotations={PAUSED_ANNOTATION: "true"})
        assert passes == ["resume", "update", "update"]
        assert rec.store.get(KEY).last_status["conditions"]  # type: ignore[union-attr,index]
        await coord.stop()

    run(scenario)


def test_a_failed_platform_reconcile_is_retried_and_an_invalid_spec_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from booking_operator import coordinator

    monkeypatch.setattr(coordinator, "RETRY_SECONDS", 0.05)

    async def scenario() -> None:
        api = FakeApi()
        rec = make(api, platform_body())
        coord = Coordinator(rec)
        real = api.request
        refusals = [KubeError(500, "Internal Server Error")]

        async def flaky(method: str, path: str, **kw: Any) -> dict[str, Any]:
            if method == "PATCH" and "/deployments/" in path and refusals:
                raise refusals.pop()
            return await real(method, path, **kw)

        api.request = flaky  # type: ignore[method-assign]
        task = coord.platform_event(KEY, first_listing=False)
        assert task is not None
        await task
        assert len(api.writes()) < len(rec.store.get(KEY).desired or {})  # type: ignore[union-attr]
        children = lambda: [p for p in api.objects if "/bookingplatforms/" not in p]  # noqa: E731
        assert len(children()) < 23
        await asyncio.wait_for(_until(lambda: len(children()) == 23), timeout=5)
        retrying = coord._slot(KEY).retrying
        assert retrying is not None
        await retrying

        bad = platform_body(generation=2, resourceVersion="9")
        bad["spec"]["api"]["replicas"] = -1
        rec.store.upsert(bad)
        calls = len(api.calls)
        task = coord.platform_event(KEY, first_listing=False)
        assert task is not None
        await task
        await asyncio.sleep(0.3)  # several retry periods: nothing is retried
        assert [p for m, p in api.calls[calls:] if m == "PATCH"] == [CR_PATH + "/status"]
        await coord.stop()

    run(scenario)


async def _until(check: Callable[[], bool]) -> None:
    while not check():
        await asyncio.sleep(0.01)
