"""Recommendations: a package suggested to a patient, with the rule that produced it and why."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recommendation:
    """One suggestion; `reason` is shown to the patient, `rule_id` names the rule (rules are data)."""

    package_code: str
    rule_id: str
    reason: str
