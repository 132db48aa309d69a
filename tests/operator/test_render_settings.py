"""`spec.lis` reaches the lis-testresult consumer and `spec.api.edge` the API, as the env they read.

Both are optional: the production example sets neither and renders no extra variable (it stays the seed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from booking_api.settings import ApiSettings
from booking_consumers.handlers.lis_config import parse_options
from booking_consumers.settings import ConsumerSettings
from booking_operator.render import render
from booking_operator.spec import InvalidPlatformError, parse_platform
from booking_testing.overlay import deep_merge

ROOT = Path(__file__).resolve().parents[2]
PROD = ROOT / "manifests" / "examples" / "pat-booking-be-prod.yaml"
CR = "pat--booking--be"
LIS = f"{CR}--consumer-lis-testresult--prod"
API = f"{CR}--app--prod"
EDGE_VARS = {
    "BOOKING_TRUSTED_PROXIES",
    "BOOKING_MAX_BODY_BYTES",
    "BOOKING_MAX_HEADER_BYTES",
    "BOOKING_HTTP_PARSER",
    "BOOKING_RATE_LIMIT_ENABLED",
    "BOOKING_RATE_LIMIT_PER_CLIENT",
    "BOOKING_RATE_LIMIT_PER_SUBJECT",
    "BOOKING_RATE_LIMIT_AUTH_FAILURES",
    "BOOKING_RATE_LIMIT_KEY_PREFIX",
}
LIS_VARS = {"BOOKING_LIS_DEFAULT_TIME_ZONE", "BOOKING_LIS_FACILITY_TIME_ZONES"}


def _prod() -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load(PROD.read_text())
    return obj


def _envs(obj: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Each Deployment's main container env by name, and the API's migrate init container's."""
    out = {}
    for m in render(parse_platform(obj)):
        if m["kind"] == "Deployment":
            pod = m["spec"]["template"]["spec"]
            for c in [*pod.get("initContainers", []), pod["containers"][0]]:
                key = m["metadata"]["name"] + ("/migrate" if c["name"] == "migrate" else "")
                out[key] = {e["name"]: e for e in c.get("env", [])}
    return out


def _read_into(monkeypatch: pytest.MonkeyPatch, env: dict[str, dict[str, Any]]) -> None:
    for name, e in env.items():
        if "value" in e:
            monkeypatch.setenv(name, e["value"])


def test_the_production_example_renders_no_lis_or_edge_setting() -> None:
    envs = _envs(_prod())
    assert len(envs) == 15  # 14 Deployments and the API's migrate container
    for name, env in envs.items():
        assert not (set(env) & (LIS_VARS | EDGE_VARS)), name


