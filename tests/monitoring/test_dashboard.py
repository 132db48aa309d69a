"""The Grafana dashboard: valid JSON of the expected shape, one row per priority, real metrics only."""

from __future__ import annotations

import json
from typing import Any

import yaml
from tests.monitoring.catalog import (
    DASHBOARD,
    MONITORING,
    known,
    metric_names_in,
    registered_metric_names,
    rule_groups,
)

ROWS = [
    "API response times",
    "Booking success rate",
    "Appointment confirmation latency",
    "Test result delivery time",
    "Notification delivery success",
    "Cron job success rate",
    "Trace collection lag",
    "Consumers and platform",
]
PANEL_TYPES = {"timeseries", "stat", "bargauge", "gauge", "table", "heatmap"}


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _panels() -> list[dict[str, Any]]:
    return [p for p in _dashboard()["panels"] if p["type"] != "row"]


def test_dashboard_has_one_row_per_priority_in_order() -> None:
    d = _dashboard()
    assert d["uid"] and d["title"] and d["schemaVersion"] >= 36
    assert [p["title"] for p in d["panels"] if p["type"] == "row"] == ROWS
    assert d["panels"][0]["type"] == "row"  # every panel sits under a priority's row


def test_every_panel_has_a_datasource_targets_and_a_description() -> None:
    variables = {v["name"] for v in _dashboard()["templating"]["list"]}
    assert {"datasource", "namespace"} <= variables
    ids = set()
    for p in _panels():
        assert p["type"] in PANEL_TYPES, p["title"]
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["description"], p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["expr"].strip() and t["refId"], p["title"]
        grid = p["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, p["title"]
        assert p["id"] not in ids
        ids.add(p["id"])


def test_no_two_panels_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for p in _dashboard()["panels"]:
        g = p["gridPos"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, p["title"]
        cells |= mine


def test_every_queried_metric_exists() -> None:
    registered = registered_metric_names()
    recorded = {r["record"] for g in rule_groups() for r in g["rules"] if "record" in r}
    unknown = {
        (p["title"], name)
        for p in _panels()
        for t in p["targets"]
        for name in metric_names_in(t["expr"])
        if not known(name, registered, recorded)
    }
    assert unknown == set()


def test_panels_filter_on_the_namespace_variable() -> None:
    for p in _panels():
        for t in p["targets"]:
            assert '"$namespace"' in t["expr"], (p["title"], t["expr"])


def test_the_dashboard_ships_as_a_configmap_for_the_grafana_sidecar() -> None:
    kust = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    (gen,) = kust["configMapGenerator"]
    assert gen["options"]["labels"]["grafana_dashboard"] == "1"
    assert gen["options"]["disableNameSuffixHash"] is True
    assert [MONITORING / f for f in gen["files"]] == [DASHBOARD]
