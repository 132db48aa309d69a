"""e2e helpers: the cluster KUBECONFIG names, deadlines, the example CR, KEDA's CRDs, diagnostics.

The operator is already running (a host process for `make e2e`, a Deployment for `make e2e-kind`).
Environment:
  E2E_OPERATOR_LOG          file with the operator's log (host process); else the operator pod's log
  E2E_OPERATOR_METRICS_URL  its /metrics; else reached through the API server's pod proxy
  E2E_KEDA_CRDS_DIR         KEDA CRD files the suite may remove and reinstall (local control plane only)
  E2E_EXPECT_READY          "0" where pods cannot really become Ready (default "1": KWOK makes them Ready)
  E2E_PLATFORM_OVERLAY      YAML deep-merged into the production example (kind: local image, in-cluster deps)
  E2E_NAMESPACE_OBJECTS     YAML objects created in every test namespace (kind: booking-connections)
  E2E_CONVERGE_SECONDS      how long a platform may take to converge (real pods start slower than KWOK's)
"""

from __future__ import annotations

import json
import os
import random
import re
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes import client, config

from booking_testing.overlay import deep_merge
from booking_testing.wait import wait_for as _wait_for

warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "manifests" / "examples" / "pat-booking-be-prod.yaml"
GROUP, VERSION, PLURAL = "platform.pat-booking.io", "v1alpha1", "bookingplatforms"
MANAGED = "app.kubernetes.io/managed-by=booking-operator"
OPERATOR_NAMESPACE = os.environ.get("E2E_OPERATOR_NAMESPACE", "booking-operator-system")
FIELD_MANAGER = "booking-operator"
EXPECT_READY = os.environ.get("E2E_EXPECT_READY", "1") != "0"
CONVERGE_S = float(os.environ.get("E2E_CONVERGE_SECONDS", "120"))
# Every test namespace enforces the restricted Pod Security Standard: a child that breaks it never gets a pod.
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
}


# The one wait_for (booking_testing.wait); the API server's errors (a child not created yet) mean "not yet".
wait_for = partial(_wait_for, interval=0.25, ignore=(client.ApiException,))


