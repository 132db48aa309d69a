"""The OpenTelemetry collector's ConfigMap: OTLP in, memory limiter and batch, one exporter out."""

from __future__ import annotations

import hashlib
from typing import Any

import yaml

from booking_operator import names
from booking_operator.builders.common import (
    COLLECTOR_METRICS_PORT,
    OTLP_GRPC_PORT,
    OTLP_HTTP_PORT,
    Manifest,
    metadata,
)
from booking_operator.spec import Platform

CONFIG_KEY = "config.yaml"


def collector_config(platform: Platform) -> str:
    """The collector configuration as YAML text (sorted keys, so the checksum is stable)."""
    exporter = platform.spec.otel_collector.exporter
    exporters: dict[str, Any]
    if exporter.endpoint:
        exporters = {
            exporter.protocol: {"endpoint": exporter.endpoint, "tls": {"insecure": exporter.insecure}}
        }
    else:
        # No backend configured: log span summaries so the pipeline is still observable.
        exporters = {"debug": {"verbosity": "basic"}}
    config = {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"0.0.0.0:{OTLP_GRPC_PORT}"},
                    "http": {"endpoint": f"0.0.0.0:{OTLP_HTTP_PORT}"},
                }
            }
        },
        "processors": {
            # The limiter goes first so an export backlog sheds load instead of OOM-killing the pod.
            "memory_limiter": {"check_interval": "1s", "limit_percentage": 80, "spike_limit_percentage": 25},
            "batch": {},
        },
        "exporters": exporters,
        "service": {
            # The collector's own metrics (accepted/refused spans, export queue, failures) on :8888, for
            # the trace-collection-lag panel and alerts (PodMonitor in manifests/monitoring).
            "telemetry": {
                "metrics": {
                    "level": "normal",
                    "readers": [
                        {
                            "pull": {
                                "exporter": {
                                    "prometheus": {
                                        "host": "0.0.0.0",
                                        "port": COLLECTOR_METRICS_PORT,
                                        # Counters end in _total whatever the collector version's
                                        # default: the alert rules query those names.
                                        "without_type_suffix": False,
                                    }
                                }
                            }
                        }
                    ],
                }
            },
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["memory_limiter", "batch"],
                    "exporters": sorted(exporters),
                }
            },
        },
    }
    return yaml.safe_dump(config, sort_keys=True)


def config_checksum(platform: Platform) -> str:
    """sha256 of the config; on the pod template it rolls the collector when the config changes."""
    return hashlib.sha256(collector_config(platform).encode()).hexdigest()


def build_collector_configmap(platform: Platform) -> Manifest:
    """The collector's ConfigMap, named like its Deployment."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(platform, names.collector_name(platform.name), names.COLLECTOR_COMPONENT),
        "data": {CONFIG_KEY: collector_config(platform)},
    }
