"""The sender's zone for an LIS message no setting places, looked up in the batch's transaction.

A timestamp without a UTC offset is the sender's local time: MSH-7's offset, a zone configured for the
sending facility (MSH-4) or the configured default decide it while decoding. With none of them, the
message is decoded for its keys only and placed here: the clinic whose code is the sending facility,
else the one zone every clinic shares. Clinics arrive through the master-data consumer, so this is read
per batch, never once at start-up: an empty database is no reason to stop the consumer. When neither
answers (no clinics yet, clinics in several zones, a zone name the clinic row got wrong) the message is
refused `unknown_time_zone`: dead-lettered, replayable once a zone is configured or the clinics exist.
Guessing UTC or the host's zone would misdate every result by hours and nobody would notice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from booking_consumers.hl7_oru import ParseOptions, parse_payload
from booking_core.db.models import Clinic
from booking_core.events.lis import LabResultMessage


def _zone(name: str | None) -> tzinfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def clinic_zones(session: Session, facilities: Iterable[str]) -> dict[str, tzinfo]:
    """Sending facility -> zone, from the clinic of that code or else the zone all clinics share."""
    wanted = sorted(set(facilities))
    if not wanted:
        return {}
    rows = session.execute(select(Clinic.code, Clinic.time_zone).where(Clinic.code.in_(wanted))).all()
    by_code = {code: zone for code, zone in rows}
    # Two distinct zones are enough to know there is no single one.
    shared = list(session.scalars(select(Clinic.time_zone).distinct().limit(2)))
    fallback = _zone(shared[0]) if len(shared) == 1 else None
    out: dict[str, tzinfo] = {}
    for facility in wanted:
        zone = _zone(by_code.get(facility)) or fallback
        if zone is not None:
            out[facility] = zone
    return out


def place(
    session: Session,
    raw: bytes,
    decoded: Iterable[LabResultMessage],
    options: ParseOptions,
    cache: dict[str, tzinfo | None] | None = None,
) -> tuple[LabResultMessage, ...]:
    """`raw` parsed again with the clinics' zones for its senders; InvalidMessageError if still unplaced.

    `cache` keeps the lookups of one batch (one transaction, so they cannot change within it).
    """
    cache = {} if cache is None else cache
    senders = {m.sending_facility for m in decoded} - set(options.facility_zones)
    missing = senders - set(cache)
    if missing:
        found = clinic_zones(session, missing)
        cache.update({s: found.get(s) for s in missing})  # misses too: one lookup per sender and batch
    placed = {s: z for s in senders if (z := cache[s]) is not None}
    zones: Mapping[str, tzinfo] = {**placed, **options.facility_zones}
    return parse_payload(raw, replace(options, facility_zones=zones))
