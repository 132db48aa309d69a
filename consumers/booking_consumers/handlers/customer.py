"""`customer`: patient profiles from the customer database, last writer wins by source version."""

from __future__ import annotations

from sqlalchemy.orm import Session

from booking_consumers.decoding import Decoded, envelope_decoder, event_id_key
from booking_consumers.errors import InvalidMessageError
from booking_consumers.handlers._common import now
from booking_consumers.runtime import ConsumerDef, Effects
from booking_core.db import lifecycle
from booking_core.db.models import Patient
from booking_core.domain.catalogue import is_newer
from booking_core.domain.errors import InvalidValueError
from booking_core.domain.patients import parse_sex, parse_tier
from booking_core.events.customer import CustomerUpserted

ACTOR = "system:consumer-customer"


def handle(session: Session, decoded: Decoded[CustomerUpserted], effects: Effects) -> None:
    """Insert or update the patient unless a newer version is already stored (tier changes included)."""
    event = decoded.payload
    try:
        tier = parse_tier(event.tier).value
    except InvalidValueError:
        raise InvalidMessageError("invalid_field", "tier") from None
    patient = session.get(Patient, event.customer_id, with_for_update=True)
    if patient is None:
        patient = Patient(id=event.customer_id, source_version=-1)
        session.add(patient)
    elif not is_newer(event.source_version, patient.source_version):
        return  # stale or repeated: the stored profile is as new or newer
    patient.source_version = event.source_version
    patient.tier = tier
    patient.given_name = event.given_name
    patient.family_name = event.family_name
    patient.date_of_birth = event.date_of_birth
    patient.sex = parse_sex(event.sex).value
    patient.time_zone = event.time_zone
    patient.locale = event.locale
    patient.email = event.email
    patient.phone = event.phone
    was_active = patient.active is not False
    patient.active = event.active
    if was_active and not event.active:
        # Deactivation: the account is closed, so its pending and booked appointments are cancelled
        # and their places freed at once (booking_core.domain.lifecycle.patient_deactivated).
        session.flush()
        lifecycle.patient_deactivated(session, patient_id=patient.id, actor=ACTOR, now=now())


DEFINITION: ConsumerDef[Decoded[CustomerUpserted]] = ConsumerDef(
    name="customer",
    decode=envelope_decoder(CustomerUpserted),
    handle=handle,
    message_key=event_id_key,
)
