"""`booking_operator_platform_condition`: each platform's conditions as the operator sees them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from booking_operator import metrics


@dataclass
class State:
    body: dict[str, Any]
    last_status: dict[str, Any] | None = None


@dataclass
class Store:
    items: dict[tuple[str, str], State] = field(default_factory=dict)

    def all_keys(self) -> list[tuple[str, str]]:
        return sorted(self.items)

    def get(self, key: tuple[str, str]) -> State | None:
        return self.items.get(key)


def value(**labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value("booking_operator_platform_condition", labels)


def test_conditions_follow_the_store_including_a_status_read_from_the_body() -> None:
    store = Store()
    metrics.watch_conditions(store)
    degraded = {"conditions": [{"type": "Degraded", "status": "True"}, {"type": "Ready", "status": "False"}]}
    store.items[("ns", "a")] = State(body={}, last_status=degraded)
    # After an operator restart nothing was written yet: the CR's own status counts.
    store.items[("ns", "b")] = State(body={"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    assert value(namespace="ns", platform="a", type="Degraded", status="True") == 1
    assert value(namespace="ns", platform="a", type="Degraded", status="False") == 0
    assert value(namespace="ns", platform="a", type="Ready", status="False") == 1
    assert value(namespace="ns", platform="b", type="Ready", status="True") == 1
    assert value(namespace="ns", platform="b", type="Degraded", status="Unknown") == 1
    del store.items[("ns", "a")]
    assert value(namespace="ns", platform="a", type="Degraded", status="True") is None
