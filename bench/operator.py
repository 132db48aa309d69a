"""Operator benchmark: from CR apply to children created and to Ready, API requests per reconcile,
writes at steady state and RSS, for 1 platform and for N platforms in N namespaces.

The baseline, measured in the same run on the same cluster, is a plain client server-side applying the
rendered manifests itself (what `booking render | kubectl apply --server-side` does): the operator's
time-to-children is reported as a ratio to it.

    python bench/operator.py --out bench/results/operator.json [--platforms 50]

Needs KUBECONFIG (bench/run.sh exports it) and installs the CRDs it needs.
"""

from __future__ import annotations

import os
import sys

# run.sh names each result after its file, so this one is bench/operator.py; running it puts bench/ first
# on sys.path, where it would shadow the standard library's `operator` for every later import.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
import uuid  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import urllib3  # noqa: E402
import yaml  # noqa: E402
from kubernetes import client, config, dynamic  # noqa: E402

from booking_operator.render import render_object  # noqa: E402
from booking_testing.wait import wait_for  # noqa: E402

warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "manifests" / "examples" / "pat-booking-be-prod.yaml"
KEDA_CRDS = Path(os.environ.get("BENCH_KEDA_CRDS_DIR", ROOT / "third_party" / "keda"))
GROUP, VERSION, PLURAL = "platform.pat-booking.io", "v1alpha1", "bookingplatforms"
SELECTOR = "app.kubernetes.io/managed-by=booking-operator"
KINDS = (
    ("deployments", "apps/v1"),
    ("services", "v1"),
    ("configmaps", "v1"),
    ("serviceaccounts", "v1"),
    ("cronjobs", "batch/v1"),
    ("horizontalpodautoscalers", "autoscaling/v2"),
    ("poddisruptionbudgets", "policy/v1"),
    ("scaledobjects", "keda.sh/v1alpha1"),
    ("triggerauthentications", "keda.sh/v1alpha1"),
)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


class Bench:
    def __init__(self) -> None:
        config.load_kube_config()
        self.api = client.ApiClient()
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.dyn = dynamic.DynamicClient(self.api)

    def install(self, files: list[Path]) -> None:
        for f in files:
            for doc in yaml.safe_load_all(f.read_text()):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    res = self.dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
                    res.server_side_apply(body=doc, field_manager="bench", force_conflicts=True)
        ext = client.ApiextensionsV1Api(self.api)

        def established() -> bool:
            for f in files:
                for doc in yaml.safe_load_all(f.read_text()):
                    if doc and doc.get("kind") == "CustomResourceDefinition":
                        st = ext.read_custom_resource_definition(doc["metadata"]["name"]).status
                        if not any(
                            c.type == "Established" and c.status == "True" for c in st.conditions or []
                        ):
                            return False
            return True

        wait_for(established, timeout=60, what="CRDs established")

    def children(self, ns: str) -> int:
        n = 0
        for plural, gv in KINDS:
            group, _, version = gv.rpartition("/")
            path = f"/apis/{group}/{version}" if group else f"/api/{version}"
            try:
                n += len(self.get(f"{path}/namespaces/{ns}/{plural}", {"labelSelector": SELECTOR})["items"])
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
        return n

    def get(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        resp = self.api.call_api(
            *self.api.param_serialize(
                "GET", path, query_params=list(query.items()), auth_settings=["BearerToken"]
            )
        )
        resp.read()
        if resp.status >= 300:
            raise client.ApiException(status=resp.status, reason=resp.reason)
        out: dict[str, Any] = json.loads(resp.data)
        return out

    def ready(self, ns: str, name: str) -> bool:
        cr = self.custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        conds = cr.get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    def namespace(self, prefix: str) -> str:
        ns = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        return ns

    def free_node_port(self) -> int:
        """A NodePort no Service in the cluster uses (NodePorts are cluster-wide)."""
        if not hasattr(self, "_used_ports"):
            used = {
                p.node_port
                for svc in self.core.list_service_for_all_namespaces().items
                for p in svc.spec.ports or []
                if p.node_port
            }
            self._used_ports: set[int] = used
        port = random.choice([p for p in range(30000, 32768) if p not in self._used_ports])
        self._used_ports.add(port)
        return port

    def apply_platform(self, ns: str) -> tuple[str, int]:
        body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
        body["metadata"]["namespace"] = ns
        body["spec"]["api"]["service"]["nodePort"] = self.free_node_port()
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, body["metadata"]["name"], body,
            field_manager="bench", force=True, _content_type="application/apply-patch+yaml",
        )  # fmt: skip
        return body["metadata"]["name"], len(render_object(body, keda_available=True))

    def direct_apply(self, ns: str) -> tuple[float, int]:
        """The baseline: server-side apply the rendered manifests from this client, one request each."""
        body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
        body["metadata"]["namespace"] = ns
        body["metadata"]["name"] = "baseline"
        body["spec"]["api"]["service"]["nodePort"] = self.free_node_port()
        manifests = render_object(body, keda_available=True)
        t0 = time.monotonic()
        for m in manifests:
            res = self.dyn.resources.get(api_version=m["apiVersion"], kind=m["kind"])
            res.server_side_apply(body=m, namespace=ns, field_manager="baseline", force_conflicts=True)
        return time.monotonic() - t0, len(manifests)


