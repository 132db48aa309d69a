"""Property-based testing against the OpenAPI document: no 5xx, every response matches its schema.

Schemathesis's pytest plugin does not run under this pytest, so each operation gets its own test that
drives schemathesis's Hypothesis strategy directly (positive and negative data, bounded examples).
"""

from __future__ import annotations

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
from booking_core.db.migrate import upgrade
from booking_core.db.session import make_engine, make_session_factory
from booking_core.settings import ApiSettings

from .conftest import seed_world, token_for

EXAMPLES = 30
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


@pytest.fixture
def app_schema(tmp_path: Path) -> Iterator[tuple[schemathesis.BaseSchema, ApiSettings]]:
    """The app's OpenAPI schema over a seeded SQLite database."""
    url = f"sqlite:///{tmp_path}/fuzz.db"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with sessions() as s:
        seed_world(s, datetime.now(UTC))
    cfg = ApiSettings(database_url=url)
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(cfg, session_factory=sessions)), cfg
    engine.dispose()


@pytest.mark.parametrize(
    "mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"]
)
@pytest.mark.parametrize("label", OPERATIONS)
def test_openapi_contract(
    app_schema: tuple[schemathesis.BaseSchema, ApiSettings], label: str, mode: GenerationMode
) -> None:
    schema, cfg = app_schema
    operation = schema.find_operation_by_label(label)
    assert operation is not None
    staff = label.split(" ", 1)[1].startswith("/api/v1/staff")
    token = token_for(cfg, "staff-1" if staff else "patient-a", "staff" if staff else "patient")

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: schemathesis.Case) -> None:
        headers = {"Authorization": f"Bearer {token}", **(case.headers or {})}
        checks = [*CHECKS, positive_data_acceptance] if mode is GenerationMode.POSITIVE else CHECKS
        case.call_and_validate(headers=headers, checks=checks)

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.NEGATIVE:
            pytest.skip("no parameters or body: nothing can be invalid")
        raise
