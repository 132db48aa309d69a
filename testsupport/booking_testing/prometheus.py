"""A throwaway Prometheus server and Pushgateway from Debian's packages (scripts/infra/debs.sh).

Tests start Prometheus with static scrape targets on loopback ports and the project's rule file, scrape
every second, and read the results through the HTTP API like a dashboard would.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from booking_testing.procs import InfraError, Server, free_port, start_server, wait_ready


def _binary(name: str) -> str:
    exe = shutil.which(name) or f"/usr/bin/{name}"
    if not Path(exe).exists():
        raise InfraError(f"{name} not found: run `make provision` (scripts/infra/debs.sh installs it)")
    return exe


def _still_ours(server: Server) -> None:
    """Fail if the server exited after all: the port was taken between free_port() and its bind, and
    whatever answered the readiness probe belongs to someone else (another test session)."""
    time.sleep(0.5)
    server.check_alive()


def prometheus_binary() -> str:
    """The Prometheus server binary (InfraError naming how to install it when missing)."""
    return _binary("prometheus")


@dataclass(frozen=True)
class Target:
    """One process to scrape: its job name, metrics port and the labels Prometheus adds to its series."""

    job: str
    port: int
    labels: dict[str, str] = field(default_factory=dict)
    honor_labels: bool = False


@dataclass
class PrometheusServer:
    """A running Prometheus; `query` evaluates PromQL now."""

    server: Server
    port: int

    @property
    def url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://127.0.0.1:{self.port}"

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector `expr` evaluates to (its `result` list)."""
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        r.raise_for_status()
        body = r.json()
        if body.get("status") != "success":
            raise InfraError(f"query {expr!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def values(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """(labels, value) of each series `expr` evaluates to, NaN results left out."""
        out = []
        for s in self.query(expr):
            value = float(s["value"][1])
            if not math.isnan(value):
                out.append((dict(s["metric"]), value))
        return out

    def stop(self) -> None:
        """Stop the server."""
        self.server.stop()


def write_config(
    path: Path, targets: Sequence[Target], rule_files: Sequence[Path], interval: str = "1s"
) -> None:
    """A prometheus.yml scraping `targets` every `interval` and evaluating `rule_files` as often."""
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {
                "job_name": t.job,
                "honor_labels": t.honor_labels,
                "static_configs": [{"targets": [f"127.0.0.1:{t.port}"], "labels": t.labels}],
            }
            for t in targets
        ],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def start_prometheus(
    workdir: Path, targets: Sequence[Target], rule_files: Sequence[Path] = (), interval: str = "1s"
) -> PrometheusServer:
    """Start Prometheus on a free port; returns once it is ready to answer queries."""
    exe = prometheus_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    write_config(config, targets, rule_files, interval)
    port = free_port()
    server = start_server(
        "prometheus",
        [
            exe,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
        ],
        workdir=workdir,
    )
    prom = PrometheusServer(server=server, port=port)

    def ready() -> bool:
        server.check_alive()
        return httpx.get(f"{prom.url}/-/ready", timeout=2).status_code == 200

    wait_ready(ready, timeout=60, what="Prometheus to be ready")
    _still_ours(server)
    return prom


@dataclass
class Pushgateway:
    """A running Pushgateway (no persistence)."""

    server: Server
    port: int

    @property
    def url(self) -> str:
        """Base URL to push to and scrape."""
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop the Pushgateway."""
        self.server.stop()


def start_pushgateway(workdir: Path) -> Pushgateway:
    """Start prometheus-pushgateway on a free port; returns once it serves /metrics."""
    exe = _binary("prometheus-pushgateway")
    port = free_port()
    server = start_server(
        "pushgateway",
        # Debian's build persists to /var/lib/prometheus/pushgateway.data by default, which every
        # gateway started here would then share: keep pushes in memory only.
        [exe, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file="],
        workdir=workdir,
    )
    gw = Pushgateway(server=server, port=port)

    def ready() -> bool:
        server.check_alive()
        return httpx.get(f"{gw.url}/metrics", timeout=2).status_code == 200

    wait_ready(ready, timeout=30, what="the Pushgateway to serve /metrics")
    _still_ours(server)
    return gw
