"""The API's Service (NodePort 80 -> 8000 in the seed) and the collector's ClusterIP Service."""

from __future__ import annotations

from typing import Any

from booking_operator import names
from booking_operator.builders.common import (
    OTLP_GRPC_PORT,
    OTLP_HTTP_PORT,
    Manifest,
    metadata,
    selector,
)
from booking_operator.spec import Platform


def build_api_service(platform: Platform) -> Manifest:
    """`<cr>--app--<env>`: port 80 to the container's `http` port."""
    svc = platform.spec.api.service
    port: dict[str, Any] = {"name": "http", "port": svc.port, "targetPort": "http", "protocol": "TCP"}
    if svc.node_port is not None and svc.type != "ClusterIP":
        port["nodePort"] = svc.node_port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(
            platform, names.api_name(platform.name, platform.spec.environment), names.API_COMPONENT
        ),
        "spec": {"type": svc.type, "selector": selector(platform, names.API_COMPONENT), "ports": [port]},
    }


def build_collector_service(platform: Platform) -> Manifest:
    """`<cr>-otel-collector`: OTLP gRPC 4317 and HTTP 4318, inside the cluster only."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(platform, names.collector_name(platform.name), names.COLLECTOR_COMPONENT),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(platform, names.COLLECTOR_COMPONENT),
            "ports": [
                {"name": "otlp-grpc", "port": OTLP_GRPC_PORT, "targetPort": "otlp-grpc", "protocol": "TCP"},
                {"name": "otlp-http", "port": OTLP_HTTP_PORT, "targetPort": "otlp-http", "protocol": "TCP"},
            ],
        },
    }
