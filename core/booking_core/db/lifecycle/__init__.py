"""The booking unit of work: read under locks, let the aggregate decide, write with conditional updates.

This package and `booking_core.domain.lifecycle` are the only code that changes a booking's status or a
slot's `booked` count (tests/core/test_single_owner.py checks it). The API, the consumers and the cron call
the use cases it exports inside their own transaction and commit; one call is one transition of one booking.

Why it cannot overbook or leak a place, on PostgreSQL and on SQLite alike:
- `begin_write` opens the transaction before the first read. On SQLite pysqlite would otherwise open it
  at the first write, after the reads it depends on; `BEGIN IMMEDIATE` takes SQLite's single write lock
  up front, so writers queue and each one reads what the previous one committed (FOR UPDATE is ignored
  there). On PostgreSQL the rows are locked instead.
- One lock order everywhere: the booking's row, then its slots in id order, then its hold.
- Every write checks the state it expects: the booking's status and version, `booked < capacity` for a
  place taken, `booked > 0` for a place freed, the hold still active. A write that finds another state
  raises ConcurrentChangeError (or SlotUnavailableError) and the caller's transaction rolls back.
"""

from booking_core.db.lifecycle.changes import (
    _apply,
    cancel_booking,
    check_in,
    confirm_booking,
    expire_hold,
    fulfil,
    mark_noshow,
    patient_deactivated,
    reschedule_booking,
)
from booking_core.db.lifecycle.hold import HeldBooking, HoldOutcome, hold_booking, hold_plan, stage_notices
from booking_core.db.lifecycle.hold_sql import AlsoInsert, locked_slot_read, slot_read
from booking_core.db.lifecycle.locked import Loaded, lock_booking

__all__ = [
    "AlsoInsert",
    "HeldBooking",
    "HoldOutcome",
    "Loaded",
    "_apply",
    "cancel_booking",
    "check_in",
    "confirm_booking",
    "expire_hold",
    "fulfil",
    "hold_booking",
    "hold_plan",
    "lock_booking",
    "locked_slot_read",
    "mark_noshow",
    "patient_deactivated",
    "reschedule_booking",
    "slot_read",
    "stage_notices",
]
