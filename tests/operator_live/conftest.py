"""Live fixtures for the operator's tests: the committed CRD installed on a cluster the suite may change."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from booking_operator import names
from booking_operator.client import Kube
from booking_testing.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / f"{names.CRD_NAME}.yaml"
PROD = ROOT / "manifests" / "examples" / "pat-booking-be-prod.yaml"


@pytest.fixture(scope="module")
def platforms(disposable_kubeconfig: str) -> Iterator[tuple[Any, str]]:
    """(CustomObjectsApi, namespace) with the committed CRD installed, on a cluster the tests may change.

    Installing a CRD changes the whole cluster, so never on a user's own (disposable_kubeconfig).
    """
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
    wanted = set(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"])

    def established_with_our_schema() -> bool:
        got = ext.read_custom_resource_definition(names.CRD_NAME)
        props = got.spec.versions[0].schema.open_apiv3_schema.properties["spec"].properties
        established = any(c.type == "Established" and c.status == "True" for c in got.status.conditions or [])
        return established and wanted <= set(props)

    wait_for(
        established_with_our_schema, timeout=30, what="the committed CRD to be Established", interval=0.3
    )
    core = client.CoreV1Api(api_client)
    ns = f"crd-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}})
    yield client.CustomObjectsApi(api_client), ns
    core.delete_namespace(ns)


def create_dry_run(api: Any, ns: str, body: dict[str, Any]) -> Any:
    """Create a BookingPlatform with dryRun=All: the API server's validation (schema and CEL) only."""
    group, version = names.API_VERSION.split("/")
    return api.create_namespaced_custom_object(group, version, ns, names.PLURAL, body, dry_run="All")


def prod_cr(ns: str) -> dict[str, Any]:
    """The production example, in namespace ns."""
    body: dict[str, Any] = yaml.safe_load(PROD.read_text())
    body["metadata"]["namespace"] = ns
    return body


def operator_kube(kubeconfig: str) -> Kube:
    """The operator's client, logged in as the operator logs in (kopf's kubeconfig login)."""
    before = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = kubeconfig
    try:
        info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    finally:
        if before is None:
            os.environ.pop("KUBECONFIG")
        else:
            os.environ["KUBECONFIG"] = before
    assert info is not None
    return Kube(lambda: info)
