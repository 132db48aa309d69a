"""Process settings a BookingPlatform carries: the LIS consumer's time zones and the API's HTTP edge.

Every field is optional and absent by default, and an absent field renders nothing: the process keeps its
own default (so the production example still renders exactly the seed's namespace). A value is checked
as the process would check it, so a bad one is refused at the CR naming its field, not by a pod that
crash-loops. The API server checks the shape (patterns, bounds); `booking render` and the operator also
check what a pattern cannot (a zone name tzdata knows, a network without host bits).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from limits import parse_many
from pydantic import AfterValidator, ConfigDict, Field, model_validator

from booking_operator.spec_types import SpecModel, cel

# IANA names: Area/Location[/Sub], or one word (UTC); `+`/`-` for Etc/GMT+7.
TIME_ZONE = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$"
# One limit in the `limits` notation: 600/minute, 10 per second, 1 per 5 minutes.
RATE_LIMIT = r"^\s*[1-9][0-9]*\s*(/|per)\s*([0-9]+)?\s*[a-zA-Z]+\s*$"
# An address or a network (v4 or v6), or `*` (trust every peer).
PROXY = r"^(\*|[0-9a-fA-F.:]+(/[0-9]{1,3})?)$"
MAX_FACILITY = 100  # lis_messages.source_facility


def _iana(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. Asia/Ho_Chi_Minh, UTC)") from None
    return name


def _rate_limit(value: str) -> str:
    try:
        items = list(parse_many(value))
    except ValueError:
        items = []
    if len(items) != 1 or items[0].amount < 1:
        raise ValueError(f"{value!r} is not one rate limit in the limits notation (e.g. 600/minute)")
    return value


def _proxy(value: str) -> str:
    if value == "*":
        return value
    try:
        if "/" in value:
            ipaddress.ip_network(value)  # strict: 10.0.0.1/8 has host bits, and uvicorn would ignore it
        else:
            ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or a network such as 10.0.0.0/8") from None
    return value


TimeZoneName = Annotated[str, Field(max_length=64, pattern=TIME_ZONE), AfterValidator(_iana)]
RateLimit = Annotated[str, Field(max_length=64, pattern=RATE_LIMIT), AfterValidator(_rate_limit)]
ProxyAddress = Annotated[str, Field(max_length=64, pattern=PROXY), AfterValidator(_proxy)]

_FACILITY_KEYS = (
    "!has(self.facilityTimeZones) || "
    f"self.facilityTimeZones.all(k, size(k) >= 1 && size(k) <= {MAX_FACILITY})",
    f"facilityTimeZones keys are MSH-4 sending facilities of 1 to {MAX_FACILITY} characters",
)


class LisSpec(SpecModel):
    """Where the LIS's timestamps without a UTC offset were taken (lis-testresult).

    Unset, the consumer looks the zone up from the clinics per batch and dead-letters what it cannot
    place (`unknown_time_zone`); setting the zone here makes results independent of the master data.
    """

    model_config = ConfigDict(json_schema_extra=cel(_FACILITY_KEYS))

    default_time_zone: TimeZoneName | None = Field(
        default=None, description="IANA zone of every sender without its own (BOOKING_LIS_DEFAULT_TIME_ZONE)"
    )
    facility_time_zones: dict[str, TimeZoneName] = Field(
        default_factory=dict,
        max_length=256,
        description="MSH-4 sending facility -> IANA zone (BOOKING_LIS_FACILITY_TIME_ZONES)",
    )

    @model_validator(mode="after")
    def _facility_keys(self) -> LisSpec:
        for key in self.facility_time_zones:
            if not 1 <= len(key) <= MAX_FACILITY:
                raise ValueError(_FACILITY_KEYS[1])
        return self


class RateLimitsSpec(SpecModel):
    """The API's rate limits (BOOKING_RATE_LIMIT_*); unset fields keep the API's defaults."""

    enabled: bool | None = Field(default=None, description="API default: true")
    per_client: RateLimit | None = Field(default=None, description="per client address; default 600/minute")
    per_subject: RateLimit | None = Field(default=None, description="per token subject; default 300/minute")
    auth_failures: RateLimit | None = Field(
        default=None, description="failed authentications per address; default 20/minute"
    )
    key_prefix: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[-._:a-zA-Z0-9]+$",
        description="Redis key prefix, so environments sharing a Redis never share counts",
    )


class EdgeSpec(SpecModel):
    """The API's HTTP edge (booking_api.edge); unset fields keep the API's defaults (docs/api.md)."""

    trusted_proxies: list[ProxyAddress] | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="addresses or networks whose X-Forwarded-For/-Proto are believed (the ingress); "
        "API default 127.0.0.1",
    )
    max_body_bytes: int | None = Field(default=None, ge=1024, le=256 * 1_048_576, description="default 1 MiB")
    max_header_bytes: int | None = Field(default=None, ge=4096, le=1_048_576, description="default 32 KiB")
    http_parser: Literal["h11", "httptools"] | None = Field(
        default=None, description="default h11 (stops reading a header block at maxHeaderBytes)"
    )
    rate_limits: RateLimitsSpec | None = None
