"""`pat-booking-recommend-test`: rule-based package recommendations, stored with their reason for the API."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from booking_consumers.decoding import Decoded, envelope_decoder, event_id_key
from booking_consumers.errors import InvalidMessageError
from booking_consumers.handlers._common import now
from booking_consumers.recommend_rules import Facts, RuleSet, default_rules, evaluate
from booking_consumers.runtime import ConsumerDef, Effects
from booking_core.db.models import (
    Observation,
    Package,
    Patient,
    Recommendation,
    TestResult,
    new_id,
)
from booking_core.domain.patients import age_on
from booking_core.domain.results import ABNORMAL_FLAGS
from booking_core.events.recommendations import RecommendationRequested

LOOKBACK = timedelta(days=3 * 365)


def gather_facts(session: Session, patient: Patient, booked_package: str | None) -> Facts:
    """The facts the rules look at, from the patient's profile and visible results."""
    today = now().date()
    since = now() - LOOKBACK
    abnormal: list[tuple[str, datetime]] = []
    rows = session.execute(
        select(TestResult.test_code, Observation.code, TestResult.effective_at, TestResult.issued_at)
        .join(Observation, Observation.result_id == TestResult.id)
        .where(
            TestResult.patient_id == patient.id,
            TestResult.status.in_(("final", "corrected")),
            Observation.visible_to_patient.is_(True),
            Observation.flag.in_([str(f) for f in ABNORMAL_FLAGS]),
            or_(TestResult.issued_at >= since, TestResult.effective_at >= since),
        )
    )
    for test_code, obs_code, effective_at, issued_at in rows:
        at = effective_at or issued_at
        abnormal += [(test_code, at), (obs_code, at)]
    last = session.scalars(
        select(TestResult.issued_at)
        .where(TestResult.patient_id == patient.id, TestResult.status != "entered-in-error")
        .order_by(TestResult.issued_at.desc())
        .limit(1)
    ).first()
    return Facts(
        today=today,
        age=age_on(patient.date_of_birth, today) if patient.date_of_birth else None,
        sex=patient.sex,
        booked_package=booked_package,
        abnormal_results=tuple(abnormal),
        last_test_at=last,
    )


def recommend(session: Session, event: RecommendationRequested, rules: RuleSet) -> int:
    """Store the recommendations that hold for the patient now; returns how many.

    Requests are keyed by booking (or request) id, not by patient, so two requests for one patient can
    be handled at once by different partitions' consumers: each row is an upsert on
    (patient, package, rule), which serializes them on the row instead of failing on the unique key.
    """
    patient = session.get(Patient, event.patient_id)
    if patient is None:
        raise InvalidMessageError("unknown_patient", "patient_id")
    packages = {p.code: p for p in session.scalars(select(Package).where(Package.active.is_(True)))}
    facts = gather_facts(session, patient, event.package_code)
    found = evaluate(rules, facts, frozenset(packages))
    for rec in found:
        session.execute(
            _upsert(
                session,
                {
                    "id": new_id(),
                    "patient_id": patient.id,
                    "package_id": packages[rec.package_code].id,
                    "rule_id": rec.rule_id,
                    "reason": rec.reason,
                    "created_at": now(),
                },
            )
        )
    return len(found)


def _upsert(session: Session, values: dict[str, Any]) -> Any:
    """INSERT a recommendation, or refresh the reason of the one the same rule stored before."""
    stmt: Any = (
        postgresql.insert(Recommendation)
        if session.get_bind().dialect.name == "postgresql"
        else sqlite.insert(Recommendation)
    ).values(**values)
    return stmt.on_conflict_do_update(
        index_elements=["patient_id", "package_id", "rule_id"],
        set_={"reason": stmt.excluded.reason},
        where=Recommendation.reason != stmt.excluded.reason,
    )


def handle(session: Session, decoded: Decoded[RecommendationRequested], effects: Effects) -> None:
    """Compute and store recommendations for one request."""
    recommend(session, decoded.payload, default_rules())


DEFINITION: ConsumerDef[Decoded[RecommendationRequested]] = ConsumerDef(
    name="pat-booking-recommend-test",
    decode=envelope_decoder(RecommendationRequested),
    handle=handle,
    message_key=event_id_key,
)
