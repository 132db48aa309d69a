"""A patient's changes racing each other through the HTTP API, on SQLite (the `booking run` default) and
PostgreSQL: two reschedules, a reschedule and a cancel, two cancels. Slot counts stay exact and a repeated
cancel answers 200 with the cancelled booking, as docs/api.md promises.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from booking_core.db.models import Booking, Slot

from .conftest import Api

ROUNDS = 10


def _slots(api: Api, n: int) -> tuple[str, str, str]:
    """Three fresh blood-draw slots of capacity 1 on day `n`."""
    with api.sessions() as s:
        template = s.get(Slot, api.world.slot1)
        assert template is not None
        ids = []
        for hour in range(3):
            start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10 + n, hours=hour, minutes=7)
            row = Slot(
                clinic_id=template.clinic_id,
                service_id=template.service_id,
                starts_at=start,
                ends_at=start + timedelta(minutes=15),
                capacity=1,
            )
            s.add(row)
            s.flush()
            ids.append(row.id)
        s.commit()
    return ids[0], ids[1], ids[2]


def _race(*calls: Callable[[], httpx.Response]) -> list[int]:
    barrier = threading.Barrier(len(calls), timeout=30)
    codes: list[int] = []

    def run(call: Callable[[], httpx.Response]) -> None:
        barrier.wait()
        codes.append(call().status_code)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return sorted(codes)


def _assert_exact(api: Api, *slot_ids: str) -> None:
    with api.sessions() as s:
        for slot_id in slot_ids:
            slot = s.get(Slot, slot_id)
            assert slot is not None
            live = s.scalar(
                select(func.count())
                .select_from(Booking)
                .where(Booking.slot_id == slot_id, Booking.status != "cancelled")
            )
            assert slot.booked <= slot.capacity
            assert slot.booked == live, f"slot count {slot.booked}, bookings holding a place {live}"


def _move(api: Api, booking_id: str, slot_id: str) -> Callable[[], httpx.Response]:
    return lambda: api.client.post(
        f"/api/v1/bookings/{booking_id}/reschedule", json={"slot_id": slot_id}, headers=api.auth()
    )


def _cancel(api: Api, booking_id: str) -> Callable[[], httpx.Response]:
    return lambda: api.client.post(f"/api/v1/bookings/{booking_id}/cancel", headers=api.auth())


@pytest.mark.parametrize("pair", ["reschedule-x-reschedule", "reschedule-x-cancel"])
def test_racing_changes_never_overbook_or_leave_phantom_places(api: Api, pair: str) -> None:
    for n in range(ROUNDS):
        a, b, c = _slots(api, n)
        r = api.book(a)
        assert r.status_code == 201, r.text
        booking_id = r.json()["id"]
        other = _cancel(api, booking_id) if pair == "reschedule-x-cancel" else _move(api, booking_id, c)
        codes = _race(_move(api, booking_id, b), other)
        assert all(code in (200, 409) for code in codes), codes
        _assert_exact(api, a, b, c)
        with api.sessions() as s:
            booking = s.get(Booking, booking_id)
            assert booking is not None
            if booking.status == "cancelled":
                # A cancelled booking holds no place anywhere (it was not left on its new slot).
                assert s.get(Slot, booking.slot_id).booked == 0  # type: ignore[union-attr]


def test_a_concurrent_second_cancel_answers_like_the_first(api: Api) -> None:
    for n in range(ROUNDS):
        a, _, _ = _slots(api, n)
        booking_id = api.book(a).json()["id"]
        codes = _race(_cancel(api, booking_id), _cancel(api, booking_id))
        assert codes == [200, 200]
        _assert_exact(api, a)
    # And a late repeat answers the same, with the cancelled booking.
    again = _cancel(api, booking_id)()
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