class Operator:
    """`booking operator --standalone` as a host process, its metrics and RSS."""

    def __init__(self, resync: float) -> None:
        self.metrics_port, self.live_port = free_port(), free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="bench-operator-", suffix=".log", delete=False)  # noqa: SIM115
        env = dict(
            os.environ,
            BOOKING_LOG_FORMAT="json",
            BOOKING_OPERATOR_LOG_LEVEL="WARNING",
            BOOKING_OPERATOR_METRICS_PORT=str(self.metrics_port),
            BOOKING_OPERATOR_LIVENESS_PORT=str(self.live_port),
            BOOKING_OPERATOR_RESYNC_SECONDS=str(resync),
            BOOKING_OPERATOR_KEDA_RECHECK_SECONDS="30",
        )
        booking = Path(sys.executable).with_name("booking")
        self.proc = subprocess.Popen(
            [str(booking), "operator", "--standalone"], env=env, stdout=self.log, stderr=self.log
        )

        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited; log in {self.log.name}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.live_port}/healthz", timeout=2).read()
                return True
            except OSError:
                return False

        wait_for(healthy, timeout=60, what="operator /healthz", interval=0.5)

    def metric(self, name: str, **labels: str) -> float:
        text = (
            urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        )
        total = 0.0
        for line in text.splitlines():
            m = re.match(r"^([a-zA-Z_:]+)(\{(.*)\})?\s+([0-9.eE+-]+)$", line)
            if not m or m.group(1) != name:
                continue
            found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
            if all(found.get(k) == v for k, v in labels.items()):
                total += float(m.group(4))
        return total

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
        return -1.0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def steady_state(op: Operator, platforms: int, passes: int = 2) -> dict[str, float]:
    """Requests and writes over `passes` resync passes of every platform, once everything is Ready."""
    r0 = op.metric("booking_operator_reconciles_total", trigger="resync")
    req0 = op.metric("booking_operator_api_requests_total")
    mut0 = sum(
        op.metric("booking_operator_api_requests_total", verb=v) for v in ("POST", "PATCH", "PUT", "DELETE")
    )
    w0 = op.metric("booking_operator_child_writes_total")
    s0 = op.metric("booking_operator_status_writes_total")
    wait_for(
        lambda: op.metric("booking_operator_reconciles_total", trigger="resync") >= r0 + passes * platforms,
        timeout=600,
        what="resync passes",
        interval=1.0,
    )
    reconciles = op.metric("booking_operator_reconciles_total", trigger="resync") - r0
    requests = op.metric("booking_operator_api_requests_total") - req0
    mutating = sum(
        op.metric("booking_operator_api_requests_total", verb=v) for v in ("POST", "PATCH", "PUT", "DELETE")
    )
    return {
        "resync_reconciles": reconciles,
        "api_requests_per_reconcile": round(requests / reconciles, 2),
        "mutating_requests": mutating - mut0,
        "child_writes": op.metric("booking_operator_child_writes_total") - w0,
        "status_writes": op.metric("booking_operator_status_writes_total") - s0,
    }


