"""A patient account's standing: the one statement that reads it and the one answer when deactivated.

The token check (booking_api.deps), the idempotent create (services/idempotency.py, inside its own
statement) and the bookings list (awaited on the event loop) all ask it.
"""

from __future__ import annotations

from sqlalchemy import bindparam, select

from booking_api.errors import ForbiddenError
from booking_core.db.models import Patient

# No row: an account not known here, which is not a deactivated one.
ACTIVE = select(Patient.active).where(Patient.id == bindparam("patient_id"))


def is_deactivated(active: bool | None) -> bool:
    """Whether ACTIVE's value (None: no row) names a deactivated account."""
    return active is False


def deactivated_error() -> ForbiddenError:
    """The 403 a deactivated account gets, whatever its token says."""
    return ForbiddenError("this patient account is deactivated", code="patient_deactivated")
