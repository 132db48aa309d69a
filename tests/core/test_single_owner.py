"""One owner of a booking's status and a slot's count: the booking aggregate and its unit of work.

Scans the shipped packages' source for every way to write those columns (ORM attribute assignment,
`update(Booking|Slot).values(...)`, a model constructor given a status, raw SQL) and allows them only in
booking_core.domain.lifecycle and booking_core.db.lifecycle (the migrations and the test launchers under
booking_testing are not scanned). On 680fca6 it finds six writers in five modules. The unit of work is a
package (db/lifecycle/: reads under locks, transitions, the new booking); all of it is the one owner.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [
    "core/booking_core",
    "services/booking_api",
    "consumers/booking_consumers",
    "workers/booking_workers",
]
OWNERS = ("core/booking_core/domain/lifecycle.py", "core/booking_core/db/lifecycle/")
SQL = re.compile(r"update\s+(bookings|slots)\s+set\s+[^;]*\b(status|booked)\b", re.IGNORECASE | re.DOTALL)


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _is_booking_like(node: ast.expr) -> bool:
    """`booking`, `b`, `self.booking`, `lo.booking`...: an expression naming a booking."""
    text = ast.unparse(node).lower()
    return "booking" in text.rsplit(".", 1)[-1] or text in {"b", "bk"}


def violations(source: str, path: str) -> list[str]:
    """Writes of a booking's status or a slot's `booked` in `source` (path only labels them)."""
    found: list[str] = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for t in targets:
            if isinstance(t, ast.Attribute) and t.attr == "booked":
                found.append(f"{path}:{node.lineno}: assigns .booked")
            if isinstance(t, ast.Attribute) and t.attr == "status" and _is_booking_like(t.value):
                found.append(f"{path}:{node.lineno}: assigns a booking's .status")
        if isinstance(node, ast.Call):
            chain = ast.unparse(node.func)
            model = re.search(r"\bupdate\((Booking|Slot)\)", chain)
            if ".values" in chain and model:
                keys = {k.arg for k in node.keywords} | {
                    k.value
                    for a in node.args
                    if isinstance(a, ast.Dict)
                    for k in a.keys
                    if isinstance(k, ast.Constant)
                }
                if ("status" if model.group(1) == "Booking" else "booked") in keys:
                    found.append(f"{path}:{node.lineno}: update() of a booking's status or a slot's count")
            called = node.func.id if isinstance(node.func, ast.Name) else ""
            if called == "Booking" and any(k.arg == "status" for k in node.keywords):
                found.append(f"{path}:{node.lineno}: creates a Booking with a status")
            if isinstance(node.func, ast.Name) and node.func.id == "Slot":
                taken = [k for k in node.keywords if k.arg == "booked" and ast.unparse(k.value) != "0"]
                if taken:
                    found.append(f"{path}:{node.lineno}: creates a Slot with places taken")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
            found.append(f"{path}:{node.lineno}: SQL update of bookings.status or slots.booked")
    return found


def test_only_the_aggregate_and_its_unit_of_work_write_status_and_counts() -> None:
    found: list[str] = []
    for package in PACKAGES:
        for file in sorted((ROOT / package).rglob("*.py")):
            rel = file.relative_to(ROOT).as_posix()
            if rel.startswith(OWNERS) or "/migrations/" in rel or "/testing/" in rel:
                continue
            found += violations(file.read_text(), rel)
    assert found == [], "\n".join(found)


def test_the_scan_catches_each_way_of_writing() -> None:
    bad = """
booking.status = "booked"
slot.booked += 1
session.execute(update(Booking).where(Booking.id == i).values(status="cancelled"))
session.execute(update(Slot).where(Slot.id == i).values(booked=Slot.booked + 1))
session.execute(update(Booking).values({"status": "x"}))
Booking(patient_id="p", status="booked")
conn.exec_driver_sql("UPDATE bookings SET status = 'cancelled' WHERE id = 1")
"""
    assert len(violations(bad, "x.py")) == 7
    fine = """
result.status = "final"
values["status"] = data.status
session.execute(update(Slot).values(capacity=3, status="closed"))
Slot(capacity=1, booked=0)
"""
    # A slot's open/closed status and capacity are the staff's; only `booked` is the aggregate's.
    assert violations(fine, "x.py") == []
