"""Process settings from the spec as env: `spec.lis` for lis-testresult, `spec.api.edge` for the API.

Only what the CR sets is rendered; an absent field leaves the process's own default (docs/api.md,
docs/events.md), so a CR without these sections renders exactly what it did before they existed. The
component's own `env` is merged after these and may still override one (as for `spec.auth`).
"""

from __future__ import annotations

import json
from typing import Any

from booking_operator.spec import Platform

LIS_CONSUMER = "lis-testresult"


def _env(values: list[tuple[str, str | None]]) -> list[dict[str, Any]]:
    return [{"name": n, "value": v} for n, v in values if v is not None]


def lis_env(platform: Platform) -> list[dict[str, Any]]:
    """BOOKING_LIS_DEFAULT_TIME_ZONE and BOOKING_LIS_FACILITY_TIME_ZONES (JSON) from `spec.lis`."""
    lis = platform.spec.lis
    if lis is None:
        return []
    facilities = dict(sorted(lis.facility_time_zones.items()))
    return _env(
        [
            ("BOOKING_LIS_DEFAULT_TIME_ZONE", lis.default_time_zone),
            # pydantic-settings reads a dict setting as JSON
            ("BOOKING_LIS_FACILITY_TIME_ZONES", json.dumps(facilities) if facilities else None),
        ]
    )


def _text(value: int | str | None) -> str | None:
    return None if value is None else str(value)


def edge_env(platform: Platform) -> list[dict[str, Any]]:
    """BOOKING_TRUSTED_PROXIES, size limits, parser and BOOKING_RATE_LIMIT_* from `spec.api.edge`."""
    edge = platform.spec.api.edge
    if edge is None:
        return []
    values: list[tuple[str, str | None]] = [
        # uvicorn's ProxyHeadersMiddleware takes a comma-separated list
        ("BOOKING_TRUSTED_PROXIES", ",".join(edge.trusted_proxies) if edge.trusted_proxies else None),
        ("BOOKING_MAX_BODY_BYTES", _text(edge.max_body_bytes)),
        ("BOOKING_MAX_HEADER_BYTES", _text(edge.max_header_bytes)),
        ("BOOKING_HTTP_PARSER", edge.http_parser),
    ]
    limits = edge.rate_limits
    if limits is not None:
        enabled = None if limits.enabled is None else str(limits.enabled).lower()
        values += [
            ("BOOKING_RATE_LIMIT_ENABLED", enabled),
            ("BOOKING_RATE_LIMIT_PER_CLIENT", limits.per_client),
            ("BOOKING_RATE_LIMIT_PER_SUBJECT", limits.per_subject),
            ("BOOKING_RATE_LIMIT_AUTH_FAILURES", limits.auth_failures),
            ("BOOKING_RATE_LIMIT_KEY_PREFIX", limits.key_prefix),
        ]
    return _env(values)
