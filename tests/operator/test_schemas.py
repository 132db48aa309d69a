"""Every rendered object validates against the Kubernetes schemas, and KEDA objects against KEDA's CRDs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from booking_operator.render import render
from booking_operator.spec import parse_platform

ROOT = Path(__file__).resolve().parents[2]
KEDA = ROOT / "third_party" / "keda"
K8S_VERSION = "1.33"
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))


def keda_schema(kind: str) -> dict[str, Any]:
    for path in KEDA.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
            schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
            return schema
    raise LookupError(kind)


def variants() -> list[tuple[str, list[dict[str, Any]]]]:
    out = []
    for path in EXAMPLES:
        platform = parse_platform(yaml.safe_load(path.read_text()))
        out.append((path.stem, render(platform)))
        out.append((f"{path.stem}-no-keda", render(platform, keda_available=False)))
    # Everything switched on: KEDA on several consumers, HPAs on workers, PDBs, placement, restart, extra env.
    rich = yaml.safe_load((ROOT / "manifests" / "examples" / "pat-booking-be-prod.yaml").read_text())
    rich["metadata"]["name"] = "pbb"
    spec = rich["spec"]
    spec["image"]["digest"] = "sha256:" + "a" * 64
    spec["image"]["pullSecrets"] = ["regcred"]
    spec["consumers"]["booking"] = {
        "autoscaling": {"keda": {"minReplicas": 0, "maxReplicas": 4, "scaleDownStabilizationSeconds": 30}}
    }
    spec["consumers"]["customer"] = {"autoscaling": {"hpa": {"minReplicas": 2, "maxReplicas": 3}}}
    spec["workers"]["notifications"] = {
        "replicas": 2,
        "env": [{"name": "X", "value": "1"}, {"name": "Y", "secretKeyRef": {"name": "s", "key": "k"}}],
        "nodeSelector": {"pool": "workers"},
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "workers", "effect": "NoSchedule"}
        ],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
    }
    spec["api"]["service"] = {"type": "ClusterIP", "nodePort": None}
    spec["otelCollector"]["exporter"] = {"endpoint": "tempo:4318", "protocol": "otlphttp"}
    spec["restartAt"] = {"at": "now"}
    spec["lis"] = {"defaultTimeZone": "Asia/Ho_Chi_Minh", "facilityTimeZones": {"LAB 2": "Europe/Berlin"}}
    spec["api"]["edge"] = {"trustedProxies": ["10.0.0.0/8"], "rateLimits": {"enabled": False}}
    out.append(("rich", render(parse_platform(rich))))
    return out


CASES = [(f"{label}:{m['kind']}/{m['metadata']['name']}", m) for label, ms in variants() for m in ms]


@pytest.mark.parametrize(("label", "manifest"), CASES, ids=[c[0] for c in CASES])
def test_validates(label: str, manifest: dict[str, Any]) -> None:
    if manifest["apiVersion"].startswith("keda.sh/"):
        jsonschema.validate(manifest, keda_schema(manifest["kind"]))
    else:
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def test_every_kind_is_covered() -> None:
    kinds = {m["kind"] for _, m in CASES}
    assert kinds == {
        "ServiceAccount",
        "ConfigMap",
        "Service",
        "Deployment",
        "CronJob",
        "HorizontalPodAutoscaler",
        "TriggerAuthentication",
        "ScaledObject",
        "PodDisruptionBudget",
    }


def test_schema_check_catches_a_broken_manifest() -> None:
    # Guard against a validator that accepts anything.
    deployment = next(m for _, m in CASES if m["kind"] == "Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    so = next(m for _, m in CASES if m["kind"] == "ScaledObject")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**so, "spec": {**so["spec"], "triggers": "kafka"}}, keda_schema("ScaledObject"))
