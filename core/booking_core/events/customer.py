"""Customer profile events from the customer database (topic `customer.profile.v1`, key = customer id)."""

from __future__ import annotations

from datetime import date
from typing import ClassVar

from pydantic import Field

from booking_core.events.envelope import EventPayload, register_event
from booking_core.topology import CONSUMERS

CUSTOMER_TOPIC = CONSUMERS["customer"].topic


@register_event
class CustomerUpserted(EventPayload):
    """A patient profile as the customer database holds it now; the highest source_version wins."""

    event_type: ClassVar[str] = "customer.upserted"
    aggregate_type: ClassVar[str] = "customer"
    topic: ClassVar[str] = CUSTOMER_TOPIC

    customer_id: str = Field(min_length=1, max_length=64)
    source_version: int = Field(ge=0)
    tier: str | None = None  # "standard", "SVIP1", "svip-2", ... parsed by the domain
    given_name: str | None = Field(default=None, max_length=200)
    family_name: str | None = Field(default=None, max_length=200)
    date_of_birth: date | None = None
    sex: str | None = None
    time_zone: str = "UTC"
    locale: str = "en"
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=32)
    active: bool = True

    def aggregate_id(self) -> str:
        """The customer id (also the patient id)."""
        return self.customer_id
