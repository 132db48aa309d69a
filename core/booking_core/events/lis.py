"""LIS lab results: the typed form of one HL7 v2 ORU message (topic `lis.testresult.hl7.v1`).

The wire format is HL7 itself; `booking_consumers.hl7_oru` parses it into these objects at the edge.
They are plain frozen dataclasses, not pydantic models: the parser builds thousands a second and checks
every field itself. Every field here is PHI or close to it: these objects never reach a log line, a span
or a metric label.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from booking_core.domain.results import HL7_ABNORMAL, HL7_CRITICAL, ResultStatus


@dataclass(frozen=True, slots=True)
class Attachment:
    """An ED (encapsulated data) or RP (reference pointer) value: kept whole, shown as a link."""

    kind: str  # "ED" or "RP"
    mime_type: str | None = None
    encoding: str | None = None  # ED-4: Base64, Hex, A (ASCII)
    data: str | None = None  # ED-5 as received, or RP-1 (the pointer)


@dataclass(frozen=True, slots=True)
class LabObservation:
    """One OBX segment: a result value with its unit, reference range, flags, status and comments."""

    set_id: int
    code: str
    status: ResultStatus
    value_type: str = "ST"
    sub_id: str | None = None  # OBX-4: tells apart repeated codes (isolates, newborn-screening panels)
    name: str | None = None
    coding_system: str | None = None
    value_numeric: float | None = None
    comparator: str | None = None  # "<" in "<0.5"
    value_text: str | None = None  # what the patient reads; set for every non-empty value
    value_flagged: bool = False  # OBX-5 did not fit OBX-2: stored as text
    attachment: Attachment | None = None
    unit: str | None = None
    reference_range: str | None = None
    reference_low: float | None = None
    reference_high: float | None = None
    flags: tuple[str, ...] = ()  # OBX-8 as received (upper case), normal "N" included
    observed_at: datetime | None = None
    comment: str | None = None  # the NTEs that follow the OBX

    @property
    def abnormal(self) -> bool:
        """True when any abnormal flag is set."""
        return any(f in HL7_ABNORMAL for f in self.flags)

    @property
    def critical(self) -> bool:
        """Panic values (HH/LL/AA) make the result-available notification urgent."""
        return any(f in HL7_CRITICAL for f in self.flags)


@dataclass(frozen=True, slots=True)
class LabReport:
    """One OBR group: an ordered test (a panel), its observations and comments."""

    set_id: int
    service_code: str
    placer_order_number: str | None = None  # OBR-2 (or ORC-2): our lab order id when we placed it
    filler_order_number: str | None = None  # OBR-3 (or ORC-3): the LIS's accession number
    service_name: str | None = None
    observed_at: datetime | None = None
    status: ResultStatus | None = None  # OBR-25; None when absent
    comment: str | None = None  # the NTEs between the OBR and its first OBX
    observations: tuple[LabObservation, ...] = ()


@dataclass(frozen=True, slots=True)
class PatientIdentifier:
    """One PID-3 repetition (CX): the id, its assigning authority (CX.4 HD.1 / HD.2) and type (CX.5)."""

    value: str
    authority: str | None = None
    authority_oid: str | None = None
    type_code: str | None = None


@dataclass(frozen=True, slots=True)
class LabResultMessage:
    """One ORU message: who sent it, for which patient, and its reports."""

    sending_facility: str  # MSH-4 (HD.1, else HD.2), else MSH-3
    control_id: str  # MSH-10
    patient_ids: tuple[PatientIdentifier, ...]
    reports: tuple[LabReport, ...]
    message_datetime: datetime | None = None  # MSH-7
    version: str | None = None  # MSH-12

    @property
    def dedupe_key(self) -> str:
        """MSH-4 + MSH-10: a message the LIS resends carries the same pair."""
        return f"{self.sending_facility}|{self.control_id}"
