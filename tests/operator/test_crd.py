"""The CRD: generated from the model and committed unchanged, structural, defaults equal to the model's,
and its CEL rules (evaluated here with cel-python) refusing what the model refuses.

The real API server checks the same CRD in the integration suite; these tests pin the intent cheaply.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from booking_operator import names
from booking_operator.crd import build_crd
from booking_operator.render_cli import crd_yaml
from booking_operator.spec import BookingPlatformSpec, InvalidPlatformError, parse_platform

ROOT = Path(__file__).resolve().parents[2]
PROD = ROOT / "manifests" / "examples" / "pat-booking-be-prod.yaml"
MINIMAL = ROOT / "manifests" / "examples" / "minimal.yaml"
SCHEMA: dict[str, Any] = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for key, sub in node.get("properties", {}).items():
        out += walk(sub, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        out += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += walk(node["additionalProperties"], f"{path}{{}}")
    return out


def apply_defaults(value: Any, node: dict[str, Any]) -> Any:
    """What the API server does on create: fill absent properties from defaults, recursively."""
    if isinstance(value, dict) and "properties" in node:
        value = dict(value)
        for key, sub in node["properties"].items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apply_defaults(value[key], sub)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        value = [apply_defaults(v, node["items"]) for v in value]
    return value


# --- CEL -------------------------------------------------------------------------------------------------
def _escape(key: str) -> str:
    return key.replace("__", "__underscores__").replace(".", "__dot__").replace("-", "__dash__")


def cel_view(value: Any, node: dict[str, Any]) -> Any:
    """The value as CEL sees it: declared property names escaped, maps left alone."""
    if isinstance(value, dict) and "properties" in node:
        return {_escape(k): cel_view(v, node["properties"].get(k, {})) for k, v in value.items()}
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [cel_view(v, node["items"]) for v in value]
    return value


@functools.cache
def _program(rule: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def cel_errors(value: Any, node: dict[str, Any], path: str = "") -> list[tuple[str, str]]:
    """Every failing x-kubernetes-validations rule under node, as (path, message)."""
    errors = []
    for rule in node.get("x-kubernetes-validations", []):
        result = _program(rule["rule"]).evaluate({"self": celpy.json_to_cel(cel_view(value, node))})
        if not bool(result):
            errors.append((path or "<root>", rule["message"]))
    if isinstance(value, dict) and "properties" in node:
        for key, sub in value.items():
            if key in node["properties"]:
                errors += cel_errors(sub, node["properties"][key], f"{path}.{key}")
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for i, item in enumerate(value):
            errors += cel_errors(item, node["items"], f"{path}[{i}]")
    return errors


def server_view(obj: dict[str, Any]) -> dict[str, Any]:
    """Defaulted like the API server would, then schema-validated (required, bounds, enums, patterns)."""
    defaulted: dict[str, Any] = apply_defaults(obj, SCHEMA)
    jsonschema.validate(defaulted, SCHEMA)
    return defaulted


# --- the tests --------------------------------------------------------------------------------------------
def test_committed_crd_is_the_generated_one() -> None:
    committed = ROOT / "crds" / f"{names.CRD_NAME}.yaml"
    assert committed.read_text() == crd_yaml(), "crds/ is stale: run `make crds`"
    # the CRD and the kustomization that lists it for `kubectl apply -k`
    assert sorted(p.name for p in (ROOT / "crds").glob("*.yaml")) == [committed.name, "kustomization.yaml"]


def test_crd_identity_and_printer_columns() -> None:
    crd = build_crd()
    assert crd["metadata"]["name"] == "bookingplatforms.platform.pat-booking.io"
    assert crd["spec"]["names"]["shortNames"] == ["bp"]
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Components"] == ".status.components"
    assert columns["Autoscaling"] == ".status.autoscaling"
    assert columns["Age"] == ".metadata.creationTimestamp"
    for path in (".status.components", ".status.autoscaling", ".status.conditions"):
        assert path.split(".")[-1] in SCHEMA["properties"]["status"]["properties"]


def test_schema_is_structural() -> None:
    for path, node in walk(SCHEMA["properties"]["spec"], "spec"):
        assert not {"$ref", "anyOf", "allOf", "oneOf", "title", "nullable"} & set(node), path
        assert node.get("additionalProperties") is not False, path
        assert "type" in node or node.get("x-kubernetes-int-or-string"), path
        if "properties" in node:
            assert "additionalProperties" not in node, path
        if "default" in node:
            # A default must itself be valid, or the API server refuses the CRD.
            jsonschema.validate(node["default"], node)


def test_crd_defaults_equal_model_defaults() -> None:
    for path in (MINIMAL, PROD):
        obj = yaml.safe_load(path.read_text())
        defaulted = server_view(obj)
        assert BookingPlatformSpec.model_validate(defaulted["spec"]) == parse_platform(obj).spec, path.name


def test_seed_defaults_written_in_the_crd() -> None:
    spec = server_view(yaml.safe_load(MINIMAL.read_text()))["spec"]
    assert spec["api"]["autoscaling"]["hpa"] == {
        "minReplicas": 1,
        "maxReplicas": 5,
        "targetCPUUtilizationPercentage": 100,
    }
    assert spec["api"]["service"] == {"type": "NodePort", "port": 80, "nodePort": 30978}
    assert spec["consumers"]["lis-testresult"]["replicas"] == 2
    keda = spec["consumers"]["pat-test-result"]["autoscaling"]["keda"]
    assert (keda["minReplicas"], keda["maxReplicas"], keda["lagThreshold"]) == (1, 10, 20)
    assert spec["cron"]["schedule"] == "* * * * *" and spec["cron"]["concurrencyPolicy"] == "Forbid"


def test_cel_accepts_the_examples() -> None:
    for path in (MINIMAL, PROD):
        assert cel_errors(server_view(yaml.safe_load(path.read_text())), SCHEMA) == []


def _prod() -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load(PROD.read_text())
    return obj


def _min_gt_max(o: dict[str, Any]) -> None:
    o["spec"]["api"]["autoscaling"]["hpa"]["minReplicas"] = 6


def _keda_min_gt_max(o: dict[str, Any]) -> None:
    o["spec"]["consumers"]["pat-test-result"]["autoscaling"]["keda"]["minReplicas"] = 11


def _both(o: dict[str, Any]) -> None:
    o["spec"]["consumers"]["booking"] = {"autoscaling": {"hpa": {}, "keda": {}}}


def _long_name(o: dict[str, Any]) -> None:
    o["metadata"]["name"] = "pat--booking--be-x"


def _long_name_no_keda(o: dict[str, Any]) -> None:
    o["metadata"]["name"] = "a" * 41  # cron: 41 + 4 + 8 = 53 > 52


def _keda_on_longest(o: dict[str, Any]) -> None:
    o["spec"]["consumers"]["pat-booking-recommend-test"] = {"autoscaling": {"keda": {}}}


def _no_tag(o: dict[str, Any]) -> None:
    o["spec"]["image"].pop("tag")


def _sasl_mismatch(o: dict[str, Any]) -> None:
    o["spec"]["connections"]["kafka"]["securityProtocol"] = "SSL"


def _env_two_sources(o: dict[str, Any]) -> None:
    o["spec"]["api"]["env"] = [{"name": "A", "value": "1", "secretKeyRef": {"name": "s", "key": "k"}}]


def _prod_without_auth(o: dict[str, Any]) -> None:
    del o["spec"]["auth"]


def _auth_two_key_sources(o: dict[str, Any]) -> None:
    o["spec"]["auth"]["jwksUrl"] = "https://idp.example.org/keys"
    o["spec"]["auth"]["sharedSecretRef"] = {"name": "booking-auth", "key": "jwt-secret"}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_prod_without_auth, "spec.auth is required unless spec.environment is dev"),
        (_auth_two_key_sources, "set at most one of jwksUrl, sharedSecretRef"),
        (_min_gt_max, "minReplicas must be <= maxReplicas"),
        (_keda_min_gt_max, "minReplicas must be <= maxReplicas"),
        (_both, "at most one of hpa, keda"),
        (_long_name, "KEDA on consumer pat-test-result"),
        (_long_name_no_keda, "CronJob"),
        (_keda_on_longest, "KEDA on consumer pat-booking-recommend-test"),
        (_no_tag, "set tag or digest"),
        (_sasl_mismatch, "sasl is required"),
        (_env_two_sources, "exactly one of value, secretKeyRef"),
    ],
)
def test_cel_refuses_what_the_model_refuses(mutate: Any, message: str) -> None:
    obj = _prod()
    mutate(obj)
    errors = cel_errors(server_view(obj), SCHEMA)
    assert any(message in m for _, m in errors), errors
    with pytest.raises(InvalidPlatformError):
        parse_platform(obj)


def test_schema_refuses_missing_image_and_bounds() -> None:
    obj = _prod()
    del obj["spec"]["image"]
    with pytest.raises(jsonschema.ValidationError, match="image"):
        server_view(obj)
    obj = _prod()
    obj["spec"]["consumers"]["booking"]["replicas"] = -1
    with pytest.raises(jsonschema.ValidationError):
        server_view(obj)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("issuer", "http://idp.example.org"),  # tokens' keys over plain HTTP: refused
        ("jwksUrl", "http://idp.example.org/keys"),
        ("algorithms", ["HS256"]),  # HS with a provider's public key is the confusion attack
        ("algorithms", ["none"]),
        ("algorithms", []),
    ],
)
def test_schema_refuses_unsafe_auth(field: str, value: Any) -> None:
    obj = _prod()
    obj["spec"]["auth"][field] = value
    with pytest.raises(jsonschema.ValidationError):
        server_view(obj)
    with pytest.raises(InvalidPlatformError):
        parse_platform(obj)


def test_dev_needs_no_auth() -> None:
    obj = _prod()
    del obj["spec"]["auth"]
    obj["spec"]["environment"] = "dev"
    assert cel_errors(server_view(obj), SCHEMA) == []
    assert parse_platform(obj).spec.auth is None


def test_unknown_consumer_is_not_in_the_schema() -> None:
    # The API server prunes undeclared fields, and kubectl's default strict field validation refuses them.
    consumers = SCHEMA["properties"]["spec"]["properties"]["consumers"]
    assert set(consumers["properties"]) == set(names.CONSUMER_NAMES)
    assert "additionalProperties" not in consumers and "x-kubernetes-preserve-unknown-fields" not in consumers
    workers = SCHEMA["properties"]["spec"]["properties"]["workers"]
    assert set(workers["properties"]) == set(names.WORKER_NAMES)


def test_max_name_lengths_for_prod() -> None:
    # With env prod: 40 characters in general (CronJob limit 52), 16 with KEDA on pat-test-result (the seed).
    obj = _prod()
    obj["spec"]["consumers"]["pat-test-result"] = {"replicas": 1}
    obj["metadata"]["name"] = "a" * 40
    assert cel_errors(server_view(obj), SCHEMA) == []
    parse_platform(obj)
    obj["metadata"]["name"] = "a" * 41
    assert cel_errors(server_view(obj), SCHEMA)
    with pytest.raises(InvalidPlatformError):
        parse_platform(obj)


# --- the CRD and the model agree on random valid specs ---------------------------------------------------
_consumer = st.fixed_dictionaries(
    {},
    optional={
        "replicas": st.integers(0, 5),
        "autoscaling": st.sampled_from(
            [
                {},
                {"hpa": {}},
                {"keda": {}},
                {"hpa": {"minReplicas": 2, "maxReplicas": 3}},
                {"keda": {"minReplicas": 0}},
            ]
        ),
        "pdb": st.fixed_dictionaries({"enabled": st.booleans()}),
        "resources": st.sampled_from(
            [{}, {"requests": {"cpu": 1, "memory": "64Mi"}}, {"limits": {"cpu": "2"}}]
        ),
    },
)


@settings(max_examples=25, deadline=None)
@given(
    consumers=st.dictionaries(st.sampled_from(names.CONSUMER_NAMES), _consumer, max_size=4),
    env=st.sampled_from(["prod", "dev", "x"]),
    name=st.sampled_from(["bp", "pat--booking--be", "shop"]),
    with_auth=st.booleans(),
)
def test_crd_and_model_agree(consumers: dict[str, Any], env: str, name: str, with_auth: bool) -> None:
    obj: dict[str, Any] = {
        "metadata": {"name": name},
        "spec": {"environment": env, "image": {"repository": "r", "tag": "t"}, "consumers": consumers},
    }
    if with_auth:
        obj["spec"]["auth"] = {"issuer": "https://idp.example.org", "audience": "api"}
    try:
        platform = parse_platform(obj)
    except InvalidPlatformError:
        # Only name limits and a missing auth outside dev refuse these specs; the CRD must refuse them too.
        assert cel_errors(server_view(obj), SCHEMA)
        return
    defaulted = server_view(obj)
    assert cel_errors(defaulted, SCHEMA) == []
    assert BookingPlatformSpec.model_validate(defaulted["spec"]) == platform.spec
