"""lis-testresult's settings: time zones of senders and which patient identifiers are ours.

Read once at start-up. A missing default zone is taken from the clinics (they are where the samples are
taken and whose local time an LIS without offsets writes); if the clinics disagree, the consumer stops
with a message naming the setting to set, rather than guess an offset for every timestamp.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select

from booking_consumers.handlers import lis_testresult
from booking_consumers.handlers.lis_patients import parse_rules
from booking_consumers.hl7_oru import ParseOptions
from booking_consumers.runtime import ConsumerDef
from booking_consumers.settings import ConsumerSettings
from booking_core.db.models import Clinic
from booking_core.db.session import get_session_factory


class LisSettingsError(SystemExit):
    """A setting lis-testresult cannot start without; the message names it."""


def _zone(name: str, setting: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise LisSettingsError(f"{setting}: {name!r} is not an IANA time zone") from exc


def default_zone(settings: ConsumerSettings) -> ZoneInfo:
    """BOOKING_LIS_DEFAULT_TIME_ZONE, else the one zone all clinics share."""
    if settings.lis_default_time_zone:
        return _zone(settings.lis_default_time_zone, "BOOKING_LIS_DEFAULT_TIME_ZONE")
    with get_session_factory(settings.database_url)() as session:
        zones = set(session.scalars(select(Clinic.time_zone).distinct()))
    if len(zones) != 1:
        raise LisSettingsError(
            f"BOOKING_LIS_DEFAULT_TIME_ZONE is required: the clinics use {len(zones)} time zones, "
            "so the zone of an LIS timestamp without an offset cannot be inferred"
        )
    return _zone(zones.pop(), "clinics.time_zone")


def definition(settings: ConsumerSettings) -> ConsumerDef[lis_testresult.LisPayload]:
    """The lis-testresult consumer configured from `settings`."""
    try:
        rules = parse_rules(settings.lis_patient_identifiers)
    except ValueError as exc:
        raise LisSettingsError(str(exc)) from None
    options = ParseOptions(
        default_zone=default_zone(settings),
        facility_zones={
            facility: _zone(zone, "BOOKING_LIS_FACILITY_TIME_ZONES")
            for facility, zone in settings.lis_facility_time_zones.items()
        },
    )
    return lis_testresult.definition(options, rules)
