"""Property-based testing against the OpenAPI document: no 5xx, every response matches its schema.

Schemathesis's pytest plugin does not run under this pytest, so each operation gets its own test that
drives schemathesis's Hypothesis strategy directly (positive and negative data, bounded examples), on
SQLite and on PostgreSQL. PostgreSQL runs fewer examples per operation over one database seeded once per
module: it is there for the dialect's own failures (types, lengths, constraints), not for more coverage.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from booking_api.app import create_app
from booking_api.settings import ApiSettings
from booking_core.db.migrate import upgrade
from booking_core.db.session import make_engine, make_session_factory
from booking_testing.backends import BACKENDS
from booking_testing.postgres import create_database

from .conftest import seed_world, token_for

EXAMPLES = {"sqlite": 30, "postgresql": 8}
# The edge as deployed, except rate limits high enough that hundreds of generated cases from one client
# are never answered 429 (which the contract allows, but which would test nothing). The size limits are
# small, so the 413/431 answers are exercised below and documented on every operation.
FUZZ_EDGE = {
    "rate_limit_per_client": "1000000/minute",
    "rate_limit_per_subject": "1000000/minute",
    "rate_limit_auth_failures": "1000000/minute",
    "max_body_bytes": 16_384,
    "max_header_bytes": 16_384,
}
# What the contract promises: no 5xx, documented status codes, headers and bodies. Whether every invalid
# input is refused is not checked (lax parsing, e.g. unknown query parameters, is deliberate).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Every operation of the document, read once at collection (building the app does not touch the database).
_DOC = create_app(ApiSettings(database_url="sqlite://")).openapi()
OPERATIONS = [f"{m.upper()} {p}" for p, ops in _DOC["paths"].items() for m in ops]


@pytest.fixture(scope="module")
def fuzz_pg_url(postgres_admin_url: str) -> str:
    """One migrated, seeded PostgreSQL database for the module's contract tests."""
    name = f"fuzz_{uuid.uuid4().hex[:12]}"
    create_database(postgres_admin_url, name)
    url = f"{postgres_admin_url.rpartition('/')[0]}/{name}"
    upgrade(url)
    engine = make_engine(url)
    with make_session_factory(engine)() as s:
        seed_world(s, datetime.now(UTC))
    engine.dispose()
    return url


@pytest.fixture(params=BACKENDS)
def app_schema(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[schemathesis.BaseSchema, ApiSettings, str]]:
    """The app's OpenAPI schema over a seeded database of the parametrized backend."""
    backend: str = request.param
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/fuzz.db"
        upgrade(url)
    else:
        url = str(request.getfixturevalue("fuzz_pg_url"))
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    if backend == "sqlite":
        with sessions() as s:
            seed_world(s, datetime.now(UTC))
    cfg = ApiSettings(database_url=url, **FUZZ_EDGE)
    app = create_app(cfg, session_factory=sessions)
    yield schemathesis.openapi.from_asgi("/openapi.json", app), cfg, backend
    engine.dispose()


@pytest.mark.parametrize(
    "mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"]
)
@pytest.mark.parametrize("label", OPERATIONS)
def test_openapi_contract(
    app_schema: tuple[schemathesis.BaseSchema, ApiSettings, str], label: str, mode: GenerationMode
) -> None:
    schema, cfg, backend = app_schema
    operation = schema.find_operation_by_label(label)
    assert operation is not None
    staff = label.split(" ", 1)[1].startswith("/api/v1/staff")
    token = token_for(cfg, "staff-1" if staff else "patient-a", "staff" if staff else "patient")

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES[backend],
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: schemathesis.Case) -> None:
        if mode is GenerationMode.POSITIVE and isinstance(case.query, dict):
            # A page cursor is a value the server issued, like a token: a string of the documented
            # alphabet is well formed but names no page (422, tested in test_slot_pages.py).
            case.query.pop("cursor", None)
        headers = {"Authorization": f"Bearer {token}", **(case.headers or {})}
        checks = [*CHECKS, positive_data_acceptance] if mode is GenerationMode.POSITIVE else CHECKS
        case.call_and_validate(headers=headers, checks=checks)

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.NEGATIVE:
            pytest.skip("no parameters or body: nothing can be invalid")
        raise


@pytest.mark.parametrize("app_schema", ["sqlite"], indirect=True)
@pytest.mark.parametrize("label", OPERATIONS)
def test_size_limits_are_in_the_contract(
    app_schema: tuple[schemathesis.BaseSchema, ApiSettings, str], label: str
) -> None:
    """A generated valid request made too large: 431 for its headers, 413 for its body, as documented."""
    schema, cfg, _ = app_schema
    operation = schema.find_operation_by_label(label)
    assert operation is not None
    staff = label.split(" ", 1)[1].startswith("/api/v1/staff")
    token = token_for(cfg, "staff-1" if staff else "patient-a", "staff" if staff else "patient")
    seen: list[int] = []

    @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE))
    @settings(
        max_examples=3,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: schemathesis.Case) -> None:
        big_header = {"X-Padding": "a" * (cfg.max_header_bytes + 1)}
        headers = {"Authorization": f"Bearer {token}", **(case.headers or {})}
        r = case.call_and_validate(headers={**headers, **big_header}, checks=CHECKS)
        assert r.status_code == 431
        seen.append(431)
        if isinstance(case.body, dict):
            case.body = {**case.body, "padding": "x" * (cfg.max_body_bytes + 1)}
            r = case.call_and_validate(headers=headers, checks=CHECKS)
            assert r.status_code == 413
            seen.append(413)

    run()
    assert 431 in seen
    has_body = "requestBody" in _DOC["paths"][operation.path][operation.method.lower()]
    assert (413 in seen) == has_body