class Cluster:
    """The few API calls the suite makes, through the official client."""

    def __init__(self) -> None:
        config.load_kube_config()
        self.api = client.ApiClient()
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.ext = client.ApiextensionsV1Api(self.api)

    # ------------------------------------------------------------------ BookingPlatforms

    def apply_platform(self, body: dict[str, Any], manager: str = "e2e-sre") -> dict[str, Any]:
        """Server-side apply a BookingPlatform, as `kubectl apply --server-side` would."""
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        out: dict[str, Any] = self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, name, body, field_manager=manager, force=True,
            _content_type="application/apply-patch+yaml",
        )  # fmt: skip
        return out

    def platform(self, ns: str, name: str) -> dict[str, Any]:
        """The BookingPlatform as stored."""
        out: dict[str, Any] = self.custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        return out

    def condition(self, ns: str, name: str, ctype: str) -> dict[str, Any] | None:
        """One status condition."""
        for c in self.platform(ns, name).get("status", {}).get("conditions", []):
            if c["type"] == ctype:
                return dict(c)
        return None

    # --------------------------------------------------------------------------- children

    def children(self, ns: str, plural: str, group_version: str) -> list[dict[str, Any]]:
        """Labelled children of one kind, as plain dicts (works for CRDs and built-ins alike)."""
        group, _, version = group_version.rpartition("/")
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        data = self.get_json(f"{path}/namespaces/{ns}/{plural}", query={"labelSelector": MANAGED})
        return list(data.get("items", []))

    def get_json(self, path: str, query: dict[str, str] | None = None) -> dict[str, Any]:
        """A raw GET through the client's auth."""
        resp = self.api.call_api(
            *self.api.param_serialize(
                "GET", path, query_params=list((query or {}).items()), auth_settings=["BearerToken"],
                header_params={"Accept": "application/json"},
            )
        )  # fmt: skip
        resp.read()
        if resp.status >= 300:
            raise client.ApiException(status=resp.status, reason=resp.reason)
        out: dict[str, Any] = json.loads(resp.data)
        return out

    def post_form(self, path: str, form: dict[str, str]) -> dict[str, Any]:
        """A raw form POST through the client's auth (a Service proxy), answering JSON."""
        resp = self.api.call_api(
            *self.api.param_serialize(
                "POST", path, post_params=list(form.items()), auth_settings=["BearerToken"],
                header_params={"Accept": "application/json",
                               "Content-Type": "application/x-www-form-urlencoded"},
            )
        )  # fmt: skip
        resp.read()
        if resp.status >= 300:
            raise client.ApiException(status=resp.status, reason=resp.reason, http_resp=resp)
        out: dict[str, Any] = json.loads(resp.data)
        return out

    def get_text(self, path: str) -> str:
        """A raw GET returning text (metrics through the pod proxy)."""
        resp = self.api.call_api(*self.api.param_serialize("GET", path, auth_settings=["BearerToken"]))
        resp.read()
        if resp.status >= 300:
            raise client.ApiException(status=resp.status, reason=resp.reason)
        return bytes(resp.data).decode()

    def deployments(self, ns: str) -> dict[str, Any]:
        """Labelled Deployments by name."""
        return {d["metadata"]["name"]: d for d in self.children(ns, "deployments", "apps/v1")}

    def all_children(self, ns: str) -> dict[tuple[str, str], dict[str, Any]]:
        """Every labelled child of every managed kind, by (kind, name)."""
        out = {}
        for kind, plural, gv in KINDS:
            try:
                for item in self.children(ns, plural, gv):
                    if _controlled_by_another(item):
                        continue
                    out[(kind, item["metadata"]["name"])] = item
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
        return out

    # ---------------------------------------------------------------------- operator info

    def metrics(self) -> str:
        """The operator's Prometheus text."""
        url = os.environ.get("E2E_OPERATOR_METRICS_URL")
        if url:
            import urllib.request

            with urllib.request.urlopen(url, timeout=5) as resp:  # local host process
                return bytes(resp.read()).decode()
        pods = self.core.list_namespaced_pod(
            OPERATOR_NAMESPACE, label_selector="app.kubernetes.io/name=booking-operator"
        )
        pod = pods.items[0].metadata.name
        return self.get_text(f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/pods/{pod}:9090/proxy/metrics")

    def metric(self, name: str, **labels: str) -> float:
        """Sum of one metric's samples whose labels include `labels`."""
        total = 0.0
        for line in self.metrics().splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            m = re.match(r"^([a-zA-Z_:]+)(\{(.*)\})?\s+([0-9.eE+-]+)$", line)
            if not m or m.group(1) != name:
                continue
            found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
            if all(found.get(k) == v for k, v in labels.items()):
                total += float(m.group(4))
        return total

    def operator_log(self, tail: int = 150) -> str:
        """The operator's last log lines."""
        path = os.environ.get("E2E_OPERATOR_LOG")
        if path and Path(path).exists():
            return "\n".join(Path(path).read_text(errors="replace").splitlines()[-tail:])
        try:
            pods = self.core.list_namespaced_pod(
                OPERATOR_NAMESPACE, label_selector="app.kubernetes.io/name=booking-operator"
            )
            return "\n".join(
                self.core.read_namespaced_pod_log(p.metadata.name, OPERATOR_NAMESPACE, tail_lines=tail)
                for p in pods.items
            )
        except client.ApiException as exc:
            return f"(no operator log: {exc.status} {exc.reason})"

    def events(self, ns: str) -> str:
        """`kubectl get events --sort-by=.lastTimestamp`, from the Python client."""
        items = self.core.list_namespaced_event(ns).items

        def ts(e: Any) -> str:
            t = e.last_timestamp or e.event_time or e.first_timestamp or e.metadata.creation_timestamp
            return t.isoformat() if t else ""

        lines = [f"{'LAST SEEN':25} {'TYPE':8} {'REASON':22} {'OBJECT':60} MESSAGE"]
        for e in sorted(items, key=ts):
            obj = f"{e.involved_object.kind}/{e.involved_object.name}"
            lines.append(
                f"{ts(e)[:25]:25} {e.type or '':8} {e.reason or '':22} {obj[:60]:60} {e.message or ''}"
            )
        return "\n".join(lines)


def _controlled_by_another(obj: dict[str, Any]) -> bool:
    """True for an object another controller owns although it carries our labels: the HPA a real KEDA
    creates for a ScaledObject copies its labels, but it is KEDA's child, not the platform's."""
    refs = obj["metadata"].get("ownerReferences") or []
    return any(r.get("controller") and r.get("kind") != "BookingPlatform" for r in refs)


KINDS = (
    ("Deployment", "deployments", "apps/v1"),
    ("Service", "services", "v1"),
    ("ConfigMap", "configmaps", "v1"),
    ("ServiceAccount", "serviceaccounts", "v1"),
    ("CronJob", "cronjobs", "batch/v1"),
    ("HorizontalPodAutoscaler", "horizontalpodautoscalers", "autoscaling/v2"),
    ("PodDisruptionBudget", "poddisruptionbudgets", "policy/v1"),
    ("ScaledObject", "scaledobjects", "keda.sh/v1alpha1"),
    ("TriggerAuthentication", "triggerauthentications", "keda.sh/v1alpha1"),
)


def prod_platform(ns: str, *, seed_node_port: bool = False) -> dict[str, Any]:
    """The production example, moved into namespace ns (with E2E_PLATFORM_OVERLAY merged in, if set).

    NodePorts are unique per cluster, so only a test that asks for it gets the seed's 30978; the others
    get a random one, or two platforms (or a namespace still terminating) would collide.
    """
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    overlay = os.environ.get("E2E_PLATFORM_OVERLAY")
    if overlay:
        body = deep_merge(body, yaml.safe_load(Path(overlay).read_text()))
    body["metadata"]["namespace"] = ns
    if not seed_node_port:
        body["spec"]["api"]["service"]["nodePort"] = random.randint(30000, 32767)
    return body


def namespace_objects() -> list[dict[str, Any]]:
    """The objects E2E_NAMESPACE_OBJECTS asks for in every test namespace (none by default)."""
    path = os.environ.get("E2E_NAMESPACE_OBJECTS")
    return [d for d in yaml.safe_load_all(Path(path).read_text()) if d] if path else []


def keda_crd_files() -> list[Path]:
    """KEDA's CRD files when this run may remove and reinstall them (local control plane)."""
    d = os.environ.get("E2E_KEDA_CRDS_DIR")
    return sorted(Path(d).glob("*.yaml")) if d else []


def install_keda_crds(cluster: Cluster) -> None:
    """Install KEDA's CRDs from E2E_KEDA_CRDS_DIR and wait until they are served."""
    for f in keda_crd_files():
        for doc in yaml.safe_load_all(f.read_text()):
            if doc:
                try:
                    cluster.ext.create_custom_resource_definition(doc)
                except client.ApiException as exc:
                    if exc.status != 409:
                        raise

    def served() -> bool:
        doc = cluster.get_json("/apis/keda.sh/v1alpha1")
        return any(r["name"] == "scaledobjects" for r in doc.get("resources", []))

    wait_for(served, timeout=60, what="keda.sh/v1alpha1 scaledobjects to be served")


def remove_keda_crds(cluster: Cluster) -> None:
    """Delete KEDA's CRDs and wait until the API is gone."""
    for name in ("scaledobjects.keda.sh", "triggerauthentications.keda.sh"):
        try:
            cluster.ext.delete_custom_resource_definition(name)
        except client.ApiException as exc:
            if exc.status != 404:
                raise

    def gone() -> bool:
        try:
            cluster.get_json("/apis/keda.sh/v1alpha1")
        except client.ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, timeout=60, what="keda.sh/v1alpha1 to disappear")
