"""Who is calling: the principal a verified token's claims describe (claim names from ApiSettings)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from booking_api.settings import ApiSettings
from booking_api.tokens import Role, mint_token

# Minting lives in booking_core (`booking run` signs demo tokens too); re-exported for the API's callers.
__all__ = ["AuthError", "ClaimRules", "Principal", "Role", "mint_token"]

MAX_PATIENT_ID = 64  # patients.id
MAX_SUBJECT = 255
WILDCARD = "*"


class AuthError(Exception):
    """The token is missing, malformed, expired or signed by someone else (the message is safe to show)."""


@dataclass(frozen=True)
class Principal:
    """A patient (sees only their own records) or a staff member, perhaps limited to some clinics."""

    subject: str
    role: Role
    # Clinic ids or codes a staff member may manage; None means every clinic.
    clinics: frozenset[str] | None = None

    @property
    def actor(self) -> str:
        """The audit log's actor string, e.g. "patient:<id>"."""
        return f"{self.role}:{self.subject}"

    def may_manage(self, clinic_id: str, clinic_code: str) -> bool:
        """True when this staff member's scope includes the clinic (by id or by code)."""
        if self.clinics is None or WILDCARD in self.clinics:
            return True
        return clinic_id in self.clinics or clinic_code in self.clinics


def _as_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise AuthError("invalid token claims")


@dataclass(frozen=True)
class ClaimRules:
    """How claims map to a principal: which claim holds the patient id, the role and the clinics."""

    patient_id_claim: str = "sub"
    role_claim: str = "role"
    staff_role: str = "staff"
    patient_role: str = "patient"
    clinic_claim: str | None = None
    clinic_prefix: str = ""

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> ClaimRules:
        """The rules the settings name."""
        return cls(
            patient_id_claim=settings.auth_patient_id_claim,
            role_claim=settings.auth_role_claim,
            staff_role=settings.auth_staff_role,
            patient_role=settings.auth_patient_role,
            clinic_claim=settings.auth_clinic_claim,
            clinic_prefix=settings.auth_clinic_prefix,
        )

    def principal(self, claims: Mapping[str, Any]) -> Principal:
        """The caller the (verified) claims describe; AuthError when they do not describe one."""
        roles = _as_list(claims.get(self.role_claim))
        if roles is not None and self.staff_role in roles:
            return self._staff(claims)
        # No role claim at all is a patient: identity providers rarely tag ordinary users.
        if roles is not None and roles and self.patient_role not in roles:
            raise AuthError("invalid token role")
        patient_id = claims.get(self.patient_id_claim)
        if not isinstance(patient_id, str) or not patient_id or len(patient_id) > MAX_PATIENT_ID:
            raise AuthError("invalid token subject")
        return Principal(subject=patient_id, role="patient")

    def _staff(self, claims: Mapping[str, Any]) -> Principal:
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > MAX_SUBJECT:
            raise AuthError("invalid token subject")
        if self.clinic_claim is None:
            return Principal(subject=sub, role="staff")
        # Fail closed: with clinic scoping on, a staff token without the claim manages no clinic.
        values = _as_list(claims.get(self.clinic_claim)) or []
        p = self.clinic_prefix
        clinics = frozenset(v[len(p) :] for v in values if v.startswith(p) and len(v) > len(p))
        return Principal(subject=sub, role="staff", clinics=clinics)
