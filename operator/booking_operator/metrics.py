"""Prometheus metrics of the operator, on their own registry so tests can read them in isolation."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(
    "booking_operator_reconciles",
    "Reconciliations of a BookingPlatform (asked for by the platform, or writing children), by trigger "
    "and outcome",
    ["trigger", "outcome"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "booking_operator_reconcile_duration_seconds",
    "Wall time of one reconciliation",
    ["trigger"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
ERRORS = Counter(
    "booking_operator_errors",
    "Reconciliation errors, by kind of error",
    ["reason"],
    registry=REGISTRY,
)
DRIFT_REPAIRS = Counter(
    "booking_operator_drift_repairs",
    "Children restored after someone edited or deleted them",
    ["kind"],
    registry=REGISTRY,
)
WRITES = Counter(
    "booking_operator_child_writes",
    "Mutating requests on children (server-side apply, delete)",
    ["kind", "verb"],
    registry=REGISTRY,
)
STATUS_WRITES = Counter(
    "booking_operator_status_writes",
    "Status patches of BookingPlatforms (only sent when the status changes)",
    registry=REGISTRY,
)
API_REQUESTS = Counter(
    "booking_operator_api_requests",
    "Requests the reconciler sent to the API server (kopf's own watches not included)",
    ["verb", "resource"],
    registry=REGISTRY,
)
CHECKS = Counter(
    "booking_operator_checks",
    "Passes after child events or a resync that found every child current (read from the cache, no "
    "writes but at most a status refresh); passes that write count as reconciles",
    ["trigger"],
    registry=REGISTRY,
)
RESYNC_PASSES = Counter(
    "booking_operator_resync_passes",
    "Passes over a platform that covered its periodic resync (children read from the cache, not listed)",
    registry=REGISTRY,
)
KEDA_AVAILABLE = Gauge(
    "booking_operator_keda_available",
    "1 when the keda.sh/v1alpha1 ScaledObject API is served, 0 when not, -1 before the first check",
    registry=REGISTRY,
)
KEDA_AVAILABLE.set(-1)
PLATFORMS = Gauge(
    "booking_operator_platforms",
    "BookingPlatforms the operator currently knows about",
    registry=REGISTRY,
)


CONDITION_TYPES = ("Ready", "Progressing", "Degraded", "Paused", "AutoscalerAvailable")
CONDITION_STATUSES = ("True", "False", "Unknown")
# (namespace, name, status) of every known platform, read at scrape time.
StatusSource = Callable[[], Iterable[tuple[str, str, Mapping[str, Any] | None]]]


class ConditionCollector(Collector):
    """`booking_operator_platform_condition`: 1 on the status each condition has (kube-state-metrics style).

    Read from the operator's own view of each platform at scrape time, so it is right after a restart
    even though steady state writes no status.
    """

    def __init__(self) -> None:
        self.source: StatusSource = lambda: ()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One sample per platform, condition type and status."""
        family = GaugeMetricFamily(
            "booking_operator_platform_condition",
            "Conditions of each BookingPlatform: 1 for the status the condition has, 0 for the others",
            labels=["namespace", "platform", "type", "status"],
        )
        for namespace, name, status in self.source():
            current = {str(c.get("type")): str(c.get("status")) for c in (status or {}).get("conditions", [])}
            for ctype in CONDITION_TYPES:
                for value in CONDITION_STATUSES:
                    family.add_metric(
                        [namespace, name, ctype, value],
                        1.0 if current.get(ctype, "Unknown") == value else 0.0,
                    )
        yield family


CONDITIONS = ConditionCollector()
REGISTRY.register(CONDITIONS)


class _State(Protocol):
    body: dict[str, Any]
    last_status: dict[str, Any] | None


class _Store(Protocol):
    def all_keys(self) -> list[tuple[str, str]]: ...
    def get(self, key: tuple[str, str]) -> _State | None: ...


def watch_conditions(store: _Store) -> None:
    """Export the conditions of the platforms in `store` (the newest reconciler's store wins)."""

    def source() -> Iterator[tuple[str, str, Mapping[str, Any] | None]]:
        for key in store.all_keys():
            st = store.get(key)
            if st is not None:
                yield key[0], key[1], st.last_status if st.last_status is not None else st.body.get("status")

    CONDITIONS.source = source


def count_request(verb: str, resource: str) -> None:
    """Request hook for the Kube client."""
    API_REQUESTS.labels(verb=verb, resource=resource).inc()


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Expose /metrics on port in a daemon thread (port 0 disables it)."""
    if port:
        start_http_server(port, addr=addr, registry=REGISTRY)
