"""Staff clinic scope: a staff member limited to some clinics touches nothing of another clinic.

A clinic outside the scope answers 403 (the clinic list is public, hiding it would protect nothing);
a schedule or slot of another clinic answers 404, like any record that is not the caller's.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path
from sqlalchemy import select

from booking_api.auth import Principal
from booking_api.deps import SessionDep, StaffDep
from booking_api.errors import ForbiddenError
from booking_core.db.models import Clinic, Schedule, Slot
from booking_core.domain.errors import NotFoundError

_ClinicId = Annotated[str, Path(min_length=1, max_length=64)]
_ObjId = Annotated[str, Path(min_length=1, max_length=64)]


def _scope_of(session: SessionDep, clinic_id: str) -> tuple[str, str] | None:
    row = session.execute(select(Clinic.id, Clinic.code).where(Clinic.id == clinic_id)).first()
    return (row[0], row[1]) if row is not None else None


def staff_for_clinic(clinic_id: _ClinicId, staff: StaffDep, session: SessionDep) -> Principal:
    """A staff caller allowed to manage the path's clinic; 403 otherwise (404 for no such clinic)."""
    if staff.clinics is None:
        return staff  # unscoped: the route itself answers 404 for an unknown clinic
    clinic = _scope_of(session, clinic_id)
    if clinic is None:
        raise NotFoundError("clinic", clinic_id)
    if not staff.may_manage(*clinic):
        raise ForbiddenError("this staff member may not manage this clinic", code="clinic_out_of_scope")
    return staff


def _owned(session: SessionDep, staff: Principal, clinic_id: str | None, kind: str, obj_id: str) -> Principal:
    if staff.clinics is None:
        return staff
    clinic = _scope_of(session, clinic_id) if clinic_id is not None else None
    if clinic is None or not staff.may_manage(*clinic):
        raise NotFoundError(kind, obj_id)
    return staff


def staff_for_schedule(schedule_id: _ObjId, staff: StaffDep, session: SessionDep) -> Principal:
    """A staff caller whose scope includes the schedule's clinic; 404 otherwise."""
    clinic_id = session.scalar(select(Schedule.clinic_id).where(Schedule.id == schedule_id))
    return _owned(session, staff, clinic_id, "schedule", schedule_id)


def staff_for_slot(slot_id: _ObjId, staff: StaffDep, session: SessionDep) -> Principal:
    """A staff caller whose scope includes the slot's clinic; 404 otherwise."""
    clinic_id = session.scalar(select(Slot.clinic_id).where(Slot.id == slot_id))
    return _owned(session, staff, clinic_id, "slot", slot_id)


ClinicStaffDep = Annotated[Principal, Depends(staff_for_clinic)]
ScheduleStaffDep = Annotated[Principal, Depends(staff_for_schedule)]
SlotStaffDep = Annotated[Principal, Depends(staff_for_slot)]
