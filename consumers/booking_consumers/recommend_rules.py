"""Rule-based package recommendations: the rules are data (rules/recommendations.yaml), this is the engine.

`evaluate(rules, facts)` is pure: the handler gathers the facts from the database, the engine decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from booking_core.domain.recommendations import Recommendation


class Conditions(BaseModel):
    """The `when` of a rule; every given condition must hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_age: int | None = Field(default=None, ge=0)
    max_age: int | None = Field(default=None, ge=0)
    sex: Literal["male", "female"] | None = None
    booked_package_in: tuple[str, ...] | None = None
    booked_package_not_in: tuple[str, ...] | None = None
    abnormal_result_codes: tuple[str, ...] | None = None
    abnormal_within_days: int = Field(default=365, ge=1)
    min_days_since_last_test: int | None = Field(default=None, ge=1)


class Rule(BaseModel):
    """One rule: a package, the reason shown to the patient, and its conditions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=64)
    package: str = Field(min_length=1)
    reason: str = Field(min_length=1, max_length=500)
    when: Conditions = Conditions()


class RuleSet(BaseModel):
    """The rules file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Facts:
    """What the rules look at, gathered by the handler."""

    today: date
    age: int | None = None
    sex: str | None = None
    booked_package: str | None = None
    # (code, when) of visible results flagged abnormal; codes of reports and of observations.
    abnormal_results: tuple[tuple[str, datetime], ...] = ()
    last_test_at: datetime | None = None


def _holds(c: Conditions, f: Facts) -> bool:
    if c.min_age is not None and (f.age is None or f.age < c.min_age):
        return False
    if c.max_age is not None and (f.age is None or f.age > c.max_age):
        return False
    if c.sex is not None and f.sex != c.sex:
        return False
    if c.booked_package_in is not None and f.booked_package not in c.booked_package_in:
        return False
    if c.booked_package_not_in is not None and f.booked_package in c.booked_package_not_in:
        return False
    if c.abnormal_result_codes is not None:
        since = f.today - timedelta(days=c.abnormal_within_days)
        codes = set(c.abnormal_result_codes)
        if not any(code in codes and at.date() >= since for code, at in f.abnormal_results):
            return False
    if c.min_days_since_last_test is not None and f.last_test_at is not None:
        return (f.today - f.last_test_at.date()).days >= c.min_days_since_last_test
    return True


def evaluate(
    rules: RuleSet, facts: Facts, available_packages: frozenset[str] | None = None
) -> list[Recommendation]:
    """The recommendations whose rules hold, one per package (the first matching rule gives the reason)."""
    out: dict[str, Recommendation] = {}
    for rule in rules.rules:
        if rule.package in out:
            continue
        if available_packages is not None and rule.package not in available_packages:
            continue
        if _holds(rule.when, facts):
            out[rule.package] = Recommendation(package_code=rule.package, rule_id=rule.id, reason=rule.reason)
    return list(out.values())


def load_rules(text: str) -> RuleSet:
    """Parse and validate a rules document."""
    return RuleSet.model_validate(yaml.safe_load(text))


@lru_cache(maxsize=1)
def default_rules() -> RuleSet:
    """The packaged rules file."""
    text = resources.files("booking_consumers").joinpath("rules/recommendations.yaml").read_text("utf-8")
    return load_rules(text)
