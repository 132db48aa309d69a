"""`sync-test-master-data`: catalogue tests and packages upserted or deactivated (last writer wins)."""

from __future__ import annotations

import logging

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from booking_consumers.decoding import Decoded, envelope_decoder, event_id_key
from booking_consumers.runtime import ConsumerDef, Effects
from booking_core.db.models import Package, PackageTest, Test
from booking_core.domain.catalogue import is_newer
from booking_core.events.master_data import PackageUpserted, TestUpserted

log = logging.getLogger(__name__)


def _upsert_test(session: Session, event: TestUpserted) -> None:
    test = session.scalars(select(Test).where(Test.code == event.code).with_for_update()).first()
    if test is None:
        test = Test(code=event.code, source_version=-1)
        session.add(test)
    elif not is_newer(event.source_version, test.source_version):
        return
    test.source_version = event.source_version
    test.name = event.name
    test.loinc = event.loinc
    test.specimen = event.specimen
    test.unit = event.unit
    test.price_cents = event.price_cents
    test.currency = event.currency
    test.active = event.active


def _upsert_package(session: Session, event: PackageUpserted) -> None:
    package = session.scalars(select(Package).where(Package.code == event.code).with_for_update()).first()
    if package is None:
        package = Package(code=event.code, source_version=-1)
        session.add(package)
    elif not is_newer(event.source_version, package.source_version):
        return
    package.source_version = event.source_version
    package.name = event.name
    package.description = event.description
    package.price_cents = event.price_cents
    package.currency = event.currency
    package.active = event.active
    session.flush()
    tests = (
        list(session.scalars(select(Test).where(Test.code.in_(event.test_codes)))) if event.test_codes else []
    )
    if len(tests) < len(set(event.test_codes)):
        # Tests travel under their own keys; a package may arrive first. Its next version links them.
        log.warning(
            "package names tests not in the catalogue yet",
            extra={"component": "consumer", "count": len(set(event.test_codes)) - len(tests)},
        )
    session.execute(delete(PackageTest).where(PackageTest.package_id == package.id))
    for test in tests:
        session.add(PackageTest(package_id=package.id, test_id=test.id))
    session.expire(package, ["tests"])


def handle(session: Session, decoded: Decoded[TestUpserted | PackageUpserted], effects: Effects) -> None:
    """Apply one master-data change."""
    event = decoded.payload
    if isinstance(event, TestUpserted):
        _upsert_test(session, event)
    else:
        _upsert_package(session, event)


DEFINITION: ConsumerDef[Decoded[TestUpserted | PackageUpserted]] = ConsumerDef(
    name="sync-test-master-data",
    decode=envelope_decoder(TestUpserted, PackageUpserted),
    handle=handle,
    message_key=event_id_key,
)
