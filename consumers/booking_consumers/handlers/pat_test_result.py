"""`pat-test-result` and its SVIP twins: release stored results to the patient, notify on the tier's queue.

One module serves the three tiers; each consumer reads its own topic and enqueues on its own queue,
so an SVIP result never waits behind a standard backlog.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, lazyload

from booking_consumers import observe
from booking_consumers.decoding import Decoded, envelope_decoder, event_id_key
from booking_consumers.handlers._common import now
from booking_consumers.runtime import ConsumerDef, Effects
from booking_core.db.models import TestResult
from booking_core.domain.notifications import NotificationKind
from booking_core.events.results import LabResultsStored
from booking_core.topology import CONSUMERS

TIER_CONSUMERS = {c.tier: c.name for c in CONSUMERS.values() if c.tier is not None}


Handler = Callable[[Session, Decoded[LabResultsStored], Effects], None]


def make_handler(tier: str) -> Handler:
    """The handler of one tier's consumer."""

    def handle(session: Session, decoded: Decoded[LabResultsStored], effects: Effects) -> None:
        event = decoded.payload
        if not event.result_ids:
            return  # retractions only: already hidden, nothing to announce
        released = 0
        for result in session.scalars(
            select(TestResult)
            .where(TestResult.id.in_(event.result_ids), TestResult.patient_id == event.patient_id)
            # Not the observations (selectin by default): releasing a report needs only its row.
            .options(lazyload(TestResult.observations))
        ):
            if result.status in ("final", "corrected"):
                if not result.visible_to_patient:
                    result.visible_to_patient = True
                    result.released_at = now()
                released += 1
        if released:
            effects.notify(
                patient_id=event.patient_id,
                kind=NotificationKind.RESULTS_AVAILABLE,
                ref_id=event.lab_message_id,
                tier=tier,
                urgent=event.urgent,
            )
            observe.result_visible(session, decoded.envelope, tier)

    return handle


def definition(tier: str) -> ConsumerDef[Decoded[LabResultsStored]]:
    """The ConsumerDef of one tier."""
    return ConsumerDef(
        name=TIER_CONSUMERS[tier],
        decode=envelope_decoder(LabResultsStored),
        handle=make_handler(tier),
        message_key=event_id_key,
    )
