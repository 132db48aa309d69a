"""One topology: every place that names a consumer, topic, group, queue or workload reads one table."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from booking_consumers.settings import ConsumerSettings
from booking_core import cli, topology
from booking_core.topology import CONSUMERS, WORKERS

ROOT = Path(__file__).resolve().parents[2]
PROD = ROOT / "manifests" / "examples" / "pat-booking-be-prod.yaml"


def test_cli_choices_are_the_topology() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    choices = sub.choices  # type: ignore[attr-defined]
    assert tuple(choices["consumer"]._actions[-1].choices) == tuple(CONSUMERS)
    assert tuple(choices["worker"]._actions[-1].choices) == tuple(WORKERS)


def test_spec_and_workloads_are_the_topology() -> None:
    from booking_operator import names
    from booking_operator.spec import ComponentId, ConsumersSpec, WorkersSpec

    assert [n for n, _ in ConsumersSpec().items()] == sorted(CONSUMERS)
    assert [n for n, _ in WorkersSpec().items()] == list(WORKERS)
    assert set(typing.get_args(ComponentId)) >= {names.consumer_component(c) for c in CONSUMERS} | {
        names.worker_component(w) for w in WORKERS
    }


def test_handler_registry_is_the_topology() -> None:
    from booking_consumers.handlers.registry import definition

    for name in CONSUMERS:
        assert definition(name).name == name
    with pytest.raises(KeyError):
        definition("no-such-consumer")


def _block(text: str) -> str:
    m = re.search(r"<!-- topology:begin[^>]*-->\n(.*?)\n<!-- topology:end -->", text, re.S)
    assert m, "docs/events.md lost its topology block"
    return m.group(1)


def test_docs_carry_the_topology() -> None:
    from booking_operator import names

    docs = (ROOT / "docs" / "events.md").read_text()
    assert _block(docs) == topology.docs_table(), (
        "docs/events.md is stale; replace its topology block with booking_core.topology.docs_table():\n"
        + topology.docs_table()
    )
    for c in CONSUMERS:  # the workload column is the operator's name, not a copy of its pattern
        assert f"`{names.consumer_name('<cr>', '<env>', c)}`" in docs
    for w in WORKERS:
        assert f"`{names.worker_name('<cr>', '<env>', w)}`" in docs


def _render(prefix: str, env_override: str | None) -> list[dict[str, Any]]:
    from booking_operator.render import render
    from booking_operator.spec import parse_platform

    body = yaml.safe_load(PROD.read_text())
    body["metadata"]["name"] = "pb"  # short: every consumer gets a ScaledObject (KEDA's 63-char names)
    body["spec"]["connections"]["kafka"]["topicPrefix"] = prefix
    consumers = body["spec"].setdefault("consumers", {})
    for name in CONSUMERS:
        consumers.setdefault(name, {})["autoscaling"] = {"keda": {"minReplicas": 1, "maxReplicas": 3}}
        if env_override is not None:
            consumers[name]["env"] = [{"name": "BOOKING_KAFKA_TOPIC_PREFIX", "value": env_override}]
    return render(parse_platform(body), keda_available=True)


@pytest.mark.parametrize(
    ("prefix", "env_override"), [("", None), ("stg.", None), ("", "evil."), ("qa.", "other.")]
)
def test_keda_measures_the_group_the_consumer_reads_as(prefix: str, env_override: str | None) -> None:
    from booking_consumers.main import group_id

    manifests = _render(prefix, env_override)
    deployments = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Deployment"}
    scaled = [m for m in manifests if m["kind"] == "ScaledObject"]
    assert len(scaled) == len(CONSUMERS)
    for so in scaled:
        trigger = so["spec"]["triggers"][0]["metadata"]
        target = deployments[so["spec"]["scaleTargetRef"]["name"]]
        container = target["spec"]["template"]["spec"]["containers"][0]
        args = container.get("args") or container.get("command")
        name = args[args.index("consumer") + 1]
        # The settings the consumer process builds from the env the operator gave it.
        env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        settings = ConsumerSettings(
            kafka_topic_prefix=env.get("BOOKING_KAFKA_TOPIC_PREFIX", ""), database_url="sqlite://"
        )
        assert trigger["consumerGroup"] == group_id(settings, name)
        assert trigger["topic"] == CONSUMERS[name].topic_for(settings.kafka_topic_prefix)
        assert trigger["consumerGroup"] == f"{prefix}pat-booking-be.{name}"
