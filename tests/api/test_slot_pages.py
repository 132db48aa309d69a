"""Slot search pages: a default page size, keyset cursors that walk every slot once, refused cursors."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

from booking_core.db.models import Service, Slot


def _add_slots(api, n: int, *, same_start: int = 0) -> list[str]:
    """n free blood-draw slots over the next days; the first `same_start` share one start time."""
    now = datetime.now(UTC).replace(microsecond=0)
    ids = []
    with api.sessions() as s:
        blood = s.query(Service).filter_by(code="blood-draw").one()
        gp = s.query(Service).filter_by(code="gp-consult").one()
        for i in range(n):
            # Equal starts need distinct services (one slot per clinic, service and start).
            # Odd minutes: never at the world's whole-hour slots.
            minutes = 7 if i < same_start else 7 + 50 * i
            service = gp if i < same_start and i % 2 else blood
            start = now + timedelta(hours=30, minutes=minutes)
            slot = Slot(
                clinic_id=api.world.clinic_id,
                service_id=service.id,
                starts_at=start,
                ends_at=start + timedelta(minutes=15),
                capacity=2,
            )
            s.add(slot)
            s.flush()
            ids.append(slot.id)
        s.commit()
    return ids


def _walk(api, params: dict[str, object]) -> tuple[list[dict[str, object]], int]:
    """Every item over all pages of a search, and how many pages it took."""
    items: list[dict[str, object]] = []
    cursor = None
    pages = 0
    while True:
        r = api.client.get("/api/v1/slots", params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        pages += 1
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items, pages
        assert len(body["items"]) == params.get("limit", 20)


def test_default_page_is_20_and_the_pages_cover_every_slot_once_in_order(api) -> None:
    _add_slots(api, 30, same_start=2)
    week = {"date_to": (datetime.now(UTC) + timedelta(days=6)).date().isoformat()}
    first = api.client.get("/api/v1/slots", params=week).json()
    assert len(first["items"]) == 20 and first["next_cursor"]
    everything = api.client.get("/api/v1/slots", params={**week, "limit": 100}).json()
    assert everything["next_cursor"] is None
    walked, pages = _walk(api, {**week, "limit": 3})
    assert walked == everything["items"]
    assert pages == -(-len(walked) // 3)
    keys = [(s["starts_at"], s["id"]) for s in walked]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


def test_a_page_stays_stable_while_earlier_slots_fill_up(api) -> None:
    _add_slots(api, 6)
    week = {"date_to": (datetime.now(UTC) + timedelta(days=6)).date().isoformat(), "limit": 2}
    page1 = api.client.get("/api/v1/slots", params=week).json()
    # Someone books the first page's slot full: the second page neither skips nor repeats a slot.
    assert api.book(page1["items"][0]["id"]).status_code == 201
    assert api.book(page1["items"][0]["id"], subject="patient-b").status_code in (201, 409)
    page2 = api.client.get("/api/v1/slots", params={**week, "cursor": page1["next_cursor"]}).json()
    fresh = api.client.get("/api/v1/slots", params={**week, "limit": 100}).json()["items"]
    after = [
        s["id"]
        for s in fresh
        if (s["starts_at"], s["id"]) > (page1["items"][-1]["starts_at"], page1["items"][-1]["id"])
    ]
    assert [s["id"] for s in page2["items"]] == after[:2]


def test_bad_cursors_and_page_sizes_are_422(api) -> None:
    _add_slots(api, 5)
    week = {"date_to": (datetime.now(UTC) + timedelta(days=6)).date().isoformat(), "limit": 2}
    cursor = api.client.get("/api/v1/slots", params=week).json()["next_cursor"]
    raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps([raw[0], "not a time", raw[2], raw[3]]).encode()).decode()
    other_search = {**week, "service": "blood-draw"}
    cases = [
        (week, "garbage!"),
        (week, forged),
        (week, base64.urlsafe_b64encode(b'{"a": 1}').decode()),
        (other_search, cursor),  # a cursor is only good for the search that made it
    ]
    for params, bad in cases:
        r = api.client.get("/api/v1/slots", params={**params, "cursor": bad})
        assert r.status_code == 422, (bad, r.status_code)
        assert [f["field"] for f in r.json()["error"]["fields"]] == ["query.cursor"]
    for limit in (0, 101):
        assert api.client.get("/api/v1/slots", params={"limit": limit}).status_code == 422
    assert api.client.get("/api/v1/slots", params={"limit": 100}).status_code == 200


def test_the_openapi_documents_the_page(api) -> None:
    op = api.client.get("/openapi.json").json()["paths"]["/api/v1/slots"]["get"]
    params = {p["name"]: p for p in op["parameters"]}
    assert params["limit"]["schema"]["default"] == 20 and params["limit"]["schema"]["maximum"] == 100
    assert "cursor" in params
    ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/SlotPage")


def test_plain_queries_answer_as_fastapi_would(api) -> None:
    """A plain query string is read by the route itself (routes/slot_query.py); an unknown parameter,
    which FastAPI ignores, sends the same search through FastAPI's own validation: both answer alike."""
    ids = _add_slots(api, 5)
    first = (datetime.now(UTC) + timedelta(days=1)).date()
    plain_cursor = api.client.get("/api/v1/slots", params={"limit": 2}).json()["next_cursor"]
    assert plain_cursor
    queries = [
        "",
        "limit=2",
        f"limit=2&cursor={plain_cursor}",
        f"clinic_id={api.world.clinic_id}&service=blood-draw&date_from={first}&date_to={first}",
        f"date_from={first}&limit=100",
        # refused: by FastAPI on its path, by the route's own checks when plain
        "limit=0",
        "limit=101",
        "limit=020",
        "limit=2.0",
        "date_from=2026-02-30",
        "date_to=20261201",
        "clinic_id=" + "x" * 65,
        "clinic_id=",
        "service=blood%2Ddraw",
        "cursor=garbage!",
        f"cursor={plain_cursor}&service=gp-consult",  # a cursor of another search
        f"cursor={plain_cursor}x",
        "limit=2&limit=3",
    ]
    for qs in queries:
        own = api.client.get(f"/api/v1/slots?{qs}")
        via_fastapi = api.client.get(f"/api/v1/slots?{qs}&zz=1")
        assert (own.status_code, own.content) == (via_fastapi.status_code, via_fastapi.content), qs
        assert own.headers["content-type"] == via_fastapi.headers["content-type"], qs
    walked = api.client.get("/api/v1/slots", params={"limit": 100}).json()["items"]
    assert set(ids) <= {s["id"] for s in walked}


def test_page_json_is_the_schemas_json() -> None:
    """The page written from the rows is byte for byte what FastAPI would send for the SlotPage model."""
    from booking_api.schemas import SlotPage
    from booking_api.services.catalogue import slot_page, slot_page_json, slot_search

    now = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
    query = slot_search(now=now, clinic_id="c-1", limit=2)
    assert query is not None
    start = now + timedelta(hours=1, microseconds=250)
    rows = [
        (f"slot-{i}", "c-1", 'code "q"\u00e9', start + timedelta(minutes=15 * i), start, 3, booked)
        for i, booked in enumerate((0, 2, 5))  # 5 > 3: never a negative free count
    ]
    for some in (rows, rows[:2], rows[:1], []):
        assert slot_page_json(query, some) == slot_page(query, some).model_dump_json(by_alias=True).encode()
    empty = SlotPage(items=[], next_cursor=None).model_dump_json().encode()
    assert slot_page_json(None, []) == empty
