"""lis-testresult's settings: time zones of senders and which patient identifiers are ours.

Read once at start-up, and only the settings: a malformed one (an unknown zone name, a bad identifier
rule) stops the process with a message naming it. A missing zone is not a reason to stop: the clinics'
zone is looked up per batch (lis_zones), and a message no zone can be found for is dead-lettered with
the reason `unknown_time_zone` rather than misdated. The database may well be empty at start-up.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from booking_consumers.handlers import lis_testresult
from booking_consumers.handlers.lis_patients import parse_rules
from booking_consumers.hl7_oru import ParseOptions
from booking_consumers.runtime import ConsumerDef
from booking_consumers.settings import ConsumerSettings


class LisSettingsError(SystemExit):
    """A setting lis-testresult cannot start with; the message names it."""


def _zone(name: str, setting: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise LisSettingsError(f"{setting}: {name!r} is not an IANA time zone") from exc


def parse_options(settings: ConsumerSettings) -> ParseOptions:
    """The configured zones: BOOKING_LIS_FACILITY_TIME_ZONES and BOOKING_LIS_DEFAULT_TIME_ZONE (or none)."""
    default = settings.lis_default_time_zone
    return ParseOptions(
        default_zone=_zone(default, "BOOKING_LIS_DEFAULT_TIME_ZONE") if default else None,
        facility_zones={
            facility: _zone(zone, f"BOOKING_LIS_FACILITY_TIME_ZONES[{facility!r}]")
            for facility, zone in settings.lis_facility_time_zones.items()
        },
    )


def definition(settings: ConsumerSettings) -> ConsumerDef[lis_testresult.LisPayload]:
    """The lis-testresult consumer configured from `settings`."""
    try:
        rules = parse_rules(settings.lis_patient_identifiers)
    except ValueError as exc:
        raise LisSettingsError(str(exc)) from None
    return lis_testresult.definition(parse_options(settings), rules)
