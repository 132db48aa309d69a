"""Rate limits: per client address, per token subject, and a tighter budget for failed authentication.

Each test runs on process memory (`booking run`) and on a real Redis (the shared storage of replicas).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from booking_testing.procs import free_port

from .edge_helpers import edge_api


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def storage(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Settings selecting the limiter's storage; Redis keys get a prefix of their own."""
    if request.param == "memory":
        yield {}
        return
    yield {
        "redis_url": str(request.getfixturevalue("redis_url")),
        "rate_limit_key_prefix": f"test-{uuid.uuid4().hex}",
    }


def _admitted_then_refused(codes: list[int], ok: int, budget: int) -> bool:
    """The first `budget` answers are `ok`, every other one 429, except at most one more `ok`: when the
    burst crosses a window boundary the sliding window counter weighs the previous window's count less,
    which can admit one request later in the burst."""
    admitted = codes.count(ok)
    return (
        codes[:budget] == [ok] * budget
        and budget <= admitted <= budget + 1
        and codes.count(429) == len(codes) - admitted
    )


def _retry_after(r) -> int:
    value = int(r.headers["retry-after"])
    assert 1 <= value <= 60
    return value


def test_a_burst_of_bad_tokens_is_cut_to_429(tmp_path: Path, storage: dict[str, str]) -> None:
    with edge_api(f"sqlite:///{tmp_path}/a.db", trusted_proxies="testclient", **storage) as api:
        bad = {"Authorization": "Bearer not-a-token"}
        answers = [api.client.get("/api/v1/test-results", headers=bad) for _ in range(300)]
        counts = Counter(r.status_code for r in answers)
        assert _admitted_then_refused([r.status_code for r in answers], 401, 20), counts
        refused = [r for r in answers if r.status_code == 429]
        assert all(_retry_after(r) for r in refused)
        assert refused[0].json()["error"]["code"] == "rate_limited"
        # That address is locked out for the window, even with a valid token ...
        assert api.client.get("/api/v1/test-results", headers=api.auth()).status_code == 429
        # ... another client is not.
        other = {**api.auth(), "X-Forwarded-For": "203.0.113.7"}
        assert api.client.get("/api/v1/test-results", headers=other).status_code == 200
        # Probes are never limited.
        assert api.client.get("/healthz").status_code == 200


def test_each_subject_has_its_own_budget(tmp_path: Path, storage: dict[str, str]) -> None:
    with edge_api(f"sqlite:///{tmp_path}/s.db", rate_limit_per_subject="5/minute", **storage) as api:
        codes = [
            api.client.get("/api/v1/bookings", headers=api.auth("patient-a")).status_code for _ in range(7)
        ]
        assert codes == [200] * 5 + [429] * 2
        r = api.client.get("/api/v1/bookings", headers=api.auth("patient-a"))
        assert r.status_code == 429 and _retry_after(r) and r.json()["error"]["code"] == "rate_limited"
        assert api.client.get("/api/v1/bookings", headers=api.auth("patient-b")).status_code == 200


def test_each_client_has_its_own_budget(tmp_path: Path, storage: dict[str, str]) -> None:
    settings = {"rate_limit_per_client": "10/minute", "trusted_proxies": "testclient", **storage}
    with edge_api(f"sqlite:///{tmp_path}/c.db", **settings) as api:
        codes = [api.client.get("/api/v1/clinics").status_code for _ in range(13)]
        assert _admitted_then_refused(codes, 200, 10), codes
        assert (
            api.client.get("/api/v1/clinics", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 200
        )
        assert all(api.client.get("/readyz").status_code == 200 for _ in range(20))


def test_redis_keys_carry_no_subject(tmp_path: Path, redis_url: str) -> None:
    import redis

    prefix = f"test-{uuid.uuid4().hex}"
    with edge_api(f"sqlite:///{tmp_path}/k.db", redis_url=redis_url, rate_limit_key_prefix=prefix) as api:
        assert api.client.get("/api/v1/bookings", headers=api.auth("patient-a")).status_code == 200
    client = redis.Redis.from_url(redis_url)
    keys = [k.decode() for k in client.scan_iter(f"{prefix}*")]
    client.close()
    assert keys and not any("patient-a" in k for k in keys), keys


def test_an_unreachable_limiter_storage_lets_requests_through(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with edge_api(f"sqlite:///{tmp_path}/d.db", redis_url=dead) as api:
        assert api.client.get("/api/v1/clinics").status_code == 200
        assert api.client.get("/api/v1/bookings", headers=api.auth()).status_code == 200
