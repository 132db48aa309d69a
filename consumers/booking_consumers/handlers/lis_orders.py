"""Lab orders of a batch of results: loaded in one query, then looked up by placer or filler number."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from booking_consumers.handlers.lis_bulk import any_of
from booking_core.db.models import LabOrder
from booking_core.events.lis import LabReport, LabResultMessage

# session.info key: lab orders known for this transaction, by ("placer", OBR-2) or ("filler", MSH-4, OBR-3).
_ORDERS = "booking_consumers.lab_orders"


def load_orders(session: Session, messages: Sequence[LabResultMessage]) -> None:
    """Load the orders these messages name in one query (a read-only cache: nothing here writes them)."""
    placers = {r.placer_order_number for m in messages for r in m.reports if r.placer_order_number}
    fillers = {
        (m.sending_facility, r.filler_order_number)
        for m in messages
        for r in m.reports
        if r.filler_order_number
    }
    if not placers and not fillers:
        return
    cache: dict[tuple[str, ...], list[LabOrder]] = session.info.setdefault(_ORDERS, {})
    for placer in placers:
        cache.setdefault(("placer", placer), [])
    for facility, filler in fillers:
        cache.setdefault(("filler", facility, filler), [])
    conds = []
    if placers:
        conds.append(any_of(session, LabOrder.placer_order_number, sorted(placers)))
    if fillers:
        # By filler number alone (indexed, one array parameter); the facility is checked below.
        conds.append(any_of(session, LabOrder.filler_order_number, sorted({f for _, f in fillers})))
    for order in session.scalars(select(LabOrder).where(or_(*conds))):
        if order.placer_order_number in placers:
            cache[("placer", order.placer_order_number)].append(order)
        key = ("filler", order.source_facility or "", order.filler_order_number or "")
        if key in cache:
            cache[key].append(order)


def find_order(session: Session, report: LabReport, facility: str) -> LabOrder | None:
    """By placer number (OBR-2, the number we gave the order), else by facility + filler (OBR-3)."""
    cache: dict[tuple[str, ...], list[LabOrder]] = session.info.get(_ORDERS, {})
    placer, filler = report.placer_order_number, report.filler_order_number
    keys = ([("placer", placer)] if placer else []) + ([("filler", facility, filler)] if filler else [])
    if all(k in cache for k in keys):
        return next((cache[k][0] for k in keys if cache[k]), None)
    order = None
    if placer:
        order = session.scalars(select(LabOrder).where(LabOrder.placer_order_number == placer)).first()
    if order is None and filler:
        order = session.scalars(
            select(LabOrder).where(
                and_(LabOrder.source_facility == facility, LabOrder.filler_order_number == filler)
            )
        ).first()
    return order
