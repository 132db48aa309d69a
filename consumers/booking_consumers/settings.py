"""A consumer process's settings (BOOKING_*): the shared ones, polling, retries and the LIS parsing rules."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from booking_core.settings import BookingSettings


class ConsumerSettings(BookingSettings):
    """One Kafka consumer process."""

    # No group setting: the group comes from booking_core.topology and the Kafka prefix, as KEDA's does.
    poll_timeout_seconds: float = Field(default=1.0, gt=0)
    max_batch: int = Field(default=100, ge=1)
    retry_backoff_max_seconds: float = Field(default=30.0, gt=0)
    # lis-testresult. HL7 timestamps without an offset are the sender's local time: MSH-7's offset,
    # else this zone per MSH-4 sending facility (JSON object), else the default zone; unset, the zone is
    # looked up per batch (the clinic coded as MSH-4, else the clinics' one zone) and a message no zone
    # is found for is dead-lettered `unknown_time_zone`. An unknown zone name stops the consumer.
    lis_default_time_zone: str | None = None
    lis_facility_time_zones: dict[str, str] = Field(default_factory=dict)
    # Which PID-3 identifiers name our patients, in order of preference: "TYPE@AUTHORITY" with CX.5's type
    # and CX.4's namespace or OID ("*" for any). Social security and account numbers are never keys.
    lis_patient_identifiers: list[str] = Field(default_factory=lambda: ["MR@*", "PI@*", "PT@*", "PN@*"])
    # lis-testresult also reads its topic as a second group that applies only SVIP patients' results at
    # once (booking_consumers.priority_lane); off, an SVIP result waits behind any standard backlog.
    lis_priority_lane: bool = True
    # With the lane on, lis-testresult's main loop (the bulk of a lab's batch) runs at this nice value,
    # so within its container the lane's SVIP work gets the CPU first (0: no difference).
    lis_bulk_nice: int = Field(default=10, ge=0, le=19)


@lru_cache
def get_consumer_settings() -> ConsumerSettings:
    """A consumer's settings, read once per process."""
    return ConsumerSettings()
