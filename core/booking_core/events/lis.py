"""LIS lab results: the typed form of one HL7 v2 ORU^R01 message (topic `lis.testresult.hl7.v1`).

The wire format is HL7 itself; `booking_consumers.hl7_oru` parses it into these models at the edge.
Every field here is PHI or close to it: these objects never reach a log line, a span or a metric label.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# OBX-11 (HL7 table 0085) -> the FHIR Observation status we store.
OBX_STATUS = {
    "F": "final",
    "C": "corrected",
    "W": "entered-in-error",  # "wrong": the result was sent for the wrong patient or test; retract it
    "D": "entered-in-error",
    "P": "preliminary",
    "R": "preliminary",
    "S": "preliminary",
    "I": "registered",
    "X": "cancelled",
}
ObservationStatus = Literal[
    "final", "corrected", "entered-in-error", "preliminary", "registered", "cancelled"
]

# OBX-8 flags (HL7 table 0078) that mean "outside the reference range"; "N" is normal.
ABNORMAL_FLAGS = frozenset({"L", "H", "LL", "HH", "<", ">", "A", "AA", "LU", "HU"})


class LabObservation(BaseModel):
    """One OBX segment: a result value with its unit, reference range, flags and status."""

    model_config = ConfigDict(frozen=True)

    set_id: int
    code: str = Field(min_length=1)
    name: str | None = None
    coding_system: str | None = None
    value_type: str
    value_numeric: float | None = None
    comparator: str | None = None  # "<" in "<0.5"
    value_text: str | None = None
    unit: str | None = None
    reference_range: str | None = None
    reference_low: float | None = None
    reference_high: float | None = None
    flags: tuple[str, ...] = ()
    status: ObservationStatus
    observed_at: datetime | None = None

    @property
    def abnormal(self) -> bool:
        """True when any abnormal flag is set."""
        return any(f in ABNORMAL_FLAGS for f in self.flags)

    @property
    def critical(self) -> bool:
        """Panic values (HH/LL/AA) make the result-available notification urgent."""
        return any(f in {"HH", "LL", "AA"} for f in self.flags)


class LabReport(BaseModel):
    """One OBR group: an ordered test (a panel) and its observations."""

    model_config = ConfigDict(frozen=True)

    set_id: int
    placer_order_number: str | None = None  # OBR-2: our lab order id when we placed the order
    filler_order_number: str | None = None  # OBR-3: the LIS's accession number
    service_code: str = Field(min_length=1)
    service_name: str | None = None
    observed_at: datetime | None = None
    observations: tuple[LabObservation, ...]


class PatientIdentifier(BaseModel):
    """One PID-3 repetition (CX): the id, its assigning authority and type (MR, SS, ...)."""

    model_config = ConfigDict(frozen=True)

    value: str
    authority: str | None = None
    type_code: str | None = None


class LabResultMessage(BaseModel):
    """One ORU^R01 message: who sent it, for which patient, and its reports."""

    model_config = ConfigDict(frozen=True)

    sending_facility: str = Field(min_length=1)  # MSH-4
    control_id: str = Field(min_length=1)  # MSH-10
    message_datetime: datetime | None = None  # MSH-7
    patient_ids: tuple[PatientIdentifier, ...] = Field(min_length=1)
    reports: tuple[LabReport, ...] = Field(min_length=1)

    @property
    def dedupe_key(self) -> str:
        """MSH-4 + MSH-10: a message the LIS resends carries the same pair."""
        return f"{self.sending_facility}|{self.control_id}"

    def patient_id_of_type(self, *types: str) -> str | None:
        """The first patient identifier whose PID-3.5 type is one of `types` (else the first one)."""
        for pid in self.patient_ids:
            if pid.type_code in types:
                return pid.value
        return self.patient_ids[0].value if not types else None
