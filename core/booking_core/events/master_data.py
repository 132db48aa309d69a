"""Test master data from the catalogue system (topic `test-master-data.v1`, key = test or package code)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from booking_core.events.envelope import EventPayload, register_event
from booking_core.topology import CONSUMERS

MASTER_DATA_TOPIC = CONSUMERS["sync-test-master-data"].topic


class _MasterData(EventPayload):
    aggregate_type: ClassVar[str] = "master_data"
    topic: ClassVar[str] = MASTER_DATA_TOPIC

    code: str = Field(min_length=1, max_length=64)
    source_version: int = Field(ge=0)

    def aggregate_id(self) -> str:
        """The test or package code."""
        return self.code


@register_event
class TestUpserted(_MasterData):
    """A catalogue test created, changed or (active=false) deactivated."""

    __test__ = False  # not a pytest class
    event_type: ClassVar[str] = "master_data.test_upserted"

    name: str = Field(min_length=1, max_length=200)
    loinc: str | None = None
    specimen: str | None = None
    unit: str | None = None
    price_cents: int = Field(default=0, ge=0)
    currency: str = Field(default="EUR", min_length=3, max_length=3)
    active: bool = True


@register_event
class PackageUpserted(_MasterData):
    """A package (a bundle of test codes) created, changed or deactivated."""

    event_type: ClassVar[str] = "master_data.package_upserted"

    name: str = Field(min_length=1, max_length=200)
    description: str | None = None
    price_cents: int = Field(default=0, ge=0)
    currency: str = Field(default="EUR", min_length=3, max_length=3)
    test_codes: tuple[str, ...] = ()
    active: bool = True
