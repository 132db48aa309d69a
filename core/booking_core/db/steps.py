"""Database work written once and run by more than one driver: plans that yield statements and take rows.

A plan is a generator: it yields a `Step` (a statement built once, its parameters, and what it wants back)
and is sent the answer; its return value is the plan's result. It does no I/O itself, so the same rules
run on a SQLAlchemy `Connection` (`run`, below: SQLite, the embedded mode, the consumers) and on an asyncpg
connection awaited on the API's event loop (booking_api.dbwork), without a second copy of the rules. An
IntegrityError from a statement is thrown into the plan at its `yield`, as a sqlalchemy.exc.IntegrityError
from either driver, so the plan decides what it means.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

from sqlalchemy import Connection, CursorResult
from sqlalchemy.exc import IntegrityError

T = TypeVar("T")

# row: the first row or None; scalar: the first column of the first row or None; count: the rows a DML
# statement touched; none: nothing (the statement's effect is all).
Want = Literal["row", "scalar", "count", "none"]


@dataclass(frozen=True, slots=True)
class Step:
    """One statement of a plan and what the plan wants back from it."""

    stmt: Any
    params: dict[str, Any]
    want: Want
    # A parameter's name: the driver may run this statement together with the same statement of other
    # plans, in one round trip and one transaction, ordered by that parameter's value (the row it locks),
    # and alone again if that transaction fails (booking_api.pipeline). Only for a statement that returns
    # exactly one row and is right on its own in autocommit. None: it always runs alone.
    batch_by: str | None = None


Plan = Generator[Step, Any, T]


def run(conn: Connection, plan: Plan[T]) -> T:
    """Run `plan` on a SQLAlchemy connection, in the caller's transaction; its result."""
    try:
        step = next(plan)
        while True:
            try:
                answer = _execute(conn, step)
            except IntegrityError as exc:
                step = plan.throw(exc)
            else:
                step = plan.send(answer)
    except StopIteration as done:
        result: T = done.value
        return result


def _execute(conn: Connection, step: Step) -> Any:
    result = conn.execute(step.stmt, step.params)
    if step.want == "row":
        return result.first()
    if step.want == "scalar":
        return result.scalar()
    if step.want == "count":
        return cast(CursorResult[Any], result).rowcount
    return None
