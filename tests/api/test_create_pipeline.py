"""Creates that arrive together are sent together (booking_api.pipeline): the same statement of requests
in one turn of the event loop goes to PostgreSQL in one round trip and one transaction, and every request
is answered as if it had been alone: no overbooking, a retry with the same key replays, the same patient
twice on a slot is 409; a batch that fails is run again one statement at a time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from booking_core.db.models import Booking, IdempotencyKey, OutboxMessage, Patient, Service, Slot

from .conftest import Api, make_api, prod_like_settings

Create = tuple[str, str, str]  # (patient, slot, Idempotency-Key)


@pytest.fixture
def pg_api(postgres_url: str) -> Iterator[Api]:
    """The app on PostgreSQL, where creates run on asyncpg (SQLite runs them on the thread pool)."""
    yield from make_api(postgres_url, prod_like_settings(postgres_url))


def _patients(api: Api, n: int) -> list[str]:
    ids = [f"pipeline-{i:02d}" for i in range(n)]
    with api.sessions() as s:
        s.add_all([Patient(id=p, tier="standard") for p in ids])
        s.commit()
    for p in ids:  # the token verified once: later requests take the plain path, as in production
        assert api.client.get("/api/v1/bookings", headers=api.auth(p)).status_code == 200
    return ids


def _slots(api: Api, n: int, capacity: int) -> list[str]:
    start = (datetime.now(UTC) + timedelta(days=5)).replace(microsecond=0)
    with api.sessions() as s:
        service = s.scalars(select(Service).where(Service.code == "blood-draw")).one()
        rows = [
            Slot(
                clinic_id=api.world.clinic_id,
                service_id=service.id,
                starts_at=start + timedelta(minutes=15 * i),
                ends_at=start + timedelta(minutes=15 * (i + 1)),
                capacity=capacity,
            )
            for i in range(n)
        ]
        s.add_all(rows)
        s.commit()
        return [r.id for r in rows]


def _together(api: Api, creates: list[Create]) -> list[httpx.Response]:
    """POST /bookings for every create at once, on the app's own event loop."""
    app = api.client.app
    headers = {p: {**api.auth(p), "Content-Type": "application/json"} for p, _, _ in creates}

    async def send() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await asyncio.gather(
                *(
                    client.post(
                        "/api/v1/bookings",
                        json={"slot_id": slot},
                        headers={**headers[patient], "Idempotency-Key": key},
                    )
                    for patient, slot, key in creates
                )
            )

    portal = api.client.portal
    assert portal is not None
    return portal.call(send)


def _exported(api: Api, name: str) -> float:
    """A sample of the app's /metrics (0 before the first observation)."""
    for line in api.client.get("/metrics").text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return 0.0


def _pipeline_counts(api: Api) -> tuple[float, float, float]:
    """(batches, statements in them, batches split) the app's pipeline has sent, from its /metrics."""
    return (
        _exported(api, "booking_api_db_batch_statements_count"),
        _exported(api, "booking_api_db_batch_statements_sum"),
        _exported(api, "booking_api_db_batches_split_total"),
    )


def test_creates_sent_together_take_each_place_once(pg_api: Api) -> None:
    patients = _patients(pg_api, 8)
    (slot,) = _slots(pg_api, 1, capacity=3)
    before = _pipeline_counts(pg_api)

    answers = _together(pg_api, [(p, slot, str(uuid.uuid4())) for p in patients])

    assert Counter(r.status_code for r in answers) == {201: 3, 409: 5}, [r.text for r in answers]
    assert pg_api.booked(slot) == 3
    with pg_api.sessions() as s:
        booked = set(s.scalars(select(Booking.patient_id).where(Booking.slot_id == slot)))
        ids = set(s.scalars(select(Booking.id).where(Booking.slot_id == slot)))
        events = s.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.key.in_(ids)))
    assert booked == {p for p, r in zip(patients, answers, strict=True) if r.status_code == 201}
    assert events == 3
    batches, statements, _ = (a - b for a, b in zip(_pipeline_counts(pg_api), before, strict=True))
    # 8 reads and 8 writes: sent together, in fewer round trips than statements.
    assert statements == 16
    assert batches < statements


def test_a_batch_that_fails_is_run_again_alone_and_each_answers_for_itself(pg_api: Api) -> None:
    patients = _patients(pg_api, 6)
    slots = _slots(pg_api, 6, capacity=5)
    retry_key, twice_key = str(uuid.uuid4()), str(uuid.uuid4())
    creates: list[Create] = [
        *((p, s, str(uuid.uuid4())) for p, s in zip(patients[2:], slots[2:], strict=True)),
        (patients[0], slots[0], retry_key),
        (patients[0], slots[0], retry_key),  # a retry racing its first request: one booking, replayed
        (patients[1], slots[1], twice_key),
        (patients[1], slots[1], str(uuid.uuid4())),  # the same patient again, another key: 409
    ]
    _, _, split_before = _pipeline_counts(pg_api)

    answers = _together(pg_api, creates)

    assert [r.status_code for r in answers[:4]] == [201] * 4, [r.text for r in answers]
    assert all(pg_api.booked(s) == 1 for s in slots[2:])
    retried = answers[4:6]
    assert [r.status_code for r in retried] == [201, 201], [r.text for r in retried]
    assert retried[0].json() == retried[1].json()
    assert sorted(r.headers.get("Idempotent-Replayed", "") for r in retried) == ["", "true"]
    assert pg_api.booked(slots[0]) == 1
    assert sorted(r.status_code for r in answers[6:]) == [201, 409], [r.text for r in answers[6:]]
    assert pg_api.booked(slots[1]) == 1
    with pg_api.sessions() as s:
        keys = s.scalar(
            select(func.count()).select_from(IdempotencyKey).where(IdempotencyKey.key == retry_key)
        )
    assert keys == 1
    # The key's second insert failed inside a batch: the batch was rolled back and run statement by
    # statement, so the other creates in it were not lost.
    assert _pipeline_counts(pg_api)[2] > split_before


def test_each_patient_still_needs_their_own_token(pg_api: Api) -> None:
    """A batch carries each request's own patient: nobody's create is made in another's name."""
    patients = _patients(pg_api, 4)
    slots = _slots(pg_api, 4, capacity=2)
    answers = _together(pg_api, [(p, s, str(uuid.uuid4())) for p, s in zip(patients, slots, strict=True)])
    assert [r.status_code for r in answers] == [201] * 4
    with pg_api.sessions() as s:
        owners = dict(
            s.execute(select(Booking.slot_id, Booking.patient_id).where(Booking.slot_id.in_(slots))).all()
        )
    assert owners == dict(zip(slots, patients, strict=True))
    for patient, answer in zip(patients, answers, strict=True):
        mine = pg_api.client.get(f"/api/v1/bookings/{answer.json()['id']}", headers=pg_api.auth(patient))
        assert mine.status_code == 200
