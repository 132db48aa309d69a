"""A real kube-apiserver refuses a non-dev BookingPlatform without `auth`, with the CRD's CEL message,
and accepts the production example (which has it). Creates use dryRun=All: nothing is stored."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from booking_operator import names
from booking_testing.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / f"{names.CRD_NAME}.yaml"
PROD = ROOT / "manifests" / "examples" / "pat-booking-be-prod.yaml"


@pytest.fixture(scope="module")
def platforms(kubeconfig: str) -> Iterator[tuple[Any, str]]:
    """(CustomObjectsApi, namespace) with the committed CRD installed on the session's API server."""
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=kubeconfig)
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
    wait_for(
        lambda: any(
            c.type == "Established" and c.status == "True"
            for c in ext.read_custom_resource_definition(names.CRD_NAME).status.conditions or []
        ),
        timeout=30,
        what="the CRD to be Established",
        interval=0.3,
    )
    core = client.CoreV1Api(api_client)
    ns = f"auth-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}})
    yield client.CustomObjectsApi(api_client), ns
    core.delete_namespace(ns)


def _create(api: Any, ns: str, body: dict[str, Any]) -> Any:
    group, version = names.API_VERSION.split("/")
    return api.create_namespaced_custom_object(group, version, ns, names.PLURAL, body, dry_run="All")


def _prod(ns: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(PROD.read_text())
    body["metadata"]["namespace"] = ns
    return body


def test_prod_cr_without_auth_is_refused_by_the_api_server(platforms: tuple[Any, str]) -> None:
    from kubernetes import client

    api, ns = platforms
    body = _prod(ns)
    del body["spec"]["auth"]
    with pytest.raises(client.ApiException) as info:
        _create(api, ns, body)
    assert info.value.status == 422, info.value.body
    message = json.loads(info.value.body)["message"]
    assert "spec.auth is required unless spec.environment is dev" in message


def test_prod_cr_with_auth_and_dev_cr_without_are_accepted(platforms: tuple[Any, str]) -> None:
    api, ns = platforms
    assert _create(api, ns, _prod(ns))["spec"]["auth"]["claims"]["patientId"] == "patient_id"
    dev = _prod(ns)
    del dev["spec"]["auth"]
    dev["spec"]["environment"] = "dev"
    assert "auth" not in _create(api, ns, dev)["spec"]


def test_unsafe_auth_is_refused_by_the_api_server(platforms: tuple[Any, str]) -> None:
    from kubernetes import client

    api, ns = platforms
    for field, value, says in (
        ("algorithms", ["HS256"], "Unsupported value"),
        ("issuer", "http://idp.example.org", "should match"),
        ("sharedSecretRef", {"name": "s", "key": "k"}, None),  # with jwksUrl below: two key sources
    ):
        body = _prod(ns)
        body["spec"]["auth"][field] = value
        if field == "sharedSecretRef":
            body["spec"]["auth"]["jwksUrl"] = "https://idp.example.org/keys"
            says = "set at most one of jwksUrl, sharedSecretRef"
        with pytest.raises(client.ApiException) as info:
            _create(api, ns, body)
        assert info.value.status == 422
        assert says in json.loads(info.value.body)["message"], info.value.body
