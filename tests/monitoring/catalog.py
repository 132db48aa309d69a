"""What the monitoring tests share: the rule file, promtool, and the metric names the code registers."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "manifests" / "monitoring"
RULE_FILE = MONITORING / "prometheusrule.yaml"
DASHBOARD = MONITORING / "dashboards" / "pat-booking-be.json"
DOC = ROOT / "docs" / "observability.md"

# Metrics other programs export that the rules and the dashboard may query.
EXTERNAL_PREFIXES = ("kube_", "otelcol_")
EXTERNAL = {"up"}
# Pushed by `booking cron` to the Pushgateway (booking_workers.cron_report), in registries of their own.
PUSHED = {
    "booking_cron_task_last_run_timestamp_seconds",
    "booking_cron_task_last_run_ok",
    "booking_cron_task_last_run_duration_seconds",
    "booking_cron_task_last_success_timestamp_seconds",
}
PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "offset", "inf", "nan",
}  # fmt: skip


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def need_tool(name: str) -> str:
    """The path of a Debian-packaged tool; a skip (or a failure with CI=true) naming how to get it."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} not installed: `make provision` installs Debian's prometheus packages"
        if _in_ci():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return path


def rule_groups() -> list[dict[str, Any]]:
    """The PrometheusRule's groups, the plain rule-file format promtool reads."""
    groups: list[dict[str, Any]] = yaml.safe_load(RULE_FILE.read_text())["spec"]["groups"]
    return groups


def registered_metric_names() -> set[str]:
    """Every sample name the processes can expose, from the code's registries."""
    # Importing the modules registers their metrics on the default registry.
    from prometheus_client import REGISTRY

    import booking_api.metrics  # noqa: F401
    import booking_consumers.metrics  # noqa: F401
    import booking_core.observability.metrics  # noqa: F401
    import booking_operator.metrics
    import booking_workers.metrics  # noqa: F401

    names: set[str] = set()
    for registry in (REGISTRY, booking_operator.metrics.REGISTRY):
        for family in registry.collect():
            suffixes = {
                "counter": ("_total", "_created"),
                "histogram": ("_bucket", "_count", "_sum", "_created"),
                "summary": ("_count", "_sum", "_created"),
            }.get(family.type, ("",))
            names.update(family.name + s for s in suffixes)
    return names


def metric_names_in(expr: str) -> set[str]:
    """The metric (and recorded series) names a PromQL expression selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range durations
    text = re.sub(r"\boffset\s+-?\w+", " ", text)  # offset durations
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        word = m.group(0)
        rest = text[m.end() :].lstrip()
        if rest.startswith("(") or word.lower() in PROMQL_WORDS:
            continue  # a function or an aggregation
        if text[: m.start()].endswith(("$", ".")) or re.fullmatch(r"\d+[smhdwy]?", word):
            continue
        names.add(word)
    return names


def known(name: str, registered: set[str], recorded: set[str]) -> bool:
    """True when `name` is exported by our code, recorded by our rules, or a known external metric."""
    return (
        name in registered
        or name in recorded
        or name in PUSHED
        or name in EXTERNAL
        or name.startswith(EXTERNAL_PREFIXES)
    )
