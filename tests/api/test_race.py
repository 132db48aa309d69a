"""No overbooking under a real race: >=100 concurrent attempts through `booking api` with several workers."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from booking_api.settings import ApiSettings
from booking_core.db.models import Booking, OutboxMessage, Patient, Slot
from booking_core.db.session import make_engine, make_session_factory

from .conftest import api_process, seed_world, token_for

ATTEMPTS = 120
WORKERS = 4


@pytest.fixture
def server(postgres_url: str) -> Iterator[tuple[str, str]]:
    """`booking api` with several uvicorn workers on a migrated PostgreSQL database."""
    with api_process(postgres_url, WORKERS) as (proc, port):
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"booking api did not start: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            time.sleep(0.2)
        yield base, postgres_url


def _race(base: str, settings: ApiSettings, slot_id: str, patients: list[str]) -> Counter[int]:
    tokens = [token_for(settings, p) for p in patients]
    barrier = threading.Barrier(len(patients))
    client = httpx.Client(base_url=base, timeout=30, limits=httpx.Limits(max_connections=len(patients)))

    def attempt(token: str) -> int:
        barrier.wait()
        r = client.post(
            "/api/v1/bookings",
            json={"slot_id": slot_id},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())},
        )
        return r.status_code

    with ThreadPoolExecutor(max_workers=len(patients)) as pool:
        codes = Counter(pool.map(attempt, tokens))
    client.close()
    return codes


@pytest.mark.parametrize("capacity_slot", ["slot1", "slot5"])
def test_no_overbooking_under_concurrency(server: tuple[str, str], capacity_slot: str) -> None:
    base, url = server
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    patients = [f"race-{i:03d}" for i in range(ATTEMPTS)]
    with sessions() as s:
        world = seed_world(s, datetime.now(UTC) + timedelta(hours=1))
        s.add_all([Patient(id=p) for p in patients])
        s.commit()
    slot_id = getattr(world, capacity_slot)
    capacity = 1 if capacity_slot == "slot1" else 5
    settings = ApiSettings(database_url=url)

    started = time.perf_counter()
    codes = _race(base, settings, slot_id, patients)
    elapsed = time.perf_counter() - started
    print(f"\n{ATTEMPTS} attempts on capacity {capacity}: {dict(codes)} in {elapsed:.2f}s")

    assert codes[201] == capacity
    assert codes[409] == ATTEMPTS - capacity
    with sessions() as s:
        assert s.scalar(select(Slot.booked).where(Slot.id == slot_id)) == capacity
        booking_ids = set(s.scalars(select(Booking.id).where(Booking.slot_id == slot_id)))
        assert len(booking_ids) == capacity
        events = s.execute(
            select(OutboxMessage.key, func.count())
            .where(OutboxMessage.event_type == "booking.requested")
            .group_by(OutboxMessage.key)
        ).all()
    assert {k: n for k, n in events} == {b: 1 for b in booking_ids}
    engine.dispose()
