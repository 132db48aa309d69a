"""A real kube-apiserver refuses a non-dev BookingPlatform without `auth`, with the CRD's CEL message,
and accepts the production example (which has it). Creates use dryRun=All: nothing is stored."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import create_dry_run, prod_cr


def test_prod_cr_without_auth_is_refused_by_the_api_server(platforms: tuple[Any, str]) -> None:
    from kubernetes import client

    api, ns = platforms
    body = prod_cr(ns)
    del body["spec"]["auth"]
    with pytest.raises(client.ApiException) as info:
        create_dry_run(api, ns, body)
    assert info.value.status == 422, info.value.body
    message = json.loads(info.value.body)["message"]
    assert "spec.auth is required unless spec.environment is dev" in message


def test_prod_cr_with_auth_and_dev_cr_without_are_accepted(platforms: tuple[Any, str]) -> None:
    api, ns = platforms
    assert create_dry_run(api, ns, prod_cr(ns))["spec"]["auth"]["claims"]["patientId"] == "patient_id"
    dev = prod_cr(ns)
    del dev["spec"]["auth"]
    dev["spec"]["environment"] = "dev"
    assert "auth" not in create_dry_run(api, ns, dev)["spec"]


def test_unsafe_auth_is_refused_by_the_api_server(platforms: tuple[Any, str]) -> None:
    from kubernetes import client

    api, ns = platforms
    for field, value, says in (
        ("algorithms", ["HS256"], "Unsupported value"),
        ("issuer", "http://idp.example.org", "should match"),
        ("sharedSecretRef", {"name": "s", "key": "k"}, None),  # with jwksUrl below: two key sources
    ):
        body = prod_cr(ns)
        body["spec"]["auth"][field] = value
        if field == "sharedSecretRef":
            body["spec"]["auth"]["jwksUrl"] = "https://idp.example.org/keys"
            says = "set at most one of jwksUrl, sharedSecretRef"
        with pytest.raises(client.ApiException) as info:
            create_dry_run(api, ns, body)
        assert info.value.status == 422
        assert says in json.loads(info.value.body)["message"], info.value.body
