"""A real kube-apiserver checks `spec.lis` and `spec.api.edge` with the committed CRD: a zone name, a rate
limit or a proxy of the wrong shape is refused naming the field, and the production example with both
sections is accepted as written. Creates use dryRun=All: nothing is stored."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import create_dry_run, prod_cr

LIS = {"defaultTimeZone": "Asia/Ho_Chi_Minh", "facilityTimeZones": {"BERLIN LAB": "Europe/Berlin"}}
EDGE = {
    "trustedProxies": ["10.0.0.0/8", "fd00::/8"],
    "maxBodyBytes": 2_097_152,
    "rateLimits": {"enabled": False, "perClient": "1200/minute", "authFailures": "5 per minute"},
}


def _prod(ns: str, lis: dict[str, Any] | None = None, edge: dict[str, Any] | None = None) -> dict[str, Any]:
    body = prod_cr(ns)
    body["spec"]["lis"] = lis if lis is not None else dict(LIS)
    body["spec"]["api"]["edge"] = edge if edge is not None else dict(EDGE)
    return body


def test_lis_and_edge_are_accepted_as_written(platforms: tuple[Any, str]) -> None:
    api, ns = platforms
    created = create_dry_run(api, ns, _prod(ns))["spec"]
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
        create_dry_run(api, ns, _prod(ns, lis, edge))
    assert info.value.status == 422, info.value.body
    assert field in json.loads(info.value.body)["message"], info.value.body
