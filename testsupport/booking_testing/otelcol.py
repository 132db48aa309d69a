"""A local OpenTelemetry Collector (built by scripts/infra/otelcol.sh): OTLP in, spans printed in full.

Tests read its log to prove spans really leave a process over OTLP, and that they carry no patient data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from booking_testing.procs import (
    CACHE_ROOT,
    InfraError,
    Server,
    free_port,
    port_open,
    start_server,
    wait_ready,
)

OTELCOL_VERSION = "0.165.0"


def otelcol_binary() -> Path:
    """The cached collector binary; fails with a clear message when it was not built."""
    exe = CACHE_ROOT / f"otelcol-{OTELCOL_VERSION}" / "bin" / "otelcol"
    if not exe.exists():
        raise InfraError(f"{exe} missing: run `make provision` (scripts/infra/otelcol.sh)")
    return exe


@dataclass
class Collector:
    """A running collector; `endpoint` is the OTLP/HTTP base URL for OTEL_EXPORTER_OTLP_ENDPOINT."""

    server: Server
    http_port: int
    telemetry_port: int = 0  # the collector's own Prometheus metrics

    @property
    def endpoint(self) -> str:
        """Base URL of the OTLP/HTTP receiver."""
        return f"http://127.0.0.1:{self.http_port}"

    def output(self) -> str:
        """Everything the debug exporter printed so far."""
        return self.server.log.read_text(errors="replace")

    def spans(self) -> list[SpanRecord]:
        """Every span the debug exporter printed so far."""
        return parse_debug_spans(self.output())

    def stop(self) -> None:
        """Stop the collector."""
        self.server.stop()


@dataclass
class SpanRecord:
    """One span as the debug exporter (verbosity detailed) prints it."""

    service: str
    trace_id: str = ""
    span_id: str = ""
    parent_id: str = ""
    name: str = ""
    kind: str = ""
    attributes: dict[str, str] = field(default_factory=dict)


_FIELD = re.compile(r"^\s+(Trace ID|Parent ID|ID|Name|Kind)\s*:\s?(.*)$")
_ATTRIBUTE = re.compile(r"^\s+-> ([\w.\-]+): \w+\((.*)\)$")
_FIELD_NAMES = {
    "Trace ID": "trace_id",
    "Parent ID": "parent_id",
    "ID": "span_id",
    "Name": "name",
    "Kind": "kind",
}


def parse_debug_spans(text: str) -> list[SpanRecord]:
    """The spans in the debug exporter's detailed output, each with its resource's service.name."""
    spans: list[SpanRecord] = []
    resource: dict[str, str] = {}
    mode = ""
    for line in text.splitlines():
        if line.startswith("Resource attributes:"):
            resource, mode = {}, "resource"
        elif line.startswith(("ScopeSpans #", "Events:", "Links:")):
            mode = ""
        elif line.startswith("Span #"):
            spans.append(SpanRecord(service=resource.get("service.name", "")))
            mode = "span"
        elif line.startswith("Attributes:") and spans and mode == "span":
            mode = "attributes"
        elif (m := _ATTRIBUTE.match(line)) and mode in ("resource", "attributes"):
            target = resource if mode == "resource" else spans[-1].attributes
            target[m.group(1)] = m.group(2)
        elif (m := _FIELD.match(line)) and mode == "span":
            setattr(spans[-1], _FIELD_NAMES[m.group(1)], m.group(2).strip())
    return spans


def start_collector(workdir: Path) -> Collector:
    """Start the collector with an OTLP receiver (gRPC + HTTP) and the detailed debug exporter."""
    exe = otelcol_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    http_port, grpc_port, telemetry_port = free_port(), free_port(), free_port()
    config = workdir / "otelcol.yaml"
    config.write_text(
        f"""
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{grpc_port}"}}
      http: {{endpoint: "127.0.0.1:{http_port}"}}
processors:
  batch: {{timeout: 200ms}}
exporters:
  debug: {{verbosity: detailed}}
service:
  telemetry:
    metrics:
      readers:
        - pull:
            exporter:
              prometheus: {{host: "127.0.0.1", port: {telemetry_port}, without_type_suffix: false}}
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [debug]}}
"""
    )
    server = start_server("otelcol", [str(exe), f"--config={config}"], workdir=workdir)

    def ready() -> bool:
        server.check_alive()
        return port_open(http_port)

    wait_ready(ready, timeout=30, what="the OpenTelemetry Collector's OTLP/HTTP receiver")
    return Collector(server=server, http_port=http_port, telemetry_port=telemetry_port)
