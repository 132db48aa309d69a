"""Name -> ConsumerDef for the nine consumers (the names of booking_core.topology.CONSUMERS)."""

from __future__ import annotations

import importlib
from typing import Any

from booking_consumers.runtime import ConsumerDef
from booking_consumers.settings import ConsumerSettings
from booking_core.topology import CONSUMERS

# Handler modules with a module-level DEFINITION; imported only for the consumer asked for.
MODULES = {
    "booking": "booking",
    "appointment-update": "appointment_update",
    "customer": "customer",
    "sync-test-master-data": "sync_test_master_data",
    "lis-testresult": "lis_testresult",
    "pat-booking-recommend-test": "recommend_test",
}


def definition(name: str, settings: ConsumerSettings | None = None) -> ConsumerDef[Any]:
    """The ConsumerDef of consumer `name` (KeyError for a name not in the topology).

    With `settings`, lis-testresult is configured from them (time zones, patient identifiers);
    without, it runs on its defaults (tests).
    """
    if name == "lis-testresult" and settings is not None:
        from booking_consumers.handlers.lis_config import definition as lis_definition

        return lis_definition(settings)
    tier = CONSUMERS[name].tier
    if tier is not None:  # one module serves the result tiers
        from booking_consumers.handlers.pat_test_result import definition as tiered

        return tiered(tier)
    module = importlib.import_module(f"booking_consumers.handlers.{MODULES[name]}")
    found: ConsumerDef[Any] = module.DEFINITION
    return found