def scenario(b: Bench, op: Operator, n: int, timeout: float) -> dict[str, Any]:
    """Apply n platforms in n namespaces at once; time to all children and to all Ready."""
    namespaces = [b.namespace(f"bench{n}") for _ in range(n)]
    w0 = op.metric("booking_operator_child_writes_total")
    rec0 = op.metric("booking_operator_reconciles_total")
    req0 = op.metric("booking_operator_api_requests_total")
    t0 = time.monotonic()
    expected = [b.apply_platform(ns) for ns in namespaces]
    pending = set(range(n))
    created_at: dict[int, float] = {}

    def all_created() -> bool:
        for i in list(pending):
            if b.children(namespaces[i]) >= expected[i][1]:
                created_at[i] = time.monotonic() - t0
                pending.discard(i)
        return not pending

    wait_for(all_created, timeout=timeout, what=f"children of {n} platform(s)", interval=0.1)
    t_children = time.monotonic() - t0
    pending = set(range(n))

    def all_ready() -> bool:
        for i in list(pending):
            if b.ready(namespaces[i], expected[i][0]):
                pending.discard(i)
        return not pending

    wait_for(all_ready, timeout=timeout, what=f"{n} platform(s) Ready", interval=0.25)
    t_ready = time.monotonic() - t0
    converge_reconciles = op.metric("booking_operator_reconciles_total") - rec0
    converge_requests = op.metric("booking_operator_api_requests_total") - req0
    result = {
        "platforms": n,
        "children_per_platform": expected[0][1],
        "time_to_all_children_s": round(t_children, 2),
        "time_to_all_ready_s": round(t_ready, 2),
        "time_to_children_p50_s": round(sorted(created_at.values())[len(created_at) // 2], 2),
        "converge_child_writes": op.metric("booking_operator_child_writes_total") - w0,
        "converge_reconciles": converge_reconciles,
        "converge_api_requests": converge_requests,
        "steady_state": steady_state(op, int(op.metric("booking_operator_platforms"))),
        "operator_rss_mib": op.rss_mib(),
    }
    for ns in namespaces:
        b.core.delete_namespace(ns)
    return result


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "operator.json")
    p.add_argument("--platforms", type=int, default=int(os.environ.get("BENCH_OPERATOR_PLATFORMS", "50")))
    p.add_argument("--resync", type=float, default=10.0)
    p.add_argument("--crds", type=Path, default=ROOT / "crds", help="folder with the BookingPlatform CRD")
    args = p.parse_args()
    if not os.environ.get("KUBECONFIG"):
        print("KUBECONFIG is not set (bench/run.sh starts the control plane)", file=sys.stderr)
        return 1
    b = Bench()
    b.install(sorted(args.crds.glob("*.yaml")) + sorted(KEDA_CRDS.glob("*.yaml")))

    # Baseline first, without the operator running: a client applying the same manifests directly.
    base_ns = b.namespace("bench-baseline")
    baseline_s, baseline_n = b.direct_apply(base_ns)
    b.core.delete_namespace(base_ns)

    op = Operator(resync=args.resync)
    try:
        idle_rss = op.rss_mib()
        one = scenario(b, op, 1, timeout=180)
        many = scenario(b, op, args.platforms, timeout=1200)
    finally:
        op.stop()
    result = {
        "benchmark": "operator",
        "baseline_direct_apply_s": round(baseline_s, 3),
        "baseline_objects": baseline_n,
        "operator_idle_rss_mib": idle_rss,
        "one_platform": one,
        "many_platforms": many,
        "ratios": {
            "one_children_vs_direct_apply": round(one["time_to_all_children_s"] / baseline_s, 2),
            "many_children_per_platform_vs_direct_apply": round(
                many["time_to_all_children_s"] / (baseline_s * args.platforms), 2
            ),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
