"""Watches on children whose API may come and go (KEDA's ScaledObjects and TriggerAuthentications).

Kopf watches the built-in kinds. For an optional CRD it is the wrong tool: when the CRD is deleted
while its watch reconnects, kopf's watcher gets a 404 and takes the whole operator down. These
threads treat a missing API as "nothing to watch yet" and try again after a pause.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import watch

from booking_operator.apply import MANAGED_BY, MANAGED_BY_LABEL
from booking_operator.client import Kind

log = logging.getLogger(__name__)

EventSink = Callable[[str, str | None, dict[str, Any]], object]  # (kind, event type, object)


class OptionalKindWatcher:
    """One daemon thread per kind: list + watch by label, reporting each object to sink."""

    def __init__(
        self,
        api: k8s.ApiClient,
        kind: Kind,
        sink: EventSink,
        *,
        namespace: str | None = None,
        retry_seconds: float = 5.0,
        timeout_seconds: int = 300,
    ) -> None:
        self._custom = k8s.CustomObjectsApi(api)
        self.kind = kind
        self._sink = sink
        self._namespace = namespace
        self._retry = retry_seconds
        self._timeout = timeout_seconds
        self._stop = threading.Event()
        self._watch: watch.Watch | None = None
        self._thread = threading.Thread(target=self._run, name=f"watch-{kind.plural}", daemon=True)

    def start(self) -> None:
        """Start watching in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (it exits at its next event or timeout)."""
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()  # type: ignore[no-untyped-call]

    def _list_fn(self) -> Callable[..., Any]:
        group, version = self.kind.group, self.kind.api_version.rpartition("/")[2]
        if self._namespace:
            ns = self._namespace

            def namespaced(**kw: Any) -> Any:
                return self._custom.list_namespaced_custom_object(group, version, ns, self.kind.plural, **kw)

            return namespaced

        def cluster(**kw: Any) -> Any:
            return self._custom.list_cluster_custom_object(group, version, self.kind.plural, **kw)

        return cluster

    def _run(self) -> None:
        selector = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
        fn = self._list_fn()
        while not self._stop.is_set():
            try:
                listed = fn(label_selector=selector)
                for item in listed.get("items", []):
                    self._deliver(None, item)
                rv = listed.get("metadata", {}).get("resourceVersion")
                self._watch = watch.Watch()  # type: ignore[no-untyped-call]
                for ev in self._watch.stream(  # type: ignore[no-untyped-call]
                    fn, label_selector=selector, resource_version=rv, timeout_seconds=self._timeout
                ):
                    if self._stop.is_set():
                        break
                    obj = ev.get("raw_object") or ev.get("object")
                    if isinstance(obj, dict):
                        self._deliver(str(ev.get("type")), obj)
            except k8s.ApiException as exc:
                if exc.status not in (404, 410):  # 404: the CRD is not installed; 410: relist
                    log.warning("watch of %s failed", self.kind.plural, extra={"status": exc.status})
                if exc.status != 410:
                    self._stop.wait(self._retry)
            except urllib3.exceptions.HTTPError:
                # The server ended the stream: a deleted CRD, an API server restart, or our own stop().
                if not self._stop.is_set():
                    log.info("watch of %s ended; reconnecting", self.kind.plural)
                    self._stop.wait(1.0)
            except Exception:
                log.exception("watch of %s crashed; restarting", self.kind.plural)
                self._stop.wait(self._retry)

    def _deliver(self, event_type: str | None, obj: dict[str, Any]) -> None:
        try:
            self._sink(self.kind.kind, event_type, obj)
        except Exception:
            log.exception("handling a %s event failed", self.kind.kind)
