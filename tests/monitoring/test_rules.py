"""The PrometheusRule: promtool checks it and runs its unit tests; every rule names real metrics."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml
from tests.monitoring.catalog import (
    DOC,
    known,
    metric_names_in,
    need_tool,
    registered_metric_names,
    rule_groups,
)

HERE = Path(__file__).parent


def _write_rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups()}, sort_keys=False))
    return path


def _alerts() -> dict[str, dict]:
    return {r["alert"]: r for g in rule_groups() for r in g["rules"] if "alert" in r}


def test_promtool_check_rules(tmp_path: Path) -> None:
    promtool = need_tool("promtool")
    res = subprocess.run(
        [promtool, "check", "rules", str(_write_rules(tmp_path))], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_promtool_test_rules(tmp_path: Path) -> None:
    """The unit tests in rules_test.yaml, with each expected alert's static annotations from its rule."""
    promtool = need_tool("promtool")
    _write_rules(tmp_path)
    alerts = _alerts()
    cases = yaml.safe_load((HERE / "rules_test.yaml").read_text())
    for test in cases["tests"]:
        for case in test.get("alert_rule_test", []):
            rule = alerts[case["alertname"]]
            for exp in case["exp_alerts"]:
                notes = exp.setdefault("exp_annotations", {})
                for key in ("description", "runbook_url"):
                    notes[key] = rule["annotations"][key]
    test_file = tmp_path / "rules_test.yaml"
    test_file.write_text(yaml.safe_dump(cases, sort_keys=False))
    res = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_alert_is_unit_tested_firing() -> None:
    cases = yaml.safe_load((HERE / "rules_test.yaml").read_text())
    fired = {c["alertname"] for t in cases["tests"] for c in t.get("alert_rule_test", []) if c["exp_alerts"]}
    assert set(_alerts()) - fired == set()


def test_rules_query_metrics_that_exist() -> None:
    registered = registered_metric_names()
    recorded = {r["record"] for g in rule_groups() for r in g["rules"] if "record" in r}
    unknown = {
        (r.get("record") or r.get("alert"), name)
        for g in rule_groups()
        for r in g["rules"]
        for name in metric_names_in(r["expr"])
        if not known(name, registered, recorded)
    }
    assert unknown == set()


def test_alerts_have_severity_summary_and_a_runbook_section_that_exists() -> None:
    doc = DOC.read_text()
    anchors = {_slug(h) for h in re.findall(r"^#+\s+(.+?)\s*$", doc, flags=re.M)}
    for name, rule in _alerts().items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"], name
        url = notes["runbook_url"]
        assert url.split("#")[0].endswith("docs/observability.md"), name
        assert url.split("#")[1] in anchors, (
            f"{name}: no section #{url.split('#')[1]} in docs/observability.md"
        )


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
