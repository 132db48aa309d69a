"""The child cache's informer on a real kube-apiserver: it holds exactly our labelled children (the
selector filters server-side), follows additions, edits and deletions from the watch, keeps Deployments'
status but nobody else's, and tells its sink which platform each change belongs to. An API that is not
served (KEDA's CRD absent) counts as synced and empty instead of failing.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from booking_operator.apply import CONFIGMAP, DEPLOYMENT, HPA
from booking_operator.cache import ChildCache, Informer, slim
from booking_operator.client import Kind, KubeError

from .conftest import operator_kube

MANAGER = "booking-operator"
LABELS = {"app.kubernetes.io/managed-by": "booking-operator", "app.kubernetes.io/part-of": "shop"}


@pytest.fixture
def namespace(kubeconfig: str) -> Iterator[tuple[k8s.CoreV1Api, str]]:
    core = k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=kubeconfig))  # type: ignore[no-untyped-call]
    ns = f"cache-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": ns}})
    yield core, ns
    core.delete_namespace(ns)


async def _until(cond: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout}s")
        await asyncio.sleep(0.05)


def test_the_informer_follows_labelled_children_only(
    kubeconfig: str, namespace: tuple[k8s.CoreV1Api, str]
) -> None:
    core, ns = namespace
    ours = {"metadata": {"name": "ours", "labels": LABELS}, "data": {"a": "1"}}
    core.create_namespaced_config_map(ns, ours)
    core.create_namespaced_config_map(ns, {"metadata": {"name": "theirs"}, "data": {"a": "1"}})
    platform = (ns, "shop")

    async def scenario() -> None:
        kube = operator_kube(kubeconfig)
        cache = ChildCache(MANAGER)
        seen: list[tuple[tuple[str, str], str]] = []
        sink = lambda p, c, t: seen.append((c, t))  # noqa: E731
        inf = Informer(kube, CONFIGMAP, cache, sink, lambda k, s: None, namespace=ns)
        task = asyncio.create_task(inf.run())
        try:
            await asyncio.wait_for(inf.synced.wait(), 15)
            assert cache.keys(platform) == {("ConfigMap", "ours")}
            cached = cache.get(platform, ("ConfigMap", "ours"))
            assert cached is not None and cached["data"] == {"a": "1"} and "status" not in cached
            # an edit, an addition and a deletion arrive through the watch (no relisting)
            # over 64 KiB: one watch event is one line as long as its object
            big = {"data": {"a": "2", "big": "x" * 100_000}}
            await asyncio.to_thread(core.patch_namespaced_config_map, "ours", ns, big)
            await asyncio.to_thread(
                core.create_namespaced_config_map, ns, {"metadata": {"name": "new", "labels": LABELS}}
            )
            edited = lambda: (cache.get(platform, ("ConfigMap", "ours")) or {}).get("data") == big["data"]  # noqa: E731
            await _until(edited, "edit")
            await _until(lambda: ("ConfigMap", "new") in cache.keys(platform), "addition")
            await asyncio.to_thread(core.delete_namespaced_config_map, "new", ns)
            await _until(lambda: ("ConfigMap", "new") not in cache.keys(platform), "deletion")
            assert (("ConfigMap", "new"), "DELETED") in seen
            assert all(c[1] != "theirs" for c, _ in seen)
        finally:
            task.cancel()
            await kube.close()

    asyncio.run(scenario())


def test_an_api_that_is_not_served_is_synced_and_empty(kubeconfig: str) -> None:
    async def scenario() -> None:
        kube = operator_kube(kubeconfig)
        cache = ChildCache(MANAGER)
        missing = Kind("nothing.example.com/v1", "Nothing", "nothings")
        inf = Informer(kube, missing, cache, lambda p, c, t: None, lambda k, s: None, retry_seconds=60)
        task = asyncio.create_task(inf.run())
        try:
            await asyncio.wait_for(inf.synced.wait(), 15)
            assert inf.served is False and cache.size() == 0
        finally:
            task.cancel()
            await kube.close()

    asyncio.run(scenario())


def test_deployments_keep_their_status_in_the_cache() -> None:
    dep = {"metadata": {"name": "d", "labels": LABELS, "namespace": "x"}, "status": {"readyReplicas": 1}}
    assert json.loads(slim(dep, DEPLOYMENT.kind, MANAGER, None))["status"] == {"readyReplicas": 1}
    assert "status" not in json.loads(slim(dep, CONFIGMAP.kind, MANAGER, None))


def test_a_status_only_update_is_told_apart_from_a_spec_change() -> None:
    cache = ChildCache(MANAGER)
    meta = {"name": "d", "labels": LABELS, "namespace": "x", "uid": "u1"}
    dep = {
        "metadata": {**meta, "resourceVersion": "1"},
        "spec": {"replicas": 1},
        "status": {"readyReplicas": 0},
    }
    assert cache.put(dep, DEPLOYMENT.kind) == "spec"  # new
    rolled = {**dep, "metadata": {**meta, "resourceVersion": "2"}, "status": {"readyReplicas": 1}}
    assert cache.put(rolled, DEPLOYMENT.kind) == "status"
    assert cache.put(dep, DEPLOYMENT.kind) is None  # stale: older than what the cache holds
    edited = {**rolled, "metadata": {**meta, "resourceVersion": "3"}, "spec": {"replicas": 2}}
    assert cache.put(edited, DEPLOYMENT.kind) == "spec"
    got = cache.get(("x", "shop"), (DEPLOYMENT.kind, "d"))
    assert (
        got is not None
        and got["status"] == {"readyReplicas": 1}
        and got["metadata"]["resourceVersion"] == "3"
    )
    # the watch's echo of a version our apply's answer already stored: nothing to tell anyone
    assert cache.put(edited, DEPLOYMENT.kind) is None


def test_a_change_the_cache_does_not_keep_is_not_reported() -> None:
    """An HPA's status moves with every metrics scrape; the cache keeps none of it, so no listener is
    woken (a pass over the platform would find nothing to do)."""
    cache = ChildCache(MANAGER)
    meta = {"name": "h", "labels": LABELS, "namespace": "x", "uid": "u1"}
    hpa = {"metadata": {**meta, "resourceVersion": "1"}, "spec": {"maxReplicas": 3}, "status": {"x": 1}}
    assert cache.put(hpa, HPA.kind) == "spec"
    scraped = {**hpa, "metadata": {**meta, "resourceVersion": "2"}, "status": {"x": 2}}
    assert cache.put(scraped, HPA.kind) is None
    edited = {**scraped, "metadata": {**meta, "resourceVersion": "3"}, "spec": {"maxReplicas": 9}}
    assert cache.put(edited, HPA.kind) == "spec"
    got = cache.get(("x", "shop"), (HPA.kind, "h"))
    assert got is not None and got["metadata"]["resourceVersion"] == "3"


def test_listeners_recheck_a_kind_after_an_interrupted_watch(kubeconfig: str) -> None:
    """Between two requests a kind may go and come back (KEDA's CRDs deleted and installed again, seen on
    the e2e as one 429 "storage is (re)initializing"): the next good listing makes the listeners re-check,
    or a platform would stay on the HPA fallback although KEDA is back."""

    async def scenario() -> None:
        kube = operator_kube(kubeconfig)
        real_stream = kube.stream
        failures = [KubeError(429, "Too Many Requests", "storage is (re)initializing")]

        def stream(path: str, query: dict[str, str]) -> Any:
            # the real API server's answer, except that the first watch after the listing is refused once
            if failures:
                raise failures.pop()
            return real_stream(path, query)

        kube.stream = stream  # type: ignore[method-assign]
        heard: list[tuple[str, bool]] = []
        kind = Kind("v1", "ConfigMap", "configmaps")
        inf = Informer(
            kube, kind, ChildCache(MANAGER), lambda p, c, t: None, lambda k, s: heard.append((k.plural, s))
        )
        task = asyncio.create_task(inf.run())
        try:
            await asyncio.wait_for(inf.synced.wait(), 15)
            await _until(lambda: heard == [("configmaps", True)], "the listeners to be told to re-check")
            assert inf.served is True
        finally:
            task.cancel()
            await kube.close()

    asyncio.run(scenario())
