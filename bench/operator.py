"""Operator benchmark: from CR apply to children created and to Ready, reconciles per platform, API
requests per idle resync, writes at steady state and RSS, for 1 platform and for N platforms in N
namespaces; each figure is checked against issue 14's target and printed as pass/fail.

The baseline, measured in the same run on the same cluster, is a plain client server-side applying the
rendered manifests itself, one request each (what `booking render | kubectl apply --server-side` does):
once for one platform, and for N platforms in a row. The operator's time-to-children is a ratio to it.
Children are counted from watches (one per kind), so measuring loads the API server no more per platform.

    python bench/operator.py --out bench/results/operator.json [--platforms 50] [--strict]

Needs KUBECONFIG (bench/run.sh exports it) and installs the CRDs it needs. --strict exits 1 when a
target is missed.
"""

from __future__ import annotations

import os
import sys

# run.sh names each result after its file, so this one is bench/operator.py; running it puts bench/ first
# on sys.path, where it would shadow the standard library's `operator` for every later import.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
import uuid  # noqa: E402
import warnings  # noqa: E402
from datetime import datetime  # noqa: E402
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
    ("Deployment", "apps/v1"),
    ("Service", "v1"),
    ("ConfigMap", "v1"),
    ("ServiceAccount", "v1"),
    ("CronJob", "batch/v1"),
    ("HorizontalPodAutoscaler", "autoscaling/v2"),
    ("PodDisruptionBudget", "policy/v1"),
    ("ScaledObject", "keda.sh/v1alpha1"),
    ("TriggerAuthentication", "keda.sh/v1alpha1"),
)
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
# Issue 14's targets.
MAX_MANY_RATIO = 1.1
MAX_ONE_RATIO = 1.5
MAX_RECONCILES_PER_PLATFORM = 1.5
MAX_REQUESTS_PER_IDLE_RESYNC = 0.0
MAX_RSS_MIB = 120.0


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


class Bench:
    def __init__(self) -> None:
        config.load_kube_config()
        cfg = client.Configuration.get_default_copy()
        cfg.connection_pool_maxsize = 32  # one connection per kind's watch thread, and the main thread's
        self.api = client.ApiClient(cfg)
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

    def ready_namespaces(self) -> set[str]:
        """Namespaces whose BookingPlatform is Ready (one cluster-wide LIST, not one GET per platform)."""
        out = set()
        for cr in self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]:
            conds = (cr.get("status") or {}).get("conditions", [])
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
                out.add(cr["metadata"]["namespace"])
        return out

    def delete_namespaces(self, namespaces: list[str], timeout: float = 180) -> None:
        """Delete and wait until gone, so their garbage collection does not load the next measurement."""
        for ns in namespaces:
            self.core.delete_namespace(ns)
        left = set(namespaces)

        def gone() -> bool:
            left.intersection_update(n.metadata.name for n in self.core.list_namespace().items)
            return not left

        wait_for(gone, timeout=timeout, what="namespaces deleted", interval=1.0)

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

    def direct_apply(self, namespaces: list[str]) -> tuple[float, int]:
        """The baseline: server-side apply the rendered manifests of one platform per namespace from this
        client, one request each, one platform after the other; (seconds, objects per platform)."""
        batches = []
        for ns in namespaces:
            body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
            body["metadata"]["namespace"] = ns
            body["metadata"]["name"] = "baseline"
            body["spec"]["api"]["service"]["nodePort"] = self.free_node_port()
            batches.append(render_object(body, keda_available=True))
        resources = {(kind, gv): self.dyn.resources.get(api_version=gv, kind=kind) for kind, gv in KINDS}
        t0 = time.monotonic()
        for ns, manifests in zip(namespaces, batches, strict=True):
            for m in manifests:
                res = resources[(m["kind"], m["apiVersion"])]
                res.server_side_apply(body=m, namespace=ns, field_manager="baseline", force_conflicts=True)
        return time.monotonic() - t0, len(batches[0])