def test_spec_lis_reaches_the_lis_consumer_as_the_zones_it_parses_with(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    obj = _prod()
    obj["spec"]["lis"] = {
        "defaultTimeZone": "Asia/Ho_Chi_Minh",
        "facilityTimeZones": {"CENTRAL-LAB": "Asia/Ho_Chi_Minh", "BERLIN LAB": "Europe/Berlin"},
    }
    envs = _envs(obj)
    lis = envs[LIS]
    assert lis["BOOKING_LIS_DEFAULT_TIME_ZONE"] == {
        "name": "BOOKING_LIS_DEFAULT_TIME_ZONE",
        "value": "Asia/Ho_Chi_Minh",
    }
    assert [n for n, env in envs.items() if set(env) & LIS_VARS] == [LIS]  # nobody else parses HL7
    _read_into(monkeypatch, lis)
    options = parse_options(ConsumerSettings())
    assert str(options.default_zone) == "Asia/Ho_Chi_Minh"
    assert {k: str(v) for k, v in options.facility_zones.items()} == {
        "BERLIN LAB": "Europe/Berlin",
        "CENTRAL-LAB": "Asia/Ho_Chi_Minh",
    }
    # Only a default: one variable, no empty map.
    obj["spec"]["lis"] = {"defaultTimeZone": "UTC"}
    assert set(_envs(obj)[LIS]) & LIS_VARS == {"BOOKING_LIS_DEFAULT_TIME_ZONE"}


def test_a_components_own_env_still_overrides_the_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    obj = _prod()
    obj["spec"]["lis"] = {"defaultTimeZone": "Asia/Ho_Chi_Minh"}
    obj["spec"]["consumers"]["lis-testresult"]["env"] = [
        {"name": "BOOKING_LIS_DEFAULT_TIME_ZONE", "value": "UTC"}
    ]
    assert _envs(obj)[LIS]["BOOKING_LIS_DEFAULT_TIME_ZONE"]["value"] == "UTC"


def test_spec_api_edge_reaches_the_api_as_the_settings_it_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    obj = _prod()
    obj["spec"]["api"]["edge"] = {
        "trustedProxies": ["10.0.0.0/8", "fd00::/8", "192.168.1.10"],
        "maxBodyBytes": 2_097_152,
        "maxHeaderBytes": 16_384,
        "httpParser": "h11",
        "rateLimits": {
            "enabled": False,
            "perClient": "1200/minute",
            "perSubject": "10 per second",
            "authFailures": "5/minute",
            "keyPrefix": "prod-ratelimit",
        },
    }
    envs = _envs(obj)
    api = envs[API]
    assert set(api) >= EDGE_VARS
    assert [n for n, env in envs.items() if set(env) & EDGE_VARS] == [API]  # not the migrate container
    _read_into(monkeypatch, api)
    settings = ApiSettings()
    assert settings.trusted_proxies == "10.0.0.0/8,fd00::/8,192.168.1.10"
    assert (settings.max_body_bytes, settings.max_header_bytes, settings.http_parser) == (
        2_097_152,
        16_384,
        "h11",
    )
    assert settings.rate_limit_enabled is False
    assert (
        settings.rate_limit_per_client,
        settings.rate_limit_per_subject,
        settings.rate_limit_auth_failures,
    ) == (
        "1200/minute",
        "10 per second",
        "5/minute",
    )
    assert settings.rate_limit_key_prefix == "prod-ratelimit"
    # The proxies are what uvicorn's middleware trusts: the network and the address, parsed as such.
    from uvicorn.middleware.proxy_headers import _TrustedHosts

    trusted = _TrustedHosts(settings.trusted_proxies)
    assert "10.1.2.3" in trusted and "192.168.1.10" in trusted and "192.168.1.11" not in trusted


def test_only_what_is_set_is_rendered() -> None:
    obj = _prod()
    obj["spec"]["api"]["edge"] = {"trustedProxies": ["10.0.0.0/8"], "rateLimits": {"enabled": True}}
    rendered = set(_envs(obj)[API]) & EDGE_VARS
    assert rendered == {"BOOKING_TRUSTED_PROXIES", "BOOKING_RATE_LIMIT_ENABLED"}
    assert _envs(obj)[API]["BOOKING_RATE_LIMIT_ENABLED"]["value"] == "true"


@pytest.mark.parametrize(
    ("path", "value", "field", "says"),
    [
        (
            ("lis", "defaultTimeZone"),
            "Mars/Base",
            "spec.lis.defaultTimeZone",
            "'Mars/Base' is not an IANA time zone",
        ),
        (("lis", "defaultTimeZone"), "Asia Ho Chi Minh", "spec.lis.defaultTimeZone", "should match pattern"),
        (
            ("lis", "facilityTimeZones"),
            {"LAB": "UTC+7"},
            "spec.lis.facilityTimeZones.LAB",
            "is not an IANA time zone",
        ),
        (("lis", "facilityTimeZones"), {"LAB": "Asia/Saigonn"}, "spec.lis.facilityTimeZones.LAB", "IANA"),
        (("lis", "facilityTimeZones"), {"L" * 101: "UTC"}, "spec.lis", "1 to 100 characters"),
        (("api", "edge", "trustedProxies"), ["10.0.0.1/8"], "spec.api.edge.trustedProxies.0", "10.0.0.0/8"),
        (("api", "edge", "trustedProxies"), ["ingress.local"], "spec.api.edge.trustedProxies.0", "pattern"),
        (
            ("api", "edge", "rateLimits"),
            {"perClient": "5 per fortnight"},
            "spec.api.edge.rateLimits.perClient",
            "limits notation",
        ),
        (
            ("api", "edge", "rateLimits"),
            {"perClient": "0/minute"},
            "spec.api.edge.rateLimits.perClient",
            "pattern",
        ),
        (("api", "edge", "maxBodyBytes"), 10, "spec.api.edge.maxBodyBytes", "greater than or equal to 1024"),
        (("api", "edge", "httpParser"), "httpx", "spec.api.edge.httpParser", "'h11' or 'httptools'"),
    ],
)
def test_bad_values_are_refused_naming_the_field(
    path: tuple[str, ...], value: Any, field: str, says: str
) -> None:
    obj = _prod()
    node = obj["spec"]
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    with pytest.raises(InvalidPlatformError) as info:
        parse_platform(obj)
    assert [(p, m) for p, m in info.value.problems if p == field and says in m], info.value.problems


def test_the_kind_platform_sets_the_zone_through_the_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    overlay = yaml.safe_load((ROOT / "e2e" / "kind" / "platform.yaml").read_text())
    obj = deep_merge(_prod(), overlay)
    assert "env" not in obj["spec"]["consumers"]["lis-testresult"]  # no hand-set override any more
    lis = _envs(obj)[LIS]
    _read_into(monkeypatch, lis)
    assert str(parse_options(ConsumerSettings()).default_zone) == "Asia/Ho_Chi_Minh"
