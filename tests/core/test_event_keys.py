"""No event we produce is keyed by a patient identifier (Kafka keys are opaque ids, never PHI).

Every registered event type is built from its own field definitions (so a new type is covered without
editing this file), once with only the required fields and once with every field set, and staged through
`add_event`, which is what the relay publishes: the row's key is the Kafka key.
"""

from __future__ import annotations

import importlib
import pkgutil
import types
import typing
from datetime import UTC, date, datetime
from typing import Any

import pytest
from pydantic import AwareDatetime
from pydantic.fields import FieldInfo

import booking_core.events as events_pkg
from booking_core.db.models import OutboxMessage
from booking_core.events import REGISTRY, EventPayload
from booking_core.events.recommendations import RecommendationRequested
from booking_core.outbox import PATIENT_ID_FIELDS, PhiKeyError, add_event

# Import every event module, so types registered outside the package's __init__ are included.
for _mod in pkgutil.iter_modules(events_pkg.__path__):
    importlib.import_module(f"{events_pkg.__name__}.{_mod.name}")

PATIENT = "PATIENT-7f3a-not-a-key"
NOW = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)

# Consumed, never produced here: the customer database keys its own topic by customer id, which is the
# patient id. `add_event` refuses it, so no code path of ours can put it on Kafka under that key.
PRODUCED_ELSEWHERE_KEYED_BY_PATIENT = {("customer.upserted", 1)}


class _Session:
    """`add_event` only calls `add`; staging needs no database."""

    def __init__(self) -> None:
        self.rows: list[OutboxMessage] = []

    def add(self, row: OutboxMessage) -> None:
        self.rows.append(row)


def _value(name: str, annotation: Any, max_length: int | None = None) -> Any:
    """A valid sample for one field; patient-identifier fields get the patient id."""
    if name in PATIENT_ID_FIELDS:
        return PATIENT
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        return _value(name, args[0], max_length)
    if origin is typing.Literal:
        return args[0]
    if origin in (tuple, list):
        return (f"{name}-1",)
    if annotation is bool:
        return True
    if annotation is int:
        return 1
    if annotation is float:
        return 1.5
    if annotation in (datetime, AwareDatetime):
        return NOW
    if annotation is date:
        return date(1966, 4, 23)
    if annotation is str:
        return f"{name}-sample"[:max_length]
    raise AssertionError(f"no sample for field {name}: {annotation!r}; extend _value")


def _max_length(info: FieldInfo) -> int | None:
    return next((m.max_length for m in info.metadata if getattr(m, "max_length", None)), None)


def _sample(cls: type[EventPayload], *, every_field: bool) -> EventPayload:
    fields: dict[str, FieldInfo] = cls.model_fields
    data = {
        name: _value(name, info.annotation, _max_length(info))
        for name, info in fields.items()
        if every_field or info.is_required() or name in PATIENT_ID_FIELDS
    }
    return cls.model_validate(data)


CASES = [
    pytest.param(cls, every, id=f"{t}-v{v}-{'all' if every else 'required'}")
    for (t, v), cls in sorted(REGISTRY.items())
    for every in (False, True)
]


def test_every_event_module_is_registered() -> None:
    expected = {
        "booking.requested",
        "appointment.updated",
        "customer.upserted",
        "master_data.test_upserted",
        "recommendation.requested",
        "lab_results.stored",
    }
    assert expected <= {t for t, _ in REGISTRY}


@pytest.mark.parametrize(("cls", "every_field"), CASES)
def test_no_outbox_key_is_the_patient_id_of_its_payload(cls: type[EventPayload], every_field: bool) -> None:
    payload = _sample(cls, every_field=every_field)
    session = _Session()
    if (cls.event_type, cls.version) in PRODUCED_ELSEWHERE_KEYED_BY_PATIENT:
        with pytest.raises(PhiKeyError):
            add_event(session, payload, occurred_at=NOW)  # type: ignore[arg-type]
        assert session.rows == []
        return
    row = add_event(session, payload, occurred_at=NOW)  # type: ignore[arg-type]
    assert row.key == payload.aggregate_id() == row.payload["aggregate_id"]
    assert row.key
    assert row.key != PATIENT
    assert PATIENT not in row.key  # not embedded either ("patient:<id>", "<id>|...")


def test_add_event_refuses_a_key_that_is_the_patient_id() -> None:
    # An event type that keyed by patient would be stopped at the outbox, whatever its tests say.
    with pytest.raises(PhiKeyError) as err:
        add_event(
            _Session(),  # type: ignore[arg-type]
            RecommendationRequested(patient_id=PATIENT, request_id=PATIENT),
            occurred_at=NOW,
        )
    assert PATIENT not in str(err.value)


def test_recommendation_requests_are_keyed_by_booking_else_by_request_id() -> None:
    by_booking = RecommendationRequested(patient_id=PATIENT, booking_id="bk-1")
    on_demand = RecommendationRequested(patient_id=PATIENT)
    assert by_booking.aggregate_id() == "bk-1"
    assert on_demand.aggregate_id() == on_demand.request_id != PATIENT
    # The request id travels in the payload, so a consumer sees the key it was published under.
    again = RecommendationRequested.model_validate(on_demand.model_dump(mode="json"))
    assert again.aggregate_id() == on_demand.aggregate_id()
    # Requests from producers that predate request_id still decode.
    assert RecommendationRequested.model_validate({"patient_id": PATIENT}).request_id