class ChildCounter:
    """Counts our labelled children per namespace from one watch per kind (threads), recording when a
    namespace first holds `expected` of them."""

    def __init__(self, b: Bench) -> None:
        self.lock = threading.Lock()
        self.seen: dict[str, set[tuple[str, str]]] = {}
        self.complete_at: dict[str, float] = {}
        self.expected: dict[str, int] = {}
        self.t0 = time.monotonic()
        self.stopped = threading.Event()
        self.responses: list[Any] = []
        self.threads = [
            threading.Thread(target=self._run, args=(b, kind, gv), daemon=True) for kind, gv in KINDS
        ]
        self.started = threading.Barrier(len(KINDS) + 1)
        for t in self.threads:
            t.start()
        self.started.wait(60)

    def expect(self, namespaces: list[str], n: int) -> None:
        with self.lock:
            self.t0 = time.monotonic()
            for ns in namespaces:
                self.expected[ns] = n
                self._check(ns)

    def _check(self, ns: str) -> None:
        if (
            ns in self.expected
            and ns not in self.complete_at
            and len(self.seen.get(ns, ())) >= self.expected[ns]
        ):
            self.complete_at[ns] = time.monotonic() - self.t0

    def _run(self, b: Bench, kind: str, gv: str) -> None:
        group, _, version = gv.rpartition("/")
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        plural = b.dyn.resources.get(api_version=gv, kind=kind).name
        rv = b.get(f"{path}/{plural}", {"labelSelector": SELECTOR, "limit": "1"})["metadata"][
            "resourceVersion"
        ]
        self.started.wait(60)
        while not self.stopped.is_set():
            query = {"watch": "1", "labelSelector": SELECTOR, "resourceVersion": rv, "timeoutSeconds": "600"}
            # Metadata only, raw lines: the client's models would make this thread the slowest part of
            # the measurement.
            method, url, headers, *_ = b.api.param_serialize(
                "GET", f"{path}/{plural}", query_params=list(query.items()), auth_settings=["BearerToken"],
                header_params={"Accept": METADATA_ONLY},
            )  # fmt: skip
            try:
                resp = b.api.rest_client.pool_manager.request(
                    method, url, headers=headers, preload_content=False
                )
                self.responses.append(resp)
                for line in resp:
                    ev = json.loads(line)
                    meta = ev["object"].get("metadata", {})
                    rv = meta.get("resourceVersion", rv)
                    if ev["type"] == "ADDED":
                        with self.lock:
                            self.seen.setdefault(meta["namespace"], set()).add((kind, meta["name"]))
                            self._check(meta["namespace"])
            except Exception:  # a dropped stream: resume (the bench waits with a deadline anyway)
                time.sleep(0.5)

    def stop(self) -> None:
        """End the watches now (an open watch still costs the API server a conversion per event)."""
        self.stopped.set()
        for resp in self.responses:
            with contextlib.suppress(Exception):  # already closed
                resp.shutdown()


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

    def rss_mib(self, field: str = "VmRSS") -> float:
        """Resident memory now (VmRSS) or at its peak (VmHWM)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return round(int(line.split()[1]) / 1024, 1)
        return -1.0

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the operator process has used."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def steady_state(op: Operator, platforms: int, passes: int = 2) -> dict[str, float]:
    """Requests and writes over `passes` resync passes of every platform, once everything is Ready."""
    metric = op.metric
    mutating = lambda: sum(  # noqa: E731
        metric("booking_operator_api_requests_total", verb=v) for v in ("POST", "PATCH", "PUT", "DELETE")
    )
    r0, req0, mut0 = (
        metric("booking_operator_resync_passes_total"),
        metric("booking_operator_api_requests_total"),
        mutating(),
    )
    w0, s0 = metric("booking_operator_child_writes_total"), metric("booking_operator_status_writes_total")
    wait_for(
        lambda: metric("booking_operator_resync_passes_total") >= r0 + passes * platforms,
        timeout=600,
        what="resync passes",
        interval=1.0,
    )
    resyncs = metric("booking_operator_resync_passes_total") - r0
    requests = metric("booking_operator_api_requests_total") - req0
    return {
        "resync_passes": resyncs,
        "api_requests": requests,
        "api_requests_per_resync_pass": round(requests / resyncs, 3),
        "mutating_requests": mutating() - mut0,
        "child_writes": metric("booking_operator_child_writes_total") - w0,
        "status_writes": metric("booking_operator_status_writes_total") - s0,
    }


def created_at(b: Bench, namespaces: list[str]) -> dict[str, float]:
    """Wall-clock time each namespace's last child was created, from creationTimestamp (whole seconds:
    rounded up, against the operator), read once everything exists: no load on the API server meanwhile."""
    last: dict[str, float] = {}
    wanted = set(namespaces)
    for kind, gv in KINDS:
        res = b.dyn.resources.get(api_version=gv, kind=kind)
        for item in b.get(f"{res.path()}", {"labelSelector": SELECTOR})["items"]:
            meta = item["metadata"]
            if meta["namespace"] in wanted:
                ts = datetime.fromisoformat(meta["creationTimestamp"].replace("Z", "+00:00")).timestamp() + 1
                last[meta["namespace"]] = max(last.get(meta["namespace"], 0.0), ts)
    return last


def scenario(b: Bench, op: Operator, counter: ChildCounter | None, n: int, timeout: float) -> dict[str, Any]:
    """Apply n platforms in n namespaces at once; time to all children and to all Ready. With a counter,
    children are timed from its watches as they appear; without, from their creationTimestamps."""
    namespaces = [b.namespace(f"bench{n}") for _ in range(n)]
    metric = op.metric
    w0, rec0 = metric("booking_operator_child_writes_total"), metric("booking_operator_reconciles_total")
    chk0, req0 = metric("booking_operator_checks_total"), metric("booking_operator_api_requests_total")
    st0, cpu0 = metric("booking_operator_status_writes_total"), op.cpu_s()
    # Checks by what asked for them: "drift" (a child event), "status" (a readiness refresh, which
    # compares nothing), "resync" (the periodic pass from the cache), "retry", "keda".
    triggers = ("drift", "status", "resync", "retry", "keda")
    by0 = {t: metric("booking_operator_checks_total", trigger=t) for t in triggers}
    bodies = []
    for ns in namespaces:
        body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
        body["metadata"]["namespace"] = ns
        body["spec"]["api"]["service"]["nodePort"] = b.free_node_port()
        bodies.append(body)
    per_platform = len(render_object(bodies[0], keda_available=True))
    if counter is not None:
        counter.expect(namespaces, per_platform)
    t0, wall0 = time.monotonic(), time.time()
    for body in bodies:
        b.custom.patch_namespaced_custom_object(
            GROUP, VERSION, body["metadata"]["namespace"], PLURAL, body["metadata"]["name"], body,
            field_manager="bench", force=True, _content_type="application/apply-patch+yaml",
        )  # fmt: skip
    if counter is not None:
        done = counter.complete_at
        wait_for(
            lambda: all(ns in done for ns in namespaces), timeout=timeout, what=f"children of {n} platform(s)"
        )
    # Ready implies every child exists (a missing one keeps Ready False). Each poll LISTs every platform
    # with its status: while many platforms' children are still being created (timed from their
    # creationTimestamps, nothing watching), poll seldom, so the bench loads the API server it measures
    # no more than the baseline's run does.
    wait_for(
        lambda: set(namespaces) <= b.ready_namespaces(),
        timeout=timeout,
        what=f"{n} platform(s) Ready",
        interval=0.5 if counter is not None else 2.0,
    )
    t_ready = time.monotonic() - t0
    if counter is None:
        done = {ns: t - wall0 for ns, t in created_at(b, namespaces).items()}
    t_children = max(done[ns] for ns in namespaces)
    cpu = op.cpu_s() - cpu0
    reconciles = metric("booking_operator_reconciles_total") - rec0
    result = {
        "platforms": n,
        "children_per_platform": per_platform,
        "time_to_all_children_s": round(t_children, 2),
        "time_to_all_ready_s": round(t_ready, 2),
        "time_to_children_p50_s": round(sorted(done[ns] for ns in namespaces)[n // 2], 2),
        "children_timed_from": "watch" if counter is not None else "creationTimestamp",
        "converge_child_writes": metric("booking_operator_child_writes_total") - w0,
        "converge_reconciles": reconciles,
        "converge_reconciles_per_platform": round(reconciles / n, 2),
        "converge_checks": metric("booking_operator_checks_total") - chk0,
        "converge_checks_by_trigger": {
            t: metric("booking_operator_checks_total", trigger=t) - by0[t] for t in triggers
        },
        "converge_status_writes": metric("booking_operator_status_writes_total") - st0,
        "converge_api_requests": metric("booking_operator_api_requests_total") - req0,
        "converge_operator_cpu_s": round(cpu, 2),
        "steady_state": steady_state(op, int(metric("booking_operator_platforms"))),
        "operator_rss_mib": op.rss_mib(),
        "operator_peak_rss_mib": op.rss_mib("VmHWM"),
    }
    b.delete_namespaces(namespaces)
    return result


def b_example() -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"]["namespace"] = "example"
    return body


def one_more(b: Bench, counter: ChildCounter, timeout: float = 180) -> float:
    """One more platform, timed to all its children (the operator keeps running); its namespace is deleted."""
    ns = b.namespace("bench1")
    body = b_example()
    body["metadata"]["namespace"] = ns
    body["spec"]["api"]["service"]["nodePort"] = b.free_node_port()
    counter.expect([ns], len(render_object(body, keda_available=True)))
    b.custom.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, body["metadata"]["name"], body,
        field_manager="bench", force=True, _content_type="application/apply-patch+yaml",
    )  # fmt: skip
    wait_for(lambda: ns in counter.complete_at, timeout=timeout, what="children of one more platform")
    took = round(counter.complete_at[ns], 2)
    b.delete_namespaces([ns])
    return took


def baselines(b: Bench, n: int) -> tuple[list[float], float]:
    """Three one-platform direct applies, and n platforms applied directly in a row (namespaces deleted)."""
    one_ns = [b.namespace("bench-base1") for _ in range(3)]
    one = [b.direct_apply([ns])[0] for ns in one_ns]
    many_ns = [b.namespace("bench-base") for _ in range(n)]
    many, _ = b.direct_apply(many_ns)
    b.delete_namespaces(one_ns + many_ns)
    return one, many


def target(name: str, measured: float, goal: float, unit: str = "") -> dict[str, Any]:
    """One of issue 14's targets: measured <= goal."""
    return {"target": name, "measured": measured, "goal": f"<= {goal}{unit}", "met": measured <= goal}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "operator.json")
    p.add_argument("--platforms", type=int, default=int(os.environ.get("BENCH_OPERATOR_PLATFORMS", "50")))
    p.add_argument("--resync", type=float, default=10.0)
    p.add_argument("--crds", type=Path, default=ROOT / "crds", help="folder with the BookingPlatform CRD")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = p.parse_args()
    if not os.environ.get("KUBECONFIG"):
        print("KUBECONFIG is not set (bench/run.sh starts the control plane)", file=sys.stderr)
        return 1
    b = Bench()
    b.install(sorted(args.crds.glob("*.yaml")) + sorted(KEDA_CRDS.glob("*.yaml")))

    # Baselines without the operator running, before it starts and again after it stopped: the machine's
    # load drifts over minutes, and the operator's figures fall between the two.
    warm = [b.namespace("bench-warm")]
    b.direct_apply(warm)  # discovery and connections warmed up, as the operator's are
    b.delete_namespaces(warm)
    one_before, many_before = baselines(b, args.platforms)
    per_platform = len(render_object(b_example(), keda_available=True))

    counter = ChildCounter(b)
    op = Operator(resync=args.resync)
    try:
        idle_rss = op.rss_mib()
        one = scenario(b, op, counter, 1, timeout=180)
        # One platform is a second's work: the median of three samples, here and for the baseline.
        samples = [one["time_to_all_children_s"]] + [one_more(b, counter) for _ in range(2)]
        one["time_to_all_children_samples_s"] = samples
        one["time_to_all_children_s"] = statistics.median(samples)
        counter.stop()
        many = scenario(b, op, None, args.platforms, timeout=1200)
    finally:
        op.stop()
        counter.stop()
    one_after, many_after = baselines(b, args.platforms)
    one_samples = one_before + one_after
    baseline_one = statistics.median(one_samples)
    baseline_many = (many_before + many_after) / 2
    ratios = {
        "one_children_vs_direct_apply": round(one["time_to_all_children_s"] / baseline_one, 2),
        "many_children_vs_direct_apply": round(many["time_to_all_children_s"] / baseline_many, 2),
    }
    n = args.platforms
    steady = many["steady_state"]
    targets = [
        target(f"{n} platforms: children vs direct apply", ratios["many_children_vs_direct_apply"],
               MAX_MANY_RATIO, "x"),
        target(f"{n} platforms: reconciles per platform to converge",
               many["converge_reconciles_per_platform"], MAX_RECONCILES_PER_PLATFORM),
        target(f"{n} platforms: API requests per idle resync pass", steady["api_requests_per_resync_pass"],
               MAX_REQUESTS_PER_IDLE_RESYNC),
        target(f"{n} platforms: operator RSS (MiB)", many["operator_rss_mib"], MAX_RSS_MIB),
        target("1 platform: children vs direct apply", ratios["one_children_vs_direct_apply"],
               MAX_ONE_RATIO, "x"),
    ]  # fmt: skip
    result = {
        "benchmark": "operator",
        "baseline_direct_apply_s": round(baseline_one, 3),
        "baseline_direct_apply_samples_s": [round(x, 3) for x in one_samples],
        "baseline_direct_apply_many_before_after_s": [round(many_before, 3), round(many_after, 3)],
        "baseline_direct_apply_many_s": round(baseline_many, 3),
        "baseline_objects": per_platform,
        "operator_idle_rss_mib": idle_rss,
        "load_average_1m": round(os.getloadavg()[0], 1),
        "one_platform": one,
        "many_platforms": many,
        "ratios": ratios,
        "targets": targets,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    for t in targets:
        print(f"{'PASS' if t['met'] else 'FAIL'}  {t['target']}: {t['measured']} (goal {t['goal']})")
    return 1 if args.strict and not all(t["met"] for t in targets) else 0


if __name__ == "__main__":
    sys.exit(main())
