"""Prometheus metrics of the operator, on their own registry so tests can read them in isolation."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(
    "booking_operator_reconciles",
    "Reconciliations of a BookingPlatform, by trigger and outcome",
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
CACHE_READS = Counter(
    "booking_operator_cache_reads",
    "Resyncs that read a platform's children from the watch-fed cache instead of listing them",
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


def count_request(verb: str, resource: str) -> None:
    """Request hook for the Kube client."""
    API_REQUESTS.labels(verb=verb, resource=resource).inc()


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Expose /metrics on port in a daemon thread (port 0 disables it)."""
    if port:
        start_http_server(port, addr=addr, registry=REGISTRY)
