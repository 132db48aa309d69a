"""Property tests over valid BookingPlatforms: render is deterministic and its output always well-formed."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from booking_operator import names
from booking_operator.render import render
from booking_operator.spec import InvalidPlatformError, Platform, parse_platform

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
COMPONENTS = [
    "api",
    *(f"consumer-{c}" for c in names.CONSUMER_NAMES),
    *(f"worker-{w}" for w in names.WORKER_NAMES),
    "cron",
    "otel-collector",
]

# Name limits per kind: Services are DNS-1035 labels, a CronJob leaves 11 characters for its Jobs' suffix.
NAME_LIMIT = {"Service": 63, "CronJob": 52}

dns_label = st.from_regex(r"\A[a-z]([-a-z0-9]{0,14}[a-z0-9])?\Z")
replicas = st.integers(min_value=0, max_value=6)


@st.composite
def hpa(draw: st.DrawFn) -> dict[str, Any]:
    lo = draw(st.integers(1, 5))
    return {"minReplicas": lo, "maxReplicas": draw(st.integers(lo, 8))}


@st.composite
def keda(draw: st.DrawFn) -> dict[str, Any]:
    lo = draw(st.integers(0, 5))
    return {
        "minReplicas": lo,
        "maxReplicas": draw(st.integers(max(lo, 1), 12)),
        "lagThreshold": draw(st.integers(1, 500)),
    }


def workload(with_keda: bool) -> st.SearchStrategy[dict[str, Any]]:
    scaling = [st.just({}), hpa().map(lambda h: {"hpa": h})]
    if with_keda:
        scaling.append(keda().map(lambda k: {"keda": k}))
    return st.fixed_dictionaries(
        {},
        optional={
            "replicas": replicas,
            "autoscaling": st.one_of(*scaling),
            "pdb": st.fixed_dictionaries({"enabled": st.booleans()}),
        },
    )


@st.composite
def platforms(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "environment": draw(st.sampled_from(["prod", "dev", "stg", "qa1", "preprod"])),
        "image": {
            "repository": "ghcr.io/pat/booking",
            "tag": draw(st.sampled_from(["1", "0.1.0", "latest"])),
        },
        "api": draw(workload(with_keda=False)),
        "consumers": draw(st.dictionaries(st.sampled_from(names.CONSUMER_NAMES), workload(with_keda=True))),
        "workers": draw(st.dictionaries(st.sampled_from(names.WORKER_NAMES), workload(with_keda=False))),
        "otelCollector": {"replicas": draw(st.integers(1, 3))},
    }
    if draw(st.booleans()):
        spec["connections"] = {
            "kafka": {
                "securityProtocol": "SASL_SSL",
                "sasl": {
                    "usernameSecretRef": {"name": "kafka", "key": "user"},
                    "passwordSecretRef": {"name": "kafka", "key": "password"},
                },
            }
        }
    # Outside dev, auth is required (CEL and the model); in dev it is optional.
    if spec["environment"] != "dev" or draw(st.booleans()):
        spec["auth"] = draw(
            st.sampled_from(
                [
                    {"issuer": "https://idp.example.org", "audience": "api"},
                    {
                        "issuer": "https://idp.example.org",
                        "audience": "api",
                        "sharedSecretRef": {"name": "auth", "key": "secret"},
                    },
                ]
            )
        )
    # Process settings the operator renders as env, some also set by hand in the component's env.
    if draw(st.booleans()):
        spec["lis"] = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "defaultTimeZone": st.sampled_from(
                        ["UTC", "Asia/Ho_Chi_Minh", "America/Argentina/Salta"]
                    ),
                    "facilityTimeZones": st.dictionaries(
                        st.sampled_from(["LAB", "CENTRAL-LAB", "Lab 2"]),
                        st.sampled_from(["UTC", "Europe/Berlin"]),
                    ),
                },
            )
        )
    if draw(st.booleans()):
        spec["api"]["edge"] = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "trustedProxies": st.lists(st.sampled_from(["10.0.0.0/8", "::1", "*"]), min_size=1),
                    "maxBodyBytes": st.integers(1024, 10_000_000),
                    "rateLimits": st.fixed_dictionaries(
                        {}, optional={"enabled": st.booleans(), "perClient": st.just("100/minute")}
                    ),
                },
            )
        )
    for env_name in draw(
        st.lists(st.sampled_from(["BOOKING_LIS_DEFAULT_TIME_ZONE", "BOOKING_TRUSTED_PROXIES"]))
    ):
        target = (
            spec["api"]
            if env_name == "BOOKING_TRUSTED_PROXIES"
            else spec["consumers"].setdefault("lis-testresult", {})
        )
        target.setdefault("env", []).append({"name": env_name, "value": "UTC"})
    if draw(st.booleans()):
        spec["restartAt"] = {
            "at": "t1",
            "components": draw(st.lists(st.sampled_from(COMPONENTS), unique=True)),
        }
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": draw(dns_label), "namespace": draw(dns_label)},
        "spec": spec,
    }


def parsed(obj: dict[str, Any]) -> Platform:
    try:
        return parse_platform(obj)
    except InvalidPlatformError:
        # Only the name-length rules may refuse a drawn platform (KEDA on a long consumer name).
        assume(False)
        raise


PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(platforms())
def test_render_is_deterministic(obj: dict[str, Any]) -> None:
    platform = parsed(obj)
    first = json.dumps(render(platform))
    assert json.dumps(render(parse_platform(obj))) == first
    assert json.dumps(render(platform, keda_available=False)) == json.dumps(
        render(platform, keda_available=False)
    )


@PROPS
@given(platforms(), st.booleans())
def test_names_labels_namespace_uniqueness(obj: dict[str, Any], keda_available: bool) -> None:
    platform = parsed(obj)
    manifests = render(platform, keda_available=keda_available)
    seen = set()
    for m in manifests:
        meta = m["metadata"]
        name, kind = meta["name"], m["kind"]
        assert (kind, name) not in seen
        seen.add((kind, name))
        assert meta["namespace"] == platform.namespace
        assert "ownerReferences" not in meta
        assert DNS_SUBDOMAIN.match(name) and len(name) <= NAME_LIMIT.get(kind, 253), (kind, name)
        if kind == "Service":
            assert DNS_1035.match(name)
        if kind == "ScaledObject":
            assert len(f"keda-hpa-{name}") <= 63 and DNS_LABEL.match(name)
        labels = meta["labels"]
        assert labels[names.LABEL_MANAGED_BY] == names.MANAGED_BY
        assert labels[names.LABEL_PART_OF] == platform.name
        assert labels[names.LABEL_INSTANCE] == platform.name
        assert labels[names.LABEL_COMPONENT]
        assert all(len(v) <= 63 and LABEL_VALUE.match(v) for v in labels.values())
    assert sum(1 for k, _ in seen if k == "Deployment") == 14
    assert sum(1 for k, _ in seen if k == "CronJob") == 1


@PROPS
@given(platforms(), st.booleans())
def test_one_autoscaler_per_target_and_no_replicas_when_autoscaled(
    obj: dict[str, Any], keda_available: bool
) -> None:
    platform = parsed(obj)
    manifests = render(platform, keda_available=keda_available)
    deployments = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Deployment"}
    hpa_targets = [
        m["spec"]["scaleTargetRef"]["name"] for m in manifests if m["kind"] == "HorizontalPodAutoscaler"
    ]
    so_targets = [m["spec"]["scaleTargetRef"]["name"] for m in manifests if m["kind"] == "ScaledObject"]
    targets = hpa_targets + so_targets
    assert len(targets) == len(set(targets)), "a Deployment with two autoscalers"
    if not keda_available:
        assert so_targets == []
    for name, d in deployments.items():
        assert ("replicas" in d["spec"]) == (name not in targets), name
    assert set(targets) <= set(deployments)
    for m in manifests:
        if m["kind"] in ("HorizontalPodAutoscaler", "ScaledObject"):
            lo = m["spec"].get("minReplicas", m["spec"].get("minReplicaCount"))
            hi = m["spec"].get("maxReplicas", m["spec"].get("maxReplicaCount"))
            assert lo <= hi


@PROPS
@given(platforms())
def test_pdbs_only_for_more_than_one_pod(obj: dict[str, Any]) -> None:
    platform = parsed(obj)
    manifests = render(platform)
    pdbs = {m["metadata"]["name"] for m in manifests if m["kind"] == "PodDisruptionBudget"}
    deployments = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Deployment"}
    assert pdbs <= set(deployments)
    mins = {
        m["spec"]["scaleTargetRef"]["name"]: m["spec"].get("minReplicas", m["spec"].get("minReplicaCount"))
        for m in manifests
        if m["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")
    }
    for name in pdbs:
        floor = mins.get(name, deployments[name]["spec"].get("replicas"))
        assert floor is not None and floor > 1, name


@PROPS
@given(platforms())
def test_env_names_are_unique_in_every_container(obj: dict[str, Any]) -> None:
    """Server-side apply refuses a container with one env name twice (spec-rendered and hand-set alike)."""
    for m in render(parsed(obj)):
        if m["kind"] not in ("Deployment", "CronJob"):
            continue
        pod = (
            m["spec"]["template"]["spec"]
            if m["kind"] == "Deployment"
            else m["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        )
        for c in [*pod.get("initContainers", []), *pod["containers"]]:
            env_names = [e["name"] for e in c.get("env", [])]
            assert len(env_names) == len(set(env_names)), (m["metadata"]["name"], c["name"])
