"""The BookingPlatform CustomResourceDefinition, generated from the pydantic spec model.

`booking crd` prints it and crds/ holds its output; a test fails when the two differ, so the model is
the one source of truth. The pydantic JSON schema is turned into a Kubernetes structural schema:
refs inlined, Optional flattened, `title` dropped, `additionalProperties: false` left to pruning,
object defaults reduced to what differs from the nested defaults (the API server applies those).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from booking_operator import names, spec

_DROP = {"title", "additionalProperties", "$ref", "anyOf", "allOf", "default", "const"}


def _models() -> dict[str, type[BaseModel]]:
    """Every spec model class by name (pydantic's $defs key)."""
    found: dict[str, type[BaseModel]] = {}
    stack: list[type[BaseModel]] = [spec.SpecModel]
    while stack:
        cls = stack.pop()
        found[cls.__name__] = cls
        stack += cls.__subclasses__()
    return found


def _prune_default(value: Any) -> Any:
    """Drop None and empty lists (absent means the same) from a default."""
    if isinstance(value, dict):
        return {k: _prune_default(v) for k, v in value.items() if v is not None and v != []}
    return value


def _field_default(model: type[BaseModel], alias: str) -> tuple[bool, Any]:
    """(has a default worth writing, the default) for the model's field with this alias."""
    for name, field in model.model_fields.items():
        if (field.alias or name) != alias and name != alias:
            continue
        if field.is_required():
            return False, None
        value = field.get_default(call_default_factory=True)
        if isinstance(value, BaseModel):
            # Only what differs from the nested defaults: the API server fills in the rest.
            return True, _prune_default(value.model_dump(by_alias=True, exclude_defaults=True, mode="json"))
        if value is None or value == [] or value == {}:
            return False, None
        return True, value
    return False, None


def _convert(
    node: dict[str, Any], defs: dict[str, Any], models: dict[str, type[BaseModel]]
) -> dict[str, Any]:
    """One pydantic JSON-schema node as a structural OpenAPI v3 node."""
    ref = node.get("$ref")
    if ref is not None:
        name = ref.rsplit("/", 1)[-1]
        target = _convert(defs[name], defs, models)
        return {**target, **_convert({k: v for k, v in node.items() if k != "$ref"}, defs, models)}
    if node.get("x-kubernetes-int-or-string"):
        out: dict[str, Any] = {"x-kubernetes-int-or-string": True}
        if "description" in node:
            out["description"] = node["description"]
        # The pattern applies to the string form only, as for Kubernetes' own Quantity fields.
        patterns = [o["pattern"] for o in [node, *node.get("anyOf", [])] if "pattern" in o]
        if patterns:
            out["pattern"] = patterns[0]
        return out
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express {node['anyOf']} in a structural schema")
        inner = _convert(options[0], defs, models)
        return {**inner, **_convert({k: v for k, v in node.items() if k != "anyOf"}, defs, models)}
    out = {k: v for k, v in node.items() if k not in _DROP and k != "properties" and k != "items"}
    if "const" in node:
        out["enum"] = [node["const"]]
    if "items" in node:
        out["items"] = _convert(node["items"], defs, models)
    if "properties" in node:
        model = models.get(node.get("title", ""))
        props: dict[str, Any] = {}
        for key, sub in node["properties"].items():
            prop = _convert(sub, defs, models)
            prop.pop("default", None)
            if model is not None:
                has, value = _field_default(model, key)
                if has:
                    prop["default"] = value
            props[key] = prop
        out["properties"] = props
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        out["additionalProperties"] = _convert(extra, defs, models)
    elif extra is True or (out.get("type") == "object" and "properties" not in out and extra is None):
        # dict[str, Any] (an Affinity passed through): keep what the user wrote.
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def spec_schema() -> dict[str, Any]:
    """The structural OpenAPI schema of `.spec`."""
    raw = spec.BookingPlatformSpec.model_json_schema(by_alias=True, mode="validation")
    return _convert(raw, raw.pop("$defs", {}), _models())


def _escape(prop: str) -> str:
    # Kubernetes CEL escaping for property names that are not identifiers.
    return prop.replace("__", "__underscores__").replace(".", "__dot__").replace("-", "__dash__")


def name_rules() -> list[dict[str, str]]:
    """Root CEL rules: every name derived from metadata.name and spec.environment fits its limit."""
    name, env = "size(self.metadata.name)", "size(self.spec.environment)"
    rules = [
        {
            "rule": f"self.metadata.name.matches('{spec.CR_NAME}')",
            "message": "metadata.name must be a DNS-1035 label: lowercase, starting with a letter",
        }
    ]
    for lim in names.BASE_LIMITS:
        used = f"{name} + {env}" if lim.with_env else name
        rules.append(
            {
                "rule": f"{used} <= {lim.budget()}",
                "message": f"metadata.name is too long for {lim.what} (at most {lim.limit} characters)",
            }
        )
    for consumer in names.CONSUMER_NAMES:
        lim = names.keda_limit(consumer)
        c = f"self.spec.consumers.{_escape(consumer)}"
        rules.append(
            {
                "rule": (
                    f"!has(self.spec.consumers) || !has({c}) || !has({c}.autoscaling) || "
                    f"!has({c}.autoscaling.keda) || {name} + {env} <= {lim.budget()}"
                ),
                "message": (
                    f"metadata.name is too long for KEDA on consumer {consumer}: {lim.what} must be at most "
                    f"{lim.limit} characters, so name + environment may be {lim.budget()}"
                ),
            }
        )
    return rules


def status_schema() -> dict[str, Any]:
    """`.status`, written by the reconciler; unknown fields are kept for kopf's own bookkeeping."""
    condition = {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": {"type": "string"},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string"},
            "message": {"type": "string"},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
            "observedGeneration": {"type": "integer"},
        },
    }
    workload = {
        "type": "object",
        "required": ["component"],
        "properties": {
            "component": {"type": "string"},
            "kind": {"type": "string"},
            "name": {"type": "string"},
            "autoscaler": {"type": "string", "description": "hpa, keda or empty"},
            "desiredReplicas": {"type": "integer"},
            "readyReplicas": {"type": "integer"},
        },
    }
    return {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "properties": {
            "observedGeneration": {"type": "integer"},
            "components": {"type": "string", "description": "ready/total workloads, e.g. 14/14"},
            "autoscaling": {
                "type": "string",
                "description": "e.g. 'hpa:1 keda:1' or 'hpa:2 (keda fallback)'",
            },
            "kedaAvailable": {"type": "boolean"},
            "conditions": {
                "type": "array",
                "items": condition,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "workloads": {
                "type": "array",
                "items": workload,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["component"],
            },
        },
    }


PRINTER_COLUMNS = [
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Components", "type": "string", "jsonPath": ".status.components"},
    {"name": "Autoscaling", "type": "string", "jsonPath": ".status.autoscaling"},
    {"name": "Environment", "type": "string", "jsonPath": ".spec.environment", "priority": 1},
    {"name": "Paused", "type": "boolean", "jsonPath": ".spec.paused", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def build_crd() -> dict[str, Any]:
    """The whole CustomResourceDefinition as a dict."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": names.CRD_NAME, "labels": {names.LABEL_PART_OF: names.APP_NAME}},
        "spec": {
            "group": names.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": names.KIND,
                "listKind": f"{names.KIND}List",
                "plural": names.PLURAL,
                "singular": names.SINGULAR,
                "shortNames": list(names.SHORT_NAMES),
                "categories": ["booking"],
            },
            "versions": [
                {
                    "name": names.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "One environment of the patient-booking platform.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                            "x-kubernetes-validations": name_rules(),
                        }
                    },
                }
            ],
        },
    }
