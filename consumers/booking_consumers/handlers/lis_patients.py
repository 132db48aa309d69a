"""Which PID-3 identifiers name our patients: by type (CX.5) and assigning authority (CX.4).

A feed sends several identifiers per patient (the lab's MRN, the hospital's, a social security number,
an account number). Only those the deployment names as ours are tried as our patient key, in the order
configured; a social security or account number never is, whatever the configuration says.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from booking_core.events.lis import LabResultMessage, PatientIdentifier

# CX.5 types (HL7 table 0203) that are never a key to our records: they identify a person elsewhere
# (SSN, passport, driver's licence, insurance) or a visit or bill (account, visit and encounter numbers).
NEVER = frozenset(
    {"SS", "SSN", "AN", "ANON", "AC", "DL", "PPN", "MC", "MA", "MB", "NI", "NH", "VN", "BA", "BC"}
)


@dataclass(frozen=True)
class IdentifierRule:
    """One "TYPE@AUTHORITY" rule: CX.5 and CX.4 (namespace id or OID); "*" matches any, "" none."""

    type_code: str
    authority: str

    def matches(self, pid: PatientIdentifier) -> bool:
        """True when this identifier is of the rule's type and from its authority."""
        type_code = pid.type_code or ""
        if type_code in NEVER:
            return False
        if self.type_code != "*" and type_code != self.type_code:
            return False
        return self.authority == "*" or self.authority in {pid.authority or "", pid.authority_oid or ""}


def parse_rules(rules: Iterable[str]) -> tuple[IdentifierRule, ...]:
    """Rules from settings ("MR@HOSP", "PI@2.16.840.1.113883.19.5", "MR@*"); ValueError names a bad one."""
    out = []
    for rule in rules:
        type_code, sep, authority = rule.partition("@")
        type_code = type_code.strip().upper()
        if not sep or not type_code or not authority.strip():
            raise ValueError(f"BOOKING_LIS_PATIENT_IDENTIFIERS: {rule!r} is not TYPE@AUTHORITY")
        if type_code in NEVER:
            raise ValueError(
                f"BOOKING_LIS_PATIENT_IDENTIFIERS: type {type_code} never identifies our patients"
            )
        out.append(IdentifierRule(type_code, authority.strip()))
    if not out:
        raise ValueError("BOOKING_LIS_PATIENT_IDENTIFIERS: at least one rule is required")
    return tuple(out)


DEFAULT_RULES = parse_rules(["MR@*", "PI@*", "PT@*", "PN@*"])


def candidates(msg: LabResultMessage, rules: Sequence[IdentifierRule]) -> list[str]:
    """The identifier values to try as our patient id, in rule order then PID-3 order, no repeats."""
    return candidate_values(msg.patient_ids, rules)


def candidate_values(ids: Sequence[PatientIdentifier], rules: Sequence[IdentifierRule]) -> list[str]:
    """`candidates` over PID-3 identifiers read some other way (the priority lane's quick look)."""
    out: list[str] = []
    for rule in rules:
        for pid in ids:
            if rule.matches(pid) and pid.value not in out:
                out.append(pid.value)
    return out
