"""A real kube-apiserver checks `spec.lis` and `spec.api.edge` with the committed CRD: a zone name, a rate
limit or a proxy of the wrong shape is refused naming the field, and the production example with both
sections is accepted as written. Creates use dryRun=All: nothing is stored."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from booking_operator import names

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / f"{names.CRD_NAME}.yaml"
PROD = ROOT / "manifests" / "examples" / "pat-booking-be-prod.yaml"
LIS = {"defaultTimeZone": "Asia/Ho_Chi_Minh", "facilityTimeZones": {"BERLIN LAB": "Europe/Berlin"}}
EDGE = {
    "trustedProxies": ["10.0.0.0/8", "fd00::/8"],
    "maxBodyBytes": 2_097_152,
    "rateLimits": {"enabled": False, "perClient": "1200/minute", "authFailures": "5 per minute"},
}


@pytest.fixture(scope="module")
def platforms(disposable_kubeconfig: str) -> Iterator[tuple[Any, str]]:
    """(CustomObjectsApi, namespace) with the committed CRD installed (a cluster the tests may change)."""
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=disposable_kubeconfig)
    ext = client.ApiextensionsV1Api(api_client)
    crd = yaml.safe_load(CRD.read_text())
    try:
        ext.create_custom_resource_definition(crd)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        current = ext.read_custom_resource_definition(names.CRD_NAME)
        crd["metadata"]["resourceVersion"] = current.metadata.resource_version
        ext.replace_custom_resource_definition(names.CRD_NAME, crd)

    def established_with_our_schema() -> bool:
        got = ext.read_custom_resource_definition(names.CRD_NAME)
        conds = got.status.conditions or []
        props = got.spec.versions[0].schema.open_apiv3_schema.properties["spec"].properties
        return "lis" in props and any(c.type == "Established" and c.status == "True" for c in conds)

    deadline = time.monotonic() + 30
    while not established_with_our_schema():
        assert time.monotonic() < deadline, "the CRD was not established within 30 s"
        time.sleep(0.3)
    core = client.CoreV1Api(api_client)
    ns = f"settings-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}})
    yield client.CustomObjectsApi(api_client), ns
    core.delete_namespace(ns)


def _create(api: Any, ns: str, body: dict[str, Any]) -> Any:
    group, version = names.API_VERSION.split("/")
    return api.create_namespaced_custom_object(group, version, ns, names.PLURAL, body, dry_run="All")


def _prod(ns: str, lis: dict[str, Any] | None = None, edge: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(PROD.read_text())
    body["metadata"]["namespace"] = ns
    body["spec"]["lis"] = lis if lis is not None else dict(LIS)
    body["spec"]["api"]["edge"] = edge if edge is not None else dict(EDGE)
    return body


def test_lis_and_edge_are_accepted_as_written(platforms: tuple[Any, str]) -> None:
    api, ns = platforms
    created = _create(api, ns, _prod(ns))["spec"]
    assert created["lis"] == LIS
    assert created["api"]["edge"] == EDGE  # nothing pruned, nothing defaulted in


@pytest.mark.parametrize(
    ("lis", "edge", "field"),
    [
        ({"defaultTimeZone": "Asia Ho Chi Minh"}, None, "spec.lis.defaultTimeZone"),
        ({"facilityTimeZones": {"LAB": "Asia/Ho Chi Minh"}}, None, "spec.lis.facilityTimeZones.LAB"),
        (
            {"facilityTimeZones": {"L" * 101: "UTC"}},
            None,
            "facilityTimeZones keys are MSH-4 sending facilities",
        ),
        (None, {"trustedProxies": ["ingress.example.org"]}, "spec.api.edge.trustedProxies[0]"),
        (None, {"rateLimits": {"perClient": "fast"}}, "spec.api.edge.rateLimits.perClient"),
        (None, {"maxBodyBytes": 10}, "spec.api.edge.maxBodyBytes"),
    ],
)
def test_malformed_values_are_refused_naming_the_field(
    platforms: tuple[Any, str], lis: dict[str, Any] | None, edge: dict[str, Any] | None, field: str
) -> None:
    from kubernetes import client

    api, ns = platforms
    with pytest.raises(client.ApiException) as info:
        _create(api, ns, _prod(ns, lis, edge))
    assert info.value.status == 422, info.value.body
    assert field in json.loads(info.value.body)["message"], info.value.body
