"""The test catalogue: lab tests, packages of tests, and bookable services, with prices in minor units."""

from __future__ import annotations

from dataclasses import dataclass, field

from booking_core.domain.errors import InvalidValueError


@dataclass(frozen=True)
class Price:
    """An amount in minor units (cents) and an ISO 4217 currency."""

    cents: int
    currency: str = "EUR"

    def __post_init__(self) -> None:
        if self.cents < 0:
            raise InvalidValueError("price", "price must not be negative")
        if len(self.currency) != 3 or not self.currency.isalpha():
            raise InvalidValueError("currency", "currency must be a 3-letter ISO 4217 code")

    def __str__(self) -> str:
        return f"{self.cents // 100}.{self.cents % 100:02d} {self.currency.upper()}"


@dataclass(frozen=True)
class TestDefinition:
    """A lab test of the catalogue."""

    __test__ = False  # not a pytest test class

    code: str
    name: str
    price: Price
    active: bool = True
    unit: str | None = None


@dataclass(frozen=True)
class PackageDefinition:
    """A bundle of tests sold together."""

    code: str
    name: str
    price: Price
    test_codes: tuple[str, ...] = field(default_factory=tuple)
    active: bool = True


def is_newer(incoming_version: int, stored_version: int | None) -> bool:
    """Last writer wins by source version: apply an upsert only when it is newer than what is stored."""
    return stored_version is None or incoming_version > stored_version
