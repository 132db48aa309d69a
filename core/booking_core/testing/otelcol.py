"""A local OpenTelemetry Collector (built by scripts/infra/otelcol.sh): OTLP in, spans printed in full.

Tests read its log to prove spans really leave a process over OTLP, and that they carry no patient data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from booking_core.testing.procs import (
    CACHE_ROOT,
    InfraError,
    Server,
    free_port,
    port_open,
    start_server,
    wait_for,
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

    def stop(self) -> None:
        """Stop the collector."""
        self.server.stop()


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

    wait_for(ready, timeout=30, what="the OpenTelemetry Collector's OTLP/HTTP receiver")
    return Collector(server=server, http_port=http_port, telemetry_port=telemetry_port)
