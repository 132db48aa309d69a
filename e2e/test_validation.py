"""Invalid BookingPlatforms are refused by the API server itself (schema + CEL), operator or not."""

from __future__ import annotations

import json

import pytest
from e2elib import Cluster, prod_platform
from kubernetes import client

pytestmark = pytest.mark.e2e


def refusal(cluster: Cluster, body: dict[str, object]) -> str:
    with pytest.raises(client.ApiException) as info:
        cluster.apply_platform(body)  # type: ignore[arg-type]
    assert info.value.status == 422, info.value.body
    return str(json.loads(info.value.body)["message"])


def test_min_above_max_is_refused_with_the_cel_message(cluster: Cluster, namespace: str) -> None:
    body = prod_platform(namespace)
    body["spec"]["consumers"]["pat-test-result"] = {
        "autoscaling": {"keda": {"minReplicas": 8, "maxReplicas": 3}}
    }
    assert "minReplicas must be <= maxReplicas" in refusal(cluster, body)
    body = prod_platform(namespace)
    body["spec"]["api"]["autoscaling"] = {"hpa": {"minReplicas": 6, "maxReplicas": 5}}
    assert "minReplicas must be <= maxReplicas" in refusal(cluster, body)


def test_over_long_name_is_refused_with_the_cel_message(cluster: Cluster, namespace: str) -> None:
    body = prod_platform(namespace)
    body["metadata"]["name"] = "pat-booking-be-" + "x" * 40
    message = refusal(cluster, body)
    assert "metadata.name is too long" in message


def test_two_autoscalers_on_one_consumer_are_refused(cluster: Cluster, namespace: str) -> None:
    body = prod_platform(namespace)
    body["spec"]["consumers"]["booking"] = {
        "autoscaling": {
            "hpa": {"minReplicas": 1, "maxReplicas": 2},
            "keda": {"minReplicas": 1, "maxReplicas": 2},
        }
    }
    assert "set at most one of hpa, keda" in refusal(cluster, body)


def test_prod_without_auth_is_refused_with_the_cel_message(cluster: Cluster, namespace: str) -> None:
    body = prod_platform(namespace)
    del body["spec"]["auth"]
    assert "spec.auth is required unless spec.environment is dev" in refusal(cluster, body)
